"""The HTTP side on a hostile day (issue #9): `centralino run` with the open files limit systemd
usually gives (1,024, soft and hard), flooded by 2,000 slow clients, from one address or from
many, still answers /healthz, still serves the prompts a real call plays (Asterisk fetches them
from 127.0.0.1) and still records the call; idle and slow connections are closed after
http.idle_timeout; the log stays small."""

from __future__ import annotations

import asyncio
import random
import resource
import time
import urllib.request
from collections import Counter
from functools import partial

import pytest

from bench.hostile import slow_client
from tests.integration.conftest import MENU, api_get, service_process
from tests.integration.waiting import eventually

CHAIN = ["cost", "welcome", "promo_now", "privacy", "menu_main"]
IDLE_TIMEOUT = 3
FLOOD = 2000


def _descriptors_1024() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def limited(tmp_path, asterisk):
    """The service with 1,024 descriptors at most, on a port of its own: the prompts' URLs are
    new to Asterisk, which must fetch them during the flood."""
    port = random.randrange(18200, 18900)
    yield from service_process(tmp_path, port, preexec_fn=_descriptors_1024,
                               CENTRALINO_HTTP__IDLE_TIMEOUT=str(IDLE_TIMEOUT))


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    return 0.0


async def call_is_recorded(port: int, caller) -> None:
    """A real call through Asterisk: the prompts it hears, then its record."""
    call = await caller.dial(MENU)
    await call.wait_heard("menu_main", timeout=60)
    assert call.heard == CHAIN
    await call.hangup()
    found = await eventually(
        partial(asyncio.to_thread, api_get, f"/api/calls?channel_id={call.service_half}", port),
        lambda found: found and found[0]["outcome"] is not None, timeout=30, every=0.2,
        what="the call's record")
    assert found[0]["outcome"] == "caller_hangup"


async def flooded(port: int, sources: list[str], check) -> tuple[Counter[str], list[float]]:
    """Run `check` while FLOOD slow clients from `sources` hold and retry connections."""
    seen: Counter[str] = Counter()
    lifetimes: list[float] = []
    until = time.monotonic() + 600  # stopped by cancelling
    clients = [asyncio.create_task(slow_client(port, sources[n % len(sources)], until, seen,
                                               lifetimes)) for n in range(FLOOD)]
    try:
        async with asyncio.timeout(60):  # the flood is on: most are closed at once, again
            while seen["closed_at_once"] < FLOOD:
                await asyncio.sleep(0.2)
        for _ in range(10):
            assert (await asyncio.to_thread(api_get, "/healthz", port))["status"] == "ok"
        await check()
        async with asyncio.timeout(60):  # and those let in are closed after the timeout
            while seen["closed_later"] < 100:
                await asyncio.sleep(0.2)
    finally:
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    return seen, lifetimes


def _more_descriptors_for_the_clients() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def test_slow_clients_from_one_address_get_100_connections_and_no_more(limited, caller):
    proc, _, env, log = limited
    port = int(env["CENTRALINO_HTTP__PORT"])
    _more_descriptors_for_the_clients()

    async def check() -> None:
        assert metric(port, "centralino_http_connections") <= 100 + 5  # ours and Asterisk's
        await call_is_recorded(port, caller)

    _, lifetimes = await flooded(port, ["127.0.0.2"], check)
    assert max(lifetimes) < 30  # closed after ~3 s, however slowly they keep sending
    assert metric(port, 'centralino_http_connections_refused_total{reason="per_address"}') > 0
    assert metric(port, 'centralino_http_connections_refused_total{reason="total"}') == 0

    # Slow: one client alone, sending a byte of its head every half second, is still closed
    # (aiohttp's default would give it an hour).
    alone: Counter[str] = Counter()
    await slow_client(port, "127.0.0.3", time.monotonic() + 20, alone, [], drip=0.5)
    assert alone["closed_later"] >= 2 and alone["closed_at_once"] == 0

    # Idle: a connection that never sends, and one kept alive after its answer.
    silent = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
    kept = await asyncio.open_connection("127.0.0.1", port, local_addr=("127.0.0.3", 0))
    kept[1].write(b"GET /healthz HTTP/1.1\r\nHost: centralino\r\n\r\n")
    assert (await kept[0].readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    for reader, writer in (silent, kept):
        async with asyncio.timeout(30):
            while await reader.read(4096):
                pass  # the rest of the answer, then the end: closed by the service
        writer.close()

    assert proc.poll() is None
    text = log.read_text()
    assert "Too many open files" not in text
    assert 1 <= text.count("refused a connection") <= 2  # once a minute, not per connection
    assert len(text.splitlines()) < 50 and len(text) < 20_000, text[-3000:]


async def test_a_flood_from_many_addresses_leaves_room_for_asterisk(limited, caller):
    proc, _, env, log = limited
    port = int(env["CENTRALINO_HTTP__PORT"])
    _more_descriptors_for_the_clients()
    sources = [f"127.0.3.{n}" for n in range(2, 202)]  # 200 addresses, 10 clients each

    async def check() -> None:
        # 1,024 descriptors, 256 kept for the rest, two per connection, 100 for Asterisk's
        # address: 284 for everybody else together.
        assert metric(port, "centralino_http_connections") <= 284 + 5
        await call_is_recorded(port, caller)

    await flooded(port, sources, check)
    assert metric(port, 'centralino_http_connections_refused_total{reason="total"}') > 0
    assert metric(port, 'centralino_http_connections_refused_total{reason="per_address"}') == 0
    assert proc.poll() is None
    text = log.read_text()
    assert "Too many open files" not in text
    assert len(text.splitlines()) < 50 and len(text) < 20_000, text[-3000:]
