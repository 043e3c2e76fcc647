"""An agent's phone rung for somebody waiting in a line: a caller (centralino.calls) or a
recall request (centralino.recalls.placing). Ringing, the answer, the end of the
conversation and the wrap-up, a missed ring, a phone that cannot be rung: written once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from centralino.ari.client import AriError
from centralino.ari.models import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelTransfer,
    Event,
    StasisEnd,
    StasisStart,
)
from centralino.callport import ChannelGone
from centralino.clock import Timers
from centralino.desk import Desk
from centralino.registry import Party, Registry
from centralino.storage.records import Records
from centralino.telephony import Bridges, Telephony
from cti.agents import Agent, AgentState
from ivr.schema import QueueTopic
from queue_manager.queues import QueueManager, Waiting

log = logging.getLogger("centralino.legs")
AGENT_LEG_FORMATS = "alaw,ulaw,slin"  # what the PSTN speaks in Italy first
GONE = (StasisEnd, ChannelHangupRequest, ChannelDestroyed, ChannelGone)
Spawn = Callable[[Coroutine[Any, Any, Any]], Any]
RingOutcome = Literal["answered", "left", "unreachable", "no_answer", "refused", "failed"]


class CallCommand(Event):
    """Ours, not Asterisk's: what the agent asked of the conversation, carried out by the
    call's own task (which owns its events): consult a colleague, then swap between them and
    the caller, complete or cancel."""

    type: str = "CallCommand"
    action: Literal["consult", "complete", "cancel", "swap"]
    agent: str = ""


class Events(Protocol):
    """A session's events, its legs' included (centralino.callport.AriCallPort)."""

    channel_id: str

    async def next_event(self, timeout: float | None = None) -> Event | None: ...


@dataclass(frozen=True)
class LegParts:
    """What ringing and talking to an agent needs, built once by the service."""

    telephony: Telephony
    bridges: Bridges
    clock: Timers
    records: Records
    desk: Desk
    queues: QueueManager
    registry: Registry
    app: str  # the Stasis application the legs are originated into
    spawn: Spawn


class AgentLeg:
    """One ring of one agent's phone for `waiting` (owned by `party`, which gets its events),
    and the conversation if they answer."""

    def __init__(self, parts: LegParts, party: Party, waiting: Waiting, agent: Agent,
                 channel_id: str, *, answered_at: datetime | None = None,
                 offer_id: str | None = None):
        self.parts, self.party, self.waiting, self.agent = parts, party, waiting, agent
        self.channel_id = channel_id
        self.topic = waiting.topic
        self.offer_id = offer_id or uuid.uuid4().hex
        self.rang_at = answered_at or parts.clock.now()
        self.answered_at = answered_at
        parts.registry.watch(channel_id, party)
        if answered_at is None:  # a new ring (an adopted conversation's offer is stored)
            parts.records.offer_made(self.offer_id, party.call_id, agent.id, self.rang_at)

    # --- ringing --------------------------------------------------------------------------

    async def ring(self, events: Events, caller_id: str, ring_timeout: float,
                   leave_key: str | None = None) -> RingOutcome:
        """Originate the agent's leg and wait: "answered" (in Stasis, not bridged yet), "left"
        (the waiting caller pressed the leave key), "unreachable" (handled already: the agent
        is paused), or the leg is hung up and the outcome is "no_answer", "refused", "failed"."""
        parts, agent = self.parts, self.agent
        outcome: RingOutcome
        try:
            try:
                await parts.telephony.originate(
                    self.channel_id, agent.device, app=parts.app,
                    appArgs=f"agent,{self.party.call_id}", callerId=caller_id,
                    timeout=str(round(ring_timeout) + 5),
                    # Without it Asterisk gives Local legs slin192: resampling in every bridge.
                    formats=AGENT_LEG_FORMATS)
            except AriError as exc:  # an unregistered phone: Asterisk cannot even start the leg
                log.error("could not ring %s (%s): %s", agent.id, agent.device, exc)
                self.unreachable(str(exc))
                return "unreachable"
            outcome = await self._until_answered(events, ring_timeout, leave_key)
        except AriError as exc:
            log.error("could not ring %s (%s): %s", agent.id, agent.device, exc)
            outcome = "failed"
        if outcome != "answered":
            await parts.telephony.hangup(self.channel_id)
        return outcome

    async def _until_answered(self, events: Events, ring_timeout: float,
                              leave_key: str | None) -> RingOutcome:
        clock = self.parts.clock
        deadline = clock.monotonic() + ring_timeout
        while (left := deadline - clock.monotonic()) > 0:
            event = await events.next_event(timeout=left)
            if event is None:
                break
            if isinstance(event, ChannelDtmfReceived) and event.digit == leave_key and (
                    event.channel_id == events.channel_id):
                return "left"
            if event.channel_id != self.channel_id:
                continue
            if isinstance(event, StasisStart):  # the agent picked up
                return "answered"
            if isinstance(event, (ChannelDestroyed, ChannelHangupRequest, ChannelGone)):
                return "refused"
        return "no_answer"

    def missed(self, outcome: str) -> None:
        """The agent did not take it: their missed call; the waiting one keeps its place."""
        desk = self.parts.desk
        self.done(outcome)
        self.waiting.offered_to = None  # back at its place: still the oldest of the line
        desk.missed(self.agent)
        desk.distribute()

    def unreachable(self, why: str) -> None:
        """The agent's phone cannot be rung at all: pause them at once (not a missed ring,
        which would retry them in a loop), and keep the waiting one in their place."""
        desk = self.parts.desk
        self.done("failed")
        self.waiting.offered_to = None
        desk.record(self.agent.unreachable(self.parts.clock.now(), why))
        desk.distribute()

    def cancelled(self, gone: bool = False) -> None:
        """Not the agent's fault (the caller left the line, or hung up while it rang): free
        again. A caller who is `gone` keeps the offer until their line forgets them, so
        that the agent, free again, is not offered them once more."""
        self.done("cancelled")
        if not gone:
            self.waiting.offered_to = None
        self.parts.desk.record(self.agent.cancelled(self.parts.clock.now()))

    # --- answered, talking, wrap-up -------------------------------------------------------

    def answered(self) -> datetime:
        """The agent took it: out of the line, on a call."""
        parts = self.parts
        now = self.answered_at = parts.clock.now()
        parts.queues.leave(self.party.call_id)
        parts.desk.record(self.agent.answered(now))
        parts.records.offer_changed(self.offer_id, answered_at=now, outcome="answered")
        return now

    async def talk(self, events: Events, other: str | None = None, commands: bool = False
                   ) -> Literal["agent", "other", "lost"] | CallCommand | ChannelTransfer:
        """Until the agent's leg or `other` (a channel that is not the events' own) ends:
        who ended it ("lost": Asterisk ended the agent's leg, a shutdown or an admin); or,
        with `commands`, until the agent asks for something (a consultation, or a transfer
        from their SIP phone's own key). The events' own channel ending raises, as the port
        says (CallerHungUp)."""
        while True:
            event = await events.next_event()
            if commands and (isinstance(event, CallCommand) or (
                    isinstance(event, ChannelTransfer) and event.channel_id == self.channel_id)):
                return event
            if event is None or not isinstance(event, GONE):
                continue
            if event.channel_id == self.channel_id:
                if isinstance(event, ChannelHangupRequest) and event.soft:
                    return "lost"
                return "agent"
            if other is not None and event.channel_id == other:
                return "other"

    def done(self, outcome: str) -> None:
        """The leg is over: its events are nobody's, its offer is stored as ended."""
        parts = self.parts
        parts.registry.unwatch(self.channel_id)
        values: dict[str, object] = {"ended_at": parts.clock.now()}
        if outcome != "answered":
            values["outcome"] = outcome
        parts.records.offer_changed(self.offer_id, **values)

    def wrap_up(self, settings: QueueTopic, talked: bool) -> float:
        """After the conversation: the agent wraps up; the topic learns how long a call takes
        (`talked`: there was a conversation to count). The seconds talked."""
        parts = self.parts
        assert self.answered_at is not None
        seconds = round((parts.clock.now() - self.answered_at).total_seconds())
        self.done("answered")
        if talked:
            parts.queues.handle_times.add(self.topic, seconds + settings.wrap_up)
        parts.desk.call_ended(self.agent, settings.wrap_up)
        return seconds


def withdraw_offer(parts: LegParts, waiting: Waiting | None, call_id: str) -> None:
    """An offer made for somebody waiting that was never taken up (they left the line just
    then): the agent's phone never rang, so they are free again at once."""
    if waiting is None or not waiting.offered_to:
        return
    desk = parts.desk
    agent = desk.agents.get(waiting.offered_to)
    waiting.offered_to = None
    if agent and agent.state is AgentState.RINGING and agent.call_id == call_id:
        desk.record(agent.cancelled(parts.clock.now()))
