"""A small ARI client on aiohttp: REST requests and the events WebSocket with reconnect.

Most of a controller's CPU goes into REST calls, so cheaper requests are the lever. Where
Asterisk supports it (ARI "REST over WebSocket", in 2025 releases; probed at every connection),
requests without a body travel as one frame on the events socket instead of an HTTP round
trip: a third less CPU per request, and no connection pool to exhaust. Otherwise, and for the
few requests with a JSON body, one keep-alive HTTP connection pool serves them.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any, Self
from urllib.parse import quote

import aiohttp

from centralino.ari.models import EVENT_TYPES, Event, parse_event
from centralino.clock import LoopClock, Timers
from ivr.clock import SystemClock

log = logging.getLogger("centralino.ari")
WS_REQUEST_TIMEOUT = 10.0  # seconds for Asterisk to answer a request sent on the events socket

# Set by a call's task when it takes an event; the next REST request measures the service's
# reaction time (event read off the socket -> command sent) and clears it. Two clocks: wall
# time, and the event loop thread's CPU time (the part of the wait the OS did not take away).
reacting_to: ContextVar[tuple[float, float] | None] = ContextVar("reacting_to", default=None)


class AriError(Exception):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class AriUnavailable(AriError):
    """Asterisk cannot be reached (not running, wrong URL, HTTP or ARI disabled)."""


class AriAuthError(AriError):
    """Asterisk refused our credentials."""


class AriNotFound(AriError):
    """The channel, bridge or playback no longer exists (usually: the caller hung up)."""


class AriClient:
    def __init__(self, url: str, username: str, password: str, app: str,
                 observe_reaction: Callable[[float], None] | None = None,
                 clock: Timers | None = None):
        self.base = url.rstrip("/") + "/ari"
        self.username = username
        self.app = app
        self._auth = aiohttp.encode_basic_auth(username, password)
        self._session: aiohttp.ClientSession | None = None
        self.connected = asyncio.Event()
        self.reaction_samples: deque[tuple[float, float]] = deque(maxlen=200_000)
        self._observe = observe_reaction
        # The reconnection back-off's timer (the service's clock); the network's own timeouts
        # (a request, a handshake) stay on the event loop, as aiohttp keeps them.
        self._clock = clock or LoopClock(SystemClock())
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._rest_ws = False  # this connection answers RESTRequest frames
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._request_ids = itertools.count()
        self._setup: asyncio.Task[None] | None = None  # the loop keeps only weak references

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(
            headers={"Authorization": self._auth},
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=10, connect=3),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close_events()
        if self._session:
            await self._session.close()

    async def close_events(self) -> None:
        """Close the events socket cleanly, so that Asterisk has unregistered the application
        before anyone (a restarted service) registers it again."""
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

    # --- REST -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | Sequence[tuple[str, str]] | None = None,
        body: Any = None,
    ) -> Any:
        assert self._session is not None, "use `async with AriClient(...)`"
        started = reacting_to.get()
        if started is not None:
            elapsed = time.perf_counter() - started[0]
            self.reaction_samples.append((elapsed, time.thread_time() - started[1]))
            if self._observe:
                self._observe(elapsed)
            reacting_to.set(None)
        if body is None and self._rest_ws:
            return await self._ws_request(method, path, params)
        url = self.base + path
        try:
            async with self._session.request(method, url, params=params, json=body) as resp:
                text = await resp.text()
                if resp.status >= 400:
                    raise self._error(method, path, resp.status, text)
                return json.loads(text) if text else None
        except aiohttp.ClientConnectionError as exc:
            raise AriUnavailable(f"Asterisk unreachable at {self.base}: {exc}") from None
        except TimeoutError:
            raise AriUnavailable(
                f"Asterisk at {self.base} did not answer {method} {path}") from None

    async def _ws_request(self, method: str, path: str,
                          params: dict[str, Any] | Sequence[tuple[str, str]] | None) -> Any:
        ws = self._ws
        if ws is None or ws.closed:
            raise AriUnavailable(f"Asterisk at {self.base} is not connected")
        request_id = str(next(self._request_ids))
        pairs = params.items() if isinstance(params, dict) else (params or ())
        frame: dict[str, Any] = {"type": "RESTRequest", "request_id": request_id,
                                 "method": method, "uri": path.lstrip("/")}
        if query := [{"name": k, "value": str(v)} for k, v in pairs]:
            frame["query_strings"] = query  # Asterisk ignores a request with an empty list
        loop = asyncio.get_running_loop()
        answer = self._pending[request_id] = loop.create_future()
        # A plain timer, not asyncio.wait_for: its extra future and callbacks were a visible
        # part of every request's cost (bench fullflow's profile).
        timeout = loop.call_later(WS_REQUEST_TIMEOUT, _expire, answer)
        try:
            await ws.send_str(json.dumps(frame))
            response = await answer
        except (TimeoutError, ConnectionError) as exc:
            raise AriUnavailable(f"Asterisk at {self.base} did not answer {method} {path}: "
                                 f"{exc or 'timeout'}") from None
        finally:
            timeout.cancel()
            self._pending.pop(request_id, None)
        text = response.get("message_body") or ""
        status = int(response.get("status_code", 500))
        if status >= 400:
            raise self._error(method, path, status, text)
        return json.loads(text) if text else None

    def _answered(self, data: dict[str, Any]) -> None:
        future = self._pending.get(data.get("request_id", ""))
        if future is not None and not future.done():
            future.set_result(data)

    async def _probe_rest_over_ws(self) -> bool:
        """Does this Asterisk answer REST requests on the events socket?"""
        self._rest_ws = True
        try:
            await asyncio.wait_for(self._ws_request("GET", "/asterisk/ping", None), 2)
            return True
        except (AriError, TimeoutError):
            log.info("Asterisk does not take REST over the WebSocket; using HTTP for requests")
            return False
        finally:
            self._rest_ws = False

    def _error(self, method: str, path: str, status: int, text: str) -> AriError:
        try:
            reason = json.loads(text).get("message", text)
        except (ValueError, AttributeError):
            reason = text.strip() or "no reason given"
        if status == 401:
            return AriAuthError(
                f"Asterisk refused ARI user {self.username!r} (HTTP 401): check the user and "
                "password in ari.conf and in centralino's asterisk settings", status)
        message = f"{method} {path}: HTTP {status}: {reason}"
        return (AriNotFound if status == 404 else AriError)(message, status)

    async def raw(self, method: str, path: str) -> bytes:
        """A binary response (a stored recording's file)."""
        assert self._session is not None
        async with self._session.request(method, self.base + path) as resp:
            body = await resp.read()
            if resp.status >= 400:
                raise self._error(method, path, resp.status, body.decode(errors="replace"))
            return body

    async def check(self) -> dict[str, Any]:
        """Fail fast with a clear error if Asterisk is unreachable or refuses us."""
        return await self.request("GET", "/asterisk/info", {"only": "system"})

    # Thin helpers for the requests we use; names follow the ARI operations.
    async def answer(self, channel: str) -> None:
        await self.request("POST", f"/channels/{channel}/answer")

    async def play(self, channel: str, playback_id: str, media: list[str], lang: str) -> None:
        params = {"media": ",".join(media), "lang": lang}
        await self.request("POST", f"/channels/{channel}/play/{playback_id}", params)

    async def stop_playback(self, playback_id: str) -> None:
        try:
            await self.request("DELETE", f"/playbacks/{playback_id}")
        except AriNotFound:
            pass  # finished on its own meanwhile

    async def hangup(self, channel: str, reason: str = "normal") -> None:
        try:
            await self.request("DELETE", f"/channels/{channel}", {"reason": reason})
        except AriNotFound:
            pass  # already gone

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> dict[str, Any]:
        return await self.request("POST", f"/bridges/{bridge_id}", {"type": kind, "name": name})

    async def add_channel(self, bridge_id: str, channel: str, role: str | None = None) -> None:
        params = {"channel": channel} | ({"role": role} if role else {})
        await self.request("POST", f"/bridges/{bridge_id}/addChannel", params)

    async def remove_channel(self, bridge_id: str, channel: str) -> None:
        await self.request("POST", f"/bridges/{bridge_id}/removeChannel", {"channel": channel})

    async def start_channel_moh(self, channel: str, music_class: str) -> None:
        await self.request("POST", f"/channels/{channel}/moh", {"mohClass": music_class})

    async def stop_channel_moh(self, channel: str) -> None:
        await self.request("DELETE", f"/channels/{channel}/moh")

    async def delete_bridge(self, bridge_id: str) -> None:
        try:
            await self.request("DELETE", f"/bridges/{bridge_id}")
        except AriNotFound:
            pass  # already gone

    async def set_var(self, channel: str, name: str, value: str) -> None:
        await self.request("POST", f"/channels/{channel}/variable",
                           {"variable": name, "value": value})

    async def transfer_progress(self, channel: str, state: str) -> None:
        """Answer a phone's REFER (ChannelTransfer): channel_progress, channel_answered (done),
        channel_unavailable or channel_declined (the phone keeps its call)."""
        await self.request("POST", f"/channels/{channel}/transfer_progress", {"states": state})

    async def send_dtmf(self, channel: str, digits: str, duration_ms: int = 100) -> None:
        await self.request("POST", f"/channels/{channel}/dtmf",
                           {"dtmf": digits, "duration": str(duration_ms)})

    async def originate(self, channel_id: str, endpoint: str, **params: str) -> dict[str, Any]:
        return await self.request("POST", f"/channels/{channel_id}",
                                  {"endpoint": endpoint, **params})

    async def channel_ids(self) -> set[str]:
        """The channels currently in our Stasis application."""
        app = await self.request("GET", f"/applications/{quote(self.app)}")
        return {s.removeprefix("channel:") for s in app.get("channel_ids", [])}

    async def get_channel(self, channel: str) -> dict[str, Any] | None:
        try:
            return await self.request("GET", f"/channels/{channel}")
        except AriNotFound:
            return None

    # --- events ---------------------------------------------------------------------------

    async def run_events(
        self,
        on_event: Callable[[Event], None],
        on_connected: Callable[[], Awaitable[None]],
        event_types: Iterable[str] = EVENT_TYPES,
    ) -> None:
        """Read events forever; reconnect with backoff when the socket drops or Asterisk
        restarts. `on_connected` runs after every (re)connection, to resynchronise."""
        assert self._session is not None
        url = self.base.replace("http", "ws", 1) + "/events"
        params = {"app": self.app, "subscribeAll": "false"}
        delay = 0.2
        while True:
            try:
                timeout = aiohttp.ClientWSTimeout(ws_close=5)
                async with self._session.ws_connect(url, params=params, heartbeat=15,
                                                    timeout=timeout) as ws:
                    self._ws = ws
                    log.info("ARI events connected to %s as application %r", self.base, self.app)
                    delay = 0.2
                    self._setup = asyncio.get_running_loop().create_task(
                        self._setup_connection(event_types, on_connected))
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            received = (time.perf_counter(), time.thread_time())
                            data = json.loads(msg.data)
                            if data.get("type") == "RESTResponse":
                                self._answered(data)
                            elif (event := parse_event(data, received)) is not None:
                                on_event(event)
                                # Let the call that just got an event react before we read
                                # on: in a burst, reading everything first delays them all.
                                await asyncio.sleep(0)
                        elif msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED):
                            break
                log.warning("ARI events socket closed; reconnecting")
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 401:
                    log.error("%s", self._error("GET", "/events", 401, ""))
                else:
                    log.error("ARI events refused (HTTP %s): is res_ari loaded and app name "
                              "valid?", exc.status)
            except (aiohttp.ClientError, OSError, AriError) as exc:
                log.warning("Asterisk unreachable at %s (%s); retrying in %.1f s",
                            self.base, exc or type(exc).__name__, delay)
            finally:
                self.connected.clear()
                self._rest_ws = False
                for future in self._pending.values():
                    if not future.done():
                        future.set_exception(ConnectionError("events socket closed"))
            await self._clock.after(delay * (0.8 + 0.4 * random.random()))  # noqa: S311 - jitter
            delay = min(delay * 2, 5.0)

    async def _setup_connection(self, event_types: Iterable[str],
                                on_connected: Callable[[], Awaitable[None]]) -> None:
        # Runs beside the read loop: the probe's answer arrives on the socket being read.
        ws = self._ws
        try:
            await self._filter_events(event_types)
            self._rest_ws = await self._probe_rest_over_ws()
        except AriError as exc:
            log.error("setting up the ARI connection failed: %s", exc)
            if ws is not None:  # this setup's socket: a newer one may have replaced it
                await ws.close()
            return
        if ws is None or ws.closed:  # dropped meanwhile: not connected, the next one sets up
            return
        self.connected.set()
        await on_connected()

    async def _filter_events(self, event_types: Iterable[str]) -> None:
        # Asterisk sends only what we handle: less JSON to read for every call.
        # RESTResponse is how Asterisk answers requests sent over the socket: filtered out,
        # those requests would never get an answer.
        allowed = [{"type": t} for t in (*event_types, "RESTResponse")]
        await self.request("PUT", f"/applications/{quote(self.app)}/eventFilter",
                           body={"allowed": allowed})


def _expire(answer: asyncio.Future[dict[str, Any]]) -> None:
    if not answer.done():
        answer.set_exception(TimeoutError())
