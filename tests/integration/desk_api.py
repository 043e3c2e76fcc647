"""The running service as its users and clients see it, for the integration tests (issue #10).

Tests drive the service through what a client has: the REST API (agents log in and pause with
their own tokens; queues, agents, calls, queue_log, recalls, reloads and line overrides with the
admin token of the settings), the agents' console WebSocket (screen pops), Asterisk's own ARI,
and the phones (simcaller). Not
through the service's internal objects (desk, queues, registry, sessions, ...): a test that
passes that way says what a user would see.

`DeskApi` is the client (the `desk` fixture of conftest.py); `staff` sets who is logged in.
A few stored facts have no API (offers, some fields of recall attempts, queue_log times finer
than the export's whole seconds): the `stored_*` helpers at the end read them from the
database, after the service's writer has caught up.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Self

import aiohttp

from ivr.clock import ShiftedClock
from tests.integration.waiting import eventually

PORT = 18081  # tests/integration/conftest.py settings_for
ADMIN_TOKEN = "test-admin-token"  # tests/integration/config/centralino.yaml http.admin_token
ARI_URL = "http://127.0.0.1:8088/ari"  # asterisk-dev/etc/ari.conf: centralino/centralino-dev
ARI_AUTH = {"Authorization": "Basic " + base64.b64encode(b"centralino:centralino-dev").decode()}
POPS = ("offer", "recall", "recall_outcome")  # screen pops among a console's messages


def agent_token(agent_id: str) -> str:
    """Every test agent's personal token is dev-<id> (development mode only)."""
    return f"dev-{agent_id}"


def service_side(phone_channel: str) -> str:
    """The service's half of a Local channel whose far half (";2") a simulated phone holds
    (a Ring's channel): the one the service puts in its bridges."""
    return phone_channel.removesuffix(";2")


class ApiError(AssertionError):
    """An answer other than the one expected."""

    def __init__(self, method: str, path: str, status: int, body: str):
        super().__init__(f"{method} {path}: {status} {body[:500]}")
        self.status, self.body = status, body


@dataclass(frozen=True)
class QueueLogLine:
    """One line of `GET /api/queue_log` (Asterisk's queue_log file: whole seconds)."""

    at: datetime
    call_id: str
    queue: str
    agent: str
    event: str
    data1: str = ""
    data2: str = ""
    data3: str = ""
    data4: str = ""
    data5: str = ""

    @classmethod
    def parse(cls, line: str) -> QueueLogLine:
        epoch, call_id, queue, agent, event, *data = line.split("|")  # data: at least [""]
        return cls(datetime.fromtimestamp(int(epoch), UTC), call_id, queue, agent, event, *data)


class Console:
    """An agent's console socket (`WS /ws/agents/{id}`): every message it received, in order."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, hello: dict[str, Any]):
        self.ws, self.hello = ws, hello
        self.messages: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.messages.append(json.loads(msg.data))
                self._changed.set()
        self._changed.set()

    @property
    def pops(self) -> list[dict[str, Any]]:
        """The screen pops received (offers, recalls, recall outcomes), oldest first."""
        return [m for m in self.messages if m["type"] in POPS]

    async def until(self, check: Callable[[], bool], timeout: float = 20) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                if self._reader.done():
                    raise AssertionError(f"console closed; received {self.messages}")
                self._changed.clear()
                await self._changed.wait()

    async def pop(self, number: int = 1, timeout: float = 20) -> dict[str, Any]:
        """The `number`-th screen pop (1: the first), once it has arrived."""
        await self.until(lambda: len(self.pops) >= number, timeout)
        return self.pops[number - 1]

    async def last_pop(self, check: Callable[[dict[str, Any]], bool] = lambda _: True,
                       timeout: float = 10) -> dict[str, Any]:
        """The latest screen pop once it satisfies `check` (pops travel over the network: the
        one the service just sent may still be on its way)."""
        await self.until(lambda: bool(self.pops) and check(self.pops[-1]), timeout)
        return self.pops[-1]

    async def ack(self, offer_id: str) -> None:
        await self.ws.send_json({"type": "ack", "offer_id": offer_id})


class DeskApi:
    """A client of the running service's HTTP API, with the test configuration's tokens.

    Bound to a port rather than to a service object: it keeps working across a restart of the
    service (each request opens its own connection)."""

    def __init__(self, port: int = PORT):
        self.base = f"http://127.0.0.1:{port}"
        self.clock: ShiftedClock | None = None  # the clock the test gave the service
        self.admin_token = ADMIN_TOKEN  # its settings' http.admin_token (start_service sets it)
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.close()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use DeskApi in `async with`"
        return self._http

    def now(self) -> datetime:
        """The service's time: the test chose it (start_service(at=...)) and it runs on."""
        assert self.clock is not None, "no service started"
        return self.clock.now()

    async def request(self, method: str, path: str, *, token: str | None = None,
                      json_body: Any = None, params: dict[str, Any] | None = None,
                      expect: tuple[int, ...] = (200,)) -> Any:
        """The answer's JSON (or text), after checking its status is one of `expect`. With the
        admin token unless told another (`token=""`: none)."""
        token = self.admin_token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.http.request(method, self.base + path, headers=headers, json=json_body,
                                     params=params) as resp:
            text = await resp.text()
            if resp.status not in expect:
                raise ApiError(method, path, resp.status, text)
            return json.loads(text) if resp.content_type == "application/json" else text

    # --- agents: what they and their supervisors do, and see --------------------------------

    async def _change(self, agent_id: str, action: str, by: str | None, reason: str = ""
                      ) -> dict[str, Any]:
        body = {"reason": reason} if reason else {}
        return await self.request("POST", f"/api/agents/{agent_id}/{action}", json_body=body,
                                  token=by or agent_token(agent_id))

    async def login(self, agent_id: str, by: str | None = None) -> dict[str, Any]:
        """The agent logs in (with their own token, or `by`: a supervisor's or the admin's)."""
        return await self._change(agent_id, "login", by)

    async def logout(self, agent_id: str, by: str | None = None) -> dict[str, Any]:
        return await self._change(agent_id, "logout", by)

    async def pause(self, agent_id: str, reason: str, by: str | None = None) -> dict[str, Any]:
        return await self._change(agent_id, "pause", by, reason)

    async def resume(self, agent_id: str, by: str | None = None) -> dict[str, Any]:
        return await self._change(agent_id, "resume", by)

    async def agents(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/api/agents")

    async def agent(self, agent_id: str) -> dict[str, Any]:
        """`GET /api/agents/{id}`: state, reason, topics, call_id, missed_in_a_row, ..."""
        return await self.request("GET", f"/api/agents/{agent_id}")

    async def state(self, agent_id: str) -> str:
        return (await self.agent(agent_id))["state"]

    async def until_state(self, agent_id: str, *states: str, timeout: float = 10,
                          poll: float = 0.02) -> dict[str, Any]:
        """Until the agent is in one of `states`; the agent as the API shows them then."""
        return await eventually(partial(self.agent, agent_id), lambda a: a["state"] in states,
                                timeout, poll, f"agent {agent_id} {' or '.join(states)}")

    async def agent_events(self, agent_id: str) -> list[dict[str, Any]]:
        """The agent's stored changes, newest first (`GET /api/agents/{id}/events`)."""
        return await self.request("GET", f"/api/agents/{agent_id}/events")

    @contextlib.asynccontextmanager
    async def console(self, agent_id: str, token: str | None = None, states: bool = False
                      ) -> AsyncIterator[Console]:
        """The agent's console open (as the browser page opens it) while inside."""
        ws_url = self.base.replace("http", "ws", 1) + f"/ws/agents/{agent_id}"
        async with self.http.ws_connect(ws_url) as ws:
            first: dict[str, Any] = {"token": token or agent_token(agent_id)}
            if states:
                first["states"] = True
            await ws.send_json(first)
            hello = await ws.receive_json(timeout=5)
            assert hello["type"] == "hello", hello
            console = Console(ws, hello)
            try:
                yield console
            finally:
                await ws.close()
                await console._reader

    # --- who waits where ---------------------------------------------------------------------

    async def queues(self) -> dict[str, list[dict[str, Any]]]:
        """`GET /api/queues`: per topic, who waits, first in line first."""
        return await self.request("GET", "/api/queues")

    async def waiting(self, topic: str) -> list[dict[str, Any]]:
        """Who waits in the topic's line (call_id, caller, line, since, waited, ringing,
        recall), first in line first."""
        return (await self.queues()).get(topic, [])

    async def until_waiting(self, topic: str, check: Callable[[list[dict[str, Any]]], bool],
                            timeout: float = 10) -> list[dict[str, Any]]:
        """Who waits in the topic's line, once `check` holds for it."""
        return await eventually(partial(self.waiting, topic), check, timeout,
                                what=f"the line of {topic}")

    # --- calls and reports -------------------------------------------------------------------

    async def calls(self, **query: Any) -> list[dict[str, Any]]:
        """`GET /api/calls?channel_id=&number=&caller=&limit=`: newest first, with steps."""
        return await self.request("GET", "/api/calls", params=query)

    async def call_of(self, channel_id: str) -> dict[str, Any] | None:
        """The latest record of a channel (in progress or over), or None."""
        found = await self.calls(channel_id=channel_id, limit=1)
        return found[0] if found else None

    async def queue_log(self, call_id: str | None = None, **period: str) -> list[QueueLogLine]:
        """`GET /api/queue_log` (today by default; `from`, `to`), a call's lines if asked."""
        params = {k.removesuffix("_"): v for k, v in period.items()}  # from_ -> from
        text = await self.request("GET", "/api/queue_log", params=params)
        lines = [QueueLogLine.parse(line) for line in text.splitlines()]
        return [e for e in lines if call_id is None or e.call_id == call_id]

    async def figures(self, **params: str) -> dict[str, Any]:
        return await self.request("GET", "/api/figures", params=params)

    async def topics(self) -> tuple[set[str], set[str]]:
        """(configured topics, retiring ones: removed by a reload but still served while
        callers wait in them), as `/api/figures` shows them."""
        body = await self.figures()
        configured = set(body["settings"])
        return configured, set(body["live"]["topics"]) - configured

    # --- recall requests ---------------------------------------------------------------------

    async def recall(self, recall_id: str) -> dict[str, Any]:
        """`GET /api/recalls/{id}`: status, attempts, due_at, attempt_log, position..."""
        return await self.request("GET", f"/api/recalls/{recall_id}")

    async def recalls(self, **query: Any) -> list[dict[str, Any]]:
        """`GET /api/recalls?status=&topic=&client=&limit=`, newest first."""
        return await self.request("GET", "/api/recalls", params=query)

    async def open_recall(self, number: str, topic: str) -> dict[str, Any] | None:
        """The open (waiting or calling) request for this E.164 number and topic, if any."""
        for status in ("waiting", "calling"):
            for row in await self.recalls(status=status, topic=topic, limit=1000):
                if row["number"] == number:
                    return await self.recall(row["id"])
        return None

    # --- operations --------------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        return await self.request("POST", "/api/admin/reload")

    async def set_override(self, number: str, state: str, until: datetime, reason: str,
                           by: str = "api") -> dict[str, Any]:
        body = {"state": state, "until": until.isoformat(), "reason": reason, "by": by}
        return await self.request("PUT", f"/api/lines/{number}/override", json_body=body)

    async def clear_override(self, number: str, by: str = "api") -> bool:
        answer = await self.request("DELETE", f"/api/lines/{number}/override",
                                    params={"by": by})
        return answer["cleared"]

    async def lines(self) -> list[dict[str, Any]]:
        return await self.request("GET", "/api/lines")

    # --- Asterisk's own API ------------------------------------------------------------------

    async def asterisk(self, path: str) -> Any:
        """`GET` on Asterisk's ARI (what an operator can see in Asterisk); None if 404."""
        async with self.http.get(ARI_URL + path, headers=ARI_AUTH) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise ApiError("GET", ARI_URL + path, resp.status, await resp.text())
            return await resp.json()

    async def bridge_of(self, channel_id: str) -> dict[str, Any] | None:
        """The Asterisk bridge `channel_id` is in (ARI), or None."""
        return next((b for b in await self.asterisk("/bridges")
                     if channel_id in b["channels"]), None)

    async def until_bridged(self, channel_id: str, *others: str, timeout: float = 10
                            ) -> dict[str, Any]:
        """Until Asterisk has `channel_id` in a conversation's (mixing) bridge with `others`
        (none given: with anybody): they hear each other. That bridge."""
        def talking(bridge: dict[str, Any] | None) -> bool:
            return (bridge is not None and bridge["bridge_type"] == "mixing"
                    and set(others) <= set(bridge["channels"]) and len(bridge["channels"]) > 1)
        return await eventually(partial(self.bridge_of, channel_id), talking, timeout,
                                what=f"{channel_id} bridged with {', '.join(others) or 'anybody'}")


async def staff(desk: DeskApi, *agent_ids: str) -> None:
    """Exactly these agents available, in this order (the first is the longest idle); the
    others logged out. The database remembers logins across tests and restarts."""
    for agent in await desk.agents():
        if agent["id"] not in agent_ids:
            await desk.logout(agent["id"])
    for agent_id in agent_ids:
        state = await desk.state(agent_id)
        if state == "paused":
            await desk.resume(agent_id)
        elif state == "available":
            await desk.logout(agent_id)
        await desk.login(agent_id)


# --- what is stored and no API shows -----------------------------------------------------------
# The database through the service's store (its writer caught up first): screen pop offers,
# recall attempts' agent and dialling time, queue_log times to the microsecond.

async def stored_offers(service: Any, call_id: str) -> list[Any]:
    await service.writer.caught_up()
    return await service.store.offers_for(call_id)


async def stored_attempts(service: Any, recall_id: str) -> list[Any]:
    await service.writer.caught_up()
    return await service.store.recall_attempts(recall_id)


async def stored_queue_log(service: Any, call_id: str) -> list[Any]:
    await service.writer.caught_up()
    return await service.store.queue_log(call_id=call_id)
