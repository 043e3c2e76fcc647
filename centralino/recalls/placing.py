"""Placing recall requests (issue #4): a due request waits in its topic's line as a virtual
caller, served in FIFO order with live callers by the same distributor.

When the desk offers it to an agent (OfferMade, by call id = the request's id), the
RecallSession rings the agent first (the agent-leg logic of centralino.calls.AgentLegs), with a
"recall" screen pop; once the agent answers it dials the citizen with the help desk's number
as caller id, and bridges them when the citizen answers. The request's status in the database
is the lock: waiting -> calling (an atomic UPDATE ... WHERE status='waiting') -> done, failed,
or waiting again (a retry with a new due_at, or the agent's missed call: same due_at, same
place). The Recalls scheduler puts due requests in their lines: at start (a request left
`calling` by a stopped service is waiting again first), when the API pokes it, and at the next
due time; it also expires requests nobody reached in time. A caller waiting in a line can hand
their place to a request (the callback key: Recalls.from_caller); a recall conversation a
stopped service left going is followed to its end by the next run (RecallSession.resume).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from centralino.agentleg import AGENT_LEG_FORMATS, GONE, AgentLeg, LegParts, withdraw_offer
from centralino.ari.client import AriError
from centralino.ari.models import ChannelDestroyed, Event, StasisStart
from centralino.callport import AriCallPort, ChannelGone
from centralino.clock import sleep, woken
from centralino.desk import OfferMade
from centralino.storage.faults import fault_of
from centralino.storage.models import RecallAttempt, RecallRequest
from centralino.storage.store import Store
from centralino.telephony import CALL_BRIDGE
from cti.agents import Agent
from cti.messages import (
    QueueConnected,
    QueueJoined,
    QueueLeft,
    RecallAttemptView,
    RecallOffer,
    RecallOutcome,
)
from cti.recalls import (
    OutsideNumber,
    RecallSettings,
    after_attempt,
    citizen_outcome,
    classify,
    next_wake,
)
from ivr.config import CallConfig
from queue_manager.queues import Waiting

log = logging.getLogger("centralino.recalls")
RECALL_CHANNEL = "recall-"  # prefix of every channel a recall originates (agent and citizen)
IVR_CLIENT = "ivr"  # the `client` of requests made by callers in a line (no portal)
CANCELLED = Event(type="RecallCancelled")  # ours: the portal cancelled a waiting request


@dataclass(frozen=True)
class RecallParts:
    """What placing recalls needs, built once by the service."""

    legs: LegParts
    store: Store
    settings: RecallSettings
    config: Callable[[], CallConfig]  # the running configuration (a reload swaps it)


def _plays_nothing(prompt: str, language: str) -> str:
    raise RuntimeError(f"a recall plays no prompt ({prompt})")


class RecallSession:
    """One stay of a request in its topic's line, up to the end of one attempt (or until it
    is cancelled); a retry is a new session, made by the scheduler when it is due again."""

    def __init__(self, parts: RecallParts, scheduler: Recalls, row: RecallRequest):
        self.parts, self.legs, self.scheduler = parts, parts.legs, scheduler
        self.telephony, self.clock, self.desk = parts.legs.telephony, parts.legs.clock, \
            parts.legs.desk
        self.row = row
        # Its topic's settings as when it was placed: a reload that removes the topic while
        # it waits leaves it served (see Desk.configure), like a call on its version.
        self.topics = parts.config().queues
        tag = f"{RECALL_CHANNEL}{row.id[:12]}-{uuid.uuid4().hex[:6]}"
        self.tag = tag
        # No channel of its own: every event (agent leg, citizen leg, offers) is "another" one.
        self.port = AriCallPort(self.telephony, self.clock, tag, "it", _plays_nothing)
        self.queued: Waiting | None = None
        self.leg: AgentLeg | None = None
        self.citizen = f"{tag}-c"
        self.talking = False
        self.ended_by = ""
        self.dialled_at: datetime | None = None  # when this attempt called the citizen

    @property
    def call_id(self) -> str:
        return self.row.id

    def deliver(self, event: Event) -> None:
        self.port.events.put_nowait(event)

    def join(self) -> None:
        """Into its topic's line at its due time (synchronous: no gap for a caller who hands
        their place over to this request)."""
        legs, row = self.legs, self.row
        legs.registry.live(self)
        self.queued = Waiting(row.id, row.topic, row.due_at, caller=row.number, line="recall",
                              boost=row.boost or 0.0, recall=True)
        position = legs.queues.join(self.queued)
        waited = (self.clock.now() - self.queued.since).total_seconds()
        self.desk.broadcast(QueueJoined(call_id=row.id, topic=row.topic, caller=row.number,
                                        position=position, waited=round(max(0.0, waited), 1),
                                        recall=True))
        log.info("recall %s waits in %s at position %d", row.id, row.topic, position)

    async def run(self) -> None:
        """After join(): wait for an agent, place the call (or be cancelled)."""
        legs, row = self.legs, self.row
        assert self.queued is not None
        crashed = False
        try:
            self.desk.distribute()
            while True:
                event = await self.port.next_event()
                if event is CANCELLED:
                    return
                if (isinstance(event, OfferMade) and self.queued.offered_to  # noqa: SIM102 - the await apart
                        == event.offer.agent_id and legs.queues.get(row.id) is self.queued):
                    if await self._offered(event.offer.agent_id):
                        return
        except asyncio.CancelledError:
            await asyncio.shield(self._stopping())
            raise
        except Exception:
            log.exception("recall %s crashed", row.id)
            crashed = True
        finally:
            legs.registry.over(self)
            if self.leg is None:
                withdraw_offer(legs, self.queued, self.call_id)
            if legs.queues.leave(self.call_id):
                self.desk.broadcast(QueueLeft(call_id=row.id, topic=row.topic,
                                              outcome="recall", recall=True))
            self.scheduler.poke()  # a retry may be due later: the scheduler re-reads
        if crashed and self.row.status == "calling":
            # Not counted against the citizen; back to waiting at its place. (The agent is
            # free already: this may wait for the database.)
            await self._end_attempt("failed", "internal error (see the service log)",
                                    counted=False, status="waiting")
            self.scheduler.poke()

    async def resume(self, agent: Agent, leg_channel: str, citizen: str,
                     answered_at: datetime, offer_id: str) -> None:
        """A conversation the previous run left going (its attempt is stored already): the
        agent stays on call until one side hangs up, then wraps up as after any call."""
        registry = self.legs.registry
        self.queued = Waiting(self.row.id, self.row.topic, self.row.due_at,
                              caller=self.row.number, line="recall", recall=True)
        leg = AgentLeg(self.legs, self, self.queued, agent, leg_channel,
                       answered_at=answered_at, offer_id=offer_id)
        self.leg, self.citizen, self.talking = leg, citizen, True
        registry.watch(citizen, self)
        try:
            await self._talk(leg)
            await self._agent_done(leg, "answered")
        except asyncio.CancelledError:  # stopping again: the next run adopts it again
            registry.unwatch(leg.channel_id)
            registry.unwatch(citizen)
            raise
        except Exception:
            log.exception("recall %s: following the adopted conversation", self.call_id)

    async def _offered(self, agent_id: str) -> bool:
        """Ring the agent, then the citizen; True once this session is over."""
        desk, settings_ = self.desk, self.parts.settings
        assert self.queued is not None
        claimed = await self.parts.store.set_recall_status(self.call_id, "calling",
                                                           self.clock.now(),
                                                           only_from=("waiting",))
        if claimed is None:  # cancelled (or placed elsewhere) meanwhile: never dial twice
            log.info("recall %s is no longer waiting: not placed", self.call_id)
            return True
        self.row = claimed
        self.dialled_at = None
        agent = desk.agents[agent_id]
        settings = self.topics[self.row.topic]
        leg = self.leg = AgentLeg(self.legs, self, self.queued, agent, f"{self.tag}-a")
        await desk.pop(agent.id, await self._screen_pop(leg))
        outcome = await leg.ring(self.port, self.row.number, settings.ring_timeout)
        if outcome != "answered":
            self.leg = None
            # The agent's missed call, not the citizen's: back at its place, nothing counted.
            await self._end_attempt("agent_missed", f"{agent.id}: {outcome}", counted=False,
                                    status="waiting", agent_id=agent.id)
            if outcome != "unreachable":  # (already paused and redistributed)
                leg.missed(outcome)
            return False
        await self._connect_agent(leg)
        result, detail = await self._dial(leg)
        if result == "answered":
            await self._talk(leg)
            detail = f"ended by the {self.ended_by}"
        await self._agent_done(leg, result)
        if result == "agent_left":  # the agent hung up first: not the citizen's attempt
            await self._end_attempt(result, detail, counted=False, status="waiting",
                                    agent_id=agent.id)
            return True
        attempts = self.row.attempts + 1
        config = self.parts.config()
        schedule = config.schedules.get(settings_.hours) if settings_.hours else None
        after = after_attempt(result, attempts, settings_, self.clock.now(), schedule)
        await self._end_attempt(result, detail, counted=True, status=after.status,
                                due_at=after.due_at, agent_id=agent.id)
        await desk.pop(agent.id, RecallOutcome(
            call_id=self.call_id, offer_id=leg.offer_id, outcome=result, number=self.row.number,
            name=self.row.name, status=after.status, attempts=attempts, next_due_at=after.due_at))
        log.info("recall %s attempt %d: %s -> %s", self.call_id, attempts, result, after.status)
        return True

    async def _connect_agent(self, leg: AgentLeg) -> None:
        """The agent answered: out of the line, on a call, in the bridge the citizen joins."""
        leg.answered()
        self.desk.broadcast(QueueConnected(call_id=self.call_id, topic=self.row.topic,
                                           agent=leg.agent.id, recall=True))
        bridge = await self.legs.bridges.open_call(self.call_id, f"recall {self.call_id}")
        await self.telephony.add_channel(bridge, leg.channel_id)

    async def _dial(self, leg: AgentLeg) -> tuple[str, str]:
        """Call the citizen while the agent waits in the bridge: (outcome, detail)."""
        telephony, recalls, clock = self.telephony, self.parts.settings, self.clock
        self.legs.registry.watch(self.citizen, self)
        target = recalls.dial_string(self.row.number)
        self.dialled_at = clock.now()
        try:
            await telephony.originate(
                self.citizen, target, app=self.legs.app,
                appArgs=f"citizen,{self.call_id}", callerId=recalls.caller_id or "anonymous",
                timeout=str(round(recalls.ring_timeout) + 5), formats=AGENT_LEG_FORMATS)
        except AriError as exc:
            log.error("recall %s: could not dial %s: %s", self.call_id, target, exc)
            return "failed", str(exc)[:200]
        deadline = clock.monotonic() + recalls.ring_timeout
        while (left := deadline - clock.monotonic()) > 0:
            event = await self.port.next_event(timeout=left)
            if event is None:
                break
            if event.channel_id == leg.channel_id and isinstance(event, GONE):
                await telephony.hangup(self.citizen)
                return "agent_left", "the agent hung up before the citizen answered"
            if event.channel_id != self.citizen:
                continue
            if isinstance(event, StasisStart):
                # Talking from the moment Asterisk may bridge them: a stop while the request
                # is on its way must leave the conversation up (see _stopping), not cut it.
                self.talking = True
                try:
                    await telephony.add_channel(CALL_BRIDGE.format(call=self.call_id),
                                                self.citizen)
                except AriError:  # hung up as soon as they answered: nobody was talked to
                    self.talking = False
                    await telephony.hangup(self.citizen)
                    return "no_answer", "the citizen hung up on answering"
                return "answered", ""
            if isinstance(event, ChannelDestroyed):
                outcome = citizen_outcome(event.cause)
                return outcome, f"cause {event.cause} {event.cause_txt}".strip()
            if isinstance(event, ChannelGone):
                return "failed", "the citizen's leg vanished"
        await telephony.hangup(self.citizen)
        return "no_answer", f"no answer in {recalls.ring_timeout:g} s"

    async def _talk(self, leg: AgentLeg) -> None:
        """Until one side hangs up; then the other is hung up too."""
        if await leg.talk(self.port, other=self.citizen) == "other":
            self.ended_by = "citizen"
            await self.telephony.hangup(leg.channel_id)
        else:
            self.ended_by = "agent"
            await self.telephony.hangup(self.citizen)

    async def _agent_done(self, leg: AgentLeg, result: str) -> None:
        """The agent's side is over: their leg hung up, wrap-up as after any call."""
        self.talking = False
        await self.telephony.hangup(leg.channel_id)
        self.legs.registry.unwatch(self.citizen)
        leg.wrap_up(self.topics[self.row.topic], talked=result == "answered")
        self.legs.spawn(self.legs.bridges.close_call(self.call_id))

    async def _end_attempt(self, outcome: str, detail: str, counted: bool, status: str,
                           due_at: Any = None, agent_id: str | None = None,
                           stopping: bool = False) -> None:
        at, delay = self.clock.now(), 1.0
        while True:
            attempt = RecallAttempt(request_id=self.call_id, at=at, outcome=outcome,
                                    detail=detail[:255], agent_id=agent_id,
                                    dialled_at=self.dialled_at)
            try:
                stored = await self.parts.store.end_recall_attempt(attempt, status, due_at, counted)
                break
            except Exception as exc:
                # The database is away or refuses writes. Keep the outcome until it takes it:
                # the request stays `calling` meanwhile, so nobody dials the citizen again.
                # (Not when stopping: the next start finds it `calling` and puts it back in
                # its line.)
                fault = fault_of(exc)
                if stopping or not fault.waits:
                    raise
                log.error("recall %s: could not store its %s attempt (database %s: %s), "
                          "again in %g s", self.call_id, outcome, fault.kind, fault, delay)
                await sleep(self.clock, delay)
                delay = min(delay * 2, 30.0)
        if not stored:
            log.warning("recall %s was not calling any more: attempt %s not stored",
                        self.call_id, outcome)
        self.row.status = status

    async def _stopping(self) -> None:
        """The service stops. Mid-dial: hang up both legs and leave the request `calling`, so
        the next start puts it back in its place. Talking: the conversation goes on in
        Asterisk (as live calls do) and the request is done."""
        try:
            if self.talking and self.leg is not None:
                await self._end_attempt("answered", "service stopped during the conversation",
                                        counted=True, status="done", agent_id=self.leg.agent.id,
                                        stopping=True)
                return
            for channel in (self.citizen, self.leg.channel_id if self.leg else None):
                if channel:
                    await self.telephony.hangup(channel)
            if self.leg is not None and self.leg.answered_at is not None:
                await self.legs.bridges.close_call(self.call_id)
        except Exception:  # stopping anyway: the next start cleans up
            log.exception("recall %s: cleaning up at stop", self.call_id)

    async def _screen_pop(self, leg: AgentLeg) -> RecallOffer:
        """What the agent's console shows while their phone rings for a recall."""
        row = self.row
        attempts = await self.parts.store.recall_attempts(row.id)
        return RecallOffer(
            offer_id=leg.offer_id, call_id=row.id, recall_id=row.id,
            number=row.number, caller_number=row.number, caller_name=row.name,
            topic=row.topic, topic_name=self.topics[row.topic].name,
            name=row.name, note=row.note, portal_ref=row.portal_ref,
            mode=row.mode, requested_at=row.created_at, due_at=row.due_at,
            waited_seconds=round((leg.rang_at - row.due_at).total_seconds(), 1),
            attempts=[RecallAttemptView(at=a.at, outcome=a.outcome, detail=a.detail,
                                        agent=a.agent_id) for a in attempts],
            offered_at=leg.rang_at,
        )


class Recalls:
    """The scheduler: due requests into their lines, each once (a session per request)."""

    def __init__(self, parts: RecallParts, spawn: Callable[[Coroutine[Any, Any, None]], Any]):
        self.parts, self.spawn = parts, spawn
        self.clock, self.store, self.calls = parts.legs.clock, parts.store, \
            parts.legs.registry.calls
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something changed (a new request, an attempt over): look again now."""
        self._poke.set()

    async def start(self) -> None:
        """Once, after the first connection to Asterisk (stale legs are gone by then)."""
        if self._task is None:
            self._task = self.spawn(self._run())

    async def _release(self) -> bool:
        """Requests a stopped service left `calling`: waiting again, before anything is
        dialled. Tried again while the database is away or refuses writes; False on a bug."""
        delay = 1.0
        while True:
            try:
                released = await self.store.release_calling(self.clock.now())
                break
            except Exception as exc:
                if not (fault := fault_of(exc)).waits:
                    log.exception("could not start placing recalls")
                    return False
                if delay == 1.0:
                    log.error("recalls wait to be placed: database %s (%s)", fault.kind, fault)
                await sleep(self.clock, delay)
                delay = min(delay * 2, 30.0)
        if released:
            log.warning("%d recall requests were being placed when the service stopped: "
                        "waiting again, at their place", released)
        return True

    def outside(self, number: str) -> OutsideNumber:
        """Where a transfer to a number outside the desk rings: only numbers a recall could
        call (RecallError otherwise), through the same trunk, with the same caller id."""
        settings = self.parts.settings
        target = classify(number, settings, self.parts.config().flows)
        return OutsideNumber(target.e164, settings.dial_string(target.e164),
                             settings.caller_id, settings.ring_timeout)

    def place(self, row: RecallRequest) -> None:
        """Into its line now (live at once: a second pass must not start it again)."""
        session = RecallSession(self.parts, self, row)
        session.join()
        self.spawn(session.run())

    async def from_caller(self, topic: str, number: str, name: str, since: datetime,
                          boost: float, line: str) -> RecallRequest:
        """A caller waiting in `topic` pressed the callback key: a request at their place
        (arrival `since`), stored, in the line now. RecallError if the number cannot be
        called back. An open request of theirs for the topic stands, moved up to `since`."""
        target = classify(number, self.parts.settings, self.parts.config().flows)
        now = self.clock.now()
        row = RecallRequest(
            id=uuid.uuid4().hex, number=target.e164, number_type=target.type, topic=topic,
            mode="queue", slot_at=None, name=name[:128], note=f"chiesta in coda ({line})"[:500],
            portal_ref=None, client=IVR_CLIENT, status="waiting", created_at=now,
            updated_at=now, due_at=since, attempts=0, boost=boost)
        row, created = await self.store.create_recall(row)
        if not created:
            log.info("recall %s: %s asked again from the line", row.id, row.number)
            if row.status == "waiting" and row.due_at > since and row.id not in self.calls:
                row = await self.store.advance_recall(row.id, since, now) or row
        if row.status == "waiting" and row.due_at <= now and row.id not in self.calls:
            self.place(row)
        self.poke()
        return row

    def cancelled(self, recall_id: str) -> None:
        session = self.calls.get(recall_id)
        if isinstance(session, RecallSession):
            session.deliver(CANCELLED)

    async def _run(self) -> None:
        store = self.store
        if not await self._release():
            return
        while True:
            self._poke.clear()
            now = self.clock.now()
            due: list[Any] = []
            try:
                expire = timedelta(seconds=self.parts.settings.expire_after)
                for recall_id in await store.expire_recalls(now - expire, now):
                    log.warning("recall %s expired: nobody reached it in %s", recall_id, expire)
                    self.cancelled(recall_id)
                for row in await store.due_recalls(now):
                    if row.id in self.calls:
                        continue
                    if row.topic not in self.parts.config().queues:
                        log.warning("recall %s: topic %s is not in queues.yaml any more",
                                    row.id, row.topic)
                        continue
                    self.place(row)
                if (later := await store.next_recall_due(now)) is not None:
                    due.append(later)
                due += [at for session in self.calls.values()
                        if isinstance(session, RecallSession)
                        and (at := session.row.due_at + expire) > now]
            except Exception as exc:
                if not (fault := fault_of(exc)).waits:
                    log.exception("recall scheduler: could not read due requests")
                else:  # the records' writer says so too; one line, not a traceback a minute
                    log.error("recall scheduler: database %s (%s)", fault.kind, fault)
            await woken(self._poke, self.clock, next_wake(due, self.clock.now()))

