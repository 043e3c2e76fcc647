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
from centralino.agentleg import GONE, LegParts
from centralino.ari.client import AriClient, AriError, AriNotFound
from centralino.ari.models import Channel, Event, StasisStart
from centralino.callport import ChannelGone
from centralino.calls import CallParts, CallSession, ResumeTalk, Setup
from centralino.clock import LoopClock
from centralino.desk import Desk
from centralino.mail.desk import MailDesk
from centralino.recalls.placing import RECALL_CHANNEL, RecallParts, Recalls, RecallSession
from centralino.registry import Registry
from centralino.running import RunningConfig
from centralino.settings import Settings
from centralino.storage.records import Records
from centralino.storage.store import Store
from centralino.storage.writer import Writer
from centralino.telephony import CALL_BRIDGE, QUEUE_BRIDGE, Bridges
from centralino.tickets.desk import TicketDesk
from centralino.tickets.files import Files
from centralino.transfers import OUTSIDE_LEG
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
        self.started_at = self.clock.now()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reload_lock = asyncio.Lock()
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
        self._events = asyncio.create_task(self.ari.run_events(self._on_event, self._resync))

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
        # Calls stay up in Asterisk: a restarted service adopts them (see _resync).
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

    async def _resync(self) -> None:
        """After (re)connecting: end calls whose channel vanished, adopt calls we do not know
        (the service restarted while they were in Stasis) and re-create queue bridges."""
        self.bridges.forget()
        known = dict(self.registry.channels)  # calls that start from now on are live by definition
        try:
            live = await self.ari.channel_ids()
            bridges = await self.ari.request("GET", "/bridges")
        except AriError as exc:
            log.error("resync after connecting failed: %s", exc)
            return
        for channel_id, session in known.items():
            if channel_id not in live and self.registry.channels.get(channel_id) is session:
                session.deliver(ChannelGone(type="ChannelGone", gone=channel_id))
        # Recall conversations first: their agents must be on call before any adopted caller
        # asks for an agent.
        await self._adopt_recall_talks(bridges)
        await self._adopt({c for c in live - set(known) if not c.startswith(RECALL_CHANNEL)},
                          bridges)
        await self._stale_recall_legs(bridges)
        await self.recalls.start()  # after the clean-up: never two dials at once

    async def _adopt_recall_talks(self, bridges: list[dict[str, Any]]) -> None:
        """Recall conversations a previous run left going in Asterisk: their agents are on
        call until they end (their attempts were stored when that run stopped)."""
        prefix = CALL_BRIDGE.format(call="")
        for bridge in bridges:
            channels = sorted(bridge["channels"])  # the agent's leg "...-a", the citizen's "-c"
            recall_id = bridge["id"].removeprefix(prefix)
            if (not bridge["id"].startswith(prefix) or len(channels) != 2
                    or not all(c.startswith(RECALL_CHANNEL) for c in channels)
                    or recall_id in self.registry.calls
                    or any(c in self.registry.channels for c in channels)):
                continue
            row = await self.store.get_recall(recall_id)
            answered = [o for o in await self.store.offers_for(recall_id) if o.answered_at]
            agent = self.desk.agents.get(answered[-1].agent_id) if answered else None
            if row is None or agent is None or row.topic not in self.running.config.call.queues:
                continue
            offer = answered[-1]
            assert offer.answered_at is not None
            log.info("adopting recall %s: %s is talking to %s", recall_id, agent.id, row.number)
            self.desk.resume_call(agent.id, recall_id)
            session = RecallSession(self.recalls.parts, self.recalls, row)
            self.registry.live(session)
            task = self.spawn(session.resume(agent, channels[0], channels[1], offer.answered_at,
                                             offer.id))

            def forget(_: object, ended: RecallSession = session) -> None:
                self.registry.over(ended)

            task.add_done_callback(forget)

    async def _stale_recall_legs(self, bridges: list[dict[str, Any]]) -> None:
        """Recall legs of a previous run still ringing: hang them up (their requests are
        waiting again). A recall conversation going on is left alone (not adopted)."""
        bridged = {ch for b in bridges if b["id"].startswith(CALL_BRIDGE.format(call=""))
                   and len(b["channels"]) == 2 for ch in b["channels"]}
        try:
            for channel in await self.ari.request("GET", "/channels"):
                cid = channel["id"]
                base = cid.split(";")[0]  # a Local channel's far half goes with its near one
                if (cid.startswith(RECALL_CHANNEL) and base not in self.registry.channels
                        and base not in bridged):
                    log.info("hanging up %s, a recall leg of the previous run", cid)
                    await self.ari.hangup(cid)
        except AriError as exc:
            log.error("could not list channels to stop stale recall legs: %s", exc)

    async def _adopt(self, channels: set[str], bridges: list[dict[str, Any]]) -> None:
        """Take over calls a previous run of the service left in Asterisk: conversations go on,
        waiting callers get back their place in the line, the others restart their flow."""
        queue_prefix, call_prefix = QUEUE_BRIDGE.format(topic=""), CALL_BRIDGE.format(call="")
        waiting_in = {ch: b["id"].removeprefix(queue_prefix)
                      for b in bridges if b["id"].startswith(queue_prefix) for ch in b["channels"]}
        talking: dict[str, tuple[str, str]] = {}  # caller channel -> (old call id, agent leg)
        held: set[str] = set()  # callers the agent had put on hold (out of the bridge)
        for b in bridges:
            if b["id"].startswith(call_prefix) and len(b["channels"]) == 2:
                caller, leg = sorted(b["channels"], key=len)  # a leg's id is its caller's + "-…"
                if OUTSIDE_LEG in leg:  # transferred to a number outside, talking: their own
                    self._outside_talk(caller, leg)
                    continue
                if (base := caller.rsplit("-", 1)[0]) == leg.rsplit("-", 1)[0] \
                        and base in channels and base != caller:
                    # Two agents' legs, the caller on hold out of the bridge: a consultation.
                    # The first agent keeps the caller, on hold; the colleague is let go.
                    old_call = b["id"].removeprefix(call_prefix)
                    if (kept := await self._end_consultation(old_call, caller, leg)) is not None:
                        talking[base] = (old_call, kept)
                        held.add(base)
                    continue
                talking[caller] = (b["id"].removeprefix(call_prefix), leg)
            elif b["id"].startswith(call_prefix) and len(b["channels"]) == 1:
                [leg] = b["channels"]
                if (caller := leg.rsplit("-", 1)[0]) in channels and caller != leg:
                    talking[caller] = (b["id"].removeprefix(call_prefix), leg)
                    held.add(caller)
        legs = {leg for _, leg in talking.values()}
        # Agents' phones still ringing for callers of the previous run: stop them, the callers
        # will be offered again (never two phones ringing for one caller).
        try:
            for channel in await self.ari.request("GET", "/channels"):
                cid = channel["id"]
                if cid not in channels and any(cid.startswith(c + "-") for c in channels):
                    await self.ari.hangup(cid)
        except AriError as exc:
            log.error("could not list channels to stop stale rings: %s", exc)
        for channel_id in sorted(channels - legs, key=lambda c: c not in talking):
            data = await self.ari.get_channel(channel_id)
            if data is None or channel_id in self.registry.channels:  # gone, or StasisStart came
                continue
            channel = Channel.model_validate(data)
            if channel.dialplan.app_name.lower() == "stasis" and \
                    channel.dialplan.app_data.partition(",")[0] != self.settings.asterisk.app:
                continue  # subscribed to (we made it), but another application's: a phone's
            number = channel.dialplan.app_data.partition(",")[2] or channel.dialplan.exten
            if channel_id in talking:
                resume = await self._resume_talk(*talking[channel_id],
                                                 on_hold=channel_id in held)
                if resume is not None:
                    log.info("adopting call on %s talking to %s", channel_id, resume.agent_id)
                    session = self._call(channel, number, resume_talk=resume, resumed=True)
                    # Now, before any adopted caller asks for an agent: this one is busy.
                    self.desk.resume_call(resume.agent_id, session.info.call_id)
                    self._start_session(session)
                    continue
            topic = waiting_in.get(channel_id)
            since, first_id, waiting_for = None, None, frozenset[str]()
            if topic and (found := await self.store.waiting_since(channel_id)):
                first_id, since, waiting_for = found  # back in their place in the line
            # Transferred to agents by name or group: for those of them still logged in.
            waiting_for &= self.desk.logged_in()
            log.info("adopting call on %s (%s) %s", channel_id, number,
                     f"waiting in {topic}" + (f" for {', '.join(sorted(waiting_for))}"
                                              if waiting_for else "")
                     if topic else "from the start of its flow")
            self._start_session(self._call(channel, number, resume_topic=topic,
                                           resume_since=since, resume_for=waiting_for,
                                           queue_log_id=first_id, resumed=True))

    def _outside_talk(self, caller: str, outside: str) -> None:
        """A caller and the number outside they were transferred to, talking: nothing to
        adopt, but whoever hangs up first, the other is hung up too."""
        registry, ari, spawn = self.registry, self.ari, self.spawn

        class Pair:
            call_id = f"outside:{caller}"

            def deliver(self, event: Event) -> None:
                if isinstance(event, GONE):
                    for channel in (caller, outside):
                        registry.unwatch(channel)
                    spawn(ari.hangup(outside if event.channel_id == caller else caller))

        log.info("call on %s talks to a number outside (%s): left to end by itself",
                 caller, outside)
        pair = Pair()
        registry.watch(caller, pair)
        registry.watch(outside, pair)

    async def _end_consultation(self, old_call_id: str, one: str, other: str) -> str | None:
        """A consultation the previous run left going: hang up the colleague's leg (their
        offer was made last), keep the first agent's. The first agent's leg; None if unknown."""
        answered = [o for o in await self.store.offers_for(old_call_id) if o.answered_at]
        colleague = self.desk.agents.get(answered[-1].agent_id) if len(answered) >= 2 else None
        if colleague is None:
            return None
        names = {leg: (await self.ari.get_channel(leg) or {}).get("name", "")
                 for leg in (one, other)}
        theirs = next((leg for leg, name in names.items() if self._phone_of(colleague.id, name)),
                      None)
        if theirs is None:
            return None
        log.info("ending the consultation of call %s: hanging up %s's leg %s", old_call_id,
                 colleague.id, theirs)
        await self.ari.hangup(theirs)
        return other if theirs == one else one

    async def _resume_talk(self, old_call_id: str, leg: str, on_hold: bool
                           ) -> ResumeTalk | None:
        record = await self.store.get_call(old_call_id)
        answered = [o for o in await self.store.offers_for(old_call_id) if o.answered_at]
        # The leg's agent: the last answered offer of the agent whose phone it is (not simply
        # the last answered: a colleague consulted, then let go, answered after them).
        name = ((await self.ari.get_channel(leg)) or {}).get("name", "")
        theirs = [o for o in answered if self._phone_of(o.agent_id, name)] or answered
        if (record is None or not theirs or record.topic is None or record.queued_at is None
                or theirs[-1].agent_id not in self.desk.agents):
            return None
        return ResumeTalk(old_call_id, record.queue_log_id or old_call_id, leg,
                          theirs[-1].agent_id, record.topic, record.queued_at,
                          theirs[-1].answered_at, on_hold)  # type: ignore[arg-type]

    def _phone_of(self, agent_id: str, channel_name: str) -> bool:
        """Whether the channel is one Asterisk made to ring this agent's device (its name is
        the device's, then "-" and a sequence number)."""
        agent = self.desk.agents.get(agent_id)
        return agent is not None and channel_name.lower().startswith(agent.device.lower() + "-")
