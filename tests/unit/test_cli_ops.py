"""The ops commands that talk to the running service (`reload`, `line ...`, `call`), and `token`,
`db upgrade`, `prompts build`, `run`'s start-up refusals: what they print, their exit code, and
what they really send to the service's API.

The service's API is the real one (centralino.web.app's routes, middlewares, validation and
error bodies) on 127.0.0.1, served from a thread, over a stand-in for the Service that keeps the
example configuration, a fixed clock and what the handlers were asked to do. The CLI finds it
through the settings' environment variables, as ops would point it at another port.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import shutil
import socket
import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar, Self

import numpy as np
import pytest
import soundfile as sf
from aiohttp import web
from click.testing import CliRunner, Result

from centralino.cli import main
from centralino.config import load_config
from centralino.promptbuild import PromptBuildError
from centralino.settings import load_settings
from centralino.tokens import weakness
from centralino.web.app import create_app
from centralino.web.common import WebParts
from ivr.clock import LOCAL, FixedClock
from ivr.hours import Override
from ivr.yamlfile import ConfigError, ConfigProblem

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ROOT / "config" / "centralino.yaml"
ADMIN = "ops-admin-token-for-the-tests"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=LOCAL)  # a Tuesday, the offices open


def free_port() -> int:
    """A port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the service's API -------------------------------------------------------------------------


class FakeService:
    """What the admin handlers read from centralino.service.Service, and what they ask of it."""

    def __init__(self) -> None:
        self.settings = load_settings(SETTINGS, {"CENTRALINO_HTTP__ADMIN_TOKEN": ADMIN})
        self.config = load_config(self.settings)
        self.clock = FixedClock(NOW)
        self.writer = SimpleNamespace(caught_up=self._caught_up)
        self.store = SimpleNamespace(find_calls=self._find_calls)
        self.desk = SimpleNamespace(supervisors=set(), consoles={})  # no console connects
        self.reset()

    def reset(self) -> None:
        self.overrides: dict[str, Override] = {}
        self.set_calls: list[tuple[str, str, datetime, str, str]] = []
        self.cleared: list[tuple[str, str]] = []
        self.reload_outcome: BaseException | None = None
        self.calls: list[Any] = []
        self.call_queries: list[dict[str, Any]] = []

    async def reload(self) -> Any:
        if self.reload_outcome is not None:
            raise self.reload_outcome
        return self.config

    async def set_override(self, number: str, state: str, until: datetime, reason: str,
                           by: str) -> Override:
        self.set_calls.append((number, state, until, reason, by))
        self.overrides[number] = Override(state, until, reason, by)  # type: ignore[arg-type]
        return self.overrides[number]

    async def clear_override(self, number: str, by: str) -> bool:
        self.cleared.append((number, by))
        return self.overrides.pop(number, None) is not None

    async def _caught_up(self) -> int:
        return 0

    async def _find_calls(self, **query: Any) -> list[Any]:
        self.call_queries.append(query)
        return [c for c in self.calls if c.channel_id == query["channel_id"]]


class Api:
    """The real admin API in a thread; `requests` is what reached it: (method, path and query,
    Authorization header, status answered)."""

    def __init__(self) -> None:
        self.service = FakeService()
        self.requests: list[tuple[str, str, str, int]] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10), "the stand-in API did not start"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        svc = self.service
        app = create_app(WebParts(svc.settings, svc.clock, svc, svc.desk, svc.store,  # type: ignore[arg-type]
                                  svc.writer, *[None] * 6))
        app.on_response_prepare.append(self._seen)
        runner = web.AppRunner(app, access_log=None)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())
        self.loop.close()

    async def _seen(self, request: web.Request, response: web.StreamResponse) -> None:
        self.requests.append((request.method, request.path_qs,
                              request.headers.get("Authorization", ""), response.status))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def env(self, **more: str) -> dict[str, str]:
        """The environment that points the CLI at this API with the right token."""
        return {"CENTRALINO_HTTP__PORT": str(self.port), "CENTRALINO_HTTP__ADMIN_TOKEN": ADMIN,
                "USER": "mrossi", **more}


@pytest.fixture(scope="module")
def api_server() -> Iterator[Api]:
    server = Api()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: Api) -> Api:
    api_server.service.reset()
    api_server.requests.clear()
    return api_server


def cli(*args: str, env: dict[str, str] | None = None, settings: Path = SETTINGS) -> Result:
    return CliRunner().invoke(main, ["--settings", str(settings), *args], env=env)


# --- reload ------------------------------------------------------------------------------------


def test_reload_says_which_version_now_runs_and_its_warnings(api):
    api.service.config.call.warnings.append("prompt promo_x: expired on 2026-11-30")
    try:
        result = cli("reload", env=api.env())
    finally:
        api.service.config.call.warnings.pop()
    assert result.exit_code == 0, result.output
    assert result.stdout == f"reloaded: configuration {api.service.config.version}\n"
    assert result.stderr == "warning: prompt promo_x: expired on 2026-11-30\n"
    assert api.requests == [("POST", "/api/admin/reload", f"Bearer {ADMIN}", 200)]


def test_a_refused_reload_lists_every_problem_and_exits_1(api):
    api.service.reload_outcome = ConfigError([
        ConfigProblem("flows/cittadini.yaml", 12, 5, "menus.main.options.2.queue",
                      "unknown queue 'tributo' (see queues.yaml)"),
        ConfigProblem("hours.yaml", 3, 1, "ufficio", "no such schedule")])
    result = cli("reload", env=api.env())
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "configuration refused; the running one stays"
    assert lines[1].startswith("flows/cittadini.yaml:12:")
    assert "unknown queue 'tributo' (see queues.yaml)" in lines[1]
    assert lines[2].startswith("hours.yaml:3:") and "no such schedule" in lines[2]
    assert api.requests[0][3] == 422


def test_reload_with_the_wrong_admin_token_is_refused_and_says_so(api):
    result = cli("reload", env=api.env(CENTRALINO_HTTP__ADMIN_TOKEN="an-old-token"))
    assert result.exit_code == 1
    assert result.stderr == "unknown token\n"
    assert api.requests == [("POST", "/api/admin/reload", "Bearer an-old-token", 401)]


def test_reload_reports_a_failing_service_without_a_traceback(api):
    api.service.reload_outcome = PromptBuildError("/var/prompts: cannot create: read-only")
    result = cli("reload", env=api.env())
    assert api.requests[0][3] == 500  # what the real route answers for this
    assert result.exit_code == 1
    assert "500" in result.output
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback


def test_commands_say_the_service_is_not_running():
    port = free_port()
    for args in (["reload"], ["line", "status"], ["line", "auto", "0612345001"]):
        result = cli(*args, env={"CENTRALINO_HTTP__PORT": str(port)})
        assert result.exit_code == 1, args
        assert f"Error: the service is not answering at http://127.0.0.1:{port}/api/" \
            in result.output
        assert "Is `centralino run` running?" in result.output


def test_a_missing_settings_file_is_named():
    result = cli("line", "status", settings=Path("/nonexistent/centralino.yaml"))
    assert result.exit_code == 1
    assert result.output == ("Error: bad settings:\n"
                             "/nonexistent/centralino.yaml:1:1: settings file not found\n")


# --- line status / close / open / auto -----------------------------------------------------------


def test_line_status_shows_every_line_open_or_closed_and_why(api):
    until = datetime(2026, 12, 1, 18, 0, tzinfo=LOCAL)
    api.service.overrides["0612345003"] = Override("closed", until, "allagamento", "cli:anna")
    result = cli("line", "status", env=api.env())
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    by_number = {ln.split()[0]: ln for ln in lines}
    assert by_number["0612345001"].startswith("    0612345001  OPEN   (open) ")
    assert by_number["0612345003"] == (
        "    0612345003  CLOSED (override) "
        f"{api.service.config.call.flows['0612345003'].name} "
        "forced until 2026-12-01T18:00:00+01:00: allagamento")
    assert api.requests == [("GET", "/api/lines", f"Bearer {ADMIN}", 200)]


def test_line_status_with_the_wrong_token_fails_with_the_reason(api):
    result = cli("line", "status", env=api.env(CENTRALINO_HTTP__ADMIN_TOKEN="nope-nope"))
    assert result.exit_code == 1
    assert "unknown token" in result.output
    assert api.requests[0][3] == 401


def test_line_close_forces_the_line_and_sends_local_time_reason_and_who(api):
    result = cli("line", "close", "0612345001", "--until", "2026-12-01 18:30",
                 "--reason", "sciopero", env=api.env())
    assert result.exit_code == 0, result.output
    assert result.output == "0612345001 forced closed until 2026-12-01T18:30:00+01:00\n"
    assert api.service.set_calls == [
        ("0612345001", "closed", datetime(2026, 12, 1, 17, 30, tzinfo=UTC), "sciopero",
         "cli:mrossi")]
    assert api.requests == [("PUT", "/api/lines/0612345001/override", f"Bearer {ADMIN}", 200)]


def test_line_open_takes_a_bare_date_as_midnight_italian_time(api):
    result = cli("line", "open", "0612345002", "--until", "2026-12-24",
                 "--reason", "apertura straordinaria", env=api.env())
    assert result.exit_code == 0, result.output
    assert result.output == "0612345002 forced open until 2026-12-24T00:00:00+01:00\n"
    number, state, until, *_ = api.service.set_calls[0]
    assert (number, state, until) == ("0612345002", "open",
                                      datetime(2026, 12, 24, tzinfo=LOCAL))


def test_line_close_of_an_unknown_number_is_refused_by_name(api):
    result = cli("line", "close", "0699999999", "--until", "2026-12-02",
                 "--reason", "guasto", env=api.env())
    assert result.exit_code == 1
    assert result.output == "Error: no line with number 0699999999\n"
    assert api.service.set_calls == []
    assert api.requests[0][:2] == ("PUT", "/api/lines/0699999999/override")
    assert api.requests[0][3] == 404


def test_line_close_until_a_past_time_is_refused(api):
    result = cli("line", "close", "0612345001", "--until", "2026-12-01 09:00",
                 "--reason", "guasto", env=api.env())
    assert result.exit_code == 1
    assert result.output == "Error: until: must be in the future\n"
    assert api.service.set_calls == []


def test_line_close_with_a_too_short_reason_says_what_is_wrong(api):
    result = cli("line", "close", "0612345001", "--until", "2026-12-02",
                 "--reason", "x", env=api.env())
    assert result.exit_code == 1
    assert result.output.startswith("Error: reason: String should have at least 3 characters")
    assert api.service.set_calls == []
    assert api.requests[0][3] == 422


def test_line_close_with_a_bad_date_is_refused_before_asking_the_service(api):
    result = cli("line", "close", "0612345001", "--until", "31/12/2026",
                 "--reason", "guasto", env=api.env())
    assert result.exit_code == 2
    assert "Invalid value for '--until': '31/12/2026' does not match the formats" \
        in result.output
    result = cli("line", "open", "0612345001", "--until", "2026-12-02", env=api.env())
    assert result.exit_code == 2
    assert "Missing option '--reason'" in result.output
    assert api.requests == []


def test_line_auto_clears_the_override_and_says_who(api):
    api.service.overrides["0612345001"] = Override("closed", NOW, "guasto", "cli:anna")
    result = cli("line", "auto", "0612345001", env=api.env())
    assert result.exit_code == 0, result.output
    assert result.output == "0612345001 follows its opening hours\n"
    assert api.service.cleared == [("0612345001", "cli:mrossi")]
    assert api.service.overrides == {}
    assert api.requests == [("DELETE", "/api/lines/0612345001/override?by=cli%3Amrossi",
                             f"Bearer {ADMIN}", 200)]


def test_line_auto_of_an_unknown_number_is_refused(api):
    result = cli("line", "auto", "0699999999", env=api.env())
    assert result.exit_code == 1
    assert result.output == "Error: no line with number 0699999999\n"
    assert api.service.cleared == []


def test_dialplan_writes_the_file_asterisk_includes_and_catches_a_stale_one(tmp_path):
    committed = (ROOT / "dialplan" / "extensions_centralino.conf").read_text()
    out = tmp_path / "extensions_centralino.conf"
    result = cli("dialplan", "--output", str(out))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {out}\n"
    assert out.read_text() == committed
    assert cli("dialplan").output == committed  # stdout, as written
    out.write_text(committed.replace("0612345001", "0612345009"))
    result = cli("dialplan", "--check", str(out))
    assert result.exit_code == 1
    assert result.output == (f"Error: {out} is out of date: run "
                             f"`centralino dialplan --output {out}`\n")


# --- token -------------------------------------------------------------------------------------


def test_token_prints_a_strong_secret_and_its_sha256():
    first, second = CliRunner().invoke(main, ["token"]), CliRunner().invoke(main, ["token"])
    assert first.exit_code == 0, first.output
    token_line, hash_line = first.stdout.splitlines()
    token = token_line.removeprefix("token:  ")
    assert token_line.startswith("token:  ") and weakness(token) is None  # production takes it
    assert hash_line == f"sha256: {hashlib.sha256(token.encode()).hexdigest()}"
    assert "token_sha256" in first.stderr and "key_sha256" in first.stderr  # where it goes
    assert token not in first.stderr
    assert second.stdout.splitlines()[0] != token_line


# --- db upgrade --------------------------------------------------------------------------------


def test_db_upgrade_creates_the_schema_in_a_new_sqlite_file(tmp_path):
    db = tmp_path / "desk.db"
    env = {"CENTRALINO_DATABASE__URL": f"sqlite+aiosqlite:///{db}"}
    for _ in range(2):  # idempotent
        result = cli("db", "upgrade", env=env)
        assert result.exit_code == 0, result.output
        assert result.output == "database schema is up to date\n"
    with sqlite3.connect(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    assert {"calls", "alembic_version"} <= tables
    assert version


def test_db_upgrade_says_which_database_it_cannot_open(tmp_path):
    (tmp_path / "desk.db").write_bytes(b"not a database, a file put there by mistake" * 100)
    url = f"sqlite+aiosqlite:///{tmp_path}/desk.db"
    result = cli("db", "upgrade", env={"CENTRALINO_DATABASE__URL": url})
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)  # a message, not a traceback
    assert f"Error: cannot open the database {url}" in result.output


# --- prompts build and run (a copy of the configuration and recordings for every prompt) -------


@functools.cache
def manifest() -> dict[str, dict[str, str]]:
    """Every prompt the example configuration names, with its languages."""
    return {k: dict(v) for k, v in load_config(load_settings(SETTINGS, {})).call.prompts.items()}


def count_prompts() -> int:
    return sum(len(texts) for texts in manifest().values())


@pytest.fixture
def bare_desk(tmp_path: Path) -> Path:
    """config/ and prompts/manifest.yaml copied to tmp_path; returns the settings file."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "prompts").mkdir()
    shutil.copy(ROOT / "prompts" / "manifest.yaml", tmp_path / "prompts" / "manifest.yaml")
    return tmp_path / "config" / "centralino.yaml"


@pytest.fixture
def desk(bare_desk: Path) -> Path:
    """With a short recording for every prompt and language (no placeholder speech: espeak-ng
    for ~90 prompts takes many seconds)."""
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(800) / 8000)  # 0.1 s at 8 kHz
    for prompt_id, texts in manifest().items():
        for lang in texts:
            path = bare_desk.parent.parent / "prompts" / "recordings" / lang / f"{prompt_id}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, tone, 8000, subtype="PCM_16")
    return bare_desk


def test_prompts_build_converts_the_recordings_then_rebuilds_nothing(desk):
    n, out = count_prompts(), desk.parent.parent / "var" / "prompts"
    result = cli("prompts", "build", settings=desk)
    assert result.exit_code == 0, result.output
    assert result.output == (f"{n} prompts in {out}: {n} recorded, 0 placeholder speech; "
                             f"{n} rebuilt, 0 removed\n")
    info = sf.info(out / "it" / "welcome_cittadini.wav")
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    again = cli("prompts", "build", settings=desk)
    assert again.output == (f"{n} prompts in {out}: {n} recorded, 0 placeholder speech; "
                            "0 rebuilt, 0 removed\n")


def test_prompts_build_names_a_broken_recording_and_exits_1(desk):
    broken = desk.parent.parent / "prompts" / "recordings" / "it" / "cost_notice.wav"
    broken.write_bytes(b"RIFF not really a wav")
    result = cli("prompts", "build", settings=desk)
    assert result.exit_code == 1
    assert f"error: {broken}: cannot decode:" in result.stderr
    assert f"{count_prompts() - 1} prompts in " in result.stdout


def test_prompts_build_refuses_a_broken_configuration(bare_desk):
    queues = bare_desk.parent / "queues.yaml"
    queues.write_text(queues.read_text() + "\nnot: [closed\n")
    result = cli("prompts", "build", settings=bare_desk)
    assert result.exit_code == 1
    assert result.output.startswith("Error: configuration refused:\n")
    assert "queues.yaml:" in result.output


def test_run_refuses_a_broken_configuration_before_starting(bare_desk):
    queues = bare_desk.parent / "queues.yaml"
    queues.write_text(queues.read_text() + "\nnot: [closed\n")
    result = cli("run", settings=bare_desk, env={"CENTRALINO_HTTP__PORT": str(free_port())})
    assert result.exit_code == 1
    assert "Error: configuration refused:\n" in result.stderr
    assert f"{bare_desk.parent}/queues.yaml:" in result.stderr and "YAML syntax" in result.stderr
    assert "Traceback" not in result.output


def test_run_without_asterisk_says_so_and_how_to_start_it(desk, tmp_path):
    ari_port = free_port()
    result = cli("run", settings=desk, env={
        "CENTRALINO_HTTP__PORT": str(free_port()),
        "CENTRALINO_ASTERISK__ARI_URL": f"http://127.0.0.1:{ari_port}",
        "CENTRALINO_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/desk.db"})
    assert result.exit_code == 1
    assert f"Error: Asterisk unreachable at http://127.0.0.1:{ari_port}/ari" in result.output
    assert "Is Asterisk running? (asterisk-dev/chroot.sh start)" in result.output
    assert "Traceback" not in result.output


# --- call --------------------------------------------------------------------------------------


def test_call_refuses_bad_keys_before_dialling():
    result = cli("call", "--number", "0612345001", "--keys", "1,x",
                 env={"CENTRALINO_ASTERISK__ARI_URL": f"http://127.0.0.1:{free_port()}"})
    assert result.exit_code == 2
    assert "Invalid value for --keys: not a key: x" in result.output


def test_call_without_asterisk_says_where_it_looked():
    port = free_port()
    result = cli("call", "--number", "0612345001",
                 env={"CENTRALINO_ASTERISK__ARI_URL": f"http://127.0.0.1:{port}"})
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: Asterisk unreachable at http://127.0.0.1:{port}/ari")


class ScriptedCall:
    """What cli._test_call uses of simcaller.SimCall: each wait for quiet reveals the next batch
    of media the service started playing; the call ends when the script says so."""

    def __init__(self, batches: list[list[str]], service_hangs_up: bool):
        self.id = "sim-0123456789ab"
        self.batches = batches
        self.service_hangs_up = service_hangs_up
        self.started: list[str] = []
        self.ended = asyncio.Event()
        self.pressed: list[str] = []
        self.hung_up = False

    @property
    def service_half(self) -> str:
        return self.id + ";2"

    async def wait_idle(self, quiet: float = 0.4, timeout: float = 60) -> None:
        if self.batches:
            self.started.extend(self.batches.pop(0))
        if not self.batches and self.service_hangs_up:
            self.ended.set()

    async def press(self, keys: str, gap: float = 0.15) -> None:
        self.pressed.append(keys)

    async def hangup(self) -> None:
        self.hung_up = True
        self.ended.set()


class ScriptedCaller:
    """Stands in for simcaller.SimCaller (Asterisk's side of `centralino call`)."""

    made: ClassVar[list[ScriptedCaller]] = []

    def __init__(self, url: str, username: str, password: str, app: str | None = None):
        self.ari = (url, username, password)
        self.dialled: list[tuple[str, str]] = []
        self.call: ScriptedCall | None = None
        ScriptedCaller.made.append(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def dial(self, number: str, caller_number: str = "3331234567") -> ScriptedCall:
        self.dialled.append((number, caller_number))
        assert self.call is not None
        return self.call


def prompt(name: str) -> str:
    return f"sound:http://127.0.0.1:8080/prompts/it/0f3a9c/{name}.wav"


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[list[float], Any]]:
    """Asterisk's side scripted; the command's pauses recorded instead of slept."""
    import centralino.cli
    import centralino.simcaller

    slept: list[float] = []

    async def no_wait(seconds: float) -> None:
        slept.append(seconds)

    def script(batches: list[list[str]], service_hangs_up: bool) -> ScriptedCall:
        call = ScriptedCall(batches, service_hangs_up)

        def caller(*args: Any, **kw: Any) -> ScriptedCaller:
            made = ScriptedCaller(*args, **kw)
            made.call = call
            return made
        monkeypatch.setattr(centralino.simcaller, "SimCaller", caller)
        return call

    ScriptedCaller.made.clear()
    monkeypatch.setattr(centralino.cli, "asyncio", SimpleNamespace(run=asyncio.run,
                                                                   sleep=no_wait))
    yield slept, script


def test_call_prints_what_played_the_keys_and_the_stored_record(api, scripted):
    slept, script = scripted
    call = script([[prompt("cost_notice"), prompt("welcome_cittadini"), prompt("menu_main")],
                   [prompt("menu_servizi")], [], ["sound:queue-thereare", "sound:digits/3"]],
                  service_hangs_up=False)
    api.service.calls.append(SimpleNamespace(
        id="c1", channel_id=call.service_half, number="0612345001", line="Cittadini",
        caller_number="3339876543", caller_name="", config_version="v1",
        started_at=NOW, answered_at=NOW, ended_at=NOW, outcome="caller_hangup",
        topic="anagrafe", detail="hung up after 3 s in queue", queued_at=NOW,
        connected_at=None, agent_id=None, announced_wait=None,
        steps=[SimpleNamespace(at=NOW, kind="key", node="main", key="1", prompt=None,
                               detail="servizi"),
               SimpleNamespace(at=NOW, kind="prompt", node="servizi", key=None,
                               prompt="menu_servizi", detail="")]))
    result = cli("call", "--number", "0612345001", "--keys", "1,-,2", "--caller", "3339876543",
                 env=api.env(CENTRALINO_ASTERISK__ARI_URL="http://127.0.0.1:18088",
                             CENTRALINO_ASTERISK__PASSWORD="ari-secret"))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "calling 0612345001 as 3339876543",
        "  played cost_notice",
        "  played welcome_cittadini",
        "  played menu_main",
        "  pressed 1",
        "  played menu_servizi",
        "  (no key)",
        "  pressed 2",
        "  played queue-thereare",
        "  played digits/3",
        "  (nothing more plays: on hold or waiting for a key; hanging up in 3 s)",
        "record: outcome caller_hangup (anagrafe); keys 1:servizi; hung up after 3 s in queue",
    ]
    (caller,) = ScriptedCaller.made
    assert caller.ari == ("http://127.0.0.1:18088", "centralino", "ari-secret")
    assert caller.dialled == [("0612345001", "3339876543")]
    assert call.pressed == ["1", "2"] and call.hung_up
    assert 3.0 in slept  # on hold for --hold seconds before hanging up
    assert api.service.call_queries[0]["channel_id"] == "sim-0123456789ab;2"
    assert api.requests[-1][0] == "GET" and api.requests[-1][2:] == (f"Bearer {ADMIN}", 200)


def test_call_that_the_service_ends_stops_pressing_and_prints_no_record_if_none(api, scripted):
    _, script = scripted
    call = script([[prompt("closed_hours")]], service_hangs_up=True)
    result = cli("call", "--number", "0612345002", "--keys", "1,2", env=api.env())
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "calling 0612345002 as 3331234567",
        "  played closed_hours",
        "  the service hung up",
    ]
    assert call.pressed == [] and not call.hung_up
    assert api.service.call_queries == [{"channel_id": "sim-0123456789ab;2", "number": None,
                                         "caller": None, "limit": 50}]


def test_without_a_login_name_the_log_says_unknown_and_odd_numbers_stay_one_segment(api):
    api.service.overrides["0612345001"] = Override("closed", NOW, "guasto", "cli:anna")
    result = cli("line", "auto", "0612345001", env=api.env(USER=""))
    assert result.exit_code == 0, result.output
    assert api.service.cleared == [("0612345001", "cli:unknown")]
    result = cli("line", "close", "06/1234#5", "--until", "2026-12-02", "--reason", "guasto",
                 env=api.env(USER=""))
    assert result.exit_code == 1  # refused by name, not a traceback or another route
    assert result.output == "Error: no line with number 06/1234#5\n"
    assert api.requests[-1][:2] == ("PUT", "/api/lines/06%2F1234%235/override")
