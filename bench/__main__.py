"""Benchmarks against the real Asterisk: `./dev bench` or `python -m bench menus --calls 50 200`,
`python -m bench fullflow` (the whole flow against native app_queue: see bench/fullflow.py),
`python -m bench hostile` (menus while the service is attacked: see bench/hostile.py),
`python -m bench tickets` (1,000,000 tickets in PostgreSQL: see bench/tickets.py),
`python -m bench mail` (10,000 messages waiting in a mailbox, then IDLE: see bench/mail.py).
Each loads the dialplan it needs into the development Asterisk first (starting it if need be).

menus: N simulated callers navigate the test line's menus at the same time (barge-in into a
submenu, an information message, back, again) through the real Asterisk, while `centralino run`
serves them as a separate process. Measured:
  - the service's added latency: ARI event read off the socket -> the command it caused sent
    (p50/p99, from the service's own /api/admin/ari-latency);
  - service CPU per call (utime+stime of the process over the steady period / calls);
  - service memory per call ((RSS with N calls up - RSS before) / N);
  - Asterisk's CPU, for context.
Results are written to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO

from centralino.dialplan import render_merged
from centralino.simcaller import SimCall, SimCaller

REPO = Path(__file__).resolve().parents[1]
SETTINGS = REPO / "tests" / "integration" / "config" / "centralino.yaml"
EXAMPLE_SETTINGS = REPO / "config" / "centralino.yaml"
DIALPLAN = REPO / "var" / "bench-dialplan.conf"
CHROOT = REPO / "asterisk-dev" / "chroot.sh"
RESULTS = Path(__file__).parent / "results"
PORT = 18090
# The simulated callers' codec. slin (8 kHz linear) needs no transcoding of our 8 kHz prompts, so
# Asterisk leaves more CPU to the service under test; CENTRALINO_BENCH_CODEC=alaw measures the
# heavier case of a SIP trunk.
CODEC = os.environ.get("CENTRALINO_BENCH_CODEC", "slin")
MENU = "0999000001"
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


def asterisk_pid() -> int | None:
    out = subprocess.run(["pgrep", "-f", "^asterisk -U asterisk"], capture_output=True, text=True,
                         check=False)  # none found: exit status 1
    return int(out.stdout.split()[0]) if out.stdout.split() else None


def api(path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}",
                                     headers={"Authorization": "Bearer test-admin-token"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def load_dialplan() -> None:
    """Route the numbers the benchmarks dial. `./dev run` or a restarted Asterisk loads only the
    example's numbers; the example's stay routed too, so a `./dev run` beside keeps working."""
    DIALPLAN.parent.mkdir(exist_ok=True)
    DIALPLAN.write_text(render_merged([EXAMPLE_SETTINGS, SETTINGS], "centralino"))
    env = {**os.environ, "CENTRALINO_DIALPLAN": str(DIALPLAN)}  # kept if Asterisk restarts
    for command in (["start"], ["dialplan", str(DIALPLAN)]):
        subprocess.run(["bash", str(CHROOT), *command], check=True, env=env,
                       stdout=subprocess.DEVNULL)


def start_service(workdir: Path, log: IO[bytes] | None = None) -> subprocess.Popen:
    env = {**os.environ,
           "CENTRALINO_HTTP__PORT": str(PORT),
           "CENTRALINO_HTTP__PUBLIC_URL": f"http://127.0.0.1:{PORT}",
           "CENTRALINO_DATABASE__URL": os.environ.get(
               "CENTRALINO_BENCH_DATABASE_URL", f"sqlite+aiosqlite:///{workdir}/bench.db"),
           "CENTRALINO_CLOCK_START": "2026-12-01T10:00:00+01:00",
           # The default (the tests' configuration renders /metrics at every scrape).
           "CENTRALINO_HTTP__METRICS_MAX_AGE": "5",
           "CENTRALINO_LOG_LEVEL": "warning"}
    nice = ["nice", "-n", os.environ.get("CENTRALINO_BENCH_NICE", "0")]
    proc = subprocess.Popen([*nice, sys.executable, "-m", "centralino", "--settings", str(SETTINGS),
                             "run"], cwd=REPO, env=env, stdout=log,
                            stderr=subprocess.STDOUT if log else None)
    for _ in range(200):
        try:
            if api("/healthz")["asterisk_connected"]:
                return proc
        except OSError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the service did not start")


async def navigate(call: SimCall, until: float) -> int:
    """Barge into the submenu, hear an information message, go back; repeat. Returns the
    number of keys pressed."""
    keys = 0
    await call.wait_heard("menu_main", timeout=60)
    rounds = 0
    while time.monotonic() < until and not call.ended.is_set():
        rounds += 1
        await call.press("1", gap=0)
        await call.wait_heard("menu_sub", count=2 * rounds - 1, timeout=60)
        await call.press("2", gap=0)
        await call.wait_heard("menu_sub", count=2 * rounds, timeout=60)
        await call.press("*", gap=0)
        await call.wait_heard("menu_main", count=rounds + 1, timeout=60)
        keys += 3
    return keys


async def warm_up(sim: SimCaller) -> None:
    """A few calls first (imports, connection pools, prompt cache), so the baseline is fair."""
    warm = [await sim.dial(MENU) for _ in range(5)]
    await asyncio.gather(*(navigate(c, time.monotonic()) for c in warm))
    for call in warm:
        await call.hangup()
    await asyncio.sleep(1)


async def place_callers(sim: SimCaller, calls: int, ramp: float,
                        until: float) -> tuple[list[SimCall], list[asyncio.Task[int]]]:
    """Dial `calls` callers evenly over `ramp` seconds, each navigating until `until`."""
    dialled: list[SimCall] = []
    tasks = []
    for n in range(calls):
        call = await sim.dial(MENU, caller_number=f"06{n:08d}", codec=CODEC)
        dialled.append(call)
        tasks.append(asyncio.create_task(navigate(call, until)))
        await asyncio.sleep(ramp / calls)
    return dialled, tasks


async def end_calls(sim: SimCaller, dialled: list[SimCall]) -> None:
    """Hang up and wait (30 s at most) until the service has finished every call: stopped with
    calls up, it would leave them to be adopted at its next start, not what a benchmark wants."""
    for call in dialled:
        if not call.ended.is_set():
            await sim.ari.hangup(call.id)
    deadline = time.monotonic() + 30
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(30):
            for call in dialled:
                await call.ended.wait()
    while time.monotonic() < deadline:
        try:
            if api("/healthz")["calls_in_progress"] == 0:
                return
        except OSError:
            pass
        await asyncio.sleep(0.1)


async def run_menus(calls: int, ramp: float, steady: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_service(Path(tmp))
        try:
            ast = asterisk_pid()
            async with SimCaller("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
                await warm_up(sim)
                rss_before = rss_bytes(proc.pid)
                ramp_end = time.monotonic() + ramp
                until = ramp_end + steady
                dialled, tasks = await place_callers(sim, calls, ramp, until)
                await asyncio.sleep(max(0.0, ramp_end - time.monotonic()) + 2)
                api("/api/admin/ari-latency?reset=1")
                cpu0, ast0 = cpu_seconds(proc.pid), cpu_seconds(ast) if ast else 0
                t0 = time.monotonic()
                gen0 = time.process_time()
                rss_peak = rss_bytes(proc.pid)
                keys = await asyncio.gather(*tasks, return_exceptions=True)
                cpu1, ast1 = cpu_seconds(proc.pid), cpu_seconds(ast) if ast else 0
                t1 = time.monotonic()
                gen1 = time.process_time()
                rss_peak = max(rss_peak, rss_bytes(proc.pid))
                latency = api("/api/admin/ari-latency")
                in_progress = api("/healthz")["calls_in_progress"]
                await end_calls(sim, dialled)
            errors = [k for k in keys if isinstance(k, BaseException)]
            elapsed = t1 - t0
            return {
                "benchmark": "menus", "concurrent_calls": calls,
                "steady_seconds": round(elapsed, 1), "calls_up_at_end": in_progress,
                "keys_pressed": sum(k for k in keys if isinstance(k, int)),
                "failed_callers": len(errors), "first_error": repr(errors[0]) if errors else None,
                "latency_ms": {clock: {k: round(v, 3) for k, v in latency[clock].items()}
                               for clock in ("wall", "cpu") if clock in latency},
                "latency_samples": latency.get("count", 0),
                "service_cpu_percent": round(100 * (cpu1 - cpu0) / elapsed, 1),
                "service_cpu_ms_per_call_second": round(1000 * (cpu1 - cpu0) / elapsed / calls, 3),
                "service_rss_mb_before": round(rss_before / 2**20, 1),
                "service_rss_mb_peak": round(rss_peak / 2**20, 1),
                "service_kb_per_call": round((rss_peak - rss_before) / 1024 / calls, 1),
                "asterisk_cpu_percent": round(100 * (ast1 - ast0) / elapsed, 1) if ast else None,
                "load_generator_cpu_percent": round(100 * (gen1 - gen0) / elapsed, 1),
                "service_nice": int(os.environ.get("CENTRALINO_BENCH_NICE", "0")),
                "caller_codec": CODEC,
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                           f"Python {platform.python_version()}",
            }
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", default="menus",
                        choices=["menus", "fullflow", "hostile", "tickets", "mail"])
    parser.add_argument("--calls", type=int, nargs="+", default=None,
                        help="menus: concurrent callers (50 200); fullflow: callers (100); "
                             "hostile: concurrent callers (50)")
    parser.add_argument("--rate", type=float, default=None,
                        help="fullflow: callers dialled per second (5); tickets: forms sent "
                             "per second (50)")
    parser.add_argument("--tickets", type=int, default=1_000_000,
                        help="tickets: how many are in the database")
    parser.add_argument("--messages", type=int, default=10_000,
                        help="mail: messages waiting in the mailbox at the start")
    parser.add_argument("--push", type=int, default=200,
                        help="mail: messages delivered one at a time while the reader idles")
    parser.add_argument("--talk", type=float, default=2.0,
                        help="fullflow: seconds each agent talks")
    parser.add_argument("--ramp", type=float, default=10.0, help="seconds to dial them all")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds measured")
    parser.add_argument("--attacks", default="slow,bodies,scrapers",
                        help="hostile: only these attacks (comma-separated), to see what each "
                             "costs; the result goes to hostile-<attacks>.json")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    load_dialplan()
    if args.name == "fullflow":
        from bench.fullflow import main as fullflow

        fullflow((args.calls or [100])[0], args.rate or 5.0, args.talk)
        return
    if args.name == "tickets":
        from bench.tickets import main as tickets

        tickets(args.tickets, args.rate or 50.0, args.steady, (args.calls or [30])[0])
        return
    if args.name == "mail":
        from bench.mail import main as mail

        mail(args.messages, args.push, (args.calls or [30])[0])
        return
    gc.collect()
    gc.freeze()  # the simulated callers must not stall on the collector either
    if args.name == "hostile":
        from bench.hostile import ATTACKS, run_hostile

        attacks = args.attacks.split(",")
        result = asyncio.run(run_hostile((args.calls or [50])[0], args.ramp, args.steady,
                                         attacks))
        print(json.dumps(result, indent=2))
        name = "hostile" if set(attacks) >= set(ATTACKS) else f"hostile-{'-'.join(attacks)}"
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        return
    for calls in args.calls or [50, 200]:
        result = asyncio.run(run_menus(calls, args.ramp, args.steady))
        print(json.dumps(result, indent=2))
        (RESULTS / f"menus-{calls}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
