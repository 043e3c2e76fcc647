"""The running service: wires settings, storage, prompts, the ARI client, calls and the web API.

    async with Service(settings) as service:
        await service.wait_closed()
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import Any, Self

from aiohttp import web

from centralino import metrics
from centralino.agentleg import LegParts
from centralino.ari.client import AriClient, AriNotFound
from centralino.ari.models import Channel, Event, StasisStart
from centralino.calls import CallParts, CallSession, Setup
from centralino.clock import LoopClock
from centralino.desk import Desk
from centralino.mail.desk import MailDesk
from centralino.recalls.placing import RecallParts, Recalls
from centralino.registry import Registry
from centralino.running import RunningConfig
from centralino.settings import Settings
from centralino.storage.records import Records
from centralino.storage.store import Store
from centralino.storage.writer import Writer
from centralino.takeover import Takeover
from centralino.telephony import Bridges
from centralino.tickets.desk import TicketDesk
from centralino.tickets.files import Files
from centralino.web.app import create_app
from centralino.web.common import ABUSE, WebParts
from centralino.web.site import GuardedSite, addresses_of, connection_limits
from ivr.clock import Clock, ShiftedClock, SystemClock
from ivr.yamlfile import ConfigError
from queue_manager.queues import QueueManager

log = logging.getLogger("centralino")
LINGER = 2.0  # seconds


class Service:
    """The composition root: builds every part once and hands each only what it uses."""

    def __init__(self, settings: Settings, clock: Clock | None = None):
        self.settings = settings
        if clock is None:
            start = settings.clock_start
            clock = ShiftedClock(start) if start else SystemClock()
        self.clock = LoopClock(clock)
        self.store = Store(settings.database.url)
        self.ari = AriClient(settings.asterisk.ari_url, settings.asterisk.username,
                             settings.asterisk.password, settings.asterisk.app,
                             observe_reaction=metrics.ARI_REACTION.observe, clock=self.clock)
        self.writer = Writer(self.store.write, self.clock)
        self.records = Records(self.writer)
        self.queues = QueueManager(settings.recalls.share)
        self.registry = Registry()
        self.desk = Desk(self.clock, self.records, self.queues, self.registry)
        self.bridges = Bridges(self.ari, self.clock)
        self.running = RunningConfig(settings, self.store, self.clock, self.desk, self.bridges)
        self.legs = LegParts(self.ari, self.bridges, self.clock, self.records, self.desk,
                             self.queues, self.registry, settings.asterisk.app, self.spawn)
        self.recalls = Recalls(RecallParts(self.legs, self.store, settings.recalls,
                                           lambda: self.running.config.call), self.spawn)
        self.mail: MailDesk | None = None  # mail.yaml: the mailboxes, from the start
        self.tickets = TicketDesk(self.store, self.clock, lambda: self.running.config, self.desk,
                                  self.spawn, Files(settings.tickets.attachments))
        self.call_parts = CallParts(self.legs, self.store, self.recalls,
                                    self.running.overrides)
        self.takeover = Takeover(self.ari, self.store, self.desk, self.registry, self.bridges,
                                 self.recalls, self.running, settings.asterisk.app, self.spawn,
                                 self._call, self._start_session)
        self.started_at = self.clock.now()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._events: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        config = await self.running.load()  # a broken config stops us before anything runs
        try:
            await self._start()
        except BaseException:
            await self.__aexit__()  # close what did start (database, HTTP session)
            raise
        log.info("centralino serving %d numbers and %d agents (config %s) on http://%s:%d",
                 len(config.call.flows), len(config.agents.agents), config.version,
                 self.settings.http.host,
                 self.settings.http.port)
        return self

    async def _start(self) -> None:
        await self.store.__aenter__()
        await self.writer.replay(self.settings.database.spool, self.store.write)
        self.writer.start()
        interrupted = await self.store.mark_unfinished("interrupted", self.clock.now())
        if interrupted:
            log.warning("%d call records were left open by the previous run", interrupted)
        await self.running.load_overrides()
        config = self.running.config
        self.desk.configure(config.agents, await self.store.last_agent_states(),
                            groups=self.running.groups_of)
        await self.tickets.load()
        if config.mail is not None and self.tickets.enabled:
            self.mail = MailDesk(self.store, self.tickets, self.clock, config.mail,
                                 self.spawn)
            self.mail.public_url = self.settings.http.public_url
            self.tickets.on_answer = self.mail.answer
            self.mail.start()
        await self.ari.__aenter__()
        await self.ari.check()  # clear error now for wrong credentials or no Asterisk
        http = self.settings.http
        asterisk = await addresses_of(self.settings.asterisk.ari_url)
        limits = connection_limits(http, asterisk | {str(a) for a in http.priority_addresses})
        app = create_app(WebParts(
            self.settings, self.clock, self.running, self.desk, self.store, self.writer,
            self.queues, self.registry, self.ari, self.recalls, self.tickets, self.mail))
        app[ABUSE] = limits.abused
        # aiohttp's keep-alive timer also runs while a request head is incomplete: one timeout
        # closes idle connections and slow heads alike. A body refused unread (too large, say)
        # is drained for at most LINGER seconds so that the client reads the answer, not a
        # reset (aiohttp's default, 10 s, let a client flood us with megabytes to discard).
        self._runner = web.AppRunner(app, access_log=None, keepalive_timeout=http.idle_timeout,
                                     lingering_time=LINGER)
        await self._runner.setup()
        await GuardedSite(self._runner, http.host, http.port, limits,
                          ssl_context=self._tls()).start()
        self._events = asyncio.create_task(
            self.ari.run_events(self._on_event, self.takeover.resync))

    def _tls(self) -> ssl.SSLContext | None:
        http = self.settings.http
        if http.tls_certificate is None or http.tls_key is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(http.tls_certificate, http.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError.single("centralino.yaml", f"http.tls_certificate/tls_key: cannot "
                                     f"load {http.tls_certificate}: {exc}") from None
        return context

    async def __aexit__(self, *exc: object) -> None:
        # Calls stay up in Asterisk: a restarted service takes them over (centralino/takeover.py).
        await self.ari.close_events()
        if self._events:
            self._events.cancel()
        # Cancelled again if still running 3 s later (time enough for a cleanup, such as a
        # recall storing how its attempt ended): Python 3.11's wait_for can swallow a
        # cancellation that comes as what it waits for ends (gh-86296), and a mailbox left
        # running so went on moving mail out of the box with nothing to store it in. A task
        # that does not stop within 15 s is named, not waited for.
        deadline = asyncio.get_running_loop().time() + 15
        while (stuck := [t for t in self._tasks if not t.done()]) and \
                asyncio.get_running_loop().time() < deadline:
            for task in stuck:
                task.cancel()
            await asyncio.wait(stuck, timeout=3)
        for task in stuck:
            log.error("stopping: %s did not stop; left behind", task.get_coro())
        if self._runner:
            await self._runner.cleanup()
        await self.ari.__aexit__()
        await self.writer.close(self.settings.database.spool)
        await self.store.__aexit__()

    async def wait_connected(self, timeout: float = 10) -> None:
        await asyncio.wait_for(self.ari.connected.wait(), timeout)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run `coro` in the background; stopped with the service, its failure logged."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or (exc := task.exception()) is None:
            return
        if isinstance(exc, AriNotFound):  # hanging up or deleting what was gone already
            return
        log.error("%s failed", getattr(task.get_coro(), "__qualname__", task.get_name()),
                  exc_info=exc)

    # --- events and calls -----------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("event %s %s", event.type, event.channel_id)
        channels = self.registry.channels
        if isinstance(event, StasisStart) and event.channel.id not in channels:
            if event.args and event.args[0] in ("agent", "citizen", "outside"):  # its call is gone
                self.spawn(self.ari.hangup(event.channel.id))
                return
            number = event.args[0] if event.args else event.channel.dialplan.exten
            self._start_session(self._call(event.channel, number))
            return
        channel_id = event.channel_id
        session = channels.get(channel_id) if channel_id else None
        if session is not None:
            session.deliver(event)

    def _call(self, channel: Channel, number: str, **adopted: Any) -> CallSession:
        """A call on the configuration running now (it keeps it to its end)."""
        running = self.running
        setup = Setup(running.config.call, running.config.version, running.catalog)
        return CallSession(self.call_parts, setup, channel, number, **adopted)

    def _start_session(self, session: CallSession) -> None:
        self.registry.watch(session.channel_id, session)
        task = self.spawn(session.run())
        task.add_done_callback(lambda _: self.registry.unwatch(session.channel_id))
