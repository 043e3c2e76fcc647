"""A small in-process fake of Asterisk 22's ARI, for unit tests of what talks to it.

REST under /ari/... (HTTP basic auth, or `api_key=user:password` as Asterisk also takes) for
the requests centralino and the simulated callers send, and the events WebSocket
/ari/events?app=... . Like Asterisk 22.4 and later it answers REST requests sent over that
socket (RESTRequest frames, "ARI REST over WebSocket"); with `rest_over_ws=False` it ignores
them, as earlier releases did.

It keeps just enough state for its answers to follow Asterisk's (a request for a channel it
does not know is a 404 "Channel not found"; hanging a channel up sends StasisEnd and
ChannelDestroyed), records every request it received, and lets a test push events, answer a
path with a chosen status and body, stall a path, drop the sockets or change the password.
Status codes and JSON shapes follow the ARI reference (docs.asterisk.org, Asterisk 22).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

from aiohttp import WSCloseCode, WSMsgType, web

from centralino.clock import LoopClock, Timer
from ivr.clock import SystemClock

USERNAME, PASSWORD = "centralino", "secret"  # the fake's ARI user (ari.conf)
ASTERISK_ID = "02:42:ac:11:00:02"
TIMESTAMP = "2025-06-02T10:00:00.000+0200"
# ARI's `reason` for DELETE /channels/{id}, as the hangup cause the events then carry.
CAUSES = {"normal": (16, "Normal Clearing"), "busy": (17, "User busy"),
          "congestion": (34, "Circuit/channel congestion"), "no_answer": (19, "No answer")}

Answer = tuple[int, Any]  # status and body: JSON-able, bytes (a file) or None (no content)


@dataclass(frozen=True)
class Received:
    method: str
    path: str  # under /ari, as the ARI reference writes it: /channels/c-1/answer
    query: dict[str, str]
    body: Any  # the JSON body, or None
    via: str  # "http", or "ws": a RESTRequest frame on the events socket


def channel(channel_id: str, *, state: str = "Up", number: str = "3331234567",
            name: str = "", context: str = "centralino-inbound", exten: str = "s",
            language: str = "it") -> dict[str, Any]:
    """A Channel as ARI shows it."""
    return {
        "id": channel_id, "name": name or f"PJSIP/{channel_id}", "state": state,
        "protocol_id": "", "caller": {"name": "", "number": number},
        "connected": {"name": "", "number": ""}, "accountcode": "",
        "dialplan": {"context": context, "exten": exten, "priority": 2,
                     "app_name": "Stasis", "app_data": ""},
        "creationtime": TIMESTAMP, "language": language,
    }


def playback(playback_id: str, channel_id: str, media_uri: str, state: str = "playing",
             language: str = "it") -> dict[str, Any]:
    """A Playback as ARI shows it."""
    return {"id": playback_id, "media_uri": media_uri, "target_uri": f"channel:{channel_id}",
            "language": language, "state": state}


def event(kind: str, **fields: Any) -> dict[str, Any]:
    """An event as Asterisk sends it (the fake adds `application`, per socket)."""
    return {"type": kind, "timestamp": TIMESTAMP, "asterisk_id": ASTERISK_ID, **fields}


def _not_found(what: str) -> Answer:
    return 404, {"message": f"{what} not found"}


class FakeAri:
    """`async with FakeAri() as ari:` serves on 127.0.0.1 (`ari.url`), by default on an
    ephemeral port."""

    def __init__(self, username: str = USERNAME, password: str = PASSWORD,
                 rest_over_ws: bool = True, port: int = 0):
        self.username = username
        self.password = password  # change it to refuse the client's credentials
        self.rest_over_ws = rest_over_ws
        self.port = port  # 0: any free one
        self.url = ""
        self.received: list[Received] = []
        self.channels: dict[str, dict[str, Any]] = {}
        self.bridges: dict[str, dict[str, Any]] = {}
        self.playbacks: dict[str, dict[str, Any]] = {}
        self.recording = b""  # what a recording started now will hold once stored
        self.live: dict[str, bytes] = {}
        self.stored: dict[str, bytes] = {}
        self.filters: dict[str, set[str]] = {}  # application -> the event types it allows
        self.sockets: list[tuple[str, web.WebSocketResponse]] = []  # (application, socket)
        self.connections = 0  # events sockets accepted so far
        self._overrides: dict[tuple[str, str], Answer | None] = {}
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., Answer]]] = [
            (method, re.compile(pattern + "$"), handler) for method, pattern, handler in (
                ("GET", r"/asterisk/info", self._info),
                ("GET", r"/asterisk/ping", self._ping),
                ("GET", r"/applications/([^/]+)", self._application),
                ("PUT", r"/applications/([^/]+)/eventFilter", self._event_filter),
                ("POST", r"/channels/([^/]+)", self._originate),
                ("GET", r"/channels/([^/]+)", self._channel),
                ("DELETE", r"/channels/([^/]+)", self._hangup),
                ("POST", r"/channels/([^/]+)/(answer|dtmf|variable)", self._channel_op),
                ("POST", r"/channels/([^/]+)/play/([^/]+)", self._play),
                ("POST", r"/channels/([^/]+)/record", self._record),
                ("DELETE", r"/playbacks/([^/]+)", self._stop_playback),
                ("POST", r"/bridges/([^/]+)", self._create_bridge),
                ("POST", r"/bridges/([^/]+)/addChannel", self._add_channel),
                ("POST", r"/recordings/live/([^/]+)/stop", self._stop_recording),
                ("GET", r"/recordings/stored/([^/]+)/file", self._recording_file),
                ("DELETE", r"/recordings/stored/([^/]+)", self._delete_recording),
            )]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/ari/events", self._events)
        app.router.add_route("*", "/ari/{path:.*}", self._http)
        self._runner = web.AppRunner(app, shutdown_timeout=1)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing.set()
        await self.drop()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()

    # --- what a test does -------------------------------------------------------------------

    def answer(self, method: str, path: str, status: int, body: Any = None) -> None:
        """From now on answer `method path` so (until `restore`)."""
        self._overrides[(method, path)] = (status, body)

    def stall(self, method: str, path: str) -> None:
        """From now on never answer `method path` (until the fake closes)."""
        self._overrides[(method, path)] = None

    def restore(self, method: str, path: str) -> None:
        self._overrides.pop((method, path), None)

    async def push(self, data: dict[str, Any]) -> int:
        """Send an event to every events socket whose application's filter allows it; the
        number of sockets it went to."""
        sent = 0
        for app, ws in list(self.sockets):
            allowed = self.filters.get(app)
            if (allowed is None or data["type"] in allowed) and not ws.closed:
                await ws.send_str(json.dumps({**data, "application": app}))
                sent += 1
        return sent

    async def drop(self) -> None:
        """Close every events socket, as Asterisk does when it stops."""
        for _, ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY)

    def requests(self, method: str | None = None, path: str | None = None) -> list[Received]:
        return [r for r in self.received
                if (method is None or r.method == method) and (path is None or r.path == path)]

    async def request_to(self, method: str, path: str, timeout: float = 2) -> Received:
        """The first `method path` received, waiting for it if need be."""
        await self.until(lambda: bool(self.requests(method, path)), timeout)
        return self.requests(method, path)[0]

    async def until(self, check: Callable[[], bool], timeout: float = 2) -> None:
        """Wait until `check()` holds; it is tried again after every request or connection."""
        async with asyncio.timeout(timeout):
            while not check():
                self._changed.clear()
                await self._changed.wait()

    # --- serving ----------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        wanted = f"{self.username}:{self.password}"
        if request.query.get("api_key") == wanted:
            return True
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            given = base64.b64decode(encoded).decode()
        except ValueError:
            return False
        return scheme == "Basic" and given == wanted

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response({"message": "Authentication required"}, status=401, headers={
            "WWW-Authenticate": 'Basic realm="Asterisk REST Interface"'})

    async def _http(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        body = await request.json() if request.can_read_body else None
        query = {k: v for k, v in request.query.items() if k != "api_key"}
        answer = await self._serve(request.method, "/" + request.match_info["path"], query,
                                   body, "http")
        status, content = answer if answer is not None else (503, None)
        if isinstance(content, bytes):
            return web.Response(body=content, status=status, content_type="audio/wav")
        if content is None:
            return web.Response(status=status)
        return web.json_response(content, status=status)

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return self._unauthorized()
        app = request.query.get("app", "")
        if not app:
            return web.json_response({"message": "Missing param 'app'"}, status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append((app, ws))
        self.connections += 1
        self._changed.set()
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT or not self.rest_over_ws:
                    continue  # before 22.4 Asterisk ignored what clients sent
                frame = json.loads(msg.data)
                if frame.get("type") == "RESTRequest":
                    self._spawn(self._ws_request(ws, frame))
        finally:
            self.sockets.remove((app, ws))
            self._changed.set()
        return ws

    async def _ws_request(self, ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
        query = {q["name"]: q["value"] for q in frame.get("query_strings", [])}
        body = json.loads(frame["message_body"]) if frame.get("message_body") else None
        answer = await self._serve(frame["method"], "/" + frame["uri"], query, body, "ws")
        if answer is None or ws.closed:
            return
        status, content = answer
        await ws.send_str(json.dumps({
            "type": "RESTResponse", "transaction_id": frame.get("transaction_id", ""),
            "request_id": frame.get("request_id", ""), "status_code": status,
            "reason_phrase": "", "uri": frame["uri"], "content_type": "application/json",
            "message_body": "" if content is None else json.dumps(content)}))

    async def _serve(self, method: str, path: str, query: dict[str, str], body: Any,
                     via: str) -> Answer | None:
        self.received.append(Received(method, path, query, body, via))
        self._changed.set()
        if (method, path) in self._overrides:
            answer = self._overrides[(method, path)]
            if answer is None:
                await self._closing.wait()
            return answer
        for route_method, pattern, handler in self._routes:
            if route_method == method and (match := pattern.match(path)):
                return handler(*match.groups(), query=query, body=body)
        return 404, {"message": "Resource not found"}

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _emit(self, *events: dict[str, Any]) -> None:
        """Events that follow from a request, sent after its answer."""
        async def send() -> None:
            await asyncio.sleep(0)
            for ev in events:
                await self.push(ev)
        self._spawn(send())

    # --- the ARI operations ------------------------------------------------------------------

    def _info(self, *, query: dict[str, str], body: Any) -> Answer:
        info = {"system": {"version": "22.5.0", "entity_id": ASTERISK_ID},
                "status": {"startup_time": TIMESTAMP, "last_reload_time": TIMESTAMP}}
        only = query.get("only")
        return 200, {only: info[only]} if only in info else info

    def _ping(self, *, query: dict[str, str], body: Any) -> Answer:
        return 200, {"asterisk_id": ASTERISK_ID, "ping": "pong", "timestamp": TIMESTAMP}

    def _app_json(self, app: str) -> dict[str, Any]:
        allowed = [{"type": t} for t in sorted(self.filters.get(app, ()))]
        return {"name": app, "channel_ids": list(self.channels), "bridge_ids": list(self.bridges),
                "endpoint_ids": [], "device_names": [], "events_allowed": allowed,
                "events_disallowed": []}

    def _application(self, app: str, *, query: dict[str, str], body: Any) -> Answer:
        if not any(a == app for a, _ in self.sockets):
            return _not_found("Application")
        return 200, self._app_json(app)

    def _event_filter(self, app: str, *, query: dict[str, str], body: Any) -> Answer:
        if not any(a == app for a, _ in self.sockets):
            return _not_found("Application")
        if not isinstance(body, dict) or not isinstance(body.get("allowed", []), list):
            return 400, {"message": "Invalid filter"}
        self.filters[app] = {f["type"] for f in body.get("allowed", [])}
        return 200, self._app_json(app)

    def _originate(self, channel_id: str, *, query: dict[str, str], body: Any) -> Answer:
        if "endpoint" not in query:
            return 400, {"message": "Endpoint must be specified"}
        if channel_id in self.channels:
            return 409, {"message": "Channel with given unique ID already exists"}
        number = re.sub(r".*<(.*)>", r"\1", query.get("callerId", ""))
        created = self.channels[channel_id] = channel(
            channel_id, state="Down", number=number, name=f"{query['endpoint']}-00000001;1")
        if other := query.get("otherChannelId"):
            self.channels[other] = channel(other, state="Down", number=number,
                                           name=f"{query['endpoint']}-00000001;2")
        return 200, created

    def _channel(self, channel_id: str, *, query: dict[str, str], body: Any) -> Answer:
        if channel_id not in self.channels:
            return _not_found("Channel")
        return 200, self.channels[channel_id]

    def _hangup(self, channel_id: str, *, query: dict[str, str], body: Any) -> Answer:
        gone = self.channels.pop(channel_id, None)
        if gone is None:
            return _not_found("Channel")
        reason = query.get("reason", "normal")
        if reason not in CAUSES:
            return 400, {"message": "Invalid reason for hangup provided"}
        cause, text = CAUSES[reason]
        self._emit(event("StasisEnd", channel=gone),
                   event("ChannelDestroyed", channel=gone, cause=cause, cause_txt=text))
        return 204, None

    def _channel_op(self, channel_id: str, op: str, *, query: dict[str, str],
                    body: Any) -> Answer:
        if channel_id not in self.channels:
            return _not_found("Channel")
        if op == "answer":
            self.channels[channel_id]["state"] = "Up"
        return 204, None

    def _play(self, channel_id: str, playback_id: str, *, query: dict[str, str],
              body: Any) -> Answer:
        if channel_id not in self.channels:
            return _not_found("Channel")
        media = query.get("media", "").split(",")[0]
        made = self.playbacks[playback_id] = playback(
            playback_id, channel_id, media, "queued", query.get("lang", "it"))
        return 201, made

    def _stop_playback(self, playback_id: str, *, query: dict[str, str], body: Any) -> Answer:
        if self.playbacks.pop(playback_id, None) is None:
            return _not_found("Playback")
        return 204, None

    def _create_bridge(self, bridge_id: str, *, query: dict[str, str], body: Any) -> Answer:
        made = self.bridges[bridge_id] = {
            "id": bridge_id, "technology": "simple_bridge", "bridge_type": "mixing",
            "bridge_class": "stasis", "creator": "Stasis", "name": query.get("name", ""),
            "channels": [], "creationtime": TIMESTAMP, "video_mode": "none"}
        return 200, made

    def _add_channel(self, bridge_id: str, *, query: dict[str, str], body: Any) -> Answer:
        if bridge_id not in self.bridges:
            return _not_found("Bridge")
        if query.get("channel") not in self.channels:
            return 400, {"message": "Channel not found"}
        self.bridges[bridge_id]["channels"].append(query["channel"])
        return 204, None

    def _record(self, channel_id: str, *, query: dict[str, str], body: Any) -> Answer:
        if channel_id not in self.channels:
            return _not_found("Channel")
        self.live[query["name"]] = self.recording
        return 201, {"name": query["name"], "format": query.get("format", ""),
                     "state": "recording", "target_uri": f"channel:{channel_id}"}

    def _stop_recording(self, name: str, *, query: dict[str, str], body: Any) -> Answer:
        if name not in self.live:
            return _not_found("Recording")
        self.stored[name] = self.live.pop(name)
        return 204, None

    def _recording_file(self, name: str, *, query: dict[str, str], body: Any) -> Answer:
        if name not in self.stored:
            return _not_found("Recording")
        return 200, self.stored[name]

    def _delete_recording(self, name: str, *, query: dict[str, str], body: Any) -> Answer:
        if self.stored.pop(name, None) is None:
            return _not_found("Recording")
        return 204, None


@dataclass
class Hurried:
    """The asyncio module with the waits of the module under test shortened, to patch in as
    its `asyncio` (monkeypatch.setattr(module, "asyncio", Hurried())): sleeps are recorded
    and last at most `nap` s, wait_for gives up after at most `patience` s."""

    nap: float = 0.01
    patience: float = 0.2
    slept: list[float] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    # As a clock (centralino.clock.Timers) for the ARI client's back-off: recorded, and short.
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def after(self, seconds: float) -> asyncio.Future[None]:
        if seconds > 0:
            self.slept.append(seconds)
        return LoopClock(SystemClock()).after(min(seconds, self.nap))

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(min(seconds, self.nap), callback)

    async def sleep(self, delay: float, result: Any = None) -> Any:
        if delay > 0:
            self.slept.append(delay)
        return await asyncio.sleep(min(delay, self.nap), result)

    async def wait_for(self, awaitable: Any, timeout: float | None) -> Any:
        return await asyncio.wait_for(
            awaitable, self.patience if timeout is None else min(timeout, self.patience))
