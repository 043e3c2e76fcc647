"""The simulated callers and phones (centralino call, the integration tests, the benchmarks)
against an in-process fake of Asterisk's ARI (tests/unit/fakeari.py): what they ask Asterisk
to do, and what they make of the events Asterisk sends back."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import numpy as np
import pytest
import soundfile

from centralino import simcaller
from centralino.simcaller import (
    AGENT_APP,
    CALLER_EVENTS,
    CITIZEN_APP,
    SimAgents,
    SimCall,
    SimCaller,
    SimCitizens,
    media_name,
)
from tests.unit.fakeari import FakeAri, Hurried, Received, channel, event, playback

WELCOME = "sound:http://127.0.0.1:8080/prompts/it/0123456789abcdef/welcome.wav"
MENU = "sound:http://127.0.0.1:8080/prompts/it/fedcba9876543210/menu.wav"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as ari:
        yield ari


@pytest.fixture
def hurried(monkeypatch: pytest.MonkeyPatch) -> Hurried:
    waits = Hurried()
    monkeypatch.setattr(simcaller, "asyncio", waits)
    return waits


@pytest.fixture
async def caller(fake: FakeAri) -> AsyncIterator[SimCaller]:
    async with SimCaller(fake.url, fake.username, fake.password, app="sim-test") as sim:
        yield sim


async def plays(fake: FakeAri, kind: str, call: SimCall | str, media: str,
                state: str = "playing", playback_id: str = "pb-1") -> None:
    """Asterisk reports a playback on a channel (a call's service half by default)."""
    target = call.service_half if isinstance(call, SimCall) else call
    await fake.push(event(kind, playback=playback(playback_id, target, media, state)))


@pytest.mark.parametrize("uri, name", [
    (WELCOME, "welcome"),
    ("sound:digits/3", "digits/3"),
    ("sound:queue-thankyou", "queue-thankyou"),
    ("sound:https://centralino.example.org/prompts/en/00ff/goodbye.wav", "goodbye"),
])
def test_media_name_is_the_prompt_id_or_the_standard_sound(uri: str, name: str) -> None:
    assert media_name(uri) == name


# --- callers ------------------------------------------------------------------------------------

async def test_entering_checks_asterisk_and_listens_only_to_what_a_caller_hears(
        fake: FakeAri, caller: SimCaller) -> None:
    assert fake.received[0] == Received("GET", "/asterisk/info", {"only": "system"}, None, "http")
    allowed = [{"type": t} for t in (*CALLER_EVENTS, "RESTResponse")]
    assert fake.requests("PUT", "/applications/sim-test/eventFilter")[0].body == {
        "allowed": allowed}
    assert [app for app, _ in fake.sockets] == ["sim-test"]


async def test_a_call_is_a_local_channel_into_the_inbound_context(
        fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123", caller_number="0612345678", caller_name="Maria Rossi")
    assert call.id.startswith("sim-") and call.service_half == call.id + ";2"
    [sent] = fake.requests("POST", f"/channels/{call.id}")
    assert sent.query == {
        "endpoint": "Local/800123@centralino-inbound", "app": "sim-test",
        "otherChannelId": call.id + ";2", "formats": "alaw",
        "callerId": '"Maria Rossi" <0612345678>'}
    assert {call.id, call.service_half} <= set(fake.channels)
    other = await caller.dial("800123", codec="ulaw")
    assert other.id != call.id and fake.requests("POST", f"/channels/{other.id}")[0].query[
        "formats"] == "ulaw"


async def test_what_the_caller_heard_comes_from_the_service_halfs_playbacks(
        fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123")
    other = await caller.dial("800124")
    await plays(fake, "PlaybackStarted", call, WELCOME)
    await plays(fake, "PlaybackStarted", call.id, "sound:beep")  # the caller's own half
    await plays(fake, "PlaybackStarted", other, MENU)  # another call
    await plays(fake, "PlaybackFinished", call, WELCOME, "done")
    await plays(fake, "PlaybackStarted", call, "sound:digits/3", playback_id="pb-2")
    await call.wait_heard("digits/3", timeout=2)
    assert call.heard == ["welcome", "digits/3"]
    assert call.finished == [(WELCOME, "done")] and call.playing == 1
    assert other.heard == ["menu"]


async def test_wait_heard_counts_repetitions(fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123")
    waiting = asyncio.create_task(call.wait_heard("menu", count=2, timeout=2))
    await plays(fake, "PlaybackStarted", call, MENU)
    await plays(fake, "PlaybackFinished", call, MENU, "done")
    await asyncio.sleep(0.02)
    assert not waiting.done()  # heard once so far
    await plays(fake, "PlaybackStarted", call, MENU, playback_id="pb-2")
    await asyncio.wait_for(waiting, 2)
    assert call.heard == ["menu", "menu"]


async def test_wait_heard_fails_when_the_call_ends_first_or_too_late(
        fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123")
    await plays(fake, "PlaybackStarted", call, WELCOME)
    with pytest.raises(TimeoutError):
        await call.wait_heard("menu", timeout=0.05)
    await fake.push(event("ChannelDestroyed", channel=channel(call.service_half), cause=16,
                          cause_txt="Normal Clearing"))
    with pytest.raises(AssertionError, match=r"call ended before menu played; heard "
                                             r"\['welcome'\]"):
        await call.wait_heard("menu", timeout=2)
    await call.wait_ended(timeout=1)


async def test_keys_are_sent_as_dtmf_one_at_a_time(
        fake: FakeAri, caller: SimCaller, hurried: Hurried) -> None:
    call = await caller.dial("800123")
    await call.press("12#")
    dtmf = fake.requests("POST", f"/channels/{call.id}/dtmf")
    assert [r.query for r in dtmf] == [{"dtmf": k, "duration": "80"} for k in "12#"]
    assert hurried.slept == [0.15, 0.15, 0.15]  # a gap after each key


async def test_hanging_up_waits_until_asterisk_destroyed_the_channel(
        fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123")
    await call.hangup()
    assert call.ended.is_set()
    assert fake.requests("DELETE", f"/channels/{call.id}")[0].query == {"reason": "normal"}
    assert call.id not in fake.channels


async def test_wait_idle_waits_while_something_plays(fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123")
    await plays(fake, "PlaybackStarted", call, WELCOME)
    await call.wait_heard("welcome", timeout=2)
    idle = asyncio.create_task(call.wait_idle(quiet=0.02, timeout=2))
    await asyncio.sleep(0.05)
    assert not idle.done()  # the welcome is still playing
    await plays(fake, "PlaybackFinished", call, WELCOME, "done")
    await asyncio.wait_for(idle, 2)
    assert call.playing == 0


async def test_wait_idle_waits_for_a_quiet_spell_and_returns_once_the_call_ended(
        fake: FakeAri, caller: SimCaller) -> None:
    call = await caller.dial("800123")
    await asyncio.wait_for(call.wait_idle(quiet=0.02), 1)  # nothing played yet
    await plays(fake, "PlaybackStarted", call, WELCOME)
    await call.wait_heard("welcome", timeout=2)
    await fake.push(event("ChannelDestroyed", channel=channel(call.id)))
    await asyncio.wait_for(call.wait_idle(quiet=0.02), 1)  # still "playing", but over
    assert call.ended.is_set()


def wav(amplitude: float, seconds: float = 0.1) -> bytes:
    t = np.arange(int(8000 * seconds)) / 8000
    out = io.BytesIO()
    soundfile.write(out, amplitude * np.sin(2 * np.pi * 440 * t), 8000, format="WAV")
    return out.getvalue()


@pytest.mark.parametrize("amplitude", [0.0, 0.5])
async def test_listen_records_the_caller_half_and_measures_its_level(
        fake: FakeAri, caller: SimCaller, hurried: Hurried, amplitude: float) -> None:
    fake.recording = wav(amplitude)
    call = await caller.dial("800123")
    level = await call.listen(1.6)
    assert level == pytest.approx(amplitude / np.sqrt(2), abs=0.01)
    [record] = fake.requests("POST", f"/channels/{call.id}/record")
    name = record.query["name"]
    assert record.query == {"name": name, "format": "wav", "maxDurationSeconds": "2"}
    assert [(r.method, r.path) for r in fake.received[-3:]] == [
        ("POST", f"/recordings/live/{name}/stop"), ("GET", f"/recordings/stored/{name}/file"),
        ("DELETE", f"/recordings/stored/{name}")]
    assert hurried.slept == [2.1] and fake.stored == {}  # 1.6 s and half a second more


async def test_listen_of_an_empty_recording_is_silence(
        fake: FakeAri, caller: SimCaller, hurried: Hurried) -> None:
    fake.recording = wav(0.5, seconds=0)
    call = await caller.dial("800123")
    assert await call.listen(0.5) == 0.0


async def test_listen_takes_a_recording_that_stopped_on_its_own(
        fake: FakeAri, caller: SimCaller, hurried: Hurried) -> None:
    fake.recording = wav(0.5)
    call = await caller.dial("800123")
    listening = asyncio.create_task(call.listen(1))
    record = await fake.request_to("POST", f"/channels/{call.id}/record")
    name = record.query["name"]
    fake.stored[name] = fake.live.pop(name)  # maxDurationSeconds reached: stop is a 404
    assert await asyncio.wait_for(listening, 2) > 0.3


async def test_leaving_hangs_up_the_calls_still_up(fake: FakeAri) -> None:
    async with SimCaller(fake.url, fake.username, fake.password) as caller:
        up = await caller.dial("800123")
        done = await caller.dial("800124")
        await done.hangup()
        app = caller.ari.app
    assert app.startswith("sim-") and app != "sim-"
    assert [r.path for r in fake.requests("DELETE")] == [f"/channels/{done.id}",
                                                         f"/channels/{up.id}"]
    await fake.until(lambda: not fake.sockets)  # the application is gone from Asterisk


async def test_a_caller_with_wrong_credentials_fails_at_once(fake: FakeAri) -> None:
    sim = SimCaller(fake.url, fake.username, "wrong")
    try:
        with pytest.raises(simcaller.AriError, match="refused ARI user 'centralino'"):
            async with sim:
                pass
        assert fake.connections == 0
    finally:
        await sim.ari.__aexit__()  # the session the failed start left open (see below)


async def test_a_caller_that_could_not_start_leaves_no_session_open(fake: FakeAri) -> None:
    sim = SimCaller(fake.url, fake.username, "wrong")
    try:
        with pytest.raises(simcaller.AriError):
            await sim.__aenter__()
        session = sim.ari._session
        assert session is None or session.closed
    finally:
        await sim.ari.__aexit__()


# --- agents' and citizens' phones ----------------------------------------------------------------

async def ring(fake: FakeAri, phone: str, dialled: str, caller_number: str = "0612345678") -> None:
    """The dialplan puts the far half of Local/<dialled>@centralino-agents into Stasis."""
    fake.channels[phone] = channel(phone, state="Ring", number=caller_number)
    await fake.push(event("StasisStart", channel=fake.channels[phone], args=[dialled]))


@pytest.fixture
async def agents(fake: FakeAri) -> AsyncIterator[SimAgents]:
    async with SimAgents(fake.url, fake.username, fake.password) as phones:
        yield phones


async def test_agents_listen_to_their_application_for_calls_coming_and_going(
        fake: FakeAri, agents: SimAgents) -> None:
    assert [app for app, _ in fake.sockets] == [AGENT_APP]
    assert fake.requests("PUT", f"/applications/{AGENT_APP}/eventFilter")[0].body == {
        "allowed": [{"type": "StasisStart"}, {"type": "StasisEnd"}, {"type": "RESTResponse"}]}


async def test_an_agent_answers_after_the_delay_set(fake: FakeAri, agents: SimAgents) -> None:
    agents.set("201", "answer", delay=0.01)
    await ring(fake, "ag-1;2", "201", caller_number="3339876543")
    answered = await agents.wait_answered("201", timeout=2)
    assert (answered.agent, answered.channel, answered.caller_number) == (
        "201", "ag-1;2", "3339876543")
    assert fake.requests("POST", "/channels/ag-1;2/answer")
    assert fake.channels["ag-1;2"]["state"] == "Up"
    await agents.hang_up(answered)
    assert answered.ended.is_set()
    assert fake.requests("DELETE", "/channels/ag-1;2")[0].query == {"reason": "normal"}


async def test_an_agent_that_refuses_is_busy(fake: FakeAri, agents: SimAgents) -> None:
    agents.set("202", "refuse")
    await ring(fake, "ag-2;2", "202")
    [rang] = await agents.wait_rings(1, timeout=2)
    await asyncio.wait_for(rang.ended.wait(), 2)  # StasisEnd after the hangup
    assert fake.requests("DELETE", "/channels/ag-2;2")[0].query == {"reason": "busy"}
    assert not rang.answered and not fake.requests("POST", "/channels/ag-2;2/answer")


async def test_an_agent_that_drops_answers_and_hangs_up_at_once(
        fake: FakeAri, agents: SimAgents) -> None:
    agents.set("203", "drop", delay=0.01)
    await ring(fake, "ag-3;2", "203")
    [rang] = await agents.wait_rings(1, timeout=2)
    await asyncio.wait_for(rang.ended.wait(), 2)
    assert [(r.method, r.path) for r in fake.received[-2:]] == [
        ("POST", "/channels/ag-3;2/answer"), ("DELETE", "/channels/ag-3;2")]
    assert not rang.answered


async def test_an_agent_ignoring_the_ring_lets_it_ring_until_the_caller_gives_up(
        fake: FakeAri, agents: SimAgents) -> None:
    agents.set("204", "ignore")
    await ring(fake, "ag-4;2", "204")
    [rang] = await agents.wait_rings(1, timeout=2)
    await fake.push(event("StasisEnd", channel=channel("ag-4;2")))  # the service gave up
    await asyncio.wait_for(rang.ended.wait(), 2)
    assert not rang.answered and not fake.requests("POST", "/channels/ag-4;2/answer")
    assert not fake.requests("DELETE")


async def test_a_ring_that_ends_before_the_answer_is_not_answered(
        fake: FakeAri, agents: SimAgents) -> None:
    agents.set("205", "answer", delay=0.05)
    await ring(fake, "ag-5;2", "205")
    await fake.push(event("StasisEnd", channel=channel("ag-5;2")))
    [rang] = await agents.wait_rings(1, timeout=2)
    await asyncio.wait_for(rang.ended.wait(), 2)
    with pytest.raises(TimeoutError):
        await agents.wait_answered("205", timeout=0.1)
    assert not fake.requests("POST", "/channels/ag-5;2/answer")


async def test_rings_are_kept_per_agent_in_order(fake: FakeAri, agents: SimAgents) -> None:
    for phone, agent in (("a;2", "201"), ("b;2", "202"), ("c;2", "201")):
        agents.set(agent, "ignore")
        await ring(fake, phone, agent)
    await agents.wait_rings(3, timeout=2)
    assert [r.channel for r in agents.rings_of("201")] == ["a;2", "c;2"]
    assert [r.channel for r in agents.rings_of("202")] == ["b;2"]


async def test_leaving_hangs_up_the_phones_still_ringing(fake: FakeAri) -> None:
    async with SimAgents(fake.url, fake.username, fake.password) as agents:
        agents.set("201", "ignore")
        await ring(fake, "ag-1;2", "201")
        await agents.wait_rings(1, timeout=2)
    assert fake.requests("DELETE", "/channels/ag-1;2")[0].query == {"reason": "normal"}


async def test_citizens_phones_answer_recalls_in_their_own_application(fake: FakeAri) -> None:
    async with SimCitizens(fake.url, fake.username, fake.password) as citizens:
        assert [app for app, _ in fake.sockets] == [CITIZEN_APP]
        citizens.set("+393331234567", "answer", delay=0.01)
        await ring(fake, "rc-1;2", "+393331234567", caller_number="0612345678")
        answered = await citizens.wait_answered("+393331234567", timeout=2)
    assert answered.caller_number == "0612345678"  # the caller id the citizen sees
    assert fake.requests("POST", "/channels/rc-1;2/answer")
