"""One inbound call over ARI: the flow engine's CallPort, and the task that runs the call.

Every event of a channel goes into its session's queue and is taken by the session's own task,
so a call sees its events strictly in the order Asterisk sent them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from centralino import metrics
from centralino.ari.client import AriError, AriNotFound, reacting_to
from centralino.ari.models import (
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Event,
    PlaybackContinuing,
    PlaybackFinished,
    StasisEnd,
    StasisStart,
)
from centralino.desk import OfferMade
from centralino.storage.faults import fault_of
from centralino.storage.records import NewCall
from cti.agents import Agent, AgentState
from cti.messages import (
    CallOffer,
    MenuStep,
    PreviousContact,
    QueueConnected,
    QueueJoined,
    QueueLeft,
)
from cti.recalls import RecallError
from ivr.clock import LOCAL
from ivr.config import CallConfig
from ivr.engine import ANY_KEY, CallerHungUp, FlowResult, Journal, Played, Step, run_flow
from ivr.hours import line_status
from ivr.schema import CallbackKey, Destination, QueueTopic
from queue_manager import waiting
from queue_manager.hold import position_phrase, wait_band, wait_phrase
from queue_manager.queues import Waiting

if TYPE_CHECKING:
    from centralino.service import Service

log = logging.getLogger("centralino.calls")
QUEUE_BRIDGE = "centralino-queue-{topic}"  # a holding bridge per topic, with its music
CALL_BRIDGE = "centralino-call-{call}"  # caller and agent talking
_HANGUP = (StasisEnd, ChannelHangupRequest, ChannelDestroyed)
MAX_MOVES = 5  # rules moving a caller from line to line: then they wait where they are
AGENT_LEG_FORMATS = "alaw,ulaw,slin"  # what the PSTN speaks in Italy first


class ChannelGone(Event):
    """Ours, not Asterisk's: the channel vanished while we were disconnected (a restart)."""

    type: str = "ChannelGone"
    gone: str

    @property
    def channel_id(self) -> str | None:
        return self.gone


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


class _Lost(CallerHungUp):
    """The call ended without the caller hanging up: Asterisk stopped or lost the channel."""

    def __init__(self, completed: int, why: str):
        super().__init__(completed)
        self.why = why


class AriCallPort:
    """CallPort over ARI for one channel. Prompt ids become media URIs through `media_uri`."""

    def __init__(self, service: Service, channel_id: str, language: str,
                 media_uri: Callable[[str, str], str]):
        self.ari = service.ari
        self.channel_id = channel_id
        self.language = language
        self.media_uri = media_uri
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._getter: asyncio.Future[Event] | None = None

    async def _next(self, timeout: float | None = None, completed: int = 0) -> Event | None:
        """The channel's next event (None after `timeout`). A pending read survives a timeout,
        so no event is ever dropped between two waits."""
        if self._getter is None:
            if not self.events.empty():
                event = self.events.get_nowait()
                return self._took(event, completed)
            self._getter = asyncio.ensure_future(self.events.get())
        try:
            done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        except asyncio.CancelledError:
            # The call is being stopped (the service stops): a read left pending would be
            # collected later as "Task was destroyed but it is pending!", once per call.
            self._getter.cancel()
            self._getter = None
            raise
        if not done:
            reacting_to.set(None)  # what follows reacts to a timer, not to an event
            return None
        event, self._getter = self._getter.result(), None
        return self._took(event, completed)

    def _took(self, event: Event, completed: int) -> Event:
        reacting_to.set(event.received)
        if event.channel_id != self.channel_id:
            return event  # the agent's leg, or ours (an offer): the call decides what it means
        if isinstance(event, ChannelGone):
            raise _Lost(completed, "the channel vanished while Asterisk was unreachable")
        if isinstance(event, ChannelHangupRequest) and event.soft:
            raise _Lost(completed, f"Asterisk ended the call (shutdown or admin hangup, "
                                   f"cause {event.cause})")
        if isinstance(event, _HANGUP):
            raise CallerHungUp(completed)
        return event

    async def play(self, prompts: Sequence[str], interrupt: str) -> Played:
        playback = uuid.uuid4().hex
        media = [self.media_uri(p, self.language) for p in prompts]
        log.debug("%s play %s as %s", self.channel_id, prompts, playback)
        try:
            await self.ari.play(self.channel_id, playback, media, self.language)
        except AriNotFound:
            raise CallerHungUp(0) from None
        completed = 0
        while True:
            event = await self._next(completed=completed)
            if isinstance(event, PlaybackContinuing) and event.playback.id == playback:
                completed += 1
            elif isinstance(event, PlaybackFinished) and event.playback.id == playback:
                if event.playback.state == "failed":
                    log.error("Asterisk could not play %s on %s", event.playback.media_uri,
                              self.channel_id)
                return Played(None, len(prompts))
            elif isinstance(event, ChannelDtmfReceived) and interrupt and (
                interrupt == ANY_KEY or event.digit in interrupt
            ):
                await self.ari.stop_playback(playback)
                return Played(event.digit, completed)

    async def wait_key(self, timeout: float) -> str | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            event = await self._next(timeout=left)
            if event is None:
                return None
            if isinstance(event, ChannelDtmfReceived):
                return event.digit
        return None

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event of the call (its legs included); None after `timeout`."""
        return await self._next(timeout=timeout)



@dataclass
class CallInfo:
    call_id: str
    channel: Channel
    number: str
    started_at: datetime


@dataclass
class Leg:
    """The agent's phone, rung for this caller."""

    offer_id: str
    agent: Agent
    channel_id: str
    topic: str
    rang_at: datetime
    answered_at: datetime | None = None


class AgentLegs:
    """Ringing an agent's phone for somebody waiting in a line: shared by live calls
    (CallSession) and recalls (centralino.recalls.RecallSession). The owner has `service`,
    `port` (its events, the leg's included), `queued` (its place) and `leg`."""

    service: Service
    port: AriCallPort
    queued: Waiting | None
    leg: Leg | None

    @property
    def call_id(self) -> str:
        raise NotImplementedError

    def deliver(self, event: Event) -> None:
        self.port.events.put_nowait(event)

    def _new_leg(self, agent: Agent, channel_id: str) -> Leg:
        """The agent's leg about to ring: its events come to this owner; the offer is stored."""
        svc = self.service
        assert self.queued is not None
        leg = self.leg = Leg(uuid.uuid4().hex, agent, channel_id, self.queued.topic,
                             svc.clock.now())
        svc.sessions[leg.channel_id] = self
        svc.records.offer_made(leg.offer_id, self.call_id, agent.id, leg.rang_at)
        return leg

    async def _ring_leg(self, leg: Leg, caller_id: str, ring_timeout: float,
                        leave_key: str | None = None) -> str:
        """Originate the agent's leg and wait: "answered" (in Stasis, not bridged yet),
        "left" (the leave key), "unreachable" (already handled: agent paused), or the leg is
        hung up and the outcome is "no_answer", "refused" or "failed"."""
        svc, agent = self.service, leg.agent
        try:
            try:
                await svc.ari.originate(
                    leg.channel_id, agent.device, app=svc.settings.asterisk.app,
                    appArgs=f"agent,{self.call_id}", callerId=caller_id,
                    timeout=str(round(ring_timeout) + 5),
                    # Without it Asterisk gives Local legs slin192: resampling in every bridge.
                    formats=AGENT_LEG_FORMATS)
            except AriError as exc:  # an unregistered phone: Asterisk cannot even start the leg
                log.error("could not ring %s (%s): %s", agent.id, agent.device, exc)
                self._unreachable(leg, str(exc))
                return "unreachable"
            outcome = await self._until_answered(leg, ring_timeout, leave_key)
        except AriError as exc:
            log.error("could not ring %s (%s): %s", agent.id, agent.device, exc)
            outcome = "failed"
        if outcome != "answered":
            await svc.ari.hangup(leg.channel_id)
        return outcome

    def _missed(self, leg: Leg, outcome: str) -> None:
        """The agent did not take it: their missed call; the waiting one keeps its place."""
        desk = self.service.desk
        assert self.queued is not None
        self._leg_done(leg, outcome)
        self.queued.offered_to = None  # back at its place: still the oldest of the line
        self.leg = None
        desk.missed(leg.agent)
        desk.distribute()

    def _unreachable(self, leg: Leg, why: str) -> None:
        """The agent's phone cannot be rung at all: pause them at once (not a missed ring,
        which would retry them in a loop), and keep the caller in their place."""
        svc, desk = self.service, self.service.desk
        assert self.queued is not None
        self._leg_done(leg, "failed")
        self.queued.offered_to, self.leg = None, None
        desk.record(leg.agent.unreachable(svc.clock.now(), why))
        desk.distribute()

    async def _until_answered(self, leg: Leg, ring_timeout: float, leave_key: str | None) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_timeout
        while (left := deadline - loop.time()) > 0:
            event = await self.port.next_event(timeout=left)
            if event is None:
                break
            if isinstance(event, ChannelDtmfReceived) and event.digit == leave_key and (
                    event.channel_id == self.port.channel_id):
                return "left"
            if event.channel_id != leg.channel_id:
                continue
            if isinstance(event, StasisStart):  # the agent picked up
                return "answered"
            if isinstance(event, (ChannelDestroyed, ChannelHangupRequest, ChannelGone)):
                return "refused"
        return "no_answer"

    def _withdraw_offer(self) -> None:
        """An offer made for this caller that the call never took up (they left the line just
        then): the agent's phone never rang, so they are free again at once."""
        svc = self.service
        if self.queued is None or self.leg is not None or not self.queued.offered_to:
            return
        agent = svc.desk.agents.get(self.queued.offered_to)
        self.queued.offered_to = None
        if agent and agent.state is AgentState.RINGING and agent.call_id == self.call_id:
            svc.desk.record(agent.cancelled(svc.clock.now()))

    def _leg_done(self, leg: Leg, outcome: str) -> None:
        svc = self.service
        svc.sessions.pop(leg.channel_id, None)
        values: dict[str, object] = {"ended_at": svc.clock.now()}
        if outcome != "answered":
            values["outcome"] = outcome
        svc.records.offer_changed(leg.offer_id, **values)


class CallSession(AgentLegs):

    """Runs one call from StasisStart to its end and records it: the flow, the wait in the
    queue, ringing agents, the conversation."""

    def __init__(self, service: Service, channel: Channel, number: str, *,
                 resume_topic: str | None = None, resume_since: datetime | None = None,
                 resume_talk: ResumeTalk | None = None, queue_log_id: str | None = None,
                 resumed: bool = False):
        self.service = service
        self.config: CallConfig = service.call_config  # this call's version, even after reload
        self.version = service.config.version
        self.catalog = service.catalog
        self.info = CallInfo(uuid.uuid4().hex, channel, number, service.clock.now())
        self.flow = self.config.flows.get(number)
        language = self.flow.language if self.flow else "it"
        self.port = AriCallPort(service, channel.id, language, self.catalog.uri)
        self.journal = Journal(service.clock.now, listener=self._store_step)
        self.resume_topic, self.resume_since, self.resumed = resume_topic, resume_since, resumed
        self.resume_talk = resume_talk
        # queue_log lines of an adopted call continue under the id its ENTERQUEUE was written
        # with, so that reports can follow it across any number of restarts (the record
        # keeps it: see Store.waiting_since).
        self.queue_log_id = queue_log_id or (resume_talk.queue_log_id if resume_talk
                                             else self.info.call_id)
        # The bridge with the agent, named after the session that made it.
        self.bridge = CALL_BRIDGE.format(call=resume_talk.old_call_id if resume_talk
                                         else self.info.call_id)
        self.line_entered: datetime | None = None  # when the caller joined the current line
        self.queued: Waiting | None = None  # the caller's place (kept once out of the line)
        self.in_line = False  # in `queued.topic`'s line now
        self.left_line = ""  # the rule that took the caller out of the last line
        self.announced_wait: int | None = None  # seconds, the first estimate told
        self.position_on_entry = 0
        self.leg: Leg | None = None  # the agent leg ringing or talking
        self.hold_playback: str | None = None  # what a waiting caller hears now over the music
        self.answered_at: datetime | None = None
        self.ended_by = ""  # "caller" or "agent", once connected

    @property
    def channel_id(self) -> str:
        return self.info.channel.id

    @property
    def call_id(self) -> str:
        return self.info.call_id

    def _log(self, event: str, agent: str = "NONE", *data: object) -> None:
        """A queue_log line (Asterisk's format) for this call."""
        if self.queued is None:
            return
        svc = self.service
        svc.records.queue_log(svc.clock.now(), self.queue_log_id, self.queued.topic, agent,
                              event, *data)

    def _in_line_for(self, until: datetime) -> int:
        """Seconds in the current line (app_queue counts each queue from its own entry)."""
        assert self.queued is not None
        return round((until - (self.line_entered or self.queued.since)).total_seconds())

    # --- the call, start to end -----------------------------------------------------------

    async def run(self) -> None:
        svc, ch = self.service, self.channel_id
        outcome, detail = "failed", ""
        svc.calls[self.info.call_id] = self
        self._start_record()
        try:
            if self.flow is None:
                outcome, detail = await self._unknown_number()
                return
            if self.info.channel.state != "Up":
                await svc.ari.answer(ch)
            self.answered_at = svc.clock.now()
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
                await svc.ari.hangup(ch)
        except _Lost as lost:
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
        svc = self.service
        if self.leg and self.leg.answered_at:  # hung up while talking to the agent
            self.ended_by = "caller"
            return "answered", "ended by the caller"
        if self.queued and self.in_line:
            waited = (svc.clock.now() - self.queued.since).total_seconds()
            position = svc.queues.position(self.info.call_id) or 0
            self._log("ABANDON", "NONE", position, self.position_on_entry,
                      self._in_line_for(svc.clock.now()))
            return "abandoned", f"waited {waited:.1f} s"
        if self.left_line:
            return self.left_line, "hung up during the message after the queue"
        last = next((s for s in reversed(self.journal.steps) if s.node), None)
        return "caller_hangup", f"in menu {last.node}" if last else "during announcements"

    def _end(self, outcome: str, detail: str) -> None:
        svc = self.service
        svc.calls.pop(self.info.call_id, None)
        self._withdraw_offer()
        if self.queued and svc.queues.leave(self.info.call_id):
            svc.desk.broadcast(QueueLeft(call_id=self.info.call_id,
                                         topic=self.queued.topic, outcome=outcome))
        metrics.CALLS.labels(self.flow.name if self.flow else "", outcome).inc()
        leg = self.leg
        svc.records.call_changed(
            self.info.call_id, ended_at=svc.clock.now(), outcome=outcome,
            topic=self.queued.topic if self.queued else None, detail=detail,
            answered_at=self.answered_at,
            queued_at=self.queued.since if self.queued else None,
            connected_at=leg.answered_at if leg else None,
            agent_id=leg.agent.id if leg and leg.answered_at else None)

    async def _run_flow(self) -> FlowResult:
        assert self.flow is not None
        svc, flow = self.service, self.flow
        now = svc.clock.now()
        schedule = self.config.schedules.get(flow.hours) if flow.hours else None
        status = line_status(schedule, svc.overrides.get(flow.number), now)
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
            await self.service.ari.hangup(self.channel_id)
            return outcome, f"{topic}: {dest.info}, then goodbye"

    async def _wait_in(self, topic: str, rules_on_entry: bool, resuming: bool
                       ) -> tuple[str, Destination] | None:
        """One stay in one topic's line: None once the caller talked to an agent, else why they
        left and where to (a rule). The rules are queue_manager.waiting's: this feeds it the
        call's and the desk's events and carries out its commands."""
        svc = self.service
        settings = self.config.queues[topic]
        if self.queued:  # moved here by a rule: out of the previous line's bridge
            await self._unhold(self.queued.topic)
        self.in_line = False
        boost = settings.priority_boost + (self.flow.priority_boost if self.flow else 0)
        arrived = self.queued.since if self.queued else (self.resume_since or svc.clock.now())
        self.queued = Waiting(self.info.call_id, topic, arrived,
                              caller=self.info.channel.caller.number,
                              line=self.flow.name if self.flow else "", boost=boost)
        stay = waiting.Stay(topic, settings)
        event: waiting.Event = waiting.Entered(
            svc.desk.staffing(topic)[0], len(svc.queues.waiting(topic)), rules_on_entry, resuming)
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
                    await self._talk()
                    return None
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
        svc = self.service
        assert self.queued is not None
        topic = self.queued.topic
        self.position_on_entry = svc.queues.join(self.queued)
        self.line_entered = arrived if resuming else svc.clock.now()
        self.in_line = True
        if not resuming:  # before the update: it joins the steps' insert (one transaction)
            self._log("ENTERQUEUE", "NONE", "", self.info.channel.caller.number,
                      self.position_on_entry)
        # Written now, not at the end: a restarted service (even after a crash) reads it to
        # put the caller back in their place.
        svc.records.call_changed(self.info.call_id, topic=topic, queued_at=self.queued.since)
        svc.desk.broadcast(QueueJoined(
            call_id=self.info.call_id, topic=topic, caller=self.queued.caller,
            position=self.position_on_entry,
            waited=round((svc.clock.now() - arrived).total_seconds(), 1)))
        log.info("call %s waits in %s at position %d", self.info.call_id, topic,
                 self.position_on_entry)
        try:
            await svc.hold(self.channel_id, topic, settings)
        except AriNotFound:
            raise CallerHungUp() from None
        svc.desk.distribute()
        entered = asyncio.get_running_loop().time()
        # A caller back after a restart has already waited part of the time in this line.
        waited = (svc.clock.now() - arrived).total_seconds()
        return waiting.Held(entered, waited, svc.queues.rotation_start(topic) if rotate else 0)

    async def _next_in_line(self, wake: float | None) -> waiting.Event:
        """The next event of the stay: a timer (at `wake`), a key, an offer, the end of what
        plays. Events that mean nothing to a waiting caller are passed over."""
        svc, loop = self.service, asyncio.get_running_loop()
        assert self.queued is not None
        while True:
            event = await self.port.next_event(
                timeout=None if wake is None else max(0.0, wake - loop.time()))
            now = loop.time()
            if event is None:
                return waiting.Tick(now, svc.clock.now().astimezone(LOCAL).date(),
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
        svc = self.service
        logged_in, serving, free = svc.desk.staffing(topic)
        return waiting.Line(logged_in, serving, free, svc.queues.position(self.info.call_id) or 1,
                            svc.queues.handle_times.recent(topic))

    async def _carry_out(self, command: waiting.Command, settings: QueueTopic
                         ) -> waiting.Event | None:
        """Play, stop, ring, store a callback: what comes of it, if it is known at once."""
        svc, loop = self.service, asyncio.get_running_loop()
        if isinstance(command, waiting.Play | waiting.Notice):
            media = (self._hold_media(command, settings) if isinstance(command, waiting.Play)
                     else [self.port.media_uri(command.prompt, self.port.language)])
            if not await self._play_on_hold(media):
                return waiting.Played(loop.time())  # nothing to play: played at once
        elif isinstance(command, waiting.Stop):
            playback, self.hold_playback = self.hold_playback, None
            if playback:
                try:
                    await svc.ari.stop_playback(playback)
                except AriNotFound:
                    pass  # it had just finished
        elif isinstance(command, waiting.Ring):
            rang = await self._ring(command.agent_id, settings)
            return waiting.RingResult(loop.time(), rang)
        elif isinstance(command, waiting.StoreCallback):
            assert settings.callback_key is not None
            stored = await self._callback(settings.callback_key)
            return waiting.CallbackResult(loop.time(), stored)
        return None

    def _leave_line(self, event: str, outcome: str, dest: Destination, key: str = ""
                    ) -> tuple[str, Destination]:
        """A rule takes the caller out of the line (queue_log as app_queue writes it)."""
        svc = self.service
        assert self.queued is not None
        position = svc.queues.position(self.info.call_id) or 0
        waited = self._in_line_for(svc.clock.now())
        data = (key, position, self.position_on_entry, waited) if key else (
            position, self.position_on_entry, waited)
        self._log(event, "NONE", *data)
        svc.queues.leave(self.info.call_id)
        self.in_line = False
        self._withdraw_offer()
        svc.desk.broadcast(QueueLeft(call_id=self.info.call_id,
                                     topic=self.queued.topic, outcome=outcome))
        log.info("call %s leaves %s: %s -> %s", self.info.call_id, self.queued.topic, outcome,
                 dest.describe())
        return outcome, dest

    async def _unhold(self, topic: str) -> None:
        try:
            await self.service.ari.request(
                "POST", f"/bridges/{QUEUE_BRIDGE.format(topic=topic)}/removeChannel",
                {"channel": self.channel_id})
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
            await self.service.ari.play(self.channel_id, playback, media, self.port.language)
        except AriNotFound:
            raise CallerHungUp() from None
        self.hold_playback = playback
        return True

    async def _callback(self, settings: CallbackKey) -> bool:
        """The caller pressed the callback key: a recall request takes their place in the line
        (True: they leave it, hear the confirmation, and the call ends). If their number cannot
        be called back, False: they hear why (the stay says so) and keep waiting."""
        svc = self.service
        assert self.queued is not None
        topic, caller = self.queued.topic, self.info.channel.caller
        try:
            row = await svc.recalls.from_caller(
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
        svc, announce = self.service, settings.announce
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
                svc.records.call_changed(self.info.call_id,
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
        svc, desk = self.service, self.service.desk
        assert self.queued is not None
        agent = desk.agents[agent_id]
        leg = self._new_leg(agent, f"{self.channel_id}-{uuid.uuid4().hex[:8]}")
        await desk.pop(agent.id, await self._screen_pop(leg))
        leave_key = settings.leave_key.key if settings.leave_key else None
        try:
            outcome = await self._ring_leg(leg, self.info.channel.caller.number or "anonymous",
                                           settings.ring_timeout, leave_key)
            if outcome == "answered":
                try:
                    await self._bridge(leg)
                    return "answered"
                except AriError as exc:  # as a ring that failed: the caller keeps their place
                    log.error("could not bridge %s to %s: %s", self.call_id, agent.id, exc)
                    await svc.ari.hangup(leg.channel_id)
                    await self._back_on_hold(leg.topic, settings)
                    outcome = "failed"
        except CallerHungUp:
            await svc.ari.hangup(leg.channel_id)
            self._leg_done(leg, "cancelled")
            desk.record(agent.cancelled(svc.clock.now()))
            raise
        if outcome == "unreachable":
            return "missed"
        if outcome == "left":  # not the agent's fault: no missed call for them
            self._leg_done(leg, "cancelled")
            self.queued.offered_to, self.leg = None, None
            desk.record(agent.cancelled(svc.clock.now()))
            return "left"
        ring_ms = round((svc.clock.now() - leg.rang_at).total_seconds() * 1000)
        self._log("RINGNOANSWER", agent.id, ring_ms)
        self._missed(leg, outcome)
        return "missed"

    async def _back_on_hold(self, topic: str, settings: QueueTopic) -> None:
        """After a bridge that failed halfway (the agent's phone hung up as it answered): the
        caller, already out of the holding bridge, back in it with the music."""
        svc = self.service
        try:
            await svc.ari.request("POST", f"/bridges/{self.bridge}/removeChannel",
                                  {"channel": self.channel_id})
        except AriError:
            pass  # the add failed as a whole: not in it
        try:
            await svc.hold(self.channel_id, topic, settings)
        except AriNotFound:
            raise CallerHungUp() from None
        except AriError as exc:  # still in the holding bridge: the remove was what failed
            log.warning("call %s: back on hold in %s: %s", self.call_id, topic, exc)

    async def _bridge(self, leg: Leg) -> None:
        svc = self.service
        assert self.queued is not None
        now = svc.clock.now()
        leg.answered_at = now
        bridge = self.bridge
        try:
            await svc.ari.create_bridge(bridge, "mixing", f"call {self.info.call_id}")
        except AriError as exc:  # 409: left by an agent who hung up before we could bridge
            if exc.status != 409:
                raise
        await svc.ari.request("POST", f"/bridges/{QUEUE_BRIDGE.format(topic=leg.topic)}"
                              "/removeChannel", {"channel": self.channel_id})
        await svc.ari.add_channel(bridge, f"{self.channel_id},{leg.channel_id}")
        svc.queues.leave(self.info.call_id)
        svc.desk.record(leg.agent.answered(now))
        svc.records.offer_changed(leg.offer_id, answered_at=now, outcome="answered")
        svc.records.call_changed(self.info.call_id, connected_at=now, agent_id=leg.agent.id)
        rang = round((now - leg.rang_at).total_seconds())
        self._log("CONNECT", leg.agent.id, self._in_line_for(now), leg.channel_id, rang)
        svc.desk.broadcast(QueueConnected(call_id=self.info.call_id,
                                          topic=leg.topic, agent=leg.agent.id))

    async def _resume_talk(self, resume: ResumeTalk) -> None:
        """Pick up a conversation the previous run of the service left going."""
        svc = self.service
        self.journal.add("resumed", detail=f"talking to {resume.agent_id}")
        self.queued = Waiting(self.info.call_id, resume.topic, resume.queued_at,
                              caller=self.info.channel.caller.number)
        agent = svc.desk.agents[resume.agent_id]  # marked on call by the service's adoption
        self.leg = Leg(uuid.uuid4().hex, agent, resume.leg_channel, resume.topic,
                       resume.connected_at, answered_at=resume.connected_at)
        svc.sessions[resume.leg_channel] = self
        await self._talk()

    async def _talk(self) -> None:
        """Until one side hangs up; then the other is hung up and the agent wraps up. If the
        service stops meanwhile, the conversation goes on: a restarted service adopts it."""
        svc, leg = self.service, self.leg
        assert leg is not None and leg.answered_at is not None and self.queued is not None
        try:
            while True:
                event = await self.port.next_event()
                if event is None or event.channel_id != leg.channel_id:
                    continue
                if isinstance(event, ChannelHangupRequest) and event.soft:
                    raise _Lost(0, f"Asterisk ended the call (shutdown or admin hangup, cause "
                                   f"{event.cause})")
                if isinstance(event, (StasisEnd, ChannelHangupRequest, ChannelDestroyed,
                                      ChannelGone)):
                    self.ended_by = "agent"
                    await svc.ari.hangup(self.channel_id)
                    break
        except CallerHungUp as gone:
            self.ended_by = "" if isinstance(gone, _Lost) else "caller"
            await svc.ari.hangup(leg.channel_id)
            self._hang_up_done(leg)
            raise
        self._hang_up_done(leg)

    def _hang_up_done(self, leg: Leg) -> None:
        svc = self.service
        assert self.queued is not None and leg.answered_at is not None
        now = svc.clock.now()
        talked = round((now - leg.answered_at).total_seconds())
        if self.ended_by:  # not when Asterisk cut it: nobody completed that call
            event = "COMPLETECALLER" if self.ended_by == "caller" else "COMPLETEAGENT"
            self._log(event, leg.agent.id, self._in_line_for(leg.answered_at), talked,
                      self.position_on_entry)
        self._leg_done(leg, "answered")
        svc.spawn(svc.ari.request("DELETE", f"/bridges/{self.bridge}"))
        settings = self.config.queues[leg.topic]
        svc.queues.handle_times.add(leg.topic, talked + settings.wrap_up)
        svc.desk.call_ended(leg.agent, settings.wrap_up)

    async def _screen_pop(self, leg: Leg) -> CallOffer:
        """What the agent's console shows when their phone starts ringing."""
        svc, info = self.service, self.info
        assert self.queued is not None
        try:
            previous = await svc.store.previous_contacts(info.channel.caller.number,
                                                         info.started_at)
        except Exception as exc:  # the database away: the call goes on, without its history
            if not (fault := fault_of(exc)).waits:
                raise
            log.error("call %s: no previous contacts in the screen pop: database %s (%s)",
                      self.call_id, fault.kind, fault)
            previous = []
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
            offered_at=leg.rang_at,
        )

    async def _unknown_number(self) -> tuple[str, str]:
        log.warning("call to %s: no flow for this number (check the dialplan and flows/)",
                    self.info.number)
        try:
            await self.service.ari.answer(self.channel_id)
            await self.port.play(["sound:ss-noservice"], interrupt="")
        except CallerHungUp:
            pass
        await self._hangup_quietly()
        return "unknown_number", f"no flow for {self.info.number}"

    async def _hangup_quietly(self) -> None:
        try:
            await self.service.ari.hangup(self.channel_id)
        except AriError:
            pass

    def _start_record(self) -> None:
        info, flow, svc = self.info, self.flow, self.service
        svc.records.call_started(NewCall(
            id=info.call_id, channel_id=info.channel.id, number=info.number,
            line=flow.name if flow else "", caller_number=info.channel.caller.number,
            caller_name=info.channel.caller.name, config_version=self.version,
            started_at=info.started_at, queue_log_id=self.queue_log_id,
        ))

    def _store_step(self, step: Step) -> None:
        """Each step is written as it happens (a crash keeps the caller's path so far); the
        writer batches it with the records around it."""
        self.service.records.call_step(self.info.call_id, len(self.journal.steps) - 1, step.at,
                                       step.kind, step.node, step.key, step.prompt, step.detail)
