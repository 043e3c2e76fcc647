"""A typed fake of what sessions ask of Asterisk (centralino.telephony.Telephony), on a
virtual clock, and a desk of parts to run calls and recalls on it without Asterisk.

It answers as Asterisk 22 does where the sessions care: AriNotFound once a channel is gone,
409 for a bridge that exists, 422 for a channel that is not in a bridge; events come back
through the registry, as the service routes them. Phones are scripted by endpoint: answer
after some seconds, refuse, never answer, or be unregistered (the originate fails).
Integration tests prove the same behaviour against the real Asterisk.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from centralino.agentleg import LegParts
from centralino.ari.client import AriError, AriNotFound
from centralino.ari.models import (
    CallerId,
    Channel,
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    ChannelTransfer,
    DialplanCEP,
    Event,
    Playback,
    PlaybackFinished,
    ReferDestination,
    ReferredBy,
    ReferTo,
    StasisEnd,
    StasisStart,
)
from centralino.calls import CallParts, CallSession, Setup
from centralino.clock import Timer, VirtualClock
from centralino.desk import Desk
from centralino.registry import Registry
from centralino.storage.records import Insert, Record, Records, Update
from centralino.telephony import Bridges
from cti.config import load_agents_config
from cti.recalls import OutsideNumber, RecallSettings, classify
from ivr.config import CallConfig, load_call_config
from ivr.hours import Override
from queue_manager.queues import QueueManager

CONFIG = Path(__file__).resolve().parents[1] / "integration" / "config"
START = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)  # a Wednesday, 10:00 in Rome
PROMPT_SECONDS = 2.0  # how long each prompt plays


@dataclass
class Phone:
    """An agent's (or citizen's) phone, by how it behaves when rung."""

    answer_after: float | None = 1.0  # None: rings until the caller gives up
    refuse_after: float | None = None  # hangs up ringing (busy, declined)
    unregistered: bool = False
    drop_on_answer: bool = False  # answers and hangs up at once (a bridge fails halfway)


@dataclass
class FakeChannel:
    id: str
    endpoint: str = ""
    state: str = "Ring"
    in_stasis: bool = False
    args: list[str] = field(default_factory=list)
    timers: list[Timer] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    role: str | None = None  # its bridge role, as addChannel's `role` sets it


@dataclass
class FakeBridge:
    kind: str
    members: set[str] = field(default_factory=set)


class FakeAsterisk:
    def __init__(self, clock: VirtualClock, registry: Registry):
        self.clock, self.registry = clock, registry
        self.channels: dict[str, FakeChannel] = {}
        self.bridges: dict[str, FakeBridge] = {}
        self.channel_music: dict[str, str] = {}  # a channel's own music (a call on hold)
        self.transfer_answers: list[tuple[str, str]] = []  # (channel, state) told to phones
        self.phones: dict[str, Phone] = {}
        self.played: dict[str, list[str]] = {}  # media played to each channel, in order
        self.hung_up: list[str] = []  # channels the service hung up
        self.originated: list[tuple[str, str, dict[str, str]]] = []
        self._playbacks: dict[str, tuple[str, Timer]] = {}
        self._ids = itertools.count(1)

    # --- what a test does as the world ----------------------------------------------------

    def call_in(self, number: str, caller: str = "0612345678") -> Channel:
        """A caller's channel entering Stasis for `number` (the session is made by the test)."""
        cid = f"caller-{next(self._ids)}"
        self.channels[cid] = FakeChannel(cid, "PJSIP/trunk", "Ring", in_stasis=True)
        return Channel(id=cid, name=f"PJSIP/trunk-{cid}", state="Ring",
                       caller=CallerId(number=caller, name=""),
                       dialplan=DialplanCEP(exten=number))

    def press(self, channel: str, digit: str) -> None:
        self._emit(ChannelDtmfReceived(type="ChannelDtmfReceived", channel=self._model(channel),
                                       digit=digit))

    def hang_up(self, channel: str, soft: bool = False) -> None:
        """The far end (or, `soft`, Asterisk itself) ends the channel."""
        if channel not in self.channels:
            return
        self._emit(ChannelHangupRequest(type="ChannelHangupRequest",
                                        channel=self._model(channel), cause=16, soft=soft))
        self._gone(channel, 16)

    def refer(self, channel: str, destination: str = "", protocol_id: str = "") -> None:
        """The SIP phone on `channel` presses its transfer key (a REFER that Asterisk, in
        ari-only mode, only reports): blind to `destination`, or attended (`protocol_id`)."""
        self._emit(ChannelTransfer(
            type="ChannelTransfer",
            refer_to=ReferTo(requested_destination=ReferDestination(
                destination=destination, protocol_id=protocol_id)),
            referred_by=ReferredBy(source_channel=self._model(channel))))

    def bridge_of(self, channel: str) -> str | None:
        return next((b for b, bridge in self.bridges.items() if channel in bridge.members), None)

    def leg_of(self, agent_device: str) -> str | None:
        """The live channel ringing or talking on an agent's device."""
        return next((c.id for c in self.channels.values() if c.endpoint == agent_device), None)

    # --- Telephony ------------------------------------------------------------------------

    async def answer(self, channel: str) -> None:
        self._live(channel).state = "Up"

    async def play(self, channel: str, playback_id: str, media: list[str], lang: str) -> None:
        self._live(channel)
        self.played.setdefault(channel, []).extend(media)
        timer = self.clock.call_later(PROMPT_SECONDS * len(media),
                                      lambda: self._finish(playback_id))
        self._playbacks[playback_id] = (channel, timer)

    async def stop_playback(self, playback_id: str) -> None:
        if playback_id in self._playbacks:
            self._playbacks[playback_id][1].cancel()
            self._finish(playback_id)

    async def hangup(self, channel: str, reason: str = "normal") -> None:
        if channel in self.channels:
            self.hung_up.append(channel)
            self._gone(channel, 16)

    async def originate(self, channel_id: str, endpoint: str, **params: str) -> dict[str, Any]:
        phone = self.phones.get(endpoint, Phone())
        if phone.unregistered:
            raise AriError(f"POST /channels/{channel_id}: 500 Allocation failed", 500)
        self.originated.append((channel_id, endpoint, params))
        leg = self.channels[channel_id] = FakeChannel(channel_id, endpoint, "Ring",
                                                      args=params["appArgs"].split(","))
        if phone.refuse_after is not None:
            leg.timers.append(self.clock.call_later(phone.refuse_after,
                                                    lambda: self._gone(channel_id, 21)))
        elif phone.answer_after is not None:
            leg.timers.append(self.clock.call_later(phone.answer_after,
                                                    lambda: self._picked_up(channel_id)))
        return {"id": channel_id}

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> dict[str, Any]:
        if bridge_id in self.bridges:
            raise AriError(f"POST /bridges/{bridge_id}: 409 Bridge with this id exists", 409)
        self.bridges[bridge_id] = FakeBridge(kind)
        return {"id": bridge_id}

    async def add_channel(self, bridge_id: str, channel: str, role: str | None = None) -> None:
        bridge = self._bridge(bridge_id)
        for cid in channel.split(","):
            if not self._live(cid).in_stasis:
                raise AriError(f"addChannel: 422 Channel {cid} not in Stasis application", 422)
        for cid in channel.split(","):
            if (old := self.bridge_of(cid)) is not None:
                self.bridges[old].members.discard(cid)
            bridge.members.add(cid)
            if role is not None:
                self.channels[cid].role = role

    async def remove_channel(self, bridge_id: str, channel: str) -> None:
        bridge = self._bridge(bridge_id)
        self._live(channel)
        if channel not in bridge.members:
            raise AriError("removeChannel: 422 Channel not in this bridge", 422)
        bridge.members.discard(channel)

    async def start_channel_moh(self, channel: str, music_class: str) -> None:
        self.channel_music[self._live(channel).id] = music_class

    async def stop_channel_moh(self, channel: str) -> None:
        self._live(channel)
        self.channel_music.pop(channel, None)

    async def set_var(self, channel: str, name: str, value: str) -> None:
        self._live(channel).variables[name] = value

    async def transfer_progress(self, channel: str, state: str) -> None:
        self._live(channel)
        self.transfer_answers.append((channel, state))

    def music_of(self, channel: str) -> str | None:
        """The music class a channel hears: its own (on hold), or, as Asterisk's holding
        bridges do for a "holding_participant" with no idle mode, its CHANNEL(musicclass)."""
        if channel in self.channel_music:
            return self.channel_music[channel]
        bridge = self.bridge_of(channel)
        chan = self.channels.get(channel)
        if (bridge is None or chan is None or self.bridges[bridge].kind != "holding"
                or chan.role != "holding_participant"):
            return None  # a stasis holding bridge's default: silence
        return chan.variables.get("CHANNEL(musicclass)", "default")

    async def delete_bridge(self, bridge_id: str) -> None:
        self.bridges.pop(bridge_id, None)

    # --- inside ---------------------------------------------------------------------------

    def _live(self, channel: str) -> FakeChannel:
        found = self.channels.get(channel)
        if found is None:
            raise AriNotFound(f"channel {channel}: 404 Channel not found", 404)
        return found

    def _bridge(self, bridge_id: str) -> FakeBridge:
        found = self.bridges.get(bridge_id)
        if found is None:
            raise AriNotFound(f"bridge {bridge_id}: 404 Bridge not found", 404)
        return found

    def _model(self, channel: str) -> Channel:
        return Channel(id=channel, state=self.channels[channel].state
                       if channel in self.channels else "Down")

    def _emit(self, event: Event) -> None:
        """Routed as the service routes Asterisk's events: to the channel's party."""
        party = self.registry.channels.get(event.channel_id or "")
        if party is not None:
            party.deliver(event)

    def _picked_up(self, channel: str) -> None:
        leg = self.channels.get(channel)
        if leg is None:
            return
        leg.state, leg.in_stasis = "Up", True
        self._emit(StasisStart(type="StasisStart", channel=self._model(channel), args=leg.args))
        if self.phones.get(leg.endpoint, Phone()).drop_on_answer:
            self._gone(channel, 16)

    def _finish(self, playback_id: str) -> None:
        channel, _ = self._playbacks.pop(playback_id)
        self._emit(PlaybackFinished(type="PlaybackFinished", playback=Playback(
            id=playback_id, target_uri=f"channel:{channel}", state="done")))

    def _gone(self, channel: str, cause: int) -> None:
        gone = self.channels.pop(channel, None)
        if gone is None:
            return
        self.channel_music.pop(channel, None)
        for timer in gone.timers:
            timer.cancel()
        for playback, (target, timer) in list(self._playbacks.items()):
            if target == channel:
                timer.cancel()
                del self._playbacks[playback]
        if (bridge := self.bridge_of(channel)) is not None:
            self.bridges[bridge].members.discard(channel)
        model = Channel(id=channel, state="Down")
        if gone.in_stasis:
            self._emit(StasisEnd(type="StasisEnd", channel=model))
        self._emit(ChannelDestroyed(type="ChannelDestroyed", channel=model, cause=cause,
                                    cause_txt="Normal Clearing" if cause == 16 else "Busy"))


class Collected:
    """The records the service would write, in order (a Records sink)."""

    def __init__(self) -> None:
        self.records: list[Record] = []

    def put(self, record: Record) -> None:
        self.records.append(record)

    def queue_log(self, topic: str | None = None) -> list[tuple[str, str]]:
        """(agent, event) of the queue_log lines, in order."""
        return [(r.values["agent"], r.values["event"]) for r in self.records
                if isinstance(r, Insert) and r.table == "queue_log"
                and (topic is None or r.values["queue"] == topic)]

    def call(self, call_id: str) -> dict[str, Any]:
        """The call's row as the inserts and updates leave it."""
        row: dict[str, Any] = {}
        for r in self.records:
            if r.table != "calls":
                continue
            if (r.values["id"] if isinstance(r, Insert) else r.key) == call_id:
                row.update(r.values)
        return row

    def offers(self) -> list[dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for r in self.records:
            if isinstance(r, Insert) and r.table == "offers":
                rows[r.values["id"]] = dict(r.values)
            elif isinstance(r, Update) and r.table == "offers" and r.key in rows:
                rows[r.key].update(r.values)
        return list(rows.values())


class Callbacks:
    """Stands in for the recall scheduler's `from_caller`: what callers asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str]] = []
        self.refuse: Exception | None = None

    async def from_caller(self, topic: str, number: str, name: str, since: datetime,
                          boost: float, line: str) -> Any:
        if self.refuse is not None:
            raise self.refuse
        self.asked.append((topic, number))
        return type("Row", (), {"id": f"recall-{len(self.asked)}"})()

    def outside(self, number: str) -> OutsideNumber:
        """As the recall scheduler: the recall rules (here their defaults: Italian fixed and
        mobile numbers), dialled through the simulated citizens."""
        settings = RecallSettings(caller_id="0612345000", ring_timeout=5)
        target = classify(number, settings)
        return OutsideNumber(target.e164, settings.dial_string(target.e164), settings.caller_id,
                             settings.ring_timeout)


class Catalog:
    """Prompt ids as readable media ("prompt:it/welcome"), built or not."""

    def uri(self, prompt_id: str, language: str) -> str:
        return prompt_id if prompt_id.startswith("sound:") else f"prompt:{language}/{prompt_id}"


class History:
    """No earlier call; the written requests a test gives, by E.164 phone number."""

    def __init__(self) -> None:
        self.tickets: dict[str, list[Any]] = {}

    async def previous_contacts(self, caller: str, before: datetime, limit: int = 5) -> list[Any]:
        return []

    async def previous_tickets(self, phone: str | None, limit: int = 5,
                               call_id: str | None = None) -> list[Any]:
        mine = [t for tickets in self.tickets.values() for t in tickets
                if call_id and getattr(t, "call_id", None) == call_id]
        return [*mine, *(t for t in self.tickets.get(phone or "", []) if t not in mine)][:limit]


class Desk_:
    """Calls on the fake Asterisk: the real desk, lines, records and sessions."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.registry = Registry()
        self.asterisk = FakeAsterisk(clock, self.registry)
        self.collected = Collected()
        self.records = Records(self.collected)
        self.queues = QueueManager()
        self.desk = Desk(clock, self.records, self.queues, self.registry)
        self.call_config: CallConfig = load_call_config(CONFIG, CONFIG / "manifest.yaml")
        topics = set(self.call_config.queues)
        self.desk.configure(load_agents_config(CONFIG / "agents.yaml", topics))
        self.spawned: list[Any] = []
        self.legs = LegParts(self.asterisk, Bridges(self.asterisk, clock), clock, self.records,
                             self.desk, self.queues, self.registry, "centralino", self._spawn)
        self.callbacks = Callbacks()
        self.overrides: dict[str, Override] = {}
        self.history = History()
        self.parts = CallParts(self.legs, self.history, self.callbacks, self.overrides)
        self.catalog: Any = Catalog()

    def _spawn(self, coro: Any) -> Any:
        task = asyncio.ensure_future(coro)
        self.spawned.append(task)
        return task

    def call(self, number: str, caller: str = "0612345678") -> CallSession:
        channel = self.asterisk.call_in(number, caller)
        session = CallSession(self.parts, Setup(self.call_config, "test", self.catalog),
                              channel, number)
        self.registry.watch(channel.id, session)
        return session
