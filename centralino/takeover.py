"""What a (re)connected service takes over from Asterisk: the calls a previous run left there.

Calls stay up in Asterisk while the service stops. When the events socket (re)connects, the
service ends the calls whose channel vanished meanwhile and takes over the others:
conversations go on (the agent on call, the record's call id kept), waiting callers get back
their place in the line (and the agents they were transferred to), a consultation keeps the
first agent and lets the colleague go, a talk with a number outside is left to end by itself,
recall conversations go on and recall legs still ringing are hung up. Everything else starts
its flow again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from centralino.agentleg import GONE
from centralino.ari.client import AriClient, AriError
from centralino.ari.models import Channel, Event
from centralino.callport import ChannelGone
from centralino.calls import CallSession, ResumeTalk
from centralino.desk import Desk
from centralino.recalls.placing import RECALL_CHANNEL, Recalls, RecallSession
from centralino.registry import Registry
from centralino.running import RunningConfig
from centralino.storage.store import Store
from centralino.telephony import CALL_BRIDGE, QUEUE_BRIDGE, Bridges
from centralino.transfers import OUTSIDE_LEG

log = logging.getLogger("centralino")


class Takeover:
    def __init__(self, ari: AriClient, store: Store, desk: Desk, registry: Registry,
                 bridges: Bridges, recalls: Recalls, running: RunningConfig, app: str,
                 spawn: Callable[[Any], Any],
                 call_for: Callable[..., CallSession],
                 start: Callable[[CallSession], None]):
        self._ari, self._store, self._desk, self._registry = ari, store, desk, registry
        self._bridges, self._recalls, self._running, self._app = bridges, recalls, running, app
        self._spawn = spawn
        self._call_for = call_for  # a call session on the configuration running now
        self._start = start  # watched in the registry and run

    async def resync(self) -> None:
        """After (re)connecting: end calls whose channel vanished, adopt calls we do not know
        (the service restarted while they were in Stasis) and re-create queue bridges."""
        self._bridges.forget()
        known = dict(self._registry.channels)  # calls that start from now on are live by definition
        try:
            live = await self._ari.channel_ids()
            bridges = await self._ari.request("GET", "/bridges")
        except AriError as exc:
            log.error("resync after connecting failed: %s", exc)
            return
        for channel_id, session in known.items():
            if channel_id not in live and self._registry.channels.get(channel_id) is session:
                session.deliver(ChannelGone(type="ChannelGone", gone=channel_id))
        # Recall conversations first: their agents must be on call before any adopted caller
        # asks for an agent.
        await self._adopt_recall_talks(bridges)
        await self._adopt({c for c in live - set(known) if not c.startswith(RECALL_CHANNEL)},
                          bridges)
        await self._stale_recall_legs(bridges)
        await self._recalls.start()  # after the clean-up: never two dials at once

    async def _adopt_recall_talks(self, bridges: list[dict[str, Any]]) -> None:
        """Recall conversations a previous run left going in Asterisk: their agents are on
        call until they end (their attempts were stored when that run stopped)."""
        prefix = CALL_BRIDGE.format(call="")
        for bridge in bridges:
            channels = sorted(bridge["channels"])  # the agent's leg "...-a", the citizen's "-c"
            recall_id = bridge["id"].removeprefix(prefix)
            if (not bridge["id"].startswith(prefix) or len(channels) != 2
                    or not all(c.startswith(RECALL_CHANNEL) for c in channels)
                    or recall_id in self._registry.calls
                    or any(c in self._registry.channels for c in channels)):
                continue
            row = await self._store.get_recall(recall_id)
            answered = [o for o in await self._store.offers_for(recall_id) if o.answered_at]
            agent = self._desk.agents.get(answered[-1].agent_id) if answered else None
            if row is None or agent is None or row.topic not in self._running.config.call.queues:
                continue
            offer = answered[-1]
            assert offer.answered_at is not None
            log.info("adopting recall %s: %s is talking to %s", recall_id, agent.id, row.number)
            self._desk.resume_call(agent.id, recall_id)
            session = RecallSession(self._recalls.parts, self._recalls, row)
            self._registry.live(session)
            task = self._spawn(session.resume(agent, channels[0], channels[1], offer.answered_at,
                                             offer.id))

            def forget(_: object, ended: RecallSession = session) -> None:
                self._registry.over(ended)

            task.add_done_callback(forget)

    async def _stale_recall_legs(self, bridges: list[dict[str, Any]]) -> None:
        """Recall legs of a previous run still ringing: hang them up (their requests are
        waiting again). A recall conversation going on is left alone (not adopted)."""
        bridged = {ch for b in bridges if b["id"].startswith(CALL_BRIDGE.format(call=""))
                   and len(b["channels"]) == 2 for ch in b["channels"]}
        try:
            for channel in await self._ari.request("GET", "/channels"):
                cid = channel["id"]
                base = cid.split(";")[0]  # a Local channel's far half goes with its near one
                if (cid.startswith(RECALL_CHANNEL) and base not in self._registry.channels
                        and base not in bridged):
                    log.info("hanging up %s, a recall leg of the previous run", cid)
                    await self._ari.hangup(cid)
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
            for channel in await self._ari.request("GET", "/channels"):
                cid = channel["id"]
                if cid not in channels and any(cid.startswith(c + "-") for c in channels):
                    await self._ari.hangup(cid)
        except AriError as exc:
            log.error("could not list channels to stop stale rings: %s", exc)
        for channel_id in sorted(channels - legs, key=lambda c: c not in talking):
            data = await self._ari.get_channel(channel_id)
            if data is None or channel_id in self._registry.channels:  # gone, or StasisStart came
                continue
            channel = Channel.model_validate(data)
            if channel.dialplan.app_name.lower() == "stasis" and \
                    channel.dialplan.app_data.partition(",")[0] != self._app:
                continue  # subscribed to (we made it), but another application's: a phone's
            number = channel.dialplan.app_data.partition(",")[2] or channel.dialplan.exten
            if channel_id in talking:
                resume = await self._resume_talk(*talking[channel_id],
                                                 on_hold=channel_id in held)
                if resume is not None:
                    log.info("adopting call on %s talking to %s", channel_id, resume.agent_id)
                    session = self._call_for(channel, number, resume_talk=resume, resumed=True)
                    # Now, before any adopted caller asks for an agent: this one is busy.
                    self._desk.resume_call(resume.agent_id, session.info.call_id)
                    self._start(session)
                    continue
            topic = waiting_in.get(channel_id)
            since, first_id, waiting_for = None, None, frozenset[str]()
            if topic and (found := await self._store.waiting_since(channel_id)):
                first_id, since, waiting_for = found  # back in their place in the line
            # Transferred to agents by name or group: for those of them still logged in.
            waiting_for &= self._desk.logged_in()
            log.info("adopting call on %s (%s) %s", channel_id, number,
                     f"waiting in {topic}" + (f" for {', '.join(sorted(waiting_for))}"
                                              if waiting_for else "")
                     if topic else "from the start of its flow")
            self._start(self._call_for(channel, number, resume_topic=topic,
                                           resume_since=since, resume_for=waiting_for,
                                           queue_log_id=first_id, resumed=True))

    def _outside_talk(self, caller: str, outside: str) -> None:
        """A caller and the number outside they were transferred to, talking: nothing to
        adopt, but whoever hangs up first, the other is hung up too."""
        registry, ari, spawn = self._registry, self._ari, self._spawn

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
        answered = [o for o in await self._store.offers_for(old_call_id) if o.answered_at]
        colleague = self._desk.agents.get(answered[-1].agent_id) if len(answered) >= 2 else None
        if colleague is None:
            return None
        names = {leg: (await self._ari.get_channel(leg) or {}).get("name", "")
                 for leg in (one, other)}
        theirs = next((leg for leg, name in names.items() if self._phone_of(colleague.id, name)),
                      None)
        if theirs is None:
            return None
        log.info("ending the consultation of call %s: hanging up %s's leg %s", old_call_id,
                 colleague.id, theirs)
        await self._ari.hangup(theirs)
        return other if theirs == one else one

    async def _resume_talk(self, old_call_id: str, leg: str, on_hold: bool
                           ) -> ResumeTalk | None:
        record = await self._store.get_call(old_call_id)
        answered = [o for o in await self._store.offers_for(old_call_id) if o.answered_at]
        # The leg's agent: the last answered offer of the agent whose phone it is (not simply
        # the last answered: a colleague consulted, then let go, answered after them).
        name = ((await self._ari.get_channel(leg)) or {}).get("name", "")
        theirs = [o for o in answered if self._phone_of(o.agent_id, name)] or answered
        if (record is None or not theirs or record.topic is None or record.queued_at is None
                or theirs[-1].agent_id not in self._desk.agents):
            return None
        return ResumeTalk(old_call_id, record.queue_log_id or old_call_id, leg,
                          theirs[-1].agent_id, record.topic, record.queued_at,
                          theirs[-1].answered_at, on_hold)  # type: ignore[arg-type]

    def _phone_of(self, agent_id: str, channel_name: str) -> bool:
        """Whether the channel is one Asterisk made to ring this agent's device (its name is
        the device's, then "-" and a sequence number)."""
        agent = self._desk.agents.get(agent_id)
        return agent is not None and channel_name.lower().startswith(agent.device.lower() + "-")
