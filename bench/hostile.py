"""A hostile day (issue #9): `python -m bench hostile [--calls 50]`.

While N simulated callers navigate menus (as `bench menus`: same line, same service), other
loopback addresses (127.0.0.2 and up; Asterisk fetches prompts from 127.0.0.1) attack the
service's HTTP side all at once, from a separate process (niced: it stands for other machines,
and must not take the CPU the service and Asterisk need):
  - 2,000 slow clients (50 from each of 40 addresses): each sends a request head a byte a
    second and never ends it; when the service closes it (http.idle_timeout, or at once when
    over a cap) it connects again a second later;
  - 40 clients POSTing a 770 KB JSON body with 50,000 unknown keys, over and over: half to
    /api/recalls with the portal's key, half to /api/agents/1001/pause with the agent's token;
  - 20 clients GETting /metrics in a loop.
Measured over the steady period: the calls' reaction time (the service's own figure, as
`bench menus`), the service's memory (RSS, sampled), `/healthz` latency from 127.0.0.1 (a
monitoring check: a new connection each time, from a separate process so that the load
generator's own loop does not count), the service log's size, and what the attackers got.
Targets: reaction p99 under 10 ms, memory under 300 MB, `/healthz` p99 under 100 ms.
Results: bench/results/hostile.json; `--attacks slow` (or bodies, scrapers, comma-separated)
runs only those, into hostile-<attacks>.json, to see what each one costs.

The parts run alone too: `python -m bench.hostile attack --port P --seconds S` and
`python -m bench.hostile probe --port P --seconds S` print what they saw as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import aiohttp

ATTACKS = ("slow", "bodies", "scrapers")  # the options of `attack` that say how many
SLOW_CLIENTS, SLOW_ADDRESSES = 2000, 40
BODY_CLIENTS, SCRAPERS = 40, 20
SETTLE = 5.0  # seconds of attack before the callers dial
WINDOW = 5.0  # seconds: the reactions' percentiles are also given per window of the run
TARGETS = {"reaction_p99_ms": 10.0, "service_rss_mb": 300.0, "healthz_p99_ms": 100.0}
PORTAL_KEY, AGENT, AGENT_TOKEN = "dev-portal", "1001", "dev-1001"  # tests/integration/config


def address(block: int, n: int) -> str:
    """The n-th attacker of a block: 127.0.<block>.<n + 2> (every 127.x.y.z is this machine)."""
    return f"127.0.{block}.{n + 2}"


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {"p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99),
            "max_ms": round(1000 * ordered[-1], 2)}


# --- the attackers ------------------------------------------------------------------------

async def slow_client(port: int, source: str, until: float, seen: Counter[str],
                      lifetimes: list[float], drip: float = 1.0) -> None:
    """Open a connection, send a request head a byte per `drip` seconds, never finish it;
    when the service closes it, connect again."""
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
        except OSError:
            seen["connect_failed"] += 1
            await asyncio.sleep(drip)
            continue
        opened = time.monotonic()
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: centralino\r\nX-Slow: ")
            while time.monotonic() < until:
                try:
                    await asyncio.wait_for(reader.read(4096), drip)
                    break  # closed by the service (or answered, which would be a bug)
                except TimeoutError:
                    writer.write(b"x")
                    await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()
        lived = time.monotonic() - opened
        if time.monotonic() < until:  # the service closed it
            lifetimes.append(lived)
            seen["closed_at_once" if lived < drip else "closed_later"] += 1
        await asyncio.sleep(drip)


async def repeat_request(port: int, source: str, until: float, seen: Counter[str], method: str,
                         path: str, headers: dict[str, str], body: bytes | None = None) -> None:
    """The same request again and again on one keep-alive connection (a new one when closed)."""
    connector = aiohttp.TCPConnector(local_addr=(source, 0), limit=1)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while time.monotonic() < until:
            try:
                async with session.request(method, f"http://127.0.0.1:{port}{path}", data=body,
                                           headers=headers) as resp:
                    await resp.read()
                    seen[str(resp.status)] += 1
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                seen[type(exc).__name__] += 1
                await asyncio.sleep(0.2)


def oversized_body() -> bytes:
    """The fields of a recall request and of a pause, drowned in 50,000 unknown keys: 770 KB."""
    fields: dict[str, object] = {"number": "0612345678", "topic": "alpha", "mode": "now",
                                 "reason": "bench"}
    fields.update({f"fld{n:05d}": n % 5000 for n in range(50_000)})
    return json.dumps(fields, separators=(",", ":")).encode()


async def attack(port: int, seconds: float, slow_clients: int = SLOW_CLIENTS,
                 body_clients: int = BODY_CLIENTS, scrapers: int = SCRAPERS) -> dict:
    until = time.monotonic() + seconds
    slow: Counter[str] = Counter()
    lifetimes: list[float] = []
    bodies: dict[str, Counter[str]] = {"recalls": Counter(), "agent": Counter()}
    scrapes: Counter[str] = Counter()
    body = oversized_body()
    json_type = {"Content-Type": "application/json"}
    tasks = [slow_client(port, address(0, n % SLOW_ADDRESSES), until, slow, lifetimes)
             for n in range(slow_clients)]
    for n in range(body_clients):
        target, path, token = (("recalls", "/api/recalls", PORTAL_KEY) if n % 2 == 0 else
                               ("agent", f"/api/agents/{AGENT}/pause", AGENT_TOKEN))
        tasks.append(repeat_request(port, address(1, n), until, bodies[target], "POST", path,
                                    {**json_type, "Authorization": f"Bearer {token}"}, body))
    tasks += [repeat_request(port, address(2, n), until, scrapes, "GET", "/metrics", {})
              for n in range(scrapers)]
    await asyncio.gather(*tasks)
    longest = round(max(lifetimes, default=0), 1)
    return {"seconds": seconds, "slow_clients": {**slow, "longest_open_s": longest},
            "oversized_bodies": {"bytes": len(body), **{k: dict(v) for k, v in bodies.items()}},
            "metric_scrapes": dict(scrapes)}


def probe(port: int, seconds: float, every: float = 0.05) -> dict:
    """GET /healthz from 127.0.0.1, a new connection each time, as a monitoring check does."""
    latencies: list[float] = []
    failed: Counter[str] = Counter()
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        started = time.monotonic()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
                resp.read()
            latencies.append(time.monotonic() - started)
        except OSError as exc:
            failed[type(exc).__name__] += 1
        time.sleep(max(0.0, every - (time.monotonic() - started)))
    return {"requests": len(latencies) + sum(failed.values()), "failed": dict(failed),
            **percentiles(latencies)}


# --- the benchmark ------------------------------------------------------------------------

def _part(role: str, port: int, seconds: float, *options: str) -> subprocess.Popen[bytes]:
    # The attack stands for other machines: niced, so that on this one it does not take the CPU
    # the service and Asterisk need (the calls would measure the load generator).
    nice = ["nice", "-n", "10"] if role == "attack" else []
    return subprocess.Popen([*nice, sys.executable, "-m", "bench.hostile", role, "--port",
                             str(port), "--seconds", str(seconds), *options],
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])


def _result(proc: subprocess.Popen[bytes]) -> dict:
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        return {"error": "did not finish"}
    return json.loads(out) if proc.returncode == 0 else {"error": f"exit {proc.returncode}"}


def _reactions() -> list[tuple[float, float]]:
    """The service's reactions (wall, loop CPU; ms) since the last call, forgotten there."""
    answer = _admin("/api/admin/ari-latency?reset=1&samples=1")
    return [(w, c) for w, c in answer.get("samples_ms", [])]


def _percentiles(reactions: list[tuple[float, float]]) -> dict:
    """As /api/admin/ari-latency computes them, over `reactions` (ms)."""
    out: dict = {"count": len(reactions)}
    for i, clock in enumerate(("wall", "cpu")):
        series = sorted(r[i] for r in reactions)
        if not series:
            continue
        q = statistics.quantiles(series, n=100, method="inclusive") if len(series) > 1 \
            else series * 99
        out[clock] = {"p50_ms": q[49], "p90_ms": q[89], "p99_ms": q[98], "max_ms": series[-1]}
    return out


def _admin(path: str) -> dict:
    """The admin API, patient: under attack the service may take long to answer."""
    from bench.__main__ import PORT

    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}",
                                     headers={"Authorization": "Bearer test-admin-token"})
    try:
        with urllib.request.urlopen(request, timeout=60) as resp:
            return json.loads(resp.read())
    except OSError as exc:
        return {"error": repr(exc)}


async def run_hostile(calls: int, ramp: float, steady: float,
                      attacks: Iterable[str] = ATTACKS) -> dict:
    """The benchmark; `attacks`: some of ATTACKS only, to see what each one costs."""
    from bench.__main__ import (
        CODEC,
        PORT,
        asterisk_pid,
        cpu_seconds,
        end_calls,
        place_callers,
        rss_bytes,
        start_service,
        warm_up,
    )
    from centralino.simcaller import SimCaller

    parts: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "service.log"
        with open(log_path, "wb") as log:  # noqa: ASYNC230 - once, before any load
            proc = start_service(Path(tmp), log)
        try:
            ast = asterisk_pid()
            async with SimCaller("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
                await warm_up(sim)
                rss_before = rss_bytes(proc.pid)
                attacker = _part("attack", PORT, SETTLE + ramp + 2 + steady + 1, *(
                    f"--{name}=0" for name in ATTACKS if name not in attacks))
                parts.append(attacker)
                await asyncio.sleep(SETTLE)
                ramp_end = time.monotonic() + ramp
                until = ramp_end + steady
                dialled, tasks = await place_callers(sim, calls, ramp, until)
                await asyncio.sleep(max(0.0, ramp_end - time.monotonic()) + 2)
                prober = _part("probe", PORT, steady)
                parts.append(prober)
                # In a thread: the simulated callers go on pressing keys however long it takes.
                t0, cpu0 = time.monotonic(), cpu_seconds(proc.pid)
                ast0 = cpu_seconds(ast) if ast else 0
                await asyncio.to_thread(_admin, "/api/admin/ari-latency?reset=1")
                rss_peak = rss_bytes(proc.pid)
                navigating = asyncio.gather(*tasks, return_exceptions=True)
                windows: list[list[tuple[float, float]]] = []  # reactions, WINDOW s each
                next_window = time.monotonic() + WINDOW
                while not navigating.done():
                    rss_peak = max(rss_peak, rss_bytes(proc.pid))
                    await asyncio.wait([navigating], timeout=0.5)
                    if time.monotonic() >= next_window:
                        windows.append(await asyncio.to_thread(_reactions))
                        next_window += WINDOW
                keys = navigating.result()
                t1, cpu1 = time.monotonic(), cpu_seconds(proc.pid)
                ast1 = cpu_seconds(ast) if ast else 0
                windows.append(await asyncio.to_thread(_reactions))
                latency = _percentiles([r for window in windows for r in window])
                in_progress = (await asyncio.to_thread(_admin, "/healthz")).get("calls_in_progress")
                attacked = await asyncio.to_thread(_result, attacker)
                healthz = await asyncio.to_thread(_result, prober)
                await end_calls(sim, dialled)
        finally:
            for part in parts:
                if part.poll() is None:
                    part.kill()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        log_text = log_path.read_text(errors="replace")
    errors = [k for k in keys if isinstance(k, BaseException)]
    elapsed = t1 - t0
    measured = {"reaction_p99_ms": latency.get("wall", {}).get("p99_ms"),
                "service_rss_mb": round(rss_peak / 2**20, 1),
                "healthz_p99_ms": healthz.get("p99_ms")}
    return {
        "benchmark": "hostile", "attacks": [name for name in ATTACKS if name in attacks],
        "concurrent_calls": calls, "steady_seconds": round(elapsed, 1),
        # Callers who failed mean the figures of the others do not describe the calls.
        "targets": {name: {"target": TARGETS[name],
                           "measured": None if value is None else round(value, 2),
                           "met": value is not None and value < TARGETS[name] and not errors}
                    for name, value in measured.items()},
        "calls_up_at_end": in_progress,
        "keys_pressed": sum(k for k in keys if isinstance(k, int)),
        "failed_callers": len(errors), "first_error": repr(errors[0]) if errors else None,
        "latency_ms": {clock: {k: round(v, 3) for k, v in latency[clock].items()}
                       for clock in ("wall", "cpu") if clock in latency},
        "latency_samples": latency.get("count", 0),
        # Where in the run the slow reactions were (an outlier run, placed in time).
        "windows": [{"from_s": WINDOW * i, "count": len(w),
                     "p99_ms": _percentiles(w).get("wall", {}).get("p99_ms"),
                     "max_ms": max((r[0] for r in w), default=None)}
                    for i, w in enumerate(windows)],
        "healthz": healthz,
        "service_cpu_percent": round(100 * (cpu1 - cpu0) / elapsed, 1),
        "service_rss_mb_before": round(rss_before / 2**20, 1),
        "service_rss_mb_peak": round(rss_peak / 2**20, 1),
        "service_log": {"bytes": len(log_text.encode()), "lines": log_text.count("\n"),
                        "too_many_open_files": log_text.count("Too many open files"),
                        "first_lines": [line[:300] for line in log_text.splitlines()[:5]]},
        "asterisk_cpu_percent": round(100 * (ast1 - ast0) / elapsed, 1) if ast else None,
        "attack": attacked,
        "caller_codec": CODEC,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=["attack", "probe"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--slow", type=int, default=SLOW_CLIENTS, help="attack: slow clients")
    parser.add_argument("--bodies", type=int, default=BODY_CLIENTS,
                        help="attack: clients sending oversized bodies")
    parser.add_argument("--scrapers", type=int, default=SCRAPERS, help="attack: /metrics loops")
    args = parser.parse_args()
    if args.role == "probe":
        print(json.dumps(probe(args.port, args.seconds)))
        return
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # 2,000 sockets and more
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(attack(args.port, args.seconds, args.slow, args.bodies,
                                        args.scrapers))))


if __name__ == "__main__":
    main()
