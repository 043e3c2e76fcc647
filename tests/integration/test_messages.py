"""Every message of the console and supervisor WebSockets matches the JSON Schema the service
serves (cti.messages), on real calls: a caller who gives up, a caller served by an agent (a
console reopened during the call), a recall; and a refused socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from cti.messages import CLIENT, SERVER
from tests import schema_check
from tests.integration.desk_api import staff
from tests.integration.test_recalls_placed import ask, bridged, status_is

BASE = "http://127.0.0.1:18081"
DIRECT = "0999000002"  # straight to queue beta (agents 1001 and 1003)
SERVER_MESSAGE = {"$ref": "#/$defs/ServerMessage"}
CLIENT_MESSAGE = {"$ref": "#/$defs/ClientMessage"}

Message = dict[str, Any]


class Socket:
    """A WebSocket of the service, every message it receives kept (and what we sent)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws = ws
        self.received: list[Message] = []
        self.sent: list[Message] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                self.received.append(json.loads(msg.data))

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        await self.ws.send_json(message)

    async def until(self, check: Callable[[Message], bool], timeout: float = 20,
                    after: Message | None = None) -> Message:
        """The first message received (so far or next, after `after`) for which `check`
        holds."""
        start = 0 if after is None else next(
            n for n, m in enumerate(self.received) if m is after) + 1
        async with asyncio.timeout(timeout):
            while True:
                for m in self.received[start:]:
                    if check(m):
                        return m
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


async def connect(http: aiohttp.ClientSession, path: str, first: Message) -> Socket:
    socket = Socket(await http.ws_connect(BASE + path))
    await socket.send(first)
    return socket


async def served_schema(http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{BASE}/api/schema/console.json") as resp:  # no token needed
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "application/schema+json"
        schema: dict[str, Any] = await resp.json(content_type=None)
    assert schema_check.problems(schema) == []
    return schema


def all_match(schema: dict[str, Any], sockets: list[Socket]) -> set[str]:
    """Check every message both ways against the served schema (and the models): the kinds
    of server message seen (type, or type:event)."""
    kinds = set()
    for socket in sockets:
        for message in socket.received:
            assert schema_check.errors(schema, message, SERVER_MESSAGE) == [], message
            assert SERVER.validate_python(message).model_dump(mode="json") == message
            kinds.add(message["type"] + (f":{message['event']}" if "event" in message else ""))
        for message in socket.sent:
            assert schema_check.errors(schema, message, CLIENT_MESSAGE) == [], message
            CLIENT.validate_python(message)
    return kinds


def wrap_up_of(socket: Socket) -> Message:
    return next(m for m in socket.received if is_agent("1003", "wrap_up")(m))


def is_agent(agent: str, state: str) -> Callable[[Message], bool]:
    return lambda m: m["type"] == "agent" and m["agent"] == agent and m["state"] == state


async def test_a_served_call_and_an_abandoned_one_send_only_messages_of_the_schema(
        start_service, desk, caller, phones):
    await start_service()
    await staff(desk)
    phones.set("1003", "answer", delay=0.5)
    async with aiohttp.ClientSession() as http:
        schema = await served_schema(http)
        refused = await connect(http, "/ws/supervisor", {"token": "dev-1003"})  # no supervisor
        await refused.until(lambda m: m["type"] == "error")
        board = await connect(http, "/ws/supervisor", {"token": "dev-sup"})
        await board.until(lambda m: m["type"] == "snapshot")
        console = await connect(http, "/ws/agents/1003", {"token": "dev-1003", "states": True})
        await console.until(lambda m: m["type"] == "hello")

        gone = await caller.dial(DIRECT, caller_number="0655500000")  # nobody logged in yet
        await board.until(lambda m: m.get("event") == "joined")
        await gone.hangup()
        await board.until(lambda m: m.get("event") == "left")

        async with http.post(f"{BASE}/api/agents/1003/login",
                             headers={"Authorization": "Bearer dev-1003"}) as resp:
            assert resp.status == 200
        await console.until(is_agent("1003", "available"))
        call = await caller.dial(DIRECT, caller_number="0655511111")
        pop = await console.until(lambda m: m["type"] == "offer")
        await console.send({"type": "ack", "offer_id": pop["offer_id"]})
        await board.until(lambda m: m.get("event") == "connected")
        await console.until(is_agent("1003", "on_call"))
        # A console reopened during the call: its hello carries the pop again.
        again = await connect(http, "/ws/agents/1003", {"token": "dev-1003"})
        hello = await again.until(lambda m: m["type"] == "hello")
        assert hello["offer"] == pop
        await call.hangup()
        wrap_up = await board.until(is_agent("1003", "wrap_up"))
        await board.until(is_agent("1003", "available"), after=wrap_up, timeout=10)
        await console.until(is_agent("1003", "available"), after=wrap_up_of(console))
        for socket in (refused, board, console, again):
            await socket.close()
    kinds = all_match(schema, [refused, board, console, again])
    assert kinds == {"error", "snapshot", "hello", "agent", "offer", "queue:joined",
                     "queue:left", "queue:connected"}
    assert pop["caller_number"] == "0655511111" and pop["topic"] == "beta"


async def test_a_recall_sends_only_messages_of_the_schema(start_service, desk, phones,
                                                          citizens):
    await start_service()
    await staff(desk)
    phones.set("1003", "answer", delay=0.1)
    async with aiohttp.ClientSession() as http:
        schema = await served_schema(http)
        board = await connect(http, "/ws/supervisor", {"token": "dev-sup"})
        await board.until(lambda m: m["type"] == "snapshot")
        console = await connect(http, "/ws/agents/1003", {"token": "dev-1003", "states": True})
        await console.until(lambda m: m["type"] == "hello")
        recall_id, national = await ask()
        citizens.set(national, "answer", delay=0.2)
        await board.until(lambda m: m.get("event") == "joined" and m["call_id"] == recall_id)
        await staff(desk, "1003")
        pop = await console.until(lambda m: m["type"] == "recall")
        await console.send({"type": "ack", "offer_id": pop["offer_id"]})
        citizen = await citizens.wait_answered(national)
        await board.until(lambda m: m.get("event") == "connected")
        await bridged(desk, recall_id)  # hung up before: no answer, tried again
        await citizens.hang_up(citizen)
        outcome = await console.until(lambda m: m["type"] == "recall_outcome")
        await status_is(desk, recall_id, "done")
        for socket in (board, console):
            await socket.close()
    kinds = all_match(schema, [board, console])
    assert {"recall", "recall_outcome", "queue:joined", "queue:connected"} <= kinds
    assert (pop["recall_id"], outcome["call_id"], outcome["outcome"]) == (
        recall_id, recall_id, "answered")
    joined = next(m for m in board.received if m.get("event") == "joined")
    assert joined["recall"] is True
