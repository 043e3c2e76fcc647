"""One inbound call over ARI, from StasisStart to its end: the flow, the wait in a line,
the agent's phone ringing, the conversation; and its records.

A session gets only what it uses (`CallParts`, built once by the service); its events come
through its port (centralino.callport), in the order Asterisk sent them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from centralino import metrics
from centralino.agentleg import (
    AgentLeg,
    CallCommand,
    LegParts,
    withdraw_offer,
)
from centralino.ari.client import AriError, AriNotFound
from centralino.ari.models import (
    Channel,
    ChannelDtmfReceived,
    ChannelTransfer,
    Event,
    PlaybackFinished,
)
from centralino.callport import AriCallPort, Lost
from centralino.desk import OfferMade
from centralino.media import PromptCatalog
from centralino.storage.faults import fault_of
from centralino.storage.models import Call, RecallRequest, Ticket
from centralino.storage.records import NewCall
from centralino.telephony import CALL_BRIDGE
from centralino.transfers import CallTransfers
from cti.messages import (
    CallOffer,
    MenuStep,
    PreviousContact,
    PreviousTicket,
    QueueConnected,
    QueueJoined,
    QueueLeft,
)
from cti.recalls import OutsideNumber, RecallError
from ivr.clock import LOCAL
from ivr.config import CallConfig
from ivr.engine import CallerHungUp, FlowResult, Journal, Step, run_flow
from ivr.hours import Override, line_status
from ivr.schema import CallbackKey, Destination, QueueTopic
from queue_manager import waiting
from queue_manager.hold import position_phrase, wait_band, wait_phrase
from queue_manager.queues import Waiting
from tickets.requests import e164

log = logging.getLogger("centralino.calls")
# An agent's phone hanging up this soon after a transfer it asked was declined: it did so
# because of the transfer (as baresip does after any REFER), not to end the call.
REFER_HANGUP_SECONDS = 10.0
MAX_MOVES = 5  # rules moving a caller from line to line: then they wait where they are


class History(Protocol):
    async def previous_contacts(self, caller: str, before: datetime, limit: int = 5
                                ) -> list[Call]: ...
    async def previous_tickets(self, phone: str | None, limit: int = 5,
                               call_id: str | None = None) -> list[Ticket]: ...


class Callbacks(Protocol):
    async def from_caller(self, topic: str, number: str, name: str, since: datetime,
                          boost: float, line: str) -> RecallRequest: ...
    def outside(self, number: str) -> OutsideNumber: ...


@dataclass(frozen=True)
class CallParts:
    """What a call needs besides its agent legs' parts, built once by the service."""

    legs: LegParts
    history: History  # the caller's previous contacts, for the screen pop
    callbacks: Callbacks  # the callback key: a recall request takes the caller's place
    overrides: Mapping[str, Override]  # lines forced open or closed, by number


@dataclass(frozen=True)
class Setup:
    """The configuration a call runs on from start to end, even across a reload."""

    call: CallConfig
    version: str
    catalog: PromptCatalog


@dataclass(frozen=True)
class ResumeTalk:
    """A conversation that was going on when the service restarted."""

    old_call_id: str  # of the session that bridged it: the bridge's name
    queue_log_id: str  # what the caller's queue_log lines carry (maybe an earlier call's id)
    leg_channel: str
    agent_id: str
    topic: str
    queued_at: datetime
    connected_at: datetime
    on_hold: bool = False  # the agent had put the caller on hold: they stay on hold


@dataclass
class CallInfo:
    call_id: str
    channel: Channel
    number: str
    started_at: datetime


class CallSession(CallTransfers):
    """Runs one call from StasisStart to its end and records it: the flow, the wait in the
    queue, ringing agents, the conversation."""

    def __init__(self, parts: CallParts, setup: Setup, channel: Channel, number: str, *,
                 resume_topic: str | None = None, resume_since: datetime | None = None,
                 resume_for: frozenset[str] = frozenset(),
                 resume_talk: ResumeTalk | None = None, queue_log_id: str | None = None,
                 resumed: bool = False):
        self.parts, self.legs = parts, parts.legs
        self.telephony, self.clock, self.records = parts.legs.telephony, parts.legs.clock, \
            parts.legs.records
        self.desk, self.queues = parts.legs.desk, parts.legs.queues
        self.config = setup.call  # this call's version, even after a reload
        self.version = setup.version
        self.catalog = setup.catalog
        self.info = CallInfo(uuid.uuid4().hex, channel, number, self.clock.now())
        self.flow = self.config.flows.get(number)
        language = self.flow.language if self.flow else "it"
        self.port = AriCallPort(self.telephony, self.clock, channel.id, language,
                                self.catalog.uri)
        self.journal = Journal(self.clock.now, listener=self._store_step)
        self.resume_topic, self.resume_since, self.resumed = resume_topic, resume_since, resumed
        self.resume_talk = resume_talk
        # queue_log lines of an adopted call continue under the id its ENTERQUEUE was written
        # with, so that reports can follow it across any number of restarts (the record
        # keeps it: see Store.waiting_since).
        self.queue_log_id = queue_log_id or (resume_talk.queue_log_id if resume_talk
                                             else self.info.call_id)
        # The bridge with the agent, named after the session that made it.
        self.bridge_of = resume_talk.old_call_id if resume_talk else self.info.call_id
        self.bridge = CALL_BRIDGE.format(call=self.bridge_of)
        self.line_entered: datetime | None = None  # when the caller joined the current line
        self.queued: Waiting | None = None  # the caller's place (kept once out of the line)
        self.in_line = False  # in `queued.topic`'s line now
        self.left_line = ""  # the rule that took the caller out of the last line
        self.announced_wait: int | None = None  # seconds, the first estimate told
        self.position_on_entry = 0
        self.leg: AgentLeg | None = None  # the agent leg ringing or talking
        self.hold_playback: str | None = None  # what a waiting caller hears now over the music
        self.answered_at: datetime | None = None
        self.ended_by = ""  # "caller" or "agent", once connected
        self._no_transfer_yet(resume_for)

    @property
    def channel_id(self) -> str:
        return self.info.channel.id

    @property
    def call_id(self) -> str:
        return self.info.call_id

    def deliver(self, event: Event) -> None:
        self.port.events.put_nowait(event)

    def _outside_number(self, number: str) -> OutsideNumber:
        return self.parts.callbacks.outside(number)

    def _withdraw_offer(self) -> None:
        if self.leg is None:  # an offer not rung yet (a ring in progress ends on its own)
            withdraw_offer(self.legs, self.queued, self.call_id)

    def _log(self, event: str, agent: str = "NONE", *data: object) -> None:
        """A queue_log line (Asterisk's format) for this call."""
        if self.queued is None:
            return
        self.records.queue_log(self.clock.now(), self.queue_log_id, self.queued.topic, agent,
                              event, *data)

    def _in_line_for(self, until: datetime) -> int:
        """Seconds in the current line (app_queue counts each queue from its own entry)."""
        assert self.queued is not None
        return round((until - (self.line_entered or self.queued.since)).total_seconds())

    # --- the call, start to end -----------------------------------------------------------

    async def run(self) -> None:
        ch = self.channel_id
        outcome, detail = "failed", ""
        self.legs.registry.live(self)
        self._start_record()
        try:
            if self.flow is None:
                outcome, detail = await self._unknown_number()
                return
            if self.info.channel.state != "Up":
                await self.telephony.answer(ch)
            self.answered_at = self.clock.now()
            if self.resume_talk:
                await self._resume_talk(self.resume_talk)
                outcome, detail = "answered", f"ended by the {self.ended_by}"
                return
            if self.resume_topic:
                self.journal.add("resumed", detail=f"queue:{self.resume_topic}")
                result = FlowResult("queue", self.resume_topic)
            else:
                if self.resumed:
                    self.journal.add("resumed", detail="restarted flow")
                result = await self._run_flow()
            if result.outcome == "queue":
                assert result.topic is not None
                outcome, detail = await self._wait_in_queue(result.topic)
            else:
                outcome = result.outcome
                await self.telephony.hangup(ch)
        except Lost as lost:
            outcome, detail = "lost", lost.why
            await self._hangup_quietly()
        except CallerHungUp:
            outcome, detail = self._caller_left()
        except asyncio.CancelledError:
            outcome, detail = "interrupted", "service stopped during the call"
            raise
        except AriError as exc:
            log.error("call %s on %s failed: %s", self.info.call_id, ch, exc)
            outcome, detail = "failed", str(exc)
            await self._hangup_quietly()
        except Exception:
            log.exception("call %s on %s crashed", self.info.call_id, ch)
            outcome, detail = "failed", "internal error (see the service log)"
            await self._hangup_quietly()
        finally:
            self._end(outcome, detail)

    def _caller_left(self) -> tuple[str, str]:
        if self.leg and self.leg.answered_at:  # hung up while talking to the agent
            self.ended_by = "caller"
            return "answered", "ended by the caller"
        if self.outside_talk:  # ... or to the number they were transferred to
            self.ended_by = "caller"
            return "answered", "ended by the caller, transferred outside"
        if self.queued and self.in_line:
            waited = (self.clock.now() - self.queued.since).total_seconds()
            position = self.queues.position(self.info.call_id) or 0
            self._log("ABANDON", "NONE", position, self.position_on_entry,
                      self._in_line_for(self.clock.now()))
            return "abandoned", f"waited {waited:.1f} s"
        if self.left_line:
            return self.left_line, "hung up during the message after the queue"
        last = next((s for s in reversed(self.journal.steps) if s.node), None)
        return "caller_hangup", f"in menu {last.node}" if last else "during announcements"

    def _end(self, outcome: str, detail: str) -> None:
        self.legs.registry.over(self)
        self._withdraw_offer()
        if self.queued and self.queues.leave(self.info.call_id):
            self.desk.broadcast(QueueLeft(call_id=self.info.call_id,
                                         topic=self.queued.topic, outcome=outcome))
        metrics.CALLS.labels(self.flow.name if self.flow else "", outcome).inc()
        leg = self.leg
        # Who answered stays as stored at the connection when no agent has the caller now
        # (transferred to a number outside, or to a line they left).
        talked = {"connected_at": leg.answered_at, "agent_id": leg.agent.id} \
            if leg and leg.answered_at else {} if self.transferred else \
            {"connected_at": None, "agent_id": None}
        self.records.call_changed(
            self.info.call_id, ended_at=self.clock.now(), outcome=outcome,
            topic=self.queued.topic if self.queued else None, detail=detail,
            answered_at=self.answered_at,
            queued_at=self.queued.since if self.queued else None, **talked)

    async def _run_flow(self) -> FlowResult:
        assert self.flow is not None
        flow = self.flow
        now = self.clock.now()
        schedule = self.config.schedules.get(flow.hours) if flow.hours else None
        status = line_status(schedule, self.parts.overrides.get(flow.number), now)
        today = now.astimezone(schedule.zone if schedule else LOCAL).date()
        return await run_flow(flow, self.port, self.journal, status=status, today=today)

    # --- waiting, ringing, talking --------------------------------------------------------

    async def _wait_in_queue(self, topic: str) -> tuple[str, str]:
        """Wait for an agent, in `topic` or where its rules send the caller; the call's
        (outcome, detail) once it is over."""
        moved = 0
        while True:
            resuming = moved == 0 and self.resume_topic == topic  # back in their place
            exit_ = await self._wait_in(topic, rules_on_entry=moved < MAX_MOVES and not resuming,
                                        resuming=resuming)
            if exit_ is None:
                return "answered", f"ended by the {self.ended_by}"
            outcome, dest = exit_
            self.left_line = outcome
            self.journal.add("queue_exit", topic, detail=f"{outcome} -> {dest.describe()}")
            if dest.queue:
                moved += 1
                topic = dest.queue
                continue
            assert dest.info is not None
            await self.port.play([dest.info], interrupt="")
            await self.telephony.hangup(self.channel_id)
            return outcome, f"{topic}: {dest.info}, then goodbye"

    async def _wait_in(self, topic: str, rules_on_entry: bool, resuming: bool
                       ) -> tuple[str, Destination] | None:
        """One stay in one topic's line: None once the caller talked to an agent, else why they
        left and where to (a rule). The rules are queue_manager.waiting's: this feeds it the
        call's and the desk's events and carries out its commands."""
        settings = self.config.queues[topic]
        if self.queued:  # moved here by a rule: out of the previous line's bridge
            await self._unhold(self.queued.topic)
        self.in_line = False
        boost = settings.priority_boost + (self.flow.priority_boost if self.flow else 0)
        arrived = self.queued.since if self.queued else (self.resume_since or self.clock.now())
        self.queued = Waiting(self.info.call_id, topic, arrived,
                              caller=self.info.channel.caller.number,
                              line=self.flow.name if self.flow else "", boost=boost,
                              for_agents=self._for_agents)
        self._for_agents = frozenset()
        stay = waiting.Stay(topic, settings)
        event: waiting.Event = waiting.Entered(
            self.desk.staffing(topic)[0], len(self.queues.waiting(topic)), rules_on_entry, resuming)
        self.hold_playback, wake = None, None
        while True:
            follow: waiting.Event | None = None
            for command in stay.handle(event):
                if isinstance(command, waiting.WakeAt):
                    wake = command.at
                elif isinstance(command, waiting.Refuse):
                    return self._refused(command)
                elif isinstance(command, waiting.Leave):
                    return self._leave_line(command.log_event, command.outcome,
                                            command.destination, key=command.key)
                elif isinstance(command, waiting.Talk):
                    if (to := await self._talk()) is None:
                        return None
                    if (outside := self._outside) is not None:  # to a number outside
                        self._outside = None
                        if await self._call_outside(outside):
                            return None  # they talked: the call is over
                    return "transferred", Destination(queue=to)  # (back) to a line
                elif isinstance(command, waiting.Join):
                    follow = await self._join(settings, arrived, resuming, command.rotate)
                else:
                    follow = await self._carry_out(command, settings)
            event = follow or await self._next_in_line(wake)

    def _refused(self, refuse: waiting.Refuse) -> tuple[str, Destination]:
        """The caller does not join the line (nobody logged in, or the line is full)."""
        assert self.queued is not None
        if refuse.log_event == "JOINEMPTY":
            log.info("call %s: nobody logged in for %s", self.info.call_id, self.queued.topic)
        else:
            log.info("call %s: %s is full", self.info.call_id, self.queued.topic)
        self._log(refuse.log_event)
        return refuse.outcome, refuse.destination

    async def _join(self, settings: QueueTopic, arrived: datetime, resuming: bool, rotate: bool
                    ) -> waiting.Held:
        """In the line, with its music: the desk may offer the caller from now on."""
        assert self.queued is not None
        topic = self.queued.topic
        self.position_on_entry = self.queues.join(self.queued)
        self.line_entered = arrived if resuming else self.clock.now()
        self.in_line = True
        if not resuming:  # before the update: it joins the steps' insert (one transaction)
            self._log("ENTERQUEUE", "NONE", "", self.info.channel.caller.number,
                      self.position_on_entry)
        # Written now, not at the end: a restarted service (even after a crash) reads it to
        # put the caller back in their place.
        self.records.call_changed(self.info.call_id, topic=topic, queued_at=self.queued.since,
                                  waiting_for=",".join(sorted(self.queued.for_agents)))
        self.desk.broadcast(QueueJoined(
            call_id=self.info.call_id, topic=topic, caller=self.queued.caller,
            position=self.position_on_entry,
            waited=round((self.clock.now() - arrived).total_seconds(), 1)))
        log.info("call %s waits in %s at position %d", self.info.call_id, topic,
                 self.position_on_entry)
        try:
            await self.legs.bridges.hold(self.channel_id, topic, settings.music_class)
        except AriNotFound:
            raise CallerHungUp() from None
        self.desk.distribute()
        entered = self.clock.monotonic()
        # A caller back after a restart has already waited part of the time in this line.
        waited = (self.clock.now() - arrived).total_seconds()
        return waiting.Held(entered, waited, self.queues.rotation_start(topic) if rotate else 0)

    async def _next_in_line(self, wake: float | None) -> waiting.Event:
        """The next event of the stay: a timer (at `wake`), a key, an offer, the end of what
        plays. Events that mean nothing to a waiting caller are passed over."""
        clock = self.clock
        assert self.queued is not None
        while True:
            event = await self.port.next_event(
                timeout=None if wake is None else max(0.0, wake - clock.monotonic()))
            now = clock.monotonic()
            if event is None:
                return waiting.Tick(now, self.clock.now().astimezone(LOCAL).date(),
                                    self._line_now(self.queued.topic))
            if isinstance(event, ChannelDtmfReceived):
                return waiting.Key(now, event.digit)
            if isinstance(event, OfferMade):
                return waiting.Offered(now, event.offer.agent_id, event.offer.topic,
                                       self.queued.offered_to if self.in_line else None)
            if isinstance(event, PlaybackFinished) and event.playback.id == self.hold_playback:
                self.hold_playback = None
                return waiting.Played(now)

    def _line_now(self, topic: str) -> waiting.Line:
        logged_in, serving, free = self.desk.staffing(topic)
        return waiting.Line(logged_in, serving, free, self.queues.position(self.info.call_id) or 1,
                            self.queues.handle_times.recent(topic))

    async def _carry_out(self, command: waiting.Command, settings: QueueTopic
                         ) -> waiting.Event | None:
        """Play, stop, ring, store a callback: what comes of it, if it is known at once."""
        clock = self.clock
        if isinstance(command, waiting.Play | waiting.Notice):
            media = (self._hold_media(command, settings) if isinstance(command, waiting.Play)
                     else [self.port.media_uri(command.prompt, self.port.language)])
            if not await self._play_on_hold(media):
                return waiting.Played(clock.monotonic())  # nothing to play: played at once
        elif isinstance(command, waiting.Stop):
            playback, self.hold_playback = self.hold_playback, None
            if playback:
                try:
                    await self.telephony.stop_playback(playback)
                except AriNotFound:
                    pass  # it had just finished
        elif isinstance(command, waiting.Ring):
            rang = await self._ring(command.agent_id, settings)
            return waiting.RingResult(clock.monotonic(), rang)
        elif isinstance(command, waiting.StoreCallback):
            assert settings.callback_key is not None
            stored = await self._callback(settings.callback_key)
            return waiting.CallbackResult(clock.monotonic(), stored)
        return None

    def _leave_line(self, event: str, outcome: str, dest: Destination, key: str = ""
                    ) -> tuple[str, Destination]:
        """A rule takes the caller out of the line (queue_log as app_queue writes it)."""
        assert self.queued is not None
        position = self.queues.position(self.info.call_id) or 0
        waited = self._in_line_for(self.clock.now())
        data = (key, position, self.position_on_entry, waited) if key else (
            position, self.position_on_entry, waited)
        self._log(event, "NONE", *data)
        self.queues.leave(self.info.call_id)
        self.in_line = False
        self._withdraw_offer()
        self.desk.broadcast(QueueLeft(call_id=self.info.call_id,
                                     topic=self.queued.topic, outcome=outcome))
        log.info("call %s leaves %s: %s -> %s", self.info.call_id, self.queued.topic, outcome,
                 dest.describe())
        return outcome, dest

    async def _unhold(self, topic: str) -> None:
        try:
            await self.legs.bridges.unhold(self.channel_id, topic)
        except AriNotFound:
            raise CallerHungUp() from None
        except AriError as exc:  # not in it (any more): nothing to undo
            log.debug("%s was not in %s's bridge: %s", self.channel_id, topic, exc)

    def _hold_media(self, play: waiting.Play, settings: QueueTopic) -> list[str]:
        """What is due over the music: the announcement, then the message."""
        assert self.queued is not None
        media: list[str] = []
        if play.position is not None or play.wait is not None:
            media += self._announcement(play, settings)
        if play.message:
            self.journal.add("hold_message", self.queued.topic, prompt=play.message)
            media.append(self.port.media_uri(play.message, self.port.language))
        return media

    async def _play_on_hold(self, media: list[str]) -> bool:
        """Start playing to a waiting caller (False: nothing to play): its end comes as
        `Played`; a key or an offer may cut it short (the stay says so: `Stop`)."""
        if not media:
            return False
        playback = uuid.uuid4().hex
        try:
            await self.telephony.play(self.channel_id, playback, media, self.port.language)
        except AriNotFound:
            raise CallerHungUp() from None
        self.hold_playback = playback
        return True

    async def _callback(self, settings: CallbackKey) -> bool:
        """The caller pressed the callback key: a recall request takes their place in the line
        (True: they leave it, hear the confirmation, and the call ends). If their number cannot
        be called back, False: they hear why (the stay says so) and keep waiting."""
        assert self.queued is not None
        topic, caller = self.queued.topic, self.info.channel.caller
        try:
            row = await self.parts.callbacks.from_caller(
                topic, caller.number, caller.name, self.queued.since, self.queued.boost,
                self.flow.name if self.flow else self.info.number)
        except Exception as exc:  # refused, or the database away: they keep their place
            reason = exc.reason if isinstance(exc, RecallError) else "could not store it"
            if isinstance(exc, RecallError):
                log.info("call %s: callback refused for %r: %s", self.call_id, caller.number,
                         reason)
            else:
                log.exception("call %s: could not store the callback request", self.call_id)
            self.journal.add("callback_refused", topic, prompt=settings.unavailable,
                             detail=reason)
            return False
        self.journal.add("callback", topic, detail=f"recall {row.id}")
        log.info("call %s hands its place in %s to recall %s", self.call_id, topic, row.id)
        return True

    def _announcement(self, play: waiting.Play, settings: QueueTopic) -> list[str]:
        """Position and estimated wait, as the stay computed them from the live line and desk."""
        announce = settings.announce
        assert announce is not None and self.queued is not None
        topic = self.queued.topic
        phrase: list[tuple[str, str]] = []
        said = []
        if play.position is not None:
            phrase += position_phrase(play.position)
            said.append(f"position {play.position}")
        if play.wait is not None:
            estimate = play.wait
            phrase += wait_phrase(estimate, announce.wait_bands)
            less, minutes = wait_band(estimate, announce.wait_bands)
            said.append(f"wait {'<' if less else '~'}{minutes} min ({estimate:.0f} s)")
            if self.announced_wait is None:
                self.announced_wait = round(estimate)
                self.records.call_changed(self.info.call_id,
                                         announced_wait=self.announced_wait)
        if said:
            self.journal.add("announce", topic, detail="; ".join(said))
        return [self._media(kind, value) for kind, value in phrase]

    def _media(self, kind: str, value: str) -> str:
        if kind == "prompt":
            return self.port.media_uri(value, self.port.language)
        return f"{kind}:{value}"

    async def _ring(self, agent_id: str, settings: QueueTopic
                    ) -> Literal["answered", "missed", "left"]:
        """Ring the agent: "answered" once the caller is bridged to them, "left" if the caller
        pressed the leave key meanwhile, else "missed" (the caller is back in their place)."""
        desk = self.desk
        assert self.queued is not None
        agent = desk.agents[agent_id]
        leg = self.leg = AgentLeg(self.legs, self, self.queued, agent,
                                  f"{self.channel_id}-{uuid.uuid4().hex[:8]}")
        await desk.pop(agent.id, await self._screen_pop(leg))
        leave_key = settings.leave_key.key if settings.leave_key else None
        try:
            outcome = await leg.ring(self.port, self.info.channel.caller.number or "anonymous",
                                     settings.ring_timeout, leave_key)
            if outcome == "answered":
                try:
                    await self._bridge(leg)
                    return "answered"
                except AriError as exc:  # as a ring that failed: the caller keeps their place
                    log.error("could not bridge %s to %s: %s", self.call_id, agent.id, exc)
                    await self.telephony.hangup(leg.channel_id)
                    await self._back_on_hold(leg.topic, settings)
                    outcome = "failed"
        except CallerHungUp:
            await self.telephony.hangup(leg.channel_id)
            leg.cancelled(gone=True)
            raise
        self.leg = None
        if outcome == "unreachable":
            return "missed"
        if outcome == "left":  # not the agent's fault: no missed call for them
            leg.cancelled()
            return "left"
        ring_ms = round((self.clock.now() - leg.rang_at).total_seconds() * 1000)
        self._log("RINGNOANSWER", agent.id, ring_ms)
        leg.missed(outcome)
        if self.queued.for_agents == {agent.id}:  # transferred to them, not answered: the line's
            self.queues.target(self.queued, ())
            self.records.call_changed(self.info.call_id, waiting_for="")
            self.journal.add("transfer_missed", self.queued.topic, detail=agent.id)
        return "missed"

    async def _back_on_hold(self, topic: str, settings: QueueTopic) -> None:
        """After a bridge that failed halfway (the agent's phone hung up as it answered): the
        caller, already out of the holding bridge, back in it with the music."""
        try:
            await self.telephony.remove_channel(self.bridge, self.channel_id)
        except AriError:
            pass  # the add failed as a whole: not in it
        try:
            await self.legs.bridges.hold(self.channel_id, topic, settings.music_class)
        except AriNotFound:
            raise CallerHungUp() from None
        except AriError as exc:  # still in the holding bridge: the remove was what failed
            log.warning("call %s: back on hold in %s: %s", self.call_id, topic, exc)

    async def _bridge(self, leg: AgentLeg) -> None:
        """The agent answered: the caller leaves the holding bridge for the conversation's."""
        await self.legs.bridges.open_call(self.bridge_of, f"call {self.info.call_id}")
        await self._transfers_to_us(leg)
        await self.legs.bridges.unhold(self.channel_id, leg.topic)
        await self.telephony.add_channel(self.bridge, f"{self.channel_id},{leg.channel_id}")
        now = leg.answered()
        self.records.call_changed(self.info.call_id, connected_at=now, agent_id=leg.agent.id)
        rang = round((now - leg.rang_at).total_seconds())
        self._log("CONNECT", leg.agent.id, self._in_line_for(now), leg.channel_id, rang)
        self.desk.broadcast(QueueConnected(call_id=self.info.call_id,
                                           topic=leg.topic, agent=leg.agent.id))

    async def _resume_talk(self, resume: ResumeTalk) -> None:
        """Pick up a conversation the previous run of the service left going."""
        self.journal.add("resumed", detail=f"talking to {resume.agent_id}")
        self.queued = Waiting(self.info.call_id, resume.topic, resume.queued_at,
                              caller=self.info.channel.caller.number)
        agent = self.desk.agents[resume.agent_id]  # marked on call by the service's adoption
        self.leg = AgentLeg(self.legs, self, self.queued, agent, resume.leg_channel,
                            answered_at=resume.connected_at)
        if resume.on_hold:  # their music again (Asterisk kept it; this makes sure of it)
            self.on_hold = True
            try:
                await self.telephony.start_channel_moh(
                    self.channel_id, self.config.queues[resume.topic].music_class)
            except AriNotFound:
                raise CallerHungUp() from None
        await self._talk()

    async def _talk(self) -> str | None:
        """Until one side hangs up; then the other is hung up and the agent wraps up. If the
        service stops meanwhile, the conversation goes on: a restarted service adopts it.
        A topic: the agent transferred the caller there (the agent's leg is over)."""
        leg = self.leg
        assert leg is not None and leg.answered_at is not None and self.queued is not None
        while True:
            try:
                ended = await leg.talk(self.port, commands=True)
                if isinstance(ended, ChannelTransfer):
                    if not ended.state:  # (else Asterisk repeating our own answer to it)
                        await self._phone_transfer(leg, ended)
                    continue
                if not isinstance(ended, CallCommand):
                    break
                if ended.action == "consult":
                    leg = self.leg = await self._consult(leg, ended.agent)
            except CallerHungUp as gone:
                self.ended_by = "" if isinstance(gone, Lost) else "caller"
                await self.telephony.hangup(leg.channel_id)
                self._talk_done(leg)
                raise
        if (to := self._transferring) is not None:
            await self._transferred(leg, to)
            return to
        if ended == "lost":
            self._talk_done(leg)
            raise Lost(0, "Asterisk ended the call (shutdown or admin hangup)")
        if (declined := self._refer_declined) is not None and declined[0] == leg.channel_id \
                and self.clock.monotonic() - declined[1] < REFER_HANGUP_SECONDS:
            # Their phone hung up as it asked a transfer we declined (many phones end their
            # call after any REFER): the caller is not dropped but back in the line.
            return await self._back_to_the_line(leg)
        self.ended_by = "agent"
        await self.telephony.hangup(self.channel_id)
        self._talk_done(leg)
        return None

    def _talk_done(self, leg: AgentLeg) -> None:
        assert leg.answered_at is not None
        talked = round((self.clock.now() - leg.answered_at).total_seconds())
        if self.ended_by and not self._attended:  # (not when Asterisk cut it either)
            event = "COMPLETECALLER" if self.ended_by == "caller" else "COMPLETEAGENT"
            self._log(event, leg.agent.id, self._in_line_for(leg.answered_at), talked,
                      self.position_on_entry)
        leg.wrap_up(self.config.queues[leg.topic], talked=True)
        self.legs.spawn(self.legs.bridges.close_call(self.bridge_of))

    async def _screen_pop(self, leg: AgentLeg) -> CallOffer:
        """What the agent's console shows when their phone starts ringing."""
        info = self.info
        assert self.queued is not None
        caller = info.channel.caller.number
        phone = e164(caller) if caller else None
        try:
            previous, tickets = await asyncio.gather(
                self.parts.history.previous_contacts(caller, info.started_at),
                self.parts.history.previous_tickets(phone, call_id=info.call_id))
        except Exception as exc:  # the database away: the call goes on, without its history
            if not (fault := fault_of(exc)).waits:
                raise
            log.error("call %s: no previous contacts in the screen pop: database %s (%s)",
                      self.call_id, fault.kind, fault)
            previous, tickets = [], []
        return CallOffer(
            offer_id=leg.offer_id, call_id=info.call_id,
            caller_number=info.channel.caller.number, caller_name=info.channel.caller.name,
            number=info.number, line=self.flow.name if self.flow else "",
            topic=leg.topic, topic_name=self.config.queues[leg.topic].name,
            path=[MenuStep(menu=s.node, key=s.key, label=s.detail)
                  for s in self.journal.steps if s.kind == "key"],
            waited_seconds=round((leg.rang_at - self.queued.since).total_seconds(), 1),
            previous_contacts=[
                PreviousContact(at=c.started_at, line=c.line, topic=c.topic,
                                outcome=c.outcome, agent=c.agent_id) for c in previous],
            previous_tickets=[PreviousTicket(
                number=t.number, subject=t.subject, state=t.state, created_at=t.created_at,
                this_call=True if t.call_id == info.call_id else None) for t in tickets],
            offered_at=leg.rang_at,
            transferred=self.transferred,
        )

    async def _unknown_number(self) -> tuple[str, str]:
        log.warning("call to %s: no flow for this number (check the dialplan and flows/)",
                    self.info.number)
        try:
            await self.telephony.answer(self.channel_id)
            await self.port.play(["sound:ss-noservice"], interrupt="")
        except CallerHungUp:
            pass
        await self._hangup_quietly()
        return "unknown_number", f"no flow for {self.info.number}"

    async def _hangup_quietly(self) -> None:
        try:
            await self.telephony.hangup(self.channel_id)
        except AriError:
            pass

    def _start_record(self) -> None:
        info, flow = self.info, self.flow
        self.records.call_started(NewCall(
            id=info.call_id, channel_id=info.channel.id, number=info.number,
            line=flow.name if flow else "", caller_number=info.channel.caller.number,
            caller_name=info.channel.caller.name, config_version=self.version,
            started_at=info.started_at, queue_log_id=self.queue_log_id,
        ))

    def _store_step(self, step: Step) -> None:
        """Each step is written as it happens (a crash keeps the caller's path so far); the
        writer batches it with the records around it."""
        self.records.call_step(self.info.call_id, len(self.journal.steps) - 1, step.at,
                                       step.kind, step.node, step.key, step.prompt, step.detail)
