"""Simulated callers through the real Asterisk, for `centralino call`, tests and benchmarks.

A call is a Local channel originated into the inbound context: its `;2` half runs the real
dialplan into centralino's Stasis application; its `;1` half (the caller's phone) sits in a
Stasis application of our own, from which we send DTMF, hang up and listen. What the caller
heard is read from Asterisk's own playback events, not from centralino's bookkeeping.
"""

from __future__ import annotations

import asyncio
import io
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import soundfile

from centralino.ari.client import AriClient, AriError
from centralino.ari.models import (
    ChannelDestroyed,
    Event,
    PlaybackFinished,
    PlaybackStarted,
)
from centralino.dialplan import INBOUND_CONTEXT


@dataclass
class SimCall:
    caller: SimCaller
    id: str  # the caller's half (;1)
    started: list[str] = field(default_factory=list)  # media URIs, in the order they started
    finished: list[tuple[str, str]] = field(default_factory=list)  # (media, state)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    playing: int = 0  # playbacks started and not finished on the service's half

    @property
    def service_half(self) -> str:
        return self.id + ";2"

    @property
    def heard(self) -> list[str]:
        """Prompt ids (or standard sounds) in the order they started playing."""
        return [media_name(m) for m in self.started]

    def _on(self, event: Event) -> None:
        if isinstance(event, PlaybackStarted) and event.channel_id == self.service_half:
            self.started.append(event.playback.media_uri)
            self.playing += 1
        elif isinstance(event, PlaybackFinished) and event.channel_id == self.service_half:
            self.finished.append((event.playback.media_uri, event.playback.state))
            self.playing = max(0, self.playing - 1)
        elif isinstance(event, ChannelDestroyed):
            self.ended.set()
        self._changed.set()

    async def _until(self, check: Callable[[], bool], timeout: float) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    async def wait_heard(self, prompt: str, count: int = 1, timeout: float = 30) -> None:
        """Until `prompt` has started playing `count` times."""
        await self._until(lambda: self.heard.count(prompt) >= count or self.ended.is_set(),
                          timeout)
        if self.heard.count(prompt) < count:
            raise AssertionError(f"call ended before {prompt} played; heard {self.heard}")

    async def wait_idle(self, quiet: float = 0.4, timeout: float = 60) -> None:
        """Until nothing has played for `quiet` seconds (the service waits for a key, or the
        caller is on hold), or the call ended."""
        async with asyncio.timeout(timeout):
            while not self.ended.is_set():
                if self.playing == 0:
                    seen = len(self.started)
                    await asyncio.sleep(quiet)
                    if self.playing == 0 and len(self.started) == seen:
                        return
                else:
                    self._changed.clear()
                    await self._changed.wait()

    async def wait_ended(self, timeout: float = 30) -> None:
        await asyncio.wait_for(self.ended.wait(), timeout)

    async def press(self, keys: str, gap: float = 0.15) -> None:
        for key in keys:
            await self.caller.ari.send_dtmf(self.id, key, duration_ms=80)
            await asyncio.sleep(gap)

    async def hangup(self) -> None:
        await self.caller.ari.hangup(self.id)
        await self.wait_ended(5)

    async def listen(self, seconds: float) -> float:
        """Record what the caller hears for `seconds`; return its RMS level (0 = silence)."""
        name = f"sim-{uuid.uuid4().hex[:12]}"
        ari = self.caller.ari
        await ari.request("POST", f"/channels/{self.id}/record",
                          {"name": name, "format": "wav",
                           "maxDurationSeconds": str(max(1, round(seconds)))})
        await asyncio.sleep(seconds + 0.5)
        try:
            await ari.request("POST", f"/recordings/live/{name}/stop")
        except AriError:
            pass  # already stopped at maxDurationSeconds
        body = await ari.raw("GET", f"/recordings/stored/{name}/file")
        await ari.request("DELETE", f"/recordings/stored/{name}")
        data, _ = soundfile.read(io.BytesIO(body), dtype="float32")
        return float(np.sqrt(np.mean(np.square(data)))) if len(data) else 0.0


# What a simulated caller needs to know: what plays, and when the call is over.
CALLER_EVENTS = ("PlaybackStarted", "PlaybackFinished", "ChannelDestroyed")


def media_name(uri: str) -> str:
    """sound:http://h/prompts/it/<hash>/welcome.wav -> welcome; sound:digits/3 -> digits/3."""
    target = uri.removeprefix("sound:")
    if target.startswith("http"):
        return target.rsplit("/", 1)[-1].removesuffix(".wav")
    return target


class SimCaller:
    """Places simulated calls. Use `async with SimCaller(url, user, password) as caller:`."""

    def __init__(self, url: str, username: str, password: str, app: str | None = None):
        self.ari = AriClient(url, username, password, app or f"sim-{uuid.uuid4().hex[:8]}")
        self.calls: dict[str, SimCall] = {}
        self._events: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        await self.ari.__aenter__()
        try:
            await self.ari.check()
        except BaseException:
            await self.ari.__aexit__()  # no HTTP session left for the garbage collector
            raise

        async def nothing() -> None:
            return None

        self._events = asyncio.create_task(
            self.ari.run_events(self._on_event, nothing, event_types=CALLER_EVENTS))
        await asyncio.wait_for(self.ari.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for call in list(self.calls.values()):
            if not call.ended.is_set():
                await self.ari.hangup(call.id)
        if self._events:
            self._events.cancel()
        await self.ari.__aexit__()

    def _on_event(self, event: Event) -> None:
        channel = event.channel_id
        if channel is None:
            return
        call = self.calls.get(channel.removesuffix(";2"))
        if call is not None:
            call._on(event)

    async def dial(self, number: str, caller_number: str = "3331234567",
                   caller_name: str = "Test Caller", codec: str = "alaw") -> SimCall:
        call_id = f"sim-{uuid.uuid4().hex[:12]}"
        call = self.calls[call_id] = SimCall(self, call_id)
        # An explicit format: without it Local channels get slin192 and every 8 kHz prompt
        # is resampled, costing Asterisk ~8x the CPU.
        await self.ari.originate(
            call_id, f"Local/{number}@{INBOUND_CONTEXT}", app=self.ari.app,
            otherChannelId=call.service_half, formats=codec,
            callerId=f'"{caller_name}" <{caller_number}>',
        )
        return call


AGENT_CONTEXT = "centralino-agents"  # asterisk-dev/etc/extensions.conf routes it to AGENT_APP
AGENT_APP = "centralino-agents"
CITIZEN_APP = "centralino-citizens"  # recalls dial Local/<number>@centralino-citizens


@dataclass
class Ring:
    """An agent's simulated phone ringing."""

    agent: str  # the extension dialled: Local/<agent>@centralino-agents
    channel: str  # the phone's side of the Local channel (;2)
    caller_number: str
    at: float  # loop time
    answered: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)


class SimAgents:
    """The phones of simulated agents. Each agent's behaviour is set by the test:
    "answer" (after `delay` s), "refuse" (busy), "ignore" (let it ring) or "drop" (answer
    after `delay` s and hang up at once: a handset put down as it is picked up)."""

    def __init__(self, url: str, username: str, password: str, app: str = AGENT_APP):
        self.ari = AriClient(url, username, password, app)
        self.behaviour: dict[str, tuple[str, float]] = {}
        self.rings: list[Ring] = []
        self._changed = asyncio.Event()
        self._events: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # the loop keeps only weak references

    async def __aenter__(self) -> Self:
        await self.ari.__aenter__()

        async def nothing() -> None:
            return None

        # The phones enter Stasis from the dialplan: the application hears of them only until
        # StasisEnd (no ChannelDestroyed after it), so StasisEnd is what says "hung up".
        self._events = asyncio.create_task(self.ari.run_events(
            self._on_event, nothing, event_types=("StasisStart", "StasisEnd")))
        await asyncio.wait_for(self.ari.connected.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ring in self.rings:
            if not ring.ended.is_set():
                await self.ari.hangup(ring.channel)
        if self._events:
            self._events.cancel()
        await self.ari.__aexit__()

    def set(self, agent: str, behaviour: str, delay: float = 0.3) -> None:
        self.behaviour[agent] = (behaviour, delay)

    def _on_event(self, event: Event) -> None:
        if event.type == "StasisStart":
            agent = event.args[0] if event.args else "?"  # type: ignore[attr-defined]
            ring = Ring(agent, event.channel_id or "", event.channel.caller.number,  # type: ignore[attr-defined]
                        asyncio.get_running_loop().time())
            self.rings.append(ring)
            behaviour, delay = self.behaviour.get(agent, ("answer", 0.3))
            if behaviour in ("answer", "drop"):
                asyncio.get_running_loop().call_later(
                    delay, lambda: self._spawn(self._answer(ring, drop=behaviour == "drop")))
            elif behaviour == "refuse":
                self._spawn(self.ari.hangup(ring.channel, "busy"))
        elif event.type == "StasisEnd":
            for ring in self.rings:
                if ring.channel == event.channel_id:
                    ring.ended.set()
        self._changed.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, ring: Ring, drop: bool = False) -> None:
        if not ring.ended.is_set():
            await self.ari.answer(ring.channel)
            if drop:
                await self.ari.hangup(ring.channel)
                return
            ring.answered = True
            self._changed.set()

    def rings_of(self, agent: str) -> list[Ring]:
        return [r for r in self.rings if r.agent == agent]

    async def wait_rings(self, count: int, timeout: float = 30) -> list[Ring]:
        async with asyncio.timeout(timeout):
            while len(self.rings) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.rings

    async def wait_answered(self, agent: str, timeout: float = 30) -> Ring:
        async with asyncio.timeout(timeout):
            while True:
                for ring in self.rings_of(agent):
                    if ring.answered and not ring.ended.is_set():
                        return ring
                self._changed.clear()
                await self._changed.wait()

    async def hang_up(self, ring: Ring) -> None:
        await self.ari.hangup(ring.channel)
        await asyncio.wait_for(ring.ended.wait(), 5)


class SimCitizens(SimAgents):
    """Citizens' phones for recalls: the service dials Local/<number>@centralino-citizens,
    whose far half waits in CITIZEN_APP. `set(number, ...)` as for agents; a Ring's `agent` is
    the number dialled, its `caller_number` the caller id shown to the citizen."""

    def __init__(self, url: str, username: str, password: str):
        super().__init__(url, username, password, CITIZEN_APP)
