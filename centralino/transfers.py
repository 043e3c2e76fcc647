"""Hold, transfers and consultations of a call in progress (issue #13): the console's hold
and resume, a blind transfer to a line, a named agent, a second-level group or a number
outside, an attended transfer (the caller on hold while the agent talks to a colleague first),
and the SIP phone's own transfer key (REFER).

`CallTransfers` is the half of `CallSession` (centralino.calls) that does these: the session
owns the call's events and runs these steps from its task; what they use of the session is
declared below.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from centralino.agentleg import AGENT_LEG_FORMATS, GONE, AgentLeg, CallCommand, LegParts
from centralino.ari.client import AriError, AriNotFound
from centralino.ari.models import ChannelTransfer, Event, StasisStart
from centralino.callport import AriCallPort, Lost
from centralino.figures.compute import OUTSIDE_CONTEXT, SECOND_LEVEL_CONTEXT
from centralino.storage.records import Records
from centralino.telephony import Telephony
from cti.agents import AgentState
from cti.messages import Consultation, ConsultOutcome, ConsultPhase, TransferredBy
from cti.recalls import OutsideNumber, RecallError, citizen_outcome
from ivr.config import CallConfig
from ivr.engine import CallerHungUp, Journal
from ivr.schema import QueueTopic
from queue_manager.queues import Waiting

if TYPE_CHECKING:
    from centralino.clock import Timers
    from centralino.desk import Desk

log = logging.getLogger("centralino.calls")
OUTSIDE_LEG = "-out-"  # in the id of the channel to a number outside: "<caller>-out-<hex>"


class CallControlError(RuntimeError):
    """The agent asked for something the call cannot do now (said to them as a 409)."""


class CallTransfers:
    """Hold, transfers and consultations: mixed into CallSession."""

    # What these use of the call (CallSession provides them).
    legs: LegParts
    telephony: Telephony
    clock: Timers
    records: Records
    desk: Desk
    config: CallConfig
    port: AriCallPort
    journal: Journal
    queued: Waiting | None
    leg: AgentLeg | None
    bridge: str
    bridge_of: str
    position_on_entry: int
    ended_by: str
    if TYPE_CHECKING:
        @property
        def channel_id(self) -> str: ...
        @property
        def call_id(self) -> str: ...
        def deliver(self, event: Event) -> None: ...
        def _log(self, event: str, agent: str = "NONE", *data: object) -> None: ...
        def _in_line_for(self, until: datetime) -> int: ...
        def _outside_number(self, number: str) -> OutsideNumber: ...  # as recalls would call

    def _no_transfer_yet(self, waiting_for: frozenset[str]) -> None:
        """The transfer state of a new call (`waiting_for`: agents a transfer named, for a
        caller adopted after a restart)."""
        self.on_hold = False  # put on hold by the agent, out of the conversation's bridge
        self.consulting: AgentLeg | None = None  # a colleague rung or talked to, caller held
        self._consult_asked = False  # a consultation asked, not started by the task yet
        self._with_caller = False  # consulting, the agent went back to the caller meanwhile
        self._attended = False  # an attended transfer gave the caller to this leg's agent
        self.transferred: TransferredBy | None = None  # the last agent who passed them on
        self._transferring: str | None = None  # the topic an agent is passing the caller to
        self._for_agent: str | None = None  # ... and the agent, if transferred to one by name,
        self._for_group: str | None = None  # ... or the second-level group
        self._for_agents = waiting_for  # who may take them then (or back after a restart)
        self._outside: OutsideNumber | None = None  # ... or a number outside the desk
        # (agent leg, when): the transfer that leg's phone asked was declined
        self._refer_declined: tuple[str, float] | None = None
        self.outside_talk = False  # talking to that number

    async def _phone_transfer(self, leg: AgentLeg, refer: ChannelTransfer) -> None:
        """The agent pressed their SIP phone's transfer key (a REFER, which Asterisk leaves to
        us: PJSIP_TRANSFER_HANDLING()=ari-only). Blind, to a topic, an agent or a second-level
        group by its id (the number dialled): done as from the console, the phone told it
        worked. Anything else (an attended transfer from the phone, an unknown target, a
        refused transfer) is declined: the phone keeps the call, nothing else moves."""
        wanted = refer.refer_to.requested_destination
        target, why = wanted.destination, ""
        if wanted.protocol_id or not target:
            why = "an attended transfer from the phone: use the console's consultation"
        elif target in self.config.queues:
            where = {"topic": target}
        elif target in self.desk.agents:
            where = {"agent": target}
        elif self.desk.group_members(target):
            where = {"group": target}
        else:
            why = f"no topic, agent or group {target!r}"
        if not why:
            async def accepted() -> None:  # before the agent's leg is hung up
                await self._tell_phone(leg, "channel_answered")
            try:
                await self.transfer(**where, note="trasferita dal telefono",
                                    on_accepted=accepted)
                return
            except CallControlError as exc:
                why = str(exc)
        log.info("call %s: %s's phone asked a transfer to %r: declined (%s)",
                 self.call_id, leg.agent.id, target, why)
        self.journal.add("phone_declined", leg.topic, detail=f"{target}: {why}")
        self._refer_declined = (leg.channel_id, self.clock.monotonic())
        await self._tell_phone(leg, "channel_declined")

    async def _back_to_the_line(self, leg: AgentLeg) -> str:
        """After the agent's phone went with a declined transfer: the caller waits again in
        the topic's line, in their place (a blind transfer to it, as the records say)."""
        assert leg.answered_at is not None
        try:
            await self.telephony.remove_channel(self.bridge, self.channel_id)
        except AriNotFound:
            raise CallerHungUp() from None
        except AriError:
            pass  # on hold, out of the bridge already
        if self.on_hold:
            await self.telephony.stop_channel_moh(self.channel_id)
        self._transferring = leg.topic
        self.transferred = TransferredBy(
            agent=leg.agent.id, agent_name=leg.agent.name, from_topic=leg.topic,
            note="il telefono dell'operatore ha chiuso la chiamata dopo un trasferimento "
                 "non riuscito", at=self.clock.now())
        await self._transferred(leg, leg.topic)
        return leg.topic

    async def _tell_phone(self, leg: AgentLeg, state: str) -> None:
        try:
            await self.telephony.transfer_progress(leg.channel_id, state)
        except AriError as exc:  # the phone hung up meanwhile: its hang-up comes next
            log.warning("call %s: transfer progress to %s: %s", self.call_id, leg.agent.id, exc)

    async def hold(self) -> None:
        """The agent puts the caller on hold: the caller leaves the conversation's bridge for
        their topic's music, the agent hears nothing; the agent's phone stays connected."""
        leg = self._talking()
        if self.on_hold:
            raise CallControlError("the caller is on hold already")
        if self.consulting is not None:
            raise CallControlError("the caller is on hold for a consultation")
        await self._put_on_hold(leg)

    async def _put_on_hold(self, leg: AgentLeg) -> None:
        self.on_hold = True  # at once: a second click while this runs is refused
        try:
            await self.telephony.remove_channel(self.bridge, self.channel_id)
            await self.telephony.start_channel_moh(
                self.channel_id, self.config.queues[leg.topic].music_class)
        except AriNotFound:
            raise CallControlError("the caller has hung up") from None
        except AriError as exc:  # not taken out: still talking
            self.on_hold = False
            raise CallControlError(f"could not put the caller on hold: {exc}") from None
        self.journal.add("hold", leg.topic, detail=f"by {leg.agent.id}")

    async def resume(self) -> None:
        """Back to the conversation, the music stopped first so that it never plays over it."""
        leg = self._talking()
        if not self.on_hold:
            raise CallControlError("the caller is not on hold")
        if self.consulting is not None:
            raise CallControlError("a consultation is going on: complete or cancel it")
        await self._off_hold(leg)

    async def _off_hold(self, leg: AgentLeg, why: str = "") -> None:
        try:
            await self.telephony.stop_channel_moh(self.channel_id)
            await self.telephony.add_channel(self.bridge, self.channel_id)
        except AriNotFound:
            raise CallControlError("the caller has hung up") from None
        except AriError as exc:
            raise CallControlError(f"could not take the caller off hold: {exc}") from None
        self.on_hold = False
        self.journal.add("resume", leg.topic, detail=why or f"by {leg.agent.id}")

    # --- attended transfer: the caller on hold, the agent talks to a colleague first ------

    def consult(self, agent: str) -> None:
        """Ring `agent` for the agent to talk to first (the caller on hold, with music);
        then `complete` gives them the caller, `cancel` takes the caller back. Carried out
        by the call's task (which owns its events): the answer comes as the steps say."""
        leg = self._talking()
        if self.consulting is not None or self._consult_asked:
            raise CallControlError("a consultation is going on already")
        target = self.desk.agents.get(agent)
        if target is None:
            raise CallControlError(f"no agent {agent!r}")
        if agent == leg.agent.id:
            raise CallControlError("the caller is talking to that agent already")
        if target.state is not AgentState.AVAILABLE:
            raise CallControlError(f"agent {agent} is {target.state.value}: not free to talk")
        self._consult_asked = True
        self.deliver(CallCommand(action="consult", agent=agent))

    def end_consultation(self, action: Literal["complete", "cancel", "swap"]) -> None:
        """complete: the colleague takes the caller; cancel: the caller is back with the agent,
        the colleague's phone hung up; swap: the agent goes to the caller (the colleague on
        hold, with music), or back to the colleague (the caller on hold)."""
        self._talking()
        consulting = self.consulting
        if consulting is None:
            raise CallControlError("no consultation is going on")
        if action != "cancel" and consulting.answered_at is None:
            raise CallControlError(f"{consulting.agent.id} has not answered yet")
        self.deliver(CallCommand(action=action))

    async def _consult(self, leg: AgentLeg, agent_id: str) -> AgentLeg:
        """The consultation, until it ends: the leg that talks to the caller afterwards (the
        colleague's once completed, else the agent's). The colleague not answering, refusing
        or hanging up gives the caller back to the agent."""
        assert self.queued is not None
        self._consult_asked = False
        target = self.desk.agents[agent_id]
        settings = self.config.queues[leg.topic]
        if target.state is not AgentState.AVAILABLE:  # taken meanwhile
            self.journal.add("consult_failed", leg.topic, detail=f"{agent_id} not free")
            self._tell_consult(leg, target.id, target.name, "over", "not_free")
            return leg
        if not self.on_hold:
            try:
                await self._put_on_hold(leg)
            except CallControlError:
                raise CallerHungUp() from None
        self.desk.record(target.offer(self.call_id, self.clock.now()))
        other = self.consulting = AgentLeg(self.legs, self, self.queued, target,
                                           f"{self.channel_id}-{uuid.uuid4().hex[:8]}")
        self.journal.add("consult", leg.topic, detail=f"{agent_id} by {leg.agent.id}")
        self._with_caller = False
        try:
            return await self._consulting(leg, other, settings)
        except (CallerHungUp, asyncio.CancelledError):
            # The caller gave up (or the service stops): the colleague's phone too.
            if self.consulting is other and other.channel_id in self.legs.registry.channels:
                await self.telephony.hangup(other.channel_id)
                if other.answered_at is not None:
                    other.wrap_up(settings, talked=False)
                else:
                    other.cancelled(gone=True)
            raise
        finally:
            self.consulting = None

    async def _consulting(self, leg: AgentLeg, other: AgentLeg, settings: QueueTopic
                          ) -> AgentLeg:
        clock = self.clock
        try:
            await self.telephony.originate(
                other.channel_id, other.agent.device, app=self.legs.app,
                appArgs=f"agent,{self.call_id}", callerId=leg.agent.id,
                timeout=str(round(settings.ring_timeout) + 5), formats=AGENT_LEG_FORMATS)
        except AriError as exc:
            other.unreachable(str(exc))
            await self._off_hold(leg, f"consultation: {other.agent.id} unreachable")
            self._tell_consult(leg, other.agent.id, other.agent.name, "over", "unreachable")
            return leg
        self._tell_consult(leg, other.agent.id, other.agent.name, "ringing")
        deadline = clock.monotonic() + settings.ring_timeout
        while True:
            ringing = other.answered_at is None
            event = await self.port.next_event(
                timeout=max(0.0, deadline - clock.monotonic()) if ringing else None)
            if event is None:  # rang out
                await self.telephony.hangup(other.channel_id)
                return await self._consult_failed(leg, other, "no_answer")
            if isinstance(event, ChannelTransfer):  # not while consulting: the phone keeps it
                if not event.state:  # (else Asterisk repeating our own answer to it)
                    await self._tell_phone(leg if event.channel_id == leg.channel_id
                                           else other, "channel_declined")
                continue
            if isinstance(event, CallCommand):
                if event.action == "cancel":
                    await self.telephony.hangup(other.channel_id)
                    return await self._consult_failed(leg, other, "cancelled")
                if event.action == "complete" and not ringing:
                    return await self._complete(leg, other)
                if event.action == "swap" and not ringing:
                    await self._swap(leg, other, settings)
                continue
            if event.channel_id == other.channel_id:
                if isinstance(event, StasisStart) and ringing:  # the colleague picked up
                    other.answered()
                    await self._transfers_to_us(other)
                    await self.telephony.add_channel(self.bridge, other.channel_id)
                    self.journal.add("consult_answered", leg.topic, detail=other.agent.id)
                    self._tell_consult(leg, other.agent.id, other.agent.name, "talking")
                elif isinstance(event, GONE):
                    return await self._consult_failed(leg, other,
                                                      "refused" if ringing else "hung_up")
            elif event.channel_id == leg.channel_id and isinstance(event, GONE):
                # The agent put the phone down: the colleague has the caller if they answered.
                if not ringing:
                    return await self._complete(leg, other, hung_up=True)
                await self.telephony.hangup(other.channel_id)
                other.cancelled()
                raise Lost(0, "the agent hung up during the consultation")

    async def _swap(self, leg: AgentLeg, other: AgentLeg, settings: QueueTopic) -> None:
        """The agent between the colleague and the caller: the one left waits with the
        line's music. Whoever is left goes out of the conversation before the other comes
        in: the caller never hears the colleague, nor the colleague the caller."""
        try:
            if self._with_caller:  # back to the colleague
                await self._put_on_hold(leg)
                await self.telephony.stop_channel_moh(other.channel_id)
                await self.telephony.add_channel(self.bridge, other.channel_id)
            else:  # to the caller
                await self.telephony.remove_channel(self.bridge, other.channel_id)
                await self.telephony.start_channel_moh(other.channel_id, settings.music_class)
                await self._off_hold(leg, f"consultation: back to the caller, {other.agent.id} "
                                          "on hold")
        except (CallControlError, AriError) as exc:
            # Somebody hung up (their hang-up comes next and ends it), or Asterisk refused a
            # step: the console keeps the phase it was told last.
            log.warning("call %s: swap in the consultation with %s: %s", self.call_id,
                        other.agent.id, exc)
            return
        self._with_caller = not self._with_caller
        self._tell_consult(leg, other.agent.id, other.agent.name,
                           "with_caller" if self._with_caller else "talking")

    def _tell_consult(self, leg: AgentLeg, agent: str, name: str, phase: ConsultPhase,
                      outcome: ConsultOutcome = "") -> None:
        self.desk.tell(leg.agent.id, Consultation(call_id=self.call_id, agent=agent,
                                                  agent_name=name, phase=phase,
                                                  outcome=outcome))

    async def _consult_failed(self, leg: AgentLeg, other: AgentLeg, why: ConsultOutcome
                              ) -> AgentLeg:
        """The colleague did not answer, refused or hung up, or the agent cancelled: the
        caller back to the agent, or (the topic's `transfer_failed`) told so first, or back
        to the line in their place."""
        if other.answered_at is not None:
            other.wrap_up(self.config.queues[leg.topic], talked=False)
        elif why == "cancelled":
            other.cancelled()
        else:
            other.missed(why)
        with_caller, self._with_caller = self._with_caller, False
        settings = self.config.queues[leg.topic]
        if not with_caller:  # (else the agent is talking to the caller already)
            if why != "cancelled":  # (the agent's own choice: they tell the caller)
                await self._say_not_reached(leg.topic, settings)
            if why != "cancelled" and settings.transfer_failed.consultation == "queue":
                self._transferring = leg.topic  # _talk sees the agent's leg end, as in a
                self.transferred = TransferredBy(  # blind transfer back to the line
                    agent=leg.agent.id, agent_name=leg.agent.name, from_topic=leg.topic,
                    note=f"consultazione con {other.agent.name} non riuscita",
                    at=self.clock.now())
                await self.telephony.hangup(leg.channel_id)
            else:
                try:
                    await self._off_hold(leg, f"consultation with {other.agent.id}: {why}")
                except CallControlError:
                    raise CallerHungUp() from None
        self._tell_consult(leg, other.agent.id, other.agent.name, "over", why)
        return leg

    async def _say_not_reached(self, topic: str, settings: QueueTopic) -> None:
        """The caller, on hold while a transfer was tried, hears that it did not work (if the
        topic says what), with the music stopped: whatever comes next starts its own."""
        try:
            await self.telephony.stop_channel_moh(self.channel_id)
        except AriNotFound:
            raise CallerHungUp() from None
        if (prompt := settings.transfer_failed.prompt) is not None:
            self.journal.add("transfer_failed", topic, prompt=prompt)
            await self.port.play([prompt], interrupt="", keep=True)

    async def _complete(self, leg: AgentLeg, other: AgentLeg, hung_up: bool = False
                        ) -> AgentLeg:
        """The colleague takes the caller: caller into the conversation, the agent out and
        wrapping up. queue_log: ATTENDEDTRANSFER as app_queue writes it."""
        assert leg.answered_at is not None and other.answered_at is not None
        if self._with_caller:  # the colleague, on hold, into the caller's conversation
            try:
                await self.telephony.stop_channel_moh(other.channel_id)
                await self.telephony.add_channel(self.bridge, other.channel_id)
            except AriNotFound:  # the colleague hung up meanwhile: the caller stays
                return await self._consult_failed(leg, other, "hung_up")
        else:
            try:
                await self.telephony.stop_channel_moh(self.channel_id)
                await self.telephony.add_channel(self.bridge, self.channel_id)
            except AriNotFound:
                raise CallerHungUp() from None
        self.legs.registry.unwatch(leg.channel_id)  # its hang-up is nobody's business now
        self._with_caller = False
        self._tell_consult(leg, other.agent.id, other.agent.name, "over", "completed")
        if not hung_up:
            await self.telephony.hangup(leg.channel_id)
        now = self.clock.now()
        talked = round((now - leg.answered_at).total_seconds())
        self._log("ATTENDEDTRANSFER", leg.agent.id, "BRIDGE", self.bridge,
                  self._in_line_for(leg.answered_at), talked, self.position_on_entry)
        self.journal.add("transfer", leg.topic,
                         detail=f"to agent {other.agent.id} by {leg.agent.id}, attended")
        leg.wrap_up(self.config.queues[leg.topic], talked=True)
        self.on_hold = False
        self.transferred = TransferredBy(agent=leg.agent.id, agent_name=leg.agent.name,
                                         from_topic=leg.topic, note="", at=now)
        self.records.call_changed(self.call_id, agent_id=other.agent.id)
        self._attended = True  # app_queue logs nothing more of the call after this
        return other

    async def transfer(self, topic: str | None = None, note: str = "",
                       agent: str | None = None, group: str | None = None,
                       on_accepted: Callable[[], Awaitable[None]] | None = None,
                       number: str | None = None) -> str:
        """Blind transfer to another topic's line, to a named agent, or to a second-level group
        (offered only to them, or to the group's members who take calls; a named agent: in
        their line for this topic if they serve it, else their first, back to it as anybody
        if they miss the ring or log out; a group: in this topic's line, back to it as anybody
        once no member is logged in): the caller keeps their place by arrival time (and their
        IVR journey); the agent's phone is hung up and they wrap up."""
        leg = self._talking()
        if self._transferring is not None:
            raise CallControlError("a transfer is under way already")
        if self.consulting is not None or self._consult_asked:
            raise CallControlError("a consultation is going on: complete or cancel it")
        for_agents: set[str] = set()
        if agent is not None:
            target = self.desk.agents.get(agent)
            if target is None:
                raise CallControlError(f"no agent {agent!r}")
            if agent == leg.agent.id:
                raise CallControlError("the caller is talking to that agent already")
            if target.state not in (AgentState.AVAILABLE, AgentState.ON_CALL,
                                    AgentState.WRAP_UP, AgentState.RINGING):
                raise CallControlError(f"agent {agent} is {target.state.value}: not taking "
                                       "calls now")
            served = sorted(target.topics, key=lambda t: target.topics[t])
            if not served:
                raise CallControlError(f"agent {agent} takes no calls")
            topic, for_agents = (leg.topic if leg.topic in target.topics else served[0]), {agent}
        elif group is not None:
            members = self.desk.group_members(group) - {leg.agent.id}
            if not members:
                raise CallControlError(f"no group {group!r}, or none of its other members "
                                       "takes calls")
            if not members & self.desk.logged_in():
                raise CallControlError(f"nobody of group {group!r} is logged in")
            topic, for_agents = leg.topic, members
        elif number is not None:
            try:
                self._outside = self._outside_number(number)
            except RecallError as exc:
                raise CallControlError(f"{number!r}: {exc.reason}") from None
            topic = leg.topic  # if it does not answer: back to this line, in their place
        elif topic is None:
            raise CallControlError("say where to: a topic, an agent, a group or a number")
        elif topic not in self.config.queues:
            raise CallControlError(f"no topic {topic!r}")
        elif topic == leg.topic:
            raise CallControlError(f"the caller is in {topic!r}'s line already")
        self._transferring, self._for_agent, self._for_group = topic, agent, group
        self._for_agents = frozenset(for_agents)
        self.transferred = TransferredBy(agent=leg.agent.id, agent_name=leg.agent.name,
                                         from_topic=leg.topic, note=note, group=group or "",
                                         at=self.clock.now())
        try:  # out of the conversation first: the caller never hears the agent hang up
            if self.on_hold and self._outside is None:
                await self.telephony.stop_channel_moh(self.channel_id)
            elif not self.on_hold:
                await self.telephony.remove_channel(self.bridge, self.channel_id)
                if self._outside is not None:  # the line's music while the number rings
                    await self.telephony.start_channel_moh(
                        self.channel_id, self.config.queues[leg.topic].music_class)
        except AriNotFound:
            self._transferring, self._outside = None, None
            raise CallControlError("the caller has hung up") from None
        except AriError as exc:
            log.warning("call %s: out of the conversation for the transfer: %s",
                        self.call_id, exc)
        if on_accepted is not None:
            await on_accepted()
        await self.telephony.hangup(leg.channel_id)  # the talk ends: _talk carries on
        return topic

    async def _transferred(self, leg: AgentLeg, topic: str) -> None:
        """The agent's part after a blind transfer: queue_log as app_queue writes it, the
        wrap-up, the conversation's bridge closed (the next agent opens it again)."""
        assert leg.answered_at is not None and self.transferred is not None
        talked = round((self.clock.now() - leg.answered_at).total_seconds())
        # The extension and context app_queue writes: the agent's device's, the group's (the
        # second level: figures count it apart), or the line's.
        if self._outside is not None:
            to, exten, context = self._outside.e164, self._outside.e164, OUTSIDE_CONTEXT
        elif self._for_agent:
            to, exten, context = f"agent {self._for_agent}", self._for_agent, "centralino-agents"
        elif self._for_group:
            to, exten, context = f"group {self._for_group}", self._for_group, SECOND_LEVEL_CONTEXT
        else:
            to, exten, context = topic, topic, "centralino"
        self._log("BLINDTRANSFER", leg.agent.id, exten, context,
                  self._in_line_for(leg.answered_at), talked, self.position_on_entry)
        self.journal.add("transfer", leg.topic,
                         detail=f"to {to} by {leg.agent.id}" + (
                             f": {self.transferred.note}" if self.transferred.note else ""))
        leg.wrap_up(self.config.queues[leg.topic], talked=True)
        self.leg, self.on_hold, self._transferring = None, False, None
        try:
            await self.legs.bridges.close_call(self.bridge_of)
        except AriError as exc:
            log.warning("call %s: closing the conversation's bridge: %s", self.call_id, exc)

    async def _call_outside(self, outside: OutsideNumber) -> bool:
        """Ring the number the agent transferred the caller to (the caller hears the line's
        music); answered, they talk until one hangs up: True. Not answered, busy or failed:
        False, the caller goes back to their line, in their place."""
        channel = f"{self.channel_id}{OUTSIDE_LEG}{uuid.uuid4().hex[:8]}"
        self.legs.registry.watch(channel, self)
        try:
            answered = await self._ring_outside(channel, outside)
            if answered:
                self.outside_talk = True
                await self.telephony.stop_channel_moh(self.channel_id)
                await self.legs.bridges.open_call(self.bridge_of, f"call {self.call_id}")
                await self.telephony.add_channel(self.bridge, f"{self.channel_id},{channel}")
                self.journal.add("outside_answered", detail=outside.e164)
                while True:  # the caller hanging up raises (CallerHungUp)
                    event = await self.port.next_event()
                    if event is not None and event.channel_id == channel and isinstance(
                            event, GONE):
                        break
                self.ended_by = "outside"
                await self.telephony.hangup(self.channel_id)
                return True
        except CallerHungUp:
            await self.telephony.hangup(channel)
            raise
        finally:
            self.legs.registry.unwatch(channel)
            if self.outside_talk:
                self.legs.spawn(self.legs.bridges.close_call(self.bridge_of))
        assert self.queued is not None
        await self._say_not_reached(self.queued.topic, self.config.queues[self.queued.topic])
        return False

    async def _ring_outside(self, channel: str, outside: OutsideNumber) -> bool:
        """Until the number answers (True), or it does not (False, with why in the journal)."""
        clock = self.clock
        try:
            await self.telephony.originate(
                channel, outside.dial, app=self.legs.app,
                appArgs=f"outside,{self.call_id}", callerId=outside.caller_id or "anonymous",
                timeout=str(round(outside.ring_timeout) + 5), formats=AGENT_LEG_FORMATS)
        except AriError as exc:
            self.journal.add("outside_failed", detail=f"{outside.e164}: {exc}"[:200])
            return False
        deadline = clock.monotonic() + outside.ring_timeout
        while (left := deadline - clock.monotonic()) > 0:
            event = await self.port.next_event(timeout=left)
            if event is None:
                break
            if event.channel_id != channel:
                continue
            if isinstance(event, StasisStart):
                return True
            if isinstance(event, GONE):
                cause = getattr(event, "cause", 0)
                self.journal.add("outside_failed", detail=f"{outside.e164}: "
                                 f"{citizen_outcome(cause) if cause else 'hung up'}")
                return False
        await self.telephony.hangup(channel)
        self.journal.add("outside_failed", detail=f"{outside.e164}: no answer in "
                                                  f"{outside.ring_timeout:g} s")
        return False

    def _talking(self) -> AgentLeg:
        leg = self.leg
        if leg is None or leg.answered_at is None:
            raise CallControlError("no conversation in progress on this call")
        return leg

    async def _transfers_to_us(self, leg: AgentLeg) -> None:
        """A SIP phone's transfer key sends a REFER: Asterisk must leave it to us (its own
        handling would take the caller out of centralino's bridge)."""
        if not leg.agent.device.upper().startswith("PJSIP/"):
            return
        try:
            await self.telephony.set_var(leg.channel_id, "PJSIP_TRANSFER_HANDLING()", "ari-only")
        except AriError as exc:  # an Asterisk before 22.3: its own handling, as before
            log.warning("call %s: %s's phone transfers stay Asterisk's: %s",
                        self.call_id, leg.agent.id, exc)
