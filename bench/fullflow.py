"""The whole flow, centralino against native Asterisk: `python -m bench fullflow`.

Callers dial a number, hear a menu prompt, press 1 (barge-in), wait in a queue, an agent
answers, talks BENCH_TALK seconds and hangs up. Run twice in the same process, on the same
Asterisk, with the same callers and the same agents:
  - centralino: bench/config (flow, queue, ten agents), `centralino run` as a subprocess;
  - native: the same menu in dialplan and `Queue(bench-native)` with the same ten agents as
    static members (asterisk-dev/etc/extensions.conf and queues.conf, the `bench-*` contexts).
Callers are Local channels (formats=slin) whose own half runs [bench-caller]: a 100 ms tone
(so Answer() does not wait 500 ms for audio), key 1 one second after the answer, then listen.
Agents' phones are Local/<n>@bench-agents: Answer(), Wait(BENCH_TALK), Hangup(); no wrap-up on
either side (app_queue counts wrap-up in whole seconds: its "1 s" lasts 0-1 s).

What the load generator sees, on the service's half of each caller (all channels' events,
filtered down to three types, so that none is missed before a subscription could be made):
the key (dial time + answer + 1 s), entering the bridge with an agent (ChannelEnteredBridge into
a mixing bridge) and the end (ChannelDestroyed). Measured per side: makespan (first dial to last
hang-up), throughput, queue wait (key to agent) p50/p90/max, callers served while someone who
queued before them still waited, talk time as the caller had it (same agent work both sides),
CPU seconds per call of the service process (/proc) and of Asterisk.
Results: bench/results/fullflow.json (every run appended to `runs`). The service stores its
records in a fresh SQLite file, or CENTRALINO_BENCH_DATABASE_URL (a PostgreSQL database).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp

REPO = Path(__file__).resolve().parents[1]
CONFIG = Path(__file__).parent / "config"
SETTINGS = CONFIG / "centralino.yaml"
RESULTS = Path(__file__).parent / "results"
ARI = "http://127.0.0.1:8088/ari"
AUTH = aiohttp.encode_basic_auth("centralino", "centralino-dev")
PORT = 18095
ADMIN = "bench-admin-token"
NUMBER = "0999100001"
SIDES = {"centralino": "bench-centralino", "native": "bench-native"}
AGENTS = [str(n) for n in range(2001, 2011)]  # as bench/config/agents.yaml and queues.conf
PROMPT = "pls-hold-while-try"  # Asterisk's Italian sound, played by both sides
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def asterisk_pid() -> int:
    out = subprocess.run(["pgrep", "-f", "^asterisk -U asterisk"], capture_output=True, text=True,
                         check=False)  # none found: exit status 1
    if not out.stdout.split():
        raise SystemExit("Asterisk is not running: bash asterisk-dev/chroot.sh start")
    return int(out.stdout.split()[0])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


# --- the centralino side ------------------------------------------------------------------

def api(method: str, path: str) -> Any:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", method=method,
                                     data=b"{}" if method == "POST" else None,
                                     headers={"Authorization": f"Bearer {ADMIN}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def start_service(workdir: Path) -> subprocess.Popen[bytes]:
    """`centralino run` on bench/config, with a fresh database; every agent logged in, in
    order (2001 is the longest idle), as the native queue's members all start free."""
    recordings = workdir / "recordings" / "it"
    recordings.mkdir(parents=True)
    root = subprocess.run(["bash", str(REPO / "asterisk-dev" / "chroot.sh"), "root"],
                          capture_output=True, text=True, check=True).stdout.strip()
    shutil.copy(Path(root) / "usr/share/asterisk/sounds/it" / f"{PROMPT}.wav",
                recordings / "bench_menu.wav")
    env = {**os.environ,
           "CENTRALINO_DATABASE__URL": os.environ.get("CENTRALINO_BENCH_DATABASE_URL",
                                                      f"sqlite+aiosqlite:///{workdir}/bench.db"),
           "CENTRALINO_PROMPTS__RECORDINGS": str(workdir / "recordings")}
    proc = subprocess.Popen([sys.executable, "-m", "centralino", "--settings", str(SETTINGS),
                             "run"], cwd=REPO, env=env)
    for _ in range(300):
        try:
            if api("GET", "/healthz")["asterisk_connected"]:
                break
        except OSError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the service did not start")
        time.sleep(0.1)
    else:
        proc.kill()
        raise SystemExit("the service did not connect to Asterisk")
    for agent in AGENTS:
        try:  # a PostgreSQL database remembers the last run's logins
            api("POST", f"/api/agents/{agent}/logout")
        except urllib.error.HTTPError:
            pass
        api("POST", f"/api/agents/{agent}/login")
        time.sleep(0.01)
    return proc


# --- callers ------------------------------------------------------------------------------

@dataclass
class Caller:
    n: int
    id: str
    dialled: float = 0.0
    key: float = 0.0  # when the caller pressed 1 (the dialplan's fixed second after answer)
    agent: float | None = None  # entered a mixing bridge (with an agent)
    ended: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class Callers:
    """Places the bench's callers and watches their service-side halves."""

    def __init__(self) -> None:
        self.app = f"bench-{uuid.uuid4().hex[:8]}"
        self.by_channel: dict[str, Caller] = {}
        self.answered: dict[str, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._session = aiohttp.ClientSession(headers={"Authorization": AUTH})
        ws = await self._session.ws_connect(f"{ARI.replace('http', 'ws', 1)}/events",
                                            params={"app": self.app, "subscribeAll": "true"})
        await self.rest("PUT", f"/applications/{self.app}/eventFilter", json={"allowed": [
            {"type": t} for t in ("ChannelStateChange", "ChannelEnteredBridge",
                                  "ChannelDestroyed")]})
        self._reader = asyncio.create_task(self._read(ws))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._reader:
            self._reader.cancel()
        if self._session:
            await self._session.close()

    async def rest(self, method: str, path: str, **kw: Any) -> Any:
        assert self._session is not None
        async with self._session.request(method, ARI + path, **kw) as resp:
            text = await resp.text()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {text}")
            return json.loads(text) if text else None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            now = time.monotonic()
            event = json.loads(msg.data)
            caller = self.by_channel.get(event.get("channel", {}).get("id", ""))
            if caller is None:
                continue
            kind = event["type"]
            if kind == "ChannelStateChange" and event["channel"]["state"] == "Up":
                caller.key = caller.key or now + 1.0  # [bench-caller] presses 1 a second later
            elif kind == "ChannelEnteredBridge" and caller.agent is None and (
                    event["bridge"]["bridge_type"] == "mixing"):
                caller.agent = now
            elif kind == "ChannelDestroyed":
                caller.ended = now
                caller.done.set()

    async def dial(self, n: int, context: str) -> Caller:
        caller = Caller(n, f"bench-{uuid.uuid4().hex[:12]}")
        service_half = caller.id + ";2"
        self.by_channel[service_half] = caller
        caller.dialled = time.monotonic()
        await self.rest("POST", f"/channels/{caller.id}", params={
            "endpoint": f"Local/{NUMBER}@{context}", "context": "bench-caller",
            "extension": "s", "priority": "1", "otherChannelId": service_half,
            "formats": "slin", "callerId": f'"Bench {n}" <06{n:08d}>', "timeout": "30"})
        return caller


async def one_side(side: str, calls: int, rate: float, talk: float) -> dict[str, Any]:
    context = SIDES[side]
    ast = asterisk_pid()
    with tempfile.TemporaryDirectory() as tmp:
        proc = start_service(Path(tmp)) if side == "centralino" else None
        try:
            async with Callers() as gen:
                await gen.rest("POST", "/asterisk/variable",
                               params={"variable": "BENCH_TALK", "value": str(talk)})
                # Warm-up, the same for both sides: one whole call (prompt fetched and cached,
                # queue bridge and its music up, connection pools open).
                warm = await gen.dial(0, context)
                await asyncio.wait_for(warm.done.wait(), 30)
                await asyncio.sleep(1.5)  # the warm-up call fully gone on both legs
                cpu0 = cpu_seconds(proc.pid) if proc else 0.0
                ast0, gen0, t0 = cpu_seconds(ast), time.process_time(), time.monotonic()
                placed: list[Caller] = []
                for n in range(1, calls + 1):
                    placed.append(await gen.dial(n, context))
                    await asyncio.sleep(max(0.0, t0 + n / rate - time.monotonic()))
                timeout = 60 + calls * (talk + 2) / len(AGENTS)
                await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in placed)),
                                       timeout)
                t1 = time.monotonic()
                cpu1 = cpu_seconds(proc.pid) if proc else 0.0
                ast1, gen1 = cpu_seconds(ast), time.process_time()
        finally:
            if proc:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)
    served = [c for c in placed if c.agent is not None]
    waits = [c.agent - c.key for c in served]  # type: ignore[operator]
    talks = [c.ended - c.agent for c in served]  # type: ignore[operator]
    # Served out of arrival order: got an agent while someone who pressed 1 before them was
    # still waiting (key presses are 1/rate apart, far more than the timing noise).
    overtaking = sum(1 for c in served if any(
        o.key < c.key and (o.agent is None or o.agent > c.agent) for o in served))  # type: ignore[operator]
    makespan = t1 - t0
    result: dict[str, Any] = {
        "side": side, "calls": calls, "served": len(served),
        "makespan_s": round(makespan, 2),
        "throughput_calls_per_s": round(len(served) / makespan, 3),
        "wait_s": {"p50": round(pct(waits, 0.5), 2), "p90": round(pct(waits, 0.9), 2),
                   "max": round(max(waits), 2) if waits else None},
        "talk_s_p50": round(statistics.median(talks), 2) if talks else None,
        "served_out_of_order": overtaking,
        "asterisk_cpu_ms_per_call": round(1000 * (ast1 - ast0) / calls, 1),
        "load_generator_cpu_ms_per_call": round(1000 * (gen1 - gen0) / calls, 1),
    }
    if proc:
        result["service_cpu_ms_per_call"] = round(1000 * (cpu1 - cpu0) / calls, 1)
        result["service_cpu_percent"] = round(100 * (cpu1 - cpu0) / makespan, 1)
    result["asterisk_cpu_percent"] = round(100 * (ast1 - ast0) / makespan, 1)
    return result


async def run(calls: int, rate: float, talk: float) -> dict[str, Any]:
    sides = {}
    for side in ("native", "centralino"):
        sides[side] = await one_side(side, calls, rate, talk)
        print(json.dumps(sides[side]), flush=True)
        await asyncio.sleep(2)
    ratio = (sides["centralino"]["throughput_calls_per_s"]
             / sides["native"]["throughput_calls_per_s"])
    return {"at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "calls": calls, "arrival_per_s": rate,
            "agents": len(AGENTS), "talk_s": talk, "wrap_up_s": 0, "caller_codec": "slin",
            "database": os.environ.get("CENTRALINO_BENCH_DATABASE_URL", "sqlite").split(":")[0],
            "centralino_vs_native_throughput": round(ratio, 3), **sides}


def main(calls: int, rate: float, talk: float) -> None:
    result = asyncio.run(run(calls, rate, talk))
    for side in SIDES:
        if result[side]["served"] < calls:  # broken, not slow: no figure to record
            raise SystemExit(f"{side}: only {result[side]['served']} of {calls} callers reached "
                             "an agent; nothing recorded (see the log above)")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "fullflow.json"
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs.append(result)
    path.write_text(json.dumps({
        "benchmark": "fullflow", "description": __doc__.split("\n\n")[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "runs": runs}, indent=2) + "\n")
    n, c = result["native"], result["centralino"]
    print(f"\n{calls} calls at {rate}/s, {len(AGENTS)} agents, {talk} s talk, no wrap-up")
    print(f"{'':12}{'makespan':>10}{'calls/s':>9}{'wait p50/p90/max':>20}{'out of order':>14}"
          f"{'service CPU/call':>18}{'Asterisk CPU/call':>19}")
    for r in (n, c):
        w = r["wait_s"]
        svc = f"{r['service_cpu_ms_per_call']} ms" if "service_cpu_ms_per_call" in r else "-"
        print(f"{r['side']:12}{r['makespan_s']:>9}s{r['throughput_calls_per_s']:>9}"
              f"{w['p50']:>8}/{w['p90']}/{w['max']}{r['served_out_of_order']:>14}"
              f"{svc:>18}{str(r['asterisk_cpu_ms_per_call']) + ' ms':>19}")
    print(f"centralino / native throughput: {result['centralino_vs_native_throughput']:.1%}")
