"""Integration tests: the real Asterisk 22 (asterisk-dev/chroot.sh), real calls, real storage.

Callers are Local channels originated into the inbound context (centralino.simcaller); what they
heard comes from Asterisk's playback events. Records are stored in PostgreSQL when
CENTRALINO_TEST_DATABASE_URL is set (the README's test command does), else in SQLite.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from centralino.dialplan import render_merged
from centralino.service import Service
from centralino.settings import Settings, load_settings
from centralino.simcaller import SimAgents, SimCall, SimCaller, SimCitizens
from centralino.storage.models import Call, RecallRequest, Ticket
from centralino.storage.store import Store
from ivr.clock import ShiftedClock, aware
from tests.integration.desk_api import DeskApi, staff
from tests.integration.mailserver import smtp_server  # noqa: F401 (a fixture, for mail tests)
from tests.integration.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
CHROOT = REPO / "asterisk-dev" / "chroot.sh"
TEST_SETTINGS = REPO / "tests" / "integration" / "config" / "centralino.yaml"
EXAMPLE_SETTINGS = REPO / "config" / "centralino.yaml"
DIALPLAN = REPO / "var" / "test-dialplan.conf"
MENU = "0999000001"  # the test line with menus
# A Tuesday in December during office hours: every test line is open.
OPEN = datetime(2026, 12, 1, 10, 0)

pytestmark = pytest.mark.asterisk


def settings_for(path: Path = TEST_SETTINGS, **env: str) -> Settings:
    environ = {"CENTRALINO_HTTP__PORT": "18081", "CENTRALINO_HTTP__PUBLIC_URL":
               "http://127.0.0.1:18081"}
    if url := os.environ.get("CENTRALINO_TEST_DATABASE_URL"):
        environ["CENTRALINO_DATABASE__URL"] = url
    return load_settings(path, {**environ, **env})  # what a test asks for wins


def chroot(*args: str, **env: str) -> None:
    subprocess.run(["bash", str(CHROOT), *args], check=True, env={**os.environ, **env},
                   stdout=subprocess.DEVNULL)


def _render_test_dialplan() -> None:
    """Route both the example numbers and the test numbers to centralino."""
    DIALPLAN.parent.mkdir(exist_ok=True)
    DIALPLAN.write_text(render_merged([EXAMPLE_SETTINGS, TEST_SETTINGS], "centralino"))


@dataclasses.dataclass
class Asterisk:
    def restart(self) -> None:
        chroot("restart", CENTRALINO_DIALPLAN=str(DIALPLAN))

    def cli(self, command: str) -> str:
        return subprocess.run(["bash", str(CHROOT), "cli", command], check=True,
                              capture_output=True, text=True).stdout


@pytest.fixture(scope="session")
def asterisk() -> Asterisk:
    _render_test_dialplan()
    chroot("start", CENTRALINO_DIALPLAN=str(DIALPLAN))  # restarts it if asterisk-dev/etc changed
    chroot("dialplan", str(DIALPLAN))
    return Asterisk()


ServiceFactory = Callable[..., Awaitable[Service]]


@pytest.fixture
async def desk() -> AsyncIterator[DeskApi]:
    """The started service's HTTP API as its clients use it (tests/integration/desk_api.py);
    `desk.now()` is the time the test gave the service."""
    async with DeskApi() as api:
        yield api


@pytest.fixture
async def start_service(asterisk: Asterisk, desk: DeskApi) -> AsyncIterator[ServiceFactory]:
    """start_service(at=datetime, settings=Settings) -> a running in-process service, with
    every agent logged out (tests that want agents log them in with `staff(desk, ...)`).
    Tests drive it through `desk` (its API), the phones and Asterisk; the service object is
    for its lifecycle (a restart: __aexit__, then start_service again)."""
    running: list[Service] = []
    clocks: dict[datetime, ShiftedClock] = {}  # a restarted service keeps the test's time

    async def start(at: datetime = OPEN, settings: Settings | None = None,
                    keep_agents: bool = False, keep_recalls: bool = False) -> Service:
        clock = clocks.setdefault(at, ShiftedClock(aware(at)))
        settings = settings or settings_for()
        if not keep_recalls:
            await close_open_recalls(settings.database.url)
            await close_open_tickets(settings.database.url)
        service = Service(settings, clock=clock)
        await service.__aenter__()
        running.append(service)
        await service.wait_connected()
        desk.clock, desk.admin_token = clock, settings.http.admin_token
        if not keep_agents:
            await staff(desk)
        return service

    yield start
    for service in running:
        await service.__aexit__(None, None, None)


async def close_open_recalls(url: str) -> None:
    """Earlier tests' open recall requests would be placed by this service: expire them
    (the database outlives tests, as it does agents' logins)."""
    async with Store(url) as store, store.sessions.begin() as s:
        await s.execute(update(RecallRequest)
                        .where(RecallRequest.status.in_(("waiting", "calling")))
                        .values(status="expired"))


async def close_open_tickets(url: str) -> None:
    """Earlier tests' open tickets would be handed to the agents this test logs in: close
    them, as close_open_recalls does."""
    async with Store(url) as store, store.sessions.begin() as s:
        await s.execute(update(Ticket).where(Ticket.state != "chiuso")
                        .values(state="chiuso", owner=None))


@pytest.fixture
async def citizens(asterisk: Asterisk) -> AsyncIterator[SimCitizens]:
    """The citizens' phones that recalls dial (answer, refuse or ignore, per number)."""
    async with SimCitizens("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
        yield sim


@pytest.fixture
async def caller(asterisk: Asterisk) -> AsyncIterator[SimCaller]:
    async with SimCaller("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
        yield sim


@pytest.fixture
async def phones(asterisk: Asterisk) -> AsyncIterator[SimAgents]:
    """The simulated agents' phones (answer, refuse or ignore, per agent)."""
    async with SimAgents("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
        yield sim


async def record_of(service: Service, call: SimCall, timeout: float = 10) -> Call:
    """The stored record of `call` once the service has finished it (the last one, if a
    restarted service adopted the call). From the database: `GET /api/calls` has no
    queued_at, connected_at, agent_id or announced_wait, which tests assert on."""
    async def stored() -> list[Call]:
        await service.writer.caught_up()  # what was done is stored (the writer batches)
        return await service.store.find_calls(channel_id=call.service_half)
    found = await eventually(stored, lambda found: found and all(
        c.outcome is not None for c in found), timeout, 0.1, f"the record of {call.service_half}")
    return max(found, key=lambda c: c.ended_at)


def steps(record: Call, *kinds: str) -> list[tuple[str, str, str | None, str | None, str]]:
    return [(s.kind, s.node, s.key, s.prompt, s.detail) for s in record.steps
            if not kinds or s.kind in kinds]


# --- a real `centralino run` process -------------------------------------------------------

PORT = 18085


def api_get(path: str, port: int = PORT) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Authorization": "Bearer test-admin-token"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


def run_config(tmp_path: Path, port: int = PORT, **env: str) -> tuple[Path, dict[str, str], Path]:
    """(settings file, environment, log file) for `centralino run` processes (start_run) on
    `port`, on a copy of the test config they may edit; extra CENTRALINO_* settings in `env`."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    environ = {**os.environ,
               "CENTRALINO_HTTP__PORT": str(port),
               "CENTRALINO_HTTP__PUBLIC_URL": f"http://127.0.0.1:{port}",
               "CENTRALINO_PROMPTS__BUILD_DIR": str(REPO / "var" / "test-prompts"),
               "CENTRALINO_CLOCK_START": "2026-12-01T10:00:00+01:00", **env}
    if url := os.environ.get("CENTRALINO_TEST_DATABASE_URL"):
        environ["CENTRALINO_DATABASE__URL"] = url
        asyncio.run(close_open_recalls(url))
    else:
        environ["CENTRALINO_DATABASE__URL"] = f"sqlite+aiosqlite:///{tmp_path}/centralino.db"
    return config / "centralino.yaml", environ, tmp_path / "service.log"


@pytest.fixture
def run_env(tmp_path: Path, asterisk) -> tuple[Path, dict[str, str], Path]:
    return run_config(tmp_path)


def start_run(settings: Path, env: dict[str, str], log_path: Path,
              preexec_fn: Callable[[], None] | None = None, keep_agents: bool = False
              ) -> subprocess.Popen[bytes]:
    """`centralino run` as a real process, serving when this returns, with nobody logged in
    (or, `keep_agents`, the logins the database remembers: a restart)."""
    port = int(env["CENTRALINO_HTTP__PORT"])
    with open(log_path, "a") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "centralino", "--settings", str(settings), "run"],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
            preexec_fn=preexec_fn)  # noqa: PLW1509 - only setrlimit, in the child
    for _ in range(100):
        try:
            api_get("/healthz", port)
            break
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    else:
        proc.kill()
    assert proc.poll() is None, log_path.read_text()
    for agent in [] if keep_agents else api_get("/api/agents", port):
        api_post(f"/api/agents/{agent['id']}/logout", port)  # logins survive restarts
    return proc


def stop_run(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


def api_post(path: str, port: int = PORT) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=b"{}",
                                     method="POST",
                                     headers={"Authorization": "Bearer test-admin-token"})
    urllib.request.urlopen(request, timeout=5).close()


@pytest.fixture
def running(run_env):
    """`centralino run` as a real process, on a copy of the test config it may edit."""
    settings, env, log = run_env
    proc = start_run(settings, env, log)
    yield proc, settings.parent, env, log
    stop_run(proc)


def service_process(tmp_path: Path, port: int, preexec_fn: Callable[[], None] | None = None,
                    **env: str):
    """Run `centralino run` on `port` (extra CENTRALINO_* settings in `env`) until the test
    is over; yield (process, config folder, environment, log file)."""
    settings, environ, log = run_config(tmp_path, port, **env)
    proc = start_run(settings, environ, log, preexec_fn)
    yield proc, settings.parent, environ, log
    stop_run(proc)
