"""Hold from the console on the real Asterisk (issue #13): the caller hears the line's music
and nothing of the agent; the agent hears nothing of the caller; back from hold they hear
each other again. A service restarted meanwhile keeps the caller on hold, not in silence."""

from __future__ import annotations

import asyncio
import io
import uuid
from typing import Any

import numpy as np
import soundfile

from centralino.ari.client import AriClient, AriError
from tests.integration.conftest import record_of
from tests.integration.desk_api import staff
from tests.integration.test_agents import to_alpha, until_talking

API = "/api/agents/1001/call"
TONE = {"media": "tone:440/60000"}  # a minute of 440 Hz: somebody talking, for the test


async def heard(ari: AriClient, channel: str, seconds: float = 1.5) -> tuple[float, float]:
    """What `channel` hears for `seconds`: its RMS level (0: silence), and the share of it at
    440 Hz (1: only the other side's tone; music spreads over many frequencies). A simulated
    phone is the far half of a Local channel: what it hears is what it reads ("in"); what it
    plays goes out to the call."""
    level, shares = await heard_tones(ari, channel, (440,), seconds, spy="in")
    return level, shares[440]


async def heard_tones(ari: AriClient, channel: str, tones: tuple[int, ...],
                      seconds: float = 1.5, spy: str = "in") -> tuple[float, dict[int, float]]:
    """The RMS level of what `spy` ("in": what the channel reads; "out": what Asterisk sends
    it, what a SIP phone's user hears) and the share of it at each of `tones` (Hz, +-10).
    Recorded on a snoop channel: the channel itself may be busy playing (ARI queues a
    recording behind a playback)."""
    snoop = await ari.request("POST", f"/channels/{channel}/snoop",
                              {"spy": spy, "app": ari.app})
    name = f"hold-{uuid.uuid4().hex[:12]}"
    try:
        for attempt in range(50):  # the snoop enters its application a moment after
            try:
                await ari.request("POST", f"/channels/{snoop['id']}/record",
                                  {"name": name, "format": "wav",
                                   "maxDurationSeconds": str(round(seconds))})
                break
            except AriError as exc:
                if exc.status != 409 or attempt == 49:
                    raise
                await asyncio.sleep(0.02)
        await asyncio.sleep(seconds + 0.5)  # real audio: the recording takes its time
        try:
            await ari.request("POST", f"/recordings/live/{name}/stop")
        except AriError:
            pass  # stopped at maxDurationSeconds
    finally:
        await ari.hangup(snoop["id"])
    body = await ari.raw("GET", f"/recordings/stored/{name}/file")
    await ari.request("DELETE", f"/recordings/stored/{name}")
    data, rate = soundfile.read(io.BytesIO(body), dtype="float32")
    if not len(data):
        return 0.0, dict.fromkeys(tones, 0.0)
    power = np.abs(np.fft.rfft(data)) ** 2
    frequencies = np.fft.rfftfreq(len(data), 1 / rate)
    total = max(power.sum(), 1e-12)
    return float(np.sqrt(np.mean(np.square(data)))), {
        tone: float(power[(frequencies > tone - 10) & (frequencies < tone + 10)].sum() / total)
        for tone in tones}


async def control(desk: Any, action: str, status: int = 200) -> dict[str, Any]:
    answer: dict[str, Any] = await desk.request("POST", f"{API}/{action}", token="dev-1001",
                                                expect=(status,))
    return answer


async def hears(speaker: AriClient, speaking: str, listener: AriClient, listening: str
                ) -> tuple[float, float]:
    """What `listening` hears while `speaking` sends a tone (a person talking, for the test).
    One side at a time: a channel playing something cannot be snooped on as well."""
    playback = await speaker.request("POST", f"/channels/{speaking}/play", TONE)
    try:
        return await heard(listener, listening)
    finally:
        await speaker.request("DELETE", f"/playbacks/{playback['id']}")


async def test_the_agent_puts_the_caller_on_hold_and_back(start_service, desk, caller, phones):
    service = await start_service()
    await staff(desk, "1001")
    call = await to_alpha(caller)
    ring = await phones.wait_answered("1001")
    await until_talking(desk, "1001")
    sim = caller.ari  # snoops go to the simulated caller's application

    async def conversation() -> tuple[tuple[float, float], tuple[float, float]]:
        """(what the agent hears of the caller, what the caller hears of the agent)"""
        return (await hears(sim, call.id, sim, ring.channel),
                await hears(phones.ari, ring.channel, sim, call.id))

    (level, tone), (level2, tone2) = await conversation()
    assert level > 0.005 and tone > 0.8  # talking: the agent hears the caller ...
    assert level2 > 0.005 and tone2 > 0.8  # ... and the caller the agent

    assert (await control(desk, "hold"))["on_hold"] is True
    await control(desk, "hold", 409)  # twice: refused, nothing changes
    (level, _), (level2, tone2) = await conversation()
    assert level < 0.001  # the agent hears nothing of the caller
    assert level2 > 0.005 and tone2 < 0.5  # the caller hears the music, not the agent

    assert (await control(desk, "resume"))["on_hold"] is False
    (level, tone), (level2, tone2) = await conversation()
    assert level > 0.005 and tone > 0.8  # they hear each other again, without music
    assert level2 > 0.005 and tone2 > 0.8
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1001")
    steps = [(s["kind"], s["detail"]) for s in (await desk.request(
        "GET", f"/api/calls/{record.id}", token="dev-sup"))["steps"]
        if s["kind"] in ("hold", "resume")]
    assert steps == [("hold", "by 1001"), ("resume", "by 1001")]


async def test_no_call_no_hold(start_service, desk):
    await start_service()
    await staff(desk, "1001")
    answer = await control(desk, "hold", 409)
    assert "no call in progress" in answer["error"]
