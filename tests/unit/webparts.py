"""What the HTTP handlers read, built in one place for the web tests (test_web_*.py).

The service is a stand-in (`Parts`): the real configuration (a copy of config/, so that a test
may break it), a real Desk, QueueManager, Records over a Writer on a SQLite Store in the test's
folder, and a FixedClock; only what reaches Asterisk (reload, line overrides, the ARI client,
the recall scheduler) is a small stand-in that records what it was asked. `make_desk` is the
only place a Desk is built: when its constructor changes, that is the line to adapt.
"""

from __future__ import annotations

import asyncio
import shutil
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from centralino.clock import LoopClock, Timer
from centralino.config import Config, load_config
from centralino.desk import Desk
from centralino.media import PromptCatalog
from centralino.registry import Registry
from centralino.settings import Settings, load_settings
from centralino.storage.records import Records
from centralino.storage.store import Store
from centralino.storage.writer import Writer
from centralino.tickets.desk import TicketDesk
from centralino.tickets.files import Files
from centralino.web.app import create_app
from centralino.web.common import DESK, MAIL, STORE, WRITER, WebParts
from cti.config import dev_token
from cti.messages import CallOffer
from ivr.clock import LOCAL, FixedClock
from ivr.hours import Override
from queue_manager.queues import QueueManager, Waiting

REPO = Path(__file__).resolve().parents[2]
ADMIN = "admin-token-of-the-web-tests"
SUPERVISOR = dev_token("supervisore")  # config/agents.yaml: every token is dev-<id>
# A Tuesday morning, 10:00 in Rome: the offices are open. UTC, as the service's clocks give it.
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=LOCAL).astimezone(UTC)


# Nothing listens on port 1: connecting is refused at once, as with a database that is down.
UNREACHABLE_DB = "postgresql+asyncpg://centralino:x@127.0.0.1:1/centralino"


def token(person_id: str) -> str:
    return dev_token(person_id)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus' text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def scrape(client: TestClient[Any, Any], **headers: str
                 ) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """GET /metrics (200 expected), as samples."""
    resp = await client.get("/metrics", headers=headers)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Type"].startswith("text/plain")
    return samples(await resp.text())


class Ari:
    """What the handlers read of the ARI client: connected or not, reaction times."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.reaction_samples: deque[tuple[float, float]] = deque()


class RecallScheduler:
    """recalls.placing.Recalls as the handlers use it: poked when a request waits again."""

    def __init__(self) -> None:
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1

    def cancelled(self, recall_id: str) -> None:
        pass


class StillClock(FixedClock):
    """Wall time that moves only when a test moves it; timers (wrap-ups) from the loop."""

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def after(self, seconds: float) -> asyncio.Future[None]:
        return LoopClock(self).after(seconds)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(seconds, callback)


class CallSession:
    """A caller's session as the desk reaches it: it is handed the offers made for it."""

    def __init__(self) -> None:
        self.delivered: list[Any] = []

    def deliver(self, event: Any) -> None:
        self.delivered.append(event)


class Parts:
    """The service's parts as the web handlers see them; it stands in for the running
    configuration (centralino.running.RunningConfig) too."""

    def __init__(self, settings: Settings, config: Config, store: Store) -> None:
        self.settings = settings
        self.config = config
        self.clock = StillClock(NOW)
        self.store = store
        self.writer = Writer(store.write)
        self.records = Records(self.writer)
        self.queues = QueueManager(settings.recalls.share)
        self.registry = Registry()
        self.overrides: dict[str, Override] = {}
        self.catalog = PromptCatalog(settings.prompts.build_dir, settings.http.public_url)
        self.ari = Ari()
        self.recalls = RecallScheduler()
        self.reloads = 0
        self.override_calls: list[tuple[str, ...]] = []
        self.desk = make_desk(self)
        self.tickets = TicketDesk(store, self.clock, lambda: self.config, self.desk,
                                  self.spawn, Files(settings.tickets.attachments))
        self.tasks: set[asyncio.Task[None]] = set()
        self.mail = None  # no mail.yaml in these tests
        self.app = web.Application()  # the one create_app made, once made

    def replace(self, **parts: Any) -> None:
        """Swap parts under the app being served (a database gone, a mailbox added), as the
        real service never does: aiohttp warns that a started app changes."""
        keys: dict[str, web.AppKey[Any]] = {"store": STORE, "writer": WRITER, "mail": MAIL,
                                         "desk": DESK}
        for name, value in parts.items():
            setattr(self, name, value)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.app[keys[name]] = value

    def web(self) -> WebParts:
        """What create_app receives."""
        return WebParts(self.settings, self.clock, self, self.desk, self.store, self.writer,
                        self.queues, self.registry, self.ari, self.recalls, self.tickets,
                        self.mail)

    def _groups(self, agent: str) -> frozenset[str]:
        tickets = self.config.tickets
        return tickets.groups_of(agent) if tickets else frozenset()

    @property
    def topics(self) -> list[str]:
        return [*self.config.call.queues, *sorted(self.desk.retiring)]

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # --- what reaches Asterisk in the real service: recorded, and kept in memory -------------

    async def reload(self) -> Config:
        """As Service.reload, without building prompts: the configuration files are read
        again (ConfigError if they are wrong) and the desk takes the agents."""
        self.reloads += 1
        config = await asyncio.to_thread(load_config, self.settings)
        self.config = config
        self.desk.configure(config.agents, topics=config.call.queues, groups=self._groups)
        return config

    async def set_override(self, number: str, state: str, until: datetime, reason: str,
                           by: str) -> Override:
        self.override_calls.append(("set", number, state, until.isoformat(), reason, by))
        await self.store.set_override(number, state, until, reason, by, self.clock.now())
        override = Override(state, until, reason, by)  # type: ignore[arg-type]
        self.overrides[number] = override
        return override

    async def clear_override(self, number: str, by: str) -> bool:
        self.override_calls.append(("clear", number, by))
        cleared = await self.store.clear_override(number, by, self.clock.now())
        self.overrides.pop(number, None)
        return cleared > 0

    # --- helpers for the tests ---------------------------------------------------------------

    def caller_waits(self, call_id: str, topic: str, seconds_ago: float = 0, caller: str = "",
                     line: str = "Associazioni di categoria") -> CallSession:
        """A caller in `topic`'s line (as a call session puts them there), with a session
        that receives the desk's offers."""
        since = self.clock.now() - timedelta(seconds=seconds_ago)
        self.queues.join(Waiting(call_id, topic, since, caller=caller, line=line))
        session = CallSession()
        self.registry.calls[call_id] = session
        return session

    def screen_pop(self, call_id: str, offer_id: str, topic: str = "suap") -> CallOffer:
        """What a call session pops on the console of the agent it rings."""
        return CallOffer(offer_id=offer_id, call_id=call_id, caller_number="3471234567",
                         caller_name="Maria Rossi", number="0612345001",
                         line="Associazioni di categoria", topic=topic,
                         topic_name=self.config.call.queues[topic].name, path=[],
                         waited_seconds=12.5, previous_contacts=[], offered_at=self.clock.now())


def make_desk(parts: Parts) -> Desk:
    """The one place a Desk is built."""
    return Desk(parts.clock, parts.records, parts.queues, parts.registry)


def settings_for(tmp_path: Path, env: dict[str, str] | None = None) -> Settings:
    """The example settings over a copy of config/ in `tmp_path`, a SQLite file there, the
    repository's prompt manifest and this module's admin token."""
    config_dir = tmp_path / "config"
    if not config_dir.exists():
        shutil.copytree(REPO / "config", config_dir)
    return load_settings(config_dir / "centralino.yaml", {
        "CENTRALINO_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}",
        "CENTRALINO_DATABASE__SPOOL": str(tmp_path / "spool.pickle"),
        "CENTRALINO_PROMPTS__MANIFEST": str(REPO / "prompts" / "manifest.yaml"),
        "CENTRALINO_PROMPTS__BUILD_DIR": str(tmp_path / "prompts"),
        "CENTRALINO_HTTP__ADMIN_TOKEN": ADMIN,
        "CENTRALINO_TICKETS__ATTACHMENTS": str(tmp_path / "attachments"),
        "CENTRALINO_HTTP__METRICS_MAX_AGE": "0",  # every scrape renders: what it shows is now
        **(env or {}),
    })


_loaded: dict[str, Any] = {}  # once per run: the example configuration, a migrated database


async def _fresh_database(settings: Settings) -> Store:
    """An empty, migrated SQLite file at settings.database.url (a copy of one migrated once:
    migrating takes half a second)."""
    path = Path(settings.database.url.split(":///", 1)[1])
    if "database" not in _loaded:
        await (await Store(settings.database.url).__aenter__()).__aexit__()
        _loaded["database"] = await asyncio.to_thread(path.read_bytes)
    await asyncio.to_thread(path.write_bytes, _loaded["database"])
    return await Store(settings.database.url).__aenter__()


@asynccontextmanager
async def web_parts(tmp_path: Path, env: dict[str, str] | None = None
                    ) -> AsyncIterator[tuple[TestClient[web.Request, web.Application], Parts]]:
    """The whole HTTP app (centralino.web.app.create_app) on a test server, over `Parts`."""
    settings = settings_for(tmp_path, env)
    if "config" not in _loaded:
        _loaded["config"] = load_config(settings)
    config: Config = _loaded["config"]  # the copy in tmp_path says the same (until a test edits it)
    store = await _fresh_database(settings)
    parts = Parts(settings, config, store)
    parts.desk.configure(config.agents, {}, groups=parts._groups)  # at start: all logged out
    await parts.tickets.load()
    parts.writer.start()
    try:
        app = parts.app = create_app(parts.web())
        async with TestClient(TestServer(app)) as client:
            yield client, parts
    finally:
        await parts.writer.close()
        await store.__aexit__()
