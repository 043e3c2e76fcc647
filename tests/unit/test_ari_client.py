"""The ARI client as the service uses it, against an in-process fake of Asterisk's ARI
(tests/unit/fakeari.py): the start-up check and its errors, what each REST helper sends,
the events socket (filter, REST over the socket, events in order, reconnection with backoff,
resynchronisation) and the reaction-time metric. The client's waits are shortened (Hurried)
where a test would otherwise sit through them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client import REGISTRY

from centralino import metrics
from centralino.ari import client as client_module
from centralino.ari.client import (
    AriAuthError,
    AriClient,
    AriError,
    AriNotFound,
    AriUnavailable,
    reacting_to,
)
from centralino.ari.models import (
    EVENT_TYPES,
    ChannelDtmfReceived,
    Event,
    PlaybackFinished,
    StasisStart,
)
from tests.unit.fakeari import FakeAri, Hurried, Received, channel, event, playback

APP = "centralino"


@pytest.fixture
async def fake() -> AsyncIterator[FakeAri]:
    async with FakeAri() as ari:
        yield ari


@pytest.fixture
def hurried(monkeypatch: pytest.MonkeyPatch) -> Hurried:
    waits = Hurried(patience=1.0)
    monkeypatch.setattr(client_module, "asyncio", waits)
    return waits


def ari_of(fake: FakeAri, password: str | None = None, app: str = APP,
           observe: Callable[[float], None] | None = None, clock: Hurried | None = None
           ) -> AriClient:
    return AriClient(fake.url + "/", fake.username,
                     fake.password if password is None else password, app, observe, clock)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Listener:
    """What the service gives run_events: a callback for events and one for (re)connections."""

    events: list[Event] = field(default_factory=list)
    resyncs: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def on_event(self, ev: Event) -> None:
        self.events.append(ev)
        self.changed.set()

    async def on_connected(self) -> None:
        self.resyncs += 1
        self.changed.set()

    async def until(self, check: Callable[[], bool], timeout: float = 3) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def running(ari: AriClient, listener: Listener, connect: bool = True,
                  event_types: tuple[str, ...] = EVENT_TYPES) -> AsyncIterator[asyncio.Task[None]]:
    """run_events in a task (waiting until connected), cancelled at the end as the service does."""
    task = asyncio.create_task(ari.run_events(listener.on_event, listener.on_connected,
                                              event_types))
    try:
        if connect:
            await asyncio.wait_for(ari.connected.wait(), 3)
        yield task
    finally:
        await ari.close_events()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# --- the start-up check ---------------------------------------------------------------------------

async def test_check_returns_asterisks_system_info(fake: FakeAri) -> None:
    async with ari_of(fake) as ari:
        info = await ari.check()
    assert info["system"]["version"] == "22.5.0"
    assert fake.received == [Received("GET", "/asterisk/info", {"only": "system"}, None, "http")]


async def test_check_with_a_wrong_password_says_which_user_and_where_to_look(
        fake: FakeAri) -> None:
    async with ari_of(fake, password="wrong") as ari:
        with pytest.raises(AriAuthError) as refused:
            await ari.check()
    assert refused.value.status == 401
    assert str(refused.value) == (
        "Asterisk refused ARI user 'centralino' (HTTP 401): check the user and password in "
        "ari.conf and in centralino's asterisk settings")


async def test_check_without_asterisk_says_it_is_unreachable_and_where() -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    async with AriClient(url, "centralino", "secret", APP) as ari:
        with pytest.raises(AriUnavailable, match=rf"^Asterisk unreachable at {url}/ari: "):
            await ari.check()


async def test_a_request_asterisk_never_answers_fails_as_unavailable(
        fake: FakeAri, monkeypatch: pytest.MonkeyPatch) -> None:
    real = aiohttp.ClientTimeout
    monkeypatch.setattr(aiohttp, "ClientTimeout",
                        lambda total, connect: real(total=0.2, connect=0.2))
    fake.stall("GET", "/channels/c-1")
    async with ari_of(fake) as ari:
        with pytest.raises(AriUnavailable, match=f"^Asterisk at {fake.url}/ari did not answer "
                                                 "GET /channels/c-1$"):
            await ari.get_channel("c-1")


# --- the REST helpers ---------------------------------------------------------------------------

async def test_originate_creates_the_channel_with_its_endpoint_and_arguments(
        fake: FakeAri) -> None:
    async with ari_of(fake) as ari:
        made = await ari.originate("sim-1", "Local/100@centralino-inbound", app="sim",
                                   otherChannelId="sim-1;2", callerId='"A" <3331112222>')
        with pytest.raises(AriError, match="HTTP 409: Channel with given unique ID already"):
            await ari.originate("sim-1", "Local/100@centralino-inbound", app="sim")
    assert made["id"] == "sim-1" and made["caller"]["number"] == "3331112222"
    assert fake.received[0] == Received("POST", "/channels/sim-1", {
        "endpoint": "Local/100@centralino-inbound", "app": "sim", "otherChannelId": "sim-1;2",
        "callerId": '"A" <3331112222>'}, None, "http")


CALLS: list[tuple[str, Callable[[AriClient], Awaitable[Any]], Received]] = [
    ("answer", lambda a: a.answer("c-1"),
     Received("POST", "/channels/c-1/answer", {}, None, "http")),
    ("play", lambda a: a.play("c-1", "pb-1", ["sound:http://h/p/welcome.wav", "sound:beep"], "it"),
     Received("POST", "/channels/c-1/play/pb-1",
              {"media": "sound:http://h/p/welcome.wav,sound:beep", "lang": "it"}, None, "http")),
    ("hangup", lambda a: a.hangup("c-1", "busy"),
     Received("DELETE", "/channels/c-1", {"reason": "busy"}, None, "http")),
    ("hangup normal", lambda a: a.hangup("c-1"),
     Received("DELETE", "/channels/c-1", {"reason": "normal"}, None, "http")),
    ("bridge", lambda a: a.create_bridge("b-1", "mixing", "coda"),
     Received("POST", "/bridges/b-1", {"type": "mixing", "name": "coda"}, None, "http")),
    ("variable", lambda a: a.set_var("c-1", "CDR(topic)", "anagrafe"),
     Received("POST", "/channels/c-1/variable", {"variable": "CDR(topic)", "value": "anagrafe"},
              None, "http")),
    ("dtmf", lambda a: a.send_dtmf("c-1", "1#"),
     Received("POST", "/channels/c-1/dtmf", {"dtmf": "1#", "duration": "100"}, None, "http")),
    ("dtmf duration", lambda a: a.send_dtmf("c-1", "5", duration_ms=80),
     Received("POST", "/channels/c-1/dtmf", {"dtmf": "5", "duration": "80"}, None, "http")),
    ("get", lambda a: a.get_channel("c-1"), Received("GET", "/channels/c-1", {}, None, "http")),
]


@pytest.mark.parametrize("call, sent", [c[1:] for c in CALLS], ids=[c[0] for c in CALLS])
async def test_each_helper_sends_its_ari_operation(
        fake: FakeAri, call: Callable[[AriClient], Awaitable[Any]], sent: Received) -> None:
    fake.channels["c-1"] = channel("c-1")
    async with ari_of(fake) as ari:
        await call(ari)
    assert fake.received == [sent]


async def test_helpers_return_what_asterisk_answered(fake: FakeAri) -> None:
    fake.channels["c-1"] = channel("c-1", number="0612345678")
    async with ari_of(fake) as ari:
        bridge = await ari.create_bridge("b-1", "mixing", "coda")
        assert (await ari.get_channel("c-1") or {})["caller"]["number"] == "0612345678"
        assert await ari.get_channel("gone") is None  # 404: the caller hung up
    assert bridge["id"] == "b-1" and bridge["channels"] == []


async def test_add_channel_puts_the_role_only_when_given(fake: FakeAri) -> None:
    fake.channels |= {"c-1": channel("c-1"), "c-2": channel("c-2")}
    async with ari_of(fake) as ari:
        await ari.create_bridge("b-1", "mixing")
        await ari.add_channel("b-1", "c-1", role="agent")
        await ari.add_channel("b-1", "c-2")
    assert [r.query for r in fake.requests("POST", "/bridges/b-1/addChannel")] == [
        {"channel": "c-1", "role": "agent"}, {"channel": "c-2"}]
    assert fake.bridges["b-1"]["channels"] == ["c-1", "c-2"]


async def test_stopping_or_hanging_up_what_is_already_gone_is_not_an_error(
        fake: FakeAri) -> None:
    fake.channels["c-1"] = channel("c-1")
    async with ari_of(fake) as ari:
        await ari.play("c-1", "pb-1", ["sound:beep"], "it")
        await ari.stop_playback("pb-1")
        await ari.stop_playback("pb-1")  # finished on its own meanwhile: 404, swallowed
        await ari.hangup("c-1")
        await ari.hangup("c-1")  # the caller hung up first: 404, swallowed
        with pytest.raises(AriNotFound):
            await ari.answer("c-1")  # what needs the channel still says it is gone
    assert [r.method + " " + r.path for r in fake.received[1:]] == [
        "DELETE /playbacks/pb-1", "DELETE /playbacks/pb-1", "DELETE /channels/c-1",
        "DELETE /channels/c-1", "POST /channels/c-1/answer"]
    assert "c-1" not in fake.channels and fake.playbacks == {}


@pytest.mark.parametrize("status, body, kind, message", [
    (404, {"message": "Channel not found"}, AriNotFound,
     "POST /channels/c-1/answer: HTTP 404: Channel not found"),
    (409, {"message": "Channel not in Stasis application"}, AriError,
     "POST /channels/c-1/answer: HTTP 409: Channel not in Stasis application"),
    (500, None, AriError, "POST /channels/c-1/answer: HTTP 500: no reason given"),
    (400, ["not an object"], AriError, 'POST /channels/c-1/answer: HTTP 400: ["not an object"]'),
])
async def test_errors_say_the_operation_status_and_asterisks_reason(
        fake: FakeAri, status: int, body: Any, kind: type[AriError], message: str) -> None:
    fake.answer("POST", "/channels/c-1/answer", status, body)
    async with ari_of(fake) as ari:
        with pytest.raises(AriError) as failed:
            await ari.answer("c-1")
    assert type(failed.value) is kind
    assert (str(failed.value), failed.value.status) == (message, status)


async def test_raw_returns_the_file_and_not_found_as_an_error(fake: FakeAri) -> None:
    fake.stored["r-1"] = b"RIFF\x00\x01binary"
    async with ari_of(fake) as ari:
        assert await ari.raw("GET", "/recordings/stored/r-1/file") == b"RIFF\x00\x01binary"
        with pytest.raises(AriNotFound, match="HTTP 404: Recording not found"):
            await ari.raw("GET", "/recordings/stored/r-2/file")


# --- the events socket ----------------------------------------------------------------------------

async def test_connecting_filters_events_probes_rest_over_ws_then_resyncs(
        fake: FakeAri) -> None:
    listener = Listener()
    async with ari_of(fake) as ari, running(ari, listener):
        await listener.until(lambda: listener.resyncs == 1)
        assert fake.connections == 1 and [a for a, _ in fake.sockets] == [APP]
    allowed = [{"type": t} for t in (*EVENT_TYPES, "RESTResponse")]
    assert fake.received[:2] == [
        Received("PUT", f"/applications/{APP}/eventFilter", {}, {"allowed": allowed}, "http"),
        Received("GET", "/asterisk/ping", {}, None, "ws"),
    ]


async def test_events_reach_the_callback_parsed_and_in_order(fake: FakeAri) -> None:
    listener = Listener()
    caller = channel("c-1", number="3339876543")
    async with ari_of(fake) as ari, running(ari, listener):
        for ev in (event("StasisStart", channel=caller, args=["800123"]),
                   event("ChannelDtmfReceived", channel=caller, digit="3", duration_ms=120),
                   event("PlaybackFinished",
                         playback=playback("pb-1", "c-1", "sound:beep", "done"))):
            await fake.push(ev)
        await listener.until(lambda: len(listener.events) == 3)
    start, key, finished = listener.events
    assert isinstance(start, StasisStart) and start.args == ["800123"]
    assert start.channel.caller.number == "3339876543" and start.application == APP
    assert isinstance(key, ChannelDtmfReceived) and (key.channel_id, key.digit) == ("c-1", "3")
    assert isinstance(finished, PlaybackFinished) and finished.channel_id == "c-1"
    assert 0 < start.received[0] <= key.received[0] <= finished.received[0]


async def test_asterisk_is_asked_only_for_the_events_the_caller_handles(fake: FakeAri) -> None:
    listener = Listener()
    async with ari_of(fake) as ari, running(ari, listener):
        # The service does not subscribe to PlaybackStarted (see models.EVENT_TYPES).
        assert await fake.push(event("PlaybackStarted",
                                     playback=playback("pb-1", "c-1", "sound:beep"))) == 0
        assert await fake.push(event("StasisEnd", channel=channel("c-1"))) == 1
        await listener.until(lambda: len(listener.events) == 1)
    assert [e.type for e in listener.events] == ["StasisEnd"]


async def test_with_rest_over_ws_only_requests_with_a_body_use_http(fake: FakeAri) -> None:
    fake.channels["c-1"] = channel("c-1")
    listener = Listener()
    async with ari_of(fake) as ari, running(ari, listener):
        await ari.answer("c-1")
        assert await ari.get_channel("c-1") == fake.channels["c-1"]
        assert await ari.get_channel("c-2") is None
        assert await ari.channel_ids() == {"c-1"}
        await ari.hangup("c-1")
        with pytest.raises(AriNotFound, match=r"^DELETE /playbacks/pb-9: HTTP 404: Playback "):
            await ari.request("DELETE", "/playbacks/pb-9")
    assert [(r.method, r.path, r.query, r.via) for r in fake.received[2:]] == [
        ("POST", "/channels/c-1/answer", {}, "ws"),
        ("GET", "/channels/c-1", {}, "ws"),
        ("GET", "/channels/c-2", {}, "ws"),
        ("GET", f"/applications/{APP}", {}, "ws"),
        ("DELETE", "/channels/c-1", {"reason": "normal"}, "ws"),
        ("DELETE", "/playbacks/pb-9", {}, "ws"),
    ]


async def test_a_request_on_the_socket_that_asterisk_never_answers_fails_in_time(
        fake: FakeAri, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "WS_REQUEST_TIMEOUT", 0.2)
    fake.channels["c-1"] = channel("c-1")
    fake.stall("POST", "/channels/c-1/answer")
    listener = Listener()
    async with ari_of(fake) as ari, running(ari, listener):
        with pytest.raises(AriUnavailable, match=r"did not answer POST /channels/c-1/answer"):
            await asyncio.wait_for(ari.answer("c-1"), 2)
        assert ari._pending == {}  # nothing left waiting for an answer that never comes
        fake.restore("POST", "/channels/c-1/answer")
        await ari.answer("c-1")  # the socket still serves the next request
    assert [r.via for r in fake.received if r.path == "/channels/c-1/answer"] == ["ws", "ws"]


async def test_an_asterisk_without_rest_over_ws_gets_requests_over_http(
        hurried: Hurried, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "centralino.ari")
    hurried.patience = 0.2  # the probe's 2 s for an answer that never comes
    listener = Listener()
    async with FakeAri(rest_over_ws=False) as fake, ari_of(fake, clock=hurried) as ari, \
            running(ari, listener):
        fake.channels["c-1"] = channel("c-1")
        await ari.answer("c-1")
    assert "Asterisk does not take REST over the WebSocket; using HTTP" in caplog.text
    assert fake.received[-1] == Received("POST", "/channels/c-1/answer", {}, None, "http")
    assert listener.resyncs == 1


async def test_a_request_waiting_on_the_socket_fails_when_the_socket_drops(
        fake: FakeAri, hurried: Hurried) -> None:
    fake.stall("GET", "/channels/c-1")
    listener = Listener()
    async with ari_of(fake, clock=hurried) as ari, running(ari, listener):
        waiting = asyncio.create_task(ari.get_channel("c-1"))
        await fake.request_to("GET", "/channels/c-1")
        await fake.drop()
        with pytest.raises(AriUnavailable, match=f"^Asterisk at {fake.url}/ari did not answer "
                                                 "GET /channels/c-1: events socket closed$"):
            await asyncio.wait_for(waiting, 2)


async def test_after_the_socket_drops_it_reconnects_and_resyncs(
        fake: FakeAri, hurried: Hurried, caplog: pytest.LogCaptureFixture) -> None:
    fake.channels["c-1"] = channel("c-1")
    listener = Listener()
    async with ari_of(fake, clock=hurried) as ari, running(ari, listener):
        await listener.until(lambda: listener.resyncs == 1)
        await fake.drop()
        await fake.until(lambda: not fake.sockets)
        await listener.until(lambda: listener.resyncs == 2)
        assert ari.connected.is_set() and fake.connections == 2
        await fake.push(event("StasisEnd", channel=channel("c-1")))
        await listener.until(lambda: len(listener.events) == 1)
        await ari.answer("c-1")  # the new socket carries requests again
    assert "ARI events socket closed; reconnecting" in caplog.text
    assert 0.16 <= hurried.slept[0] <= 0.24  # the first retry after a drop: 0.2 s, +-20 %
    assert fake.requests("POST", "/channels/c-1/answer")[0].via == "ws"
    assert len(fake.requests("PUT", f"/applications/{APP}/eventFilter")) == 2


async def test_connected_is_cleared_while_asterisk_is_away(fake: FakeAri,
                                                          hurried: Hurried) -> None:
    listener = Listener()
    fake.stall("PUT", f"/applications/{APP}/eventFilter")  # the next setup never completes
    async with ari_of(fake, clock=hurried) as ari, running(ari, listener, connect=False):
        await fake.request_to("PUT", f"/applications/{APP}/eventFilter")
        assert not ari.connected.is_set() and listener.resyncs == 0
        fake.restore("PUT", f"/applications/{APP}/eventFilter")
        await fake.drop()
        await asyncio.wait_for(ari.connected.wait(), 3)
        assert listener.resyncs == 1


async def test_wrong_credentials_on_the_socket_are_logged_and_retried_with_backoff(
        fake: FakeAri, hurried: Hurried, caplog: pytest.LogCaptureFixture) -> None:
    listener = Listener()
    async with ari_of(fake, password="wrong", clock=hurried) as ari, \
            running(ari, listener, connect=False):
        async with asyncio.timeout(3):
            while len(hurried.slept) < 8:
                await asyncio.sleep(0.01)
        assert not ari.connected.is_set() and fake.connections == 0
    assert "Asterisk refused ARI user 'centralino' (HTTP 401)" in caplog.text
    expected = [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]  # doubling, at most 5 s; jitter +-20 %
    assert all(0.8 * e <= s <= 1.2 * e for s, e in zip(hurried.slept, expected, strict=False))


async def test_without_asterisk_it_keeps_retrying_then_connects(
        hurried: Hurried, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "centralino.ari")
    port = closed_port()
    listener = Listener()
    async with AriClient(f"http://127.0.0.1:{port}", "centralino", "secret", APP,
                         clock=hurried) as ari, \
            running(ari, listener, connect=False):
        async with asyncio.timeout(3):
            while len(hurried.slept) < 3:
                await asyncio.sleep(0.01)
        assert f"Asterisk unreachable at http://127.0.0.1:{port}/ari (" in caplog.text
        assert "retrying in 0.2 s" in caplog.text and "retrying in 0.8 s" in caplog.text
        async with FakeAri(port=port):  # Asterisk starts where the client points
            await asyncio.wait_for(ari.connected.wait(), 3)
        assert listener.resyncs == 1


async def test_an_invalid_application_name_is_refused_with_its_status(
        fake: FakeAri, hurried: Hurried, caplog: pytest.LogCaptureFixture) -> None:
    async with ari_of(fake, app="", clock=hurried) as ari, running(ari, Listener(), connect=False):
        async with asyncio.timeout(3):
            while not hurried.slept:
                await asyncio.sleep(0.01)
    assert ("ARI events refused (HTTP 400): is res_ari loaded and app name valid?"
            in caplog.text)


async def test_a_failed_setup_closes_the_socket_and_tries_again(
        fake: FakeAri, hurried: Hurried, caplog: pytest.LogCaptureFixture) -> None:
    path = f"/applications/{APP}/eventFilter"
    fake.answer("PUT", path, 400, {"message": "Invalid filter"})
    listener = Listener()
    async with ari_of(fake, clock=hurried) as ari, running(ari, listener, connect=False):
        await fake.until(lambda: len(fake.requests("PUT", path)) >= 2)
        assert not ari.connected.is_set() and listener.resyncs == 0
        fake.restore("PUT", path)
        await asyncio.wait_for(ari.connected.wait(), 3)
        assert listener.resyncs == 1
    assert f"setting up the ARI connection failed: PUT {path}: HTTP 400: Invalid filter" \
        in caplog.text


async def test_close_events_unregisters_the_application(fake: FakeAri) -> None:
    listener = Listener()
    async with ari_of(fake) as ari:
        task = asyncio.create_task(ari.run_events(listener.on_event, listener.on_connected))
        await asyncio.wait_for(ari.connected.wait(), 3)
        await ari.close_events()
        task.cancel()  # as the service does: close, then stop the loop
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await fake.until(lambda: not fake.sockets, 1)
        assert not ari.connected.is_set()
    assert fake.connections == 1


# --- the reaction time ----------------------------------------------------------------------------

def reactions_observed() -> float:
    return REGISTRY.get_sample_value("centralino_ari_reaction_seconds_count") or 0.0


async def test_the_command_an_event_caused_is_timed_once(fake: FakeAri) -> None:
    """As a call does: take the event, set `reacting_to`, send the command."""
    fake.channels["c-1"] = channel("c-1")
    listener = Listener()
    before = reactions_observed()
    async with ari_of(fake, observe=metrics.ARI_REACTION.observe) as ari, \
            running(ari, listener):
        await fake.push(event("ChannelDtmfReceived", channel=channel("c-1"), digit="1"))
        await listener.until(lambda: bool(listener.events))

        async def react() -> None:
            reacting_to.set(listener.events[0].received)
            await ari.answer("c-1")  # measured
            await ari.send_dtmf("c-1", "2")  # not caused by the event any more: not measured

        await asyncio.create_task(react())
        await ari.answer("c-1")  # no event being reacted to
    assert reactions_observed() == before + 1
    [(wall, cpu)] = ari.reaction_samples
    assert 0 < wall < 1 and 0 <= cpu <= wall + 0.01


async def test_a_late_failure_of_an_old_setup_leaves_the_new_connection_alone(
        fake: FakeAri, hurried: Hurried, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    real = aiohttp.ClientTimeout
    monkeypatch.setattr(aiohttp, "ClientTimeout",
                        lambda total, connect: real(total=0.3, connect=0.3))
    path = f"/applications/{APP}/eventFilter"
    fake.stall("PUT", path)  # Asterisk hangs on the first setup's request, then drops
    listener = Listener()
    async with ari_of(fake, clock=hurried) as ari, running(ari, listener, connect=False):
        await fake.request_to("PUT", path)
        fake.restore("PUT", path)
        await fake.drop()
        await listener.until(lambda: listener.resyncs == 1)  # connected again
        async with asyncio.timeout(2):  # the first setup's request times out meanwhile
            while "setting up the ARI connection failed" not in caplog.text:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert fake.connections == 2 and len(fake.sockets) == 1 and ari.connected.is_set()
        assert listener.resyncs == 1
