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
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from centralino.ari.client import AriError
from centralino.ari.models import (
    ChannelDestroyed,
    ChannelHangupRequest,
    Event,
    StasisEnd,
    StasisStart,
)
from centralino.calls import (
    AGENT_LEG_FORMATS,
    CALL_BRIDGE,
    AgentLegs,
    AriCallPort,
    ChannelGone,
    Leg,
)
from centralino.desk import OfferMade
from centralino.storage.faults import fault_of
from centralino.storage.models import RecallAttempt, RecallRequest
from cti.messages import (
    QueueConnected,
    QueueJoined,
    QueueLeft,
    RecallAttemptView,
    RecallOffer,
    RecallOutcome,
)
from cti.recalls import after_attempt, citizen_outcome, classify, next_wake
from queue_manager.queues import Waiting

if TYPE_CHECKING:
    from centralino.service import Service

log = logging.getLogger("centralino.recalls")
RECALL_CHANNEL = "recall-"  # prefix of every channel a recall originates (agent and citizen)
IVR_CLIENT = "ivr"  # the `client` of requests made by callers in a line (no portal)
CANCELLED = Event(type="RecallCancelled")  # ours: the portal cancelled a waiting request
_GONE = (StasisEnd, ChannelHangupRequest, ChannelDestroyed, ChannelGone)


class RecallSession(AgentLegs):
    """One stay of a request in its topic's line, up to the end of one attempt (or until it
    is cancelled); a retry is a new session, made by the scheduler when it is due again."""

    def __init__(self, service: Service, row: RecallRequest):
        self.service = service
        self.row = row
        # Its topic's settings as when it was placed: a reload that removes the topic while
        # it waits leaves it served (see Desk.configure), like a call on its version.
        self.topics = service.call_config.queues
        tag = f"{RECALL_CHANNEL}{row.id[:12]}-{uuid.uuid4().hex[:6]}"
        self.tag = tag
        # No channel of its own: every event (agent leg, citizen leg, offers) is "another" one.
        self.port = AriCallPort(service, tag, "it", service.catalog.uri)
        self.queued: Waiting | None = None
        self.leg: Leg | None = None
        self.citizen = f"{tag}-c"
        self.talking = False
        self.ended_by = ""
        self.dialled_at: datetime | None = None  # when this attempt called the citizen

    @property
    def call_id(self) -> str:
        return self.row.id

    def join(self) -> None:
        """Into its topic's line at its due time (synchronous: no gap for a caller who hands
        their place over to this request)."""
        svc, row = self.service, self.row
        svc.calls[self.call_id] = self
        self.queued = Waiting(row.id, row.topic, row.due_at, caller=row.number, line="recall",
                              boost=row.boost or 0.0, recall=True)
        position = svc.queues.join(self.queued)
        waited = (svc.clock.now() - self.queued.since).total_seconds()
        svc.desk.broadcast(QueueJoined(call_id=row.id, topic=row.topic, caller=row.number,
                                       position=position, waited=round(max(0.0, waited), 1),
                                       recall=True))
        log.info("recall %s waits in %s at position %d", row.id, row.topic, position)

    async def run(self) -> None:
        """After join(): wait for an agent, place the call (or be cancelled)."""
        svc, row = self.service, self.row
        assert self.queued is not None
        crashed = False
        try:
            svc.desk.distribute()
            while True:
                event = await self.port.next_event()
                if event is CANCELLED:
                    return
                if (isinstance(event, OfferMade) and self.queued.offered_to  # noqa: SIM102 - the await apart
                        == event.offer.agent_id and svc.queues.get(row.id) is self.queued):
                    if await self._offered(event.offer.agent_id):
                        return
        except asyncio.CancelledError:
            await asyncio.shield(self._stopping())
            raise
        except Exception:
            log.exception("recall %s crashed", row.id)
            crashed = True
        finally:
            svc.calls.pop(self.call_id, None)
            self._withdraw_offer()
            if svc.queues.leave(self.call_id):
                svc.desk.broadcast(QueueLeft(call_id=row.id, topic=row.topic, outcome="recall",
                                             recall=True))
            svc.recalls.poke()  # a retry may be due later: the scheduler re-reads
        if crashed and self.row.status == "calling":
            # Not counted against the citizen; back to waiting at its place. (The agent is
            # free already: this may wait for the database.)
            await self._end_attempt("failed", "internal error (see the service log)",
                                    counted=False, status="waiting")
            svc.recalls.poke()

    async def resume(self, leg: Leg, citizen: str) -> None:
        """A conversation the previous run left going (its attempt is stored already): the
        agent stays on call until one side hangs up, then wraps up as after any call."""
        svc = self.service
        self.leg, self.citizen, self.talking = leg, citizen, True
        svc.sessions[leg.channel_id] = self
        svc.sessions[citizen] = self
        try:
            await self._talk(leg)
            await self._agent_done(leg, "answered")
        except asyncio.CancelledError:  # stopping again: the next run adopts it again
            svc.sessions.pop(leg.channel_id, None)
            svc.sessions.pop(citizen, None)
            raise
        except Exception:
            log.exception("recall %s: following the adopted conversation", self.call_id)

    async def _offered(self, agent_id: str) -> bool:
        """Ring the agent, then the citizen; True once this session is over."""
        svc, desk = self.service, self.service.desk
        claimed = await svc.store.set_recall_status(self.call_id, "calling", svc.clock.now(),
                                                    only_from=("waiting",))
        if claimed is None:  # cancelled (or placed elsewhere) meanwhile: never dial twice
            log.info("recall %s is no longer waiting: not placed", self.call_id)
            return True
        self.row = claimed
        self.dialled_at = None
        agent = desk.agents[agent_id]
        settings = self.topics[self.row.topic]
        leg = self._new_leg(agent, f"{self.tag}-a")
        await desk.pop(agent.id, await self._screen_pop(leg))
        outcome = await self._ring_leg(leg, self.row.number, settings.ring_timeout)
        if outcome != "answered":
            # The agent's missed call, not the citizen's: back at its place, nothing counted.
            await self._end_attempt("agent_missed", f"{agent.id}: {outcome}", counted=False,
                                    status="waiting", agent_id=agent.id)
            if outcome != "unreachable":  # (already paused and redistributed)
                self._missed(leg, outcome)
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
        schedule = (svc.call_config.schedules.get(svc.settings.recalls.hours)
                    if svc.settings.recalls.hours else None)
        after = after_attempt(result, attempts, svc.settings.recalls, svc.clock.now(), schedule)
        await self._end_attempt(result, detail, counted=True, status=after.status,
                                due_at=after.due_at, agent_id=agent.id)
        await desk.pop(agent.id, RecallOutcome(
            call_id=self.call_id, offer_id=leg.offer_id, outcome=result, number=self.row.number,
            name=self.row.name, status=after.status, attempts=attempts, next_due_at=after.due_at))
        log.info("recall %s attempt %d: %s -> %s", self.call_id, attempts, result, after.status)
        return True

    async def _connect_agent(self, leg: Leg) -> None:
        """The agent answered: out of the line, on a call, in the bridge the citizen joins."""
        svc = self.service
        now = leg.answered_at = svc.clock.now()
        svc.queues.leave(self.call_id)
        svc.desk.broadcast(QueueConnected(call_id=self.call_id, topic=self.row.topic,
                                          agent=leg.agent.id, recall=True))
        svc.desk.record(leg.agent.answered(now))
        svc.records.offer_changed(leg.offer_id, answered_at=now, outcome="answered")
        try:
            await svc.ari.create_bridge(CALL_BRIDGE.format(call=self.call_id), "mixing",
                                        f"recall {self.call_id}")
        except AriError as exc:  # 409: left by a run stopped mid-dial (same request id)
            if exc.status != 409:
                raise
        await svc.ari.add_channel(CALL_BRIDGE.format(call=self.call_id), leg.channel_id)

    async def _dial(self, leg: Leg) -> tuple[str, str]:
        """Call the citizen while the agent waits in the bridge: (outcome, detail)."""
        svc, recalls = self.service, self.service.settings.recalls
        svc.sessions[self.citizen] = self
        target = recalls.dial_string(self.row.number)
        self.dialled_at = svc.clock.now()
        try:
            await svc.ari.originate(
                self.citizen, target, app=svc.settings.asterisk.app,
                appArgs=f"citizen,{self.call_id}", callerId=recalls.caller_id or "anonymous",
                timeout=str(round(recalls.ring_timeout) + 5), formats=AGENT_LEG_FORMATS)
        except AriError as exc:
            log.error("recall %s: could not dial %s: %s", self.call_id, target, exc)
            return "failed", str(exc)[:200]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + recalls.ring_timeout
        while (left := deadline - loop.time()) > 0:
            event = await self.port.next_event(timeout=left)
            if event is None:
                break
            if event.channel_id == leg.channel_id and isinstance(event, _GONE):
                await svc.ari.hangup(self.citizen)
                return "agent_left", "the agent hung up before the citizen answered"
            if event.channel_id != self.citizen:
                continue
            if isinstance(event, StasisStart):
                try:
                    await svc.ari.add_channel(CALL_BRIDGE.format(call=self.call_id),
                                              self.citizen)
                except AriError:  # hung up as soon as they answered: nobody was talked to
                    await svc.ari.hangup(self.citizen)
                    return "no_answer", "the citizen hung up on answering"
                self.talking = True
                return "answered", ""
            if isinstance(event, ChannelDestroyed):
                outcome = citizen_outcome(event.cause)
                return outcome, f"cause {event.cause} {event.cause_txt}".strip()
            if isinstance(event, ChannelGone):
                return "failed", "the citizen's leg vanished"
        await svc.ari.hangup(self.citizen)
        return "no_answer", f"no answer in {recalls.ring_timeout:g} s"

    async def _talk(self, leg: Leg) -> None:
        """Until one side hangs up; then the other is hung up too."""
        svc = self.service
        while True:
            event = await self.port.next_event()
            if event is None or not isinstance(event, _GONE):
                continue
            if event.channel_id == leg.channel_id:
                self.ended_by = "agent"
                await svc.ari.hangup(self.citizen)
                return
            if event.channel_id == self.citizen:
                self.ended_by = "citizen"
                await svc.ari.hangup(leg.channel_id)
                return

    async def _agent_done(self, leg: Leg, result: str) -> None:
        """The agent's side is over: their leg hung up, wrap-up as after any call."""
        svc = self.service
        assert leg.answered_at is not None
        self.talking = False
        await svc.ari.hangup(leg.channel_id)
        self._leg_done(leg, "answered")
        svc.sessions.pop(self.citizen, None)
        svc.spawn(svc.ari.request("DELETE", f"/bridges/{CALL_BRIDGE.format(call=self.call_id)}"))
        settings = self.topics[self.row.topic]
        if result == "answered":
            talked = round((svc.clock.now() - leg.answered_at).total_seconds())
            svc.queues.handle_times.add(self.row.topic, talked + settings.wrap_up)
        svc.desk.call_ended(leg.agent, settings.wrap_up)

    async def _end_attempt(self, outcome: str, detail: str, counted: bool, status: str,
                           due_at: Any = None, agent_id: str | None = None,
                           stopping: bool = False) -> None:
        svc = self.service
        at, delay = svc.clock.now(), 1.0
        while True:
            attempt = RecallAttempt(request_id=self.call_id, at=at, outcome=outcome,
                                    detail=detail[:255], agent_id=agent_id,
                                    dialled_at=self.dialled_at)
            try:
                stored = await svc.store.end_recall_attempt(attempt, status, due_at, counted)
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
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if not stored:
            log.warning("recall %s was not calling any more: attempt %s not stored",
                        self.call_id, outcome)
        self.row.status = status

    async def _stopping(self) -> None:
        """The service stops. Mid-dial: hang up both legs and leave the request `calling`, so
        the next start puts it back in its place. Talking: the conversation goes on in
        Asterisk (as live calls do) and the request is done."""
        svc = self.service
        try:
            if self.talking and self.leg is not None:
                await self._end_attempt("answered", "service stopped during the conversation",
                                        counted=True, status="done", agent_id=self.leg.agent.id,
                                        stopping=True)
                return
            for channel in (self.citizen, self.leg.channel_id if self.leg else None):
                if channel:
                    await svc.ari.hangup(channel)
            if self.leg is not None and self.leg.answered_at is not None:
                await svc.ari.request("DELETE",
                                      f"/bridges/{CALL_BRIDGE.format(call=self.call_id)}")
        except Exception:  # stopping anyway: the next start cleans up
            log.exception("recall %s: cleaning up at stop", self.call_id)

    async def _screen_pop(self, leg: Leg) -> RecallOffer:
        """What the agent's console shows while their phone rings for a recall."""
        svc, row = self.service, self.row
        attempts = await svc.store.recall_attempts(row.id)
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

    def __init__(self, service: Service):
        self.service = service
        self._poke = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        """Something changed (a new request, an attempt over): look again now."""
        self._poke.set()

    async def start(self) -> None:
        """Once, after the first connection to Asterisk (stale legs are gone by then)."""
        if self._task is None:
            self._task = self.service.spawn(self._run())

    async def _release(self) -> bool:
        """Requests a stopped service left `calling`: waiting again, before anything is
        dialled. Tried again while the database is away or refuses writes; False on a bug."""
        svc, delay = self.service, 1.0
        while True:
            try:
                released = await svc.store.release_calling(svc.clock.now())
                break
            except Exception as exc:
                if not (fault := fault_of(exc)).waits:
                    log.exception("could not start placing recalls")
                    return False
                if delay == 1.0:
                    log.error("recalls wait to be placed: database %s (%s)", fault.kind, fault)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        if released:
            log.warning("%d recall requests were being placed when the service stopped: "
                        "waiting again, at their place", released)
        return True

    def place(self, row: RecallRequest) -> None:
        """Into its line now (in svc.calls at once: a second pass must not start it again)."""
        session = RecallSession(self.service, row)
        session.join()
        self.service.spawn(session.run())

    async def from_caller(self, topic: str, number: str, name: str, since: datetime,
                          boost: float, line: str) -> RecallRequest:
        """A caller waiting in `topic` pressed the callback key: a request at their place
        (arrival `since`), stored, in the line now. RecallError if the number cannot be
        called back. An open request of theirs for the topic stands, moved up to `since`."""
        svc = self.service
        target = classify(number, svc.settings.recalls, svc.call_config.flows)
        now = svc.clock.now()
        row = RecallRequest(
            id=uuid.uuid4().hex, number=target.e164, number_type=target.type, topic=topic,
            mode="queue", slot_at=None, name=name[:128], note=f"chiesta in coda ({line})"[:500],
            portal_ref=None, client=IVR_CLIENT, status="waiting", created_at=now,
            updated_at=now, due_at=since, attempts=0, boost=boost)
        row, created = await svc.store.create_recall(row)
        if not created:
            log.info("recall %s: %s asked again from the line", row.id, row.number)
            if row.status == "waiting" and row.due_at > since and row.id not in svc.calls:
                row = await svc.store.advance_recall(row.id, since, now) or row
        if row.status == "waiting" and row.due_at <= now and row.id not in svc.calls:
            self.place(row)
        self.poke()
        return row

    def cancelled(self, recall_id: str) -> None:
        session = self.service.calls.get(recall_id)
        if isinstance(session, RecallSession):
            session.deliver(CANCELLED)

    async def _run(self) -> None:
        svc = self.service
        if not await self._release():
            return
        while True:
            self._poke.clear()
            now = svc.clock.now()
            due: list[Any] = []
            try:
                expire = timedelta(seconds=svc.settings.recalls.expire_after)
                for recall_id in await svc.store.expire_recalls(now - expire, now):
                    log.warning("recall %s expired: nobody reached it in %s", recall_id, expire)
                    self.cancelled(recall_id)
                for row in await svc.store.due_recalls(now):
                    if row.id in svc.calls:
                        continue
                    if row.topic not in svc.call_config.queues:
                        log.warning("recall %s: topic %s is not in queues.yaml any more",
                                    row.id, row.topic)
                        continue
                    self.place(row)
                if (later := await svc.store.next_recall_due(now)) is not None:
                    due.append(later)
                due += [at for session in svc.calls.values()
                        if isinstance(session, RecallSession)
                        and (at := session.row.due_at + expire) > now]
            except Exception as exc:
                if not (fault := fault_of(exc)).waits:
                    log.exception("recall scheduler: could not read due requests")
                else:  # the records' writer says so too; one line, not a traceback a minute
                    log.error("recall scheduler: database %s (%s)", fault.kind, fault)
            try:
                await asyncio.wait_for(self._poke.wait(), next_wake(due, svc.clock.now()))
            except TimeoutError:
                pass

