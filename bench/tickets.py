"""Tickets at scale: `python -m bench tickets` (PostgreSQL: CENTRALINO_BENCH_DATABASE_URL,
default the test cluster's `centralino_bench_tickets`, dropped and made again).

1. 1,000,000 tickets are written straight into the database (generate_series): years of a
   busy desk, most closed, a few thousand open in every state, owned by the test agents.
2. `centralino run` starts on them (how long it takes: it loads the open ones for the
   distributor), with every agent logged out, so nothing is handed out during the run.
3. The inbox: agents ask `GET /api/tickets` one after another; the supervisor the board.
   Measured per request, over HTTP: p50/p99.
4. The web form: citizens send it at `--rate` per second (50) for `--steady` seconds while
   `--calls` callers go through the menus (the calls the service serves meanwhile). Measured
   per submission, over HTTP, POST to the 303: p50/p99, and the ARI reaction's p99 meanwhile.
Results go to bench/results/tickets.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from bench.__main__ import (
    PORT,
    RESULTS,
    api,
    cpu_seconds,
    place_callers,
    start_service,
    warm_up,
)
from centralino.simcaller import SimCaller
from centralino.storage.store import Store

DEFAULT_DB = "postgresql+asyncpg://postgres@127.0.0.1:55432/centralino_bench_tickets"
BASE = f"http://127.0.0.1:{PORT}"
AGENTS = ["1001", "1002", "1003", "1004"]

# 1M rows in one statement: 95 % closed; 2 % new, 1 % in charge (of the four test agents),
# 1 % escalated to back-office, 1 % waiting for the citizen (1001's); topics alpha and beta of
# tests/integration/config; numbers of 2025 (this year's start at 1).
SEED = """
INSERT INTO tickets (id, number, prefix, year, seq, topic, subject, channel, requester_name,
    requester_email, requester_phone, level, priority, owner, state, created_at, updated_at,
    first_response_due, resolution_due, status_token_sha256)
SELECT md5('t' || n), 'IT-2025-' || lpad(n::text, 7, '0'), 'IT', 2025, n,
    CASE WHEN n % 2 = 0 THEN 'alpha' ELSE 'beta' END, 'Altro',
    CASE WHEN n % 3 = 0 THEN 'email' ELSE 'web' END, 'Cittadino ' || n,
    'c' || n || '@esempio.it', '+39347' || lpad((n % 10000000)::text, 7, '0'),
    CASE WHEN n % 100 = 98 THEN 'back-office' ELSE 'I' END, 'normal',
    CASE WHEN n % 100 = 97 THEN '100' || (1 + n % 4) WHEN n % 100 = 99 THEN '1001' END,
    CASE WHEN n % 100 IN (95, 96) THEN 'nuovo'
         WHEN n % 100 = 97 THEN 'preso in carico'
         WHEN n % 100 = 98 THEN 'escalato'
         WHEN n % 100 = 99 THEN 'in attesa del cittadino'
         ELSE 'chiuso' END,
    ts, ts, ts + interval '8 hours', ts + interval '40 hours', md5('s' || n) || md5('x' || n)
FROM generate_series(1, {count}) AS n,
     LATERAL (SELECT timestamptz '2025-01-01' + (n * interval '30 seconds') AS ts) AS t
"""


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"count": len(ordered), "p50_ms": at(0.5), "p99_ms": at(0.99),
            "max_ms": round(ordered[-1] * 1000, 2)}


async def fresh_database(url: str) -> str:
    """The benchmark's database dropped and made again, at the latest schema; its plain
    (asyncpg) URL."""
    plain = url.replace("+asyncpg", "")
    server, name = plain.rsplit("/", 1)
    admin = await asyncpg.connect(f"{server}/postgres")
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    async with Store(url):  # the schema, by the migrations
        pass
    return plain


async def seed(url: str, count: int) -> tuple[float, str]:
    plain = await fresh_database(url)
    started = time.monotonic()
    db = await asyncpg.connect(plain)
    await db.execute(SEED.format(count=count))
    await db.execute("ANALYZE tickets")
    version = await db.fetchval("SHOW server_version")
    await db.close()
    return time.monotonic() - started, version


async def inbox(session: aiohttp.ClientSession, requests: int) -> dict[str, Any]:
    took: list[float] = []
    board: list[float] = []
    for n in range(requests):
        agent = AGENTS[n % len(AGENTS)]
        t0 = time.perf_counter()
        async with session.get(f"{BASE}/api/tickets",
                               headers={"Authorization": f"Bearer dev-{agent}"}) as resp:
            assert resp.status == 200, await resp.text()
            await resp.read()
        took.append(time.perf_counter() - t0)
        if n % 10 == 0:
            t0 = time.perf_counter()
            async with session.get(f"{BASE}/api/tickets/board",
                                   headers={"Authorization": "Bearer dev-sup"}) as resp:
                assert resp.status == 200, await resp.text()
                await resp.read()
            board.append(time.perf_counter() - t0)
    return {"inbox": percentiles(took), "board": percentiles(board)}


async def citizen(session: aiohttp.ClientSession, n: int, took: list[float],
                  failed: list[str]) -> None:
    """One citizen: the form, then sending it (the part measured)."""
    async with session.get(f"{BASE}/richieste") as resp:
        page = await resp.text()
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    assert token, page[:200]
    fields = {"argomento": "alpha|Informazioni", "body": f"Richiesta numero {n}",
              "name": f"Cittadino {n}", "email": f"b{n}@esempio.it", "consent": "si",
              "csrf": token.group(1)}
    t0 = time.perf_counter()
    async with session.post(f"{BASE}/richieste", data=fields, allow_redirects=False) as resp:
        if resp.status != 303:
            failed.append(f"{resp.status}: {(await resp.text())[:200]}")
            return
    took.append(time.perf_counter() - t0)


async def forms(rate: float, seconds: float) -> dict[str, Any]:
    took: list[float] = []
    failed: list[str] = []
    tasks = []
    start = time.monotonic()
    n = 0
    while (elapsed := time.monotonic() - start) < seconds:
        # Each citizen has their own browser (cookie jar); connections are not shared.
        # (unsafe: aiohttp keeps no cookie of an IP address otherwise, and the form's
        # anti-forgery token needs its cookie)
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        task = asyncio.create_task(citizen(session, n, took, failed))
        task.add_done_callback(lambda _, s=session: asyncio.ensure_future(s.close()))
        tasks.append(task)
        n += 1
        await asyncio.sleep(max(0.0, n / rate - elapsed))
    await asyncio.gather(*tasks, return_exceptions=True)
    return {"rate_per_second": rate, "sent": n, "failed": len(failed),
            "first_failure": failed[0] if failed else None, **percentiles(took or [0.0])}


async def run(count: int, rate: float, seconds: float, calls: int) -> dict[str, Any]:
    url = os.environ.get("CENTRALINO_BENCH_DATABASE_URL", DEFAULT_DB)
    seeded, version = await seed(url, count)
    os.environ["CENTRALINO_BENCH_DATABASE_URL"] = url
    os.environ["CENTRALINO_TICKETS__PER_ADDRESS_PER_HOUR"] = "10000"  # one address sends all
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["CENTRALINO_TICKETS__ATTACHMENTS"] = tmp
        t0 = time.monotonic()
        proc = start_service(Path(tmp))
        startup = time.monotonic() - t0
        try:
            async with aiohttp.ClientSession() as session:
                await inbox(session, 40)  # warm: connection pools, statement caches
                reading = await inbox(session, 1000)
            async with SimCaller("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
                await warm_up(sim)
                api("/api/admin/ari-latency?reset=1")
                until = time.monotonic() + seconds + 10
                dialled, navigating = await place_callers(sim, calls, 5, until)
                cpu0 = cpu_seconds(proc.pid)
                writing = await forms(rate, seconds)
                cpu = cpu_seconds(proc.pid) - cpu0
                latency = api("/api/admin/ari-latency")
                calls_up = api("/healthz")["calls_in_progress"]
                for call in dialled:
                    await sim.ari.hangup(call.id)
                for task in navigating:
                    task.cancel()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    return {
        "benchmark": "tickets", "tickets_in_database": count,
        "seed_seconds": round(seeded, 1), "service_start_seconds": round(startup, 1),
        **reading, "form": writing, "calls_meanwhile": calls, "calls_up_during": calls_up,
        "ari_reaction_ms_during_forms": {k: round(v, 3) for k, v in latency["wall"].items()},
        "service_cpu_percent_during_forms": round(100 * cpu / seconds, 1),
        "database": f"PostgreSQL {version}",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
    }


def main(count: int, rate: float, seconds: float, calls: int) -> None:
    result = asyncio.run(run(count, rate, seconds, calls))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "tickets.json").write_text(json.dumps(result, indent=2) + "\n")
