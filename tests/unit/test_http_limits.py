"""The HTTP side's caps (centralino.web.site): the bookkeeping and the budget, without sockets;
the listening site itself on loopback."""

from __future__ import annotations

import asyncio
import socket

from aiohttp import web

from centralino.web.site import ConnectionLimits, GuardedSite, shared_budget


def test_one_address_gets_at_most_its_share():
    limits = ConnectionLimits(per_address=2, shared=10)
    assert [limits.admit("10.0.0.1") for _ in range(3)] == [None, None, "per_address"]
    assert limits.admit("10.0.0.2") is None
    assert limits.total == 3 and limits.shared_open == 3


def test_all_other_addresses_share_the_pool():
    limits = ConnectionLimits(per_address=5, shared=3)
    assert [limits.admit(f"10.0.0.{n}") for n in range(4)] == [None, None, None, "total"]
    limits.release("10.0.0.0")
    assert limits.admit("10.0.0.9") is None


def test_priority_addresses_have_room_when_the_pool_is_full():
    limits = ConnectionLimits(per_address=2, shared=1, priority={"127.0.0.1"})
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.2") == "total"
    assert [limits.admit("127.0.0.1") for _ in range(3)] == [None, None, "per_address"]
    assert limits.shared_open == 1  # Asterisk's connections are not in the shared pool


def test_released_addresses_are_forgotten():
    limits = ConnectionLimits(per_address=2, shared=4, priority={"127.0.0.1"})
    for address in ("10.0.0.1", "10.0.0.1", "127.0.0.1"):
        limits.admit(address)
    for address in ("10.0.0.1", "10.0.0.1", "127.0.0.1"):
        limits.release(address)
    assert limits.open == {} and limits.shared_open == 0 and limits.total == 0


def test_an_address_whose_requests_keep_being_refused_is_barred_for_a_while():
    now = [0.0]
    limits = ConnectionLimits(per_address=5, shared=10, priority={"127.0.0.1"}, abuse_limit=3,
                              abuse_window=60, clock=lambda: now[0])
    for second in (0, 20, 59):  # three refusals within a minute
        now[0] = second
        assert limits.admit("10.0.0.1") is None
        limits.release("10.0.0.1")
        limits.abused("10.0.0.1")
    assert limits.admit("10.0.0.1") == "barred"
    assert limits.admit("10.0.0.2") is None  # others are not
    for _ in range(10):
        limits.abused("127.0.0.1")  # Asterisk's address (a priority one) never is
    assert limits.admit("127.0.0.1") is None
    now[0] = 59 + 60  # a minute later it may try again
    assert limits.admit("10.0.0.1") is None


def test_refusals_spread_over_more_than_the_window_bar_nobody():
    now = [0.0]
    limits = ConnectionLimits(per_address=5, shared=10, abuse_limit=3, abuse_window=60,
                              clock=lambda: now[0])
    for second in (0, 40, 80, 120, 160):
        now[0] = second
        limits.abused("10.0.0.1")
    assert limits.admit("10.0.0.1") is None
    off = ConnectionLimits(per_address=5, shared=10, abuse_limit=0)
    for _ in range(100):
        off.abused("10.0.0.1")
    assert off.admit("10.0.0.1") is None


def test_budget_keeps_the_reserve_and_two_descriptors_per_connection():
    # 1,024 open files, 256 kept: 384 connections, of which 100 are Asterisk's own.
    assert shared_budget(1024, 256, per_address=100, priority=1, cap=1000) == 284
    assert shared_budget(1_048_576, 256, per_address=100, priority=1, cap=1000) == 1000
    assert shared_budget(300, 256, per_address=100, priority=1, cap=1000) == 0


async def test_the_site_closes_what_is_over_a_cap_at_once_and_serves_the_rest():
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="hello")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, keepalive_timeout=30)
    await runner.setup()
    limits = ConnectionLimits(per_address=2, shared=10)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    await GuardedSite(runner, "127.0.0.1", port, limits).start()
    try:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await asyncio.sleep(0.1)
        assert limits.total == 2
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed without a word
        writer.close()
        for _, w in held:
            w.close()
        await asyncio.sleep(0.1)
        assert limits.total == 0
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).endswith(b"hello")
        writer.close()
    finally:
        await runner.cleanup()


async def test_connections_opened_together_are_not_all_closed_together():
    """A flood's connections, opened in one burst and never sending a request, are closed
    between idle_timeout and 1.5 times it, each at its own time (all at once stalled every
    call: bench hostile)."""
    app = web.Application()
    runner = web.AppRunner(app, keepalive_timeout=1.0)
    await runner.setup()
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    await GuardedSite(runner, "127.0.0.1", port, ConnectionLimits(per_address=50, shared=50)
                      ).start()
    loop = asyncio.get_running_loop()
    try:
        opened = loop.time()
        connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(20)]

        async def closed(reader: asyncio.StreamReader) -> float:
            assert await asyncio.wait_for(reader.read(), 5) == b""
            return loop.time() - opened
        after = sorted(await asyncio.gather(*(closed(r) for r, _ in connections)))
        for _, writer in connections:
            writer.close()
        assert after[0] >= 0.95 and after[-1] <= 1.5 + 0.3, after
        assert after[-1] - after[0] > 0.15, after  # spread, not one burst
    finally:
        await runner.cleanup()
