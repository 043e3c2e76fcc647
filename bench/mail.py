"""E-mail at volume: `python -m bench mail` (Dovecot and PostgreSQL of `./dev test`; the
database CENTRALINO_BENCH_DATABASE_URL, default `centralino_bench_mail`, dropped and made again;
Dovecot's `bench` user, whose folders are emptied first).

1. Backlog: `--messages` (10,000) citizens' messages are delivered (LMTP, as the mail
   server's delivery agent puts them) into a folder of their own, then, once `centralino run`
   is up and `--calls` (30) callers go through the menus, moved into the inbox at once
   (doveadm). The service reads them over IMAP (BODY.PEEK, stored, moved to the done folder)
   and files each into a ticket. Measured: messages turned into tickets per second (first
   ticket to last), and the calls' ARI reaction p99 meanwhile (the service's own
   /api/admin/ari-latency).
2. Push: with the backlog done and the reader idle in IMAP IDLE, `--push` (200) messages are
   delivered one at a time, spaced by a few hundred ms, calls still running. Measured per
   message: the end of the LMTP delivery -> its ticket in the database (polled every 5 ms).
Results go to bench/results/mail.json.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import signal
import smtplib
import subprocess
import tempfile
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import asyncpg

from bench.__main__ import RESULTS, api, cpu_seconds, place_callers, start_service, warm_up
from bench.tickets import fresh_database, percentiles
from centralino.simcaller import SimCaller

DEFAULT_DB = "postgresql+asyncpg://postgres@127.0.0.1:55432/centralino_bench_mail"
CONFIG = Path(__file__).resolve().parents[1] / "tests" / "integration" / "config"
MAIL_DIR = Path(os.environ.get("CENTRALINO_MAIL_DIR", "/var/cache/centralino/mail"))
IMAP = os.environ.get("CENTRALINO_TEST_IMAP", "127.0.0.1:10143")
LMTP = os.environ.get("CENTRALINO_TEST_LMTP", "127.0.0.1:10024")
STAGING = "Arrivo"  # where the backlog waits until the calls are up
USER = "bench"  # Dovecot's user for the benchmark (dev: mail_up), password `test`
BODY = ("Buongiorno,\n\nvorrei sapere come richiedere il certificato di residenza per mio "
        "figlio, che si è trasferito il mese scorso. Ho già provato dal portale ma la pagina "
        "mi dice che la richiesta non è disponibile.\n\nGrazie,\n")


def mail_yaml() -> str:
    host, port = IMAP.split(":")
    return f"""domain: helpdesk.test
sweep_seconds: 60
# Nothing is sent (no acknowledgements): a port nobody listens on.
smtp: {{host: 127.0.0.1, port: 10099, tls: none, user: bench, auth: {{password: test}}}}
mailboxes:
  bench:
    imap: {{host: {host}, port: {port}, tls: none, user: {USER}, auth: {{password: test}}}}
    topic: alpha
    address: helpdesk@helpdesk.test
    acknowledge: false
"""


def message(n: int, kind: str) -> EmailMessage:
    out = EmailMessage()
    out["From"] = f"Cittadino {n} <{kind}{n}@esempio.it>"
    out["To"] = "helpdesk@helpdesk.test"
    out["Subject"] = f"Certificato di residenza ({kind} {n})"
    out["Message-ID"] = f"<{uuid.uuid4().hex}@esempio.it>"
    out["Date"] = "Tue, 01 Dec 2026 10:00:00 +0100"
    out.set_content(BODY + f"Cittadino {n}\n")
    return out


def doveadm(*args: str) -> None:
    subprocess.run(["doveadm", "-c", str(MAIL_DIR / "dovecot.conf"), *args], check=True,
                   stdout=subprocess.DEVNULL)


def empty_folders() -> None:
    for folder in ("INBOX", "Elaborati", STAGING):
        subprocess.run(["doveadm", "-c", str(MAIL_DIR / "dovecot.conf"), "expunge", "-u", USER,
                        "mailbox", folder, "all"], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)  # a folder not made yet: nothing to empty


def deliver_backlog(count: int) -> float:
    host, port = LMTP.split(":")
    started = time.monotonic()
    with smtplib.LMTP(host, int(port)) as lmtp:
        for n in range(count):
            lmtp.send_message(message(n, "b"), to_addrs=[USER])
    took = time.monotonic() - started
    subprocess.run(["doveadm", "-c", str(MAIL_DIR / "dovecot.conf"), "mailbox", "create", "-u",
                    USER, STAGING], check=False, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # made by an earlier run already: fine
    doveadm("move", "-u", USER, STAGING, "mailbox", "INBOX", "all")
    return took


async def backlog(db: asyncpg.Connection, count: int, timeout: float) -> dict[str, Any]:
    """Until `count` tickets came from e-mail: the rate from the first to the last."""
    deadline = time.monotonic() + timeout
    first = None
    while time.monotonic() < deadline:
        done = await db.fetchval("SELECT count(*) FROM tickets WHERE channel = 'email'")
        if done and first is None:
            first = time.monotonic()
        if done >= count:
            break
        await asyncio.sleep(0.2)
    span = await db.fetchrow("SELECT count(*) AS n, min(created_at) AS a, max(created_at) AS b"
                             " FROM tickets WHERE channel = 'email'")
    seconds = (span["b"] - span["a"]).total_seconds() if span["n"] > 1 else 0.0
    doubled = await db.fetchval(
        "SELECT count(*) FROM (SELECT dedupe FROM mail_messages GROUP BY dedupe"
        " HAVING count(*) > 1) AS d")
    return {"messages": count, "tickets": span["n"], "doubled": doubled,
            "seconds_first_to_last_ticket": round(seconds, 1),
            "tickets_per_second": round((span["n"] - 1) / seconds, 1) if seconds else None}


async def push(db: asyncpg.Connection, count: int, gap: float) -> dict[str, Any]:
    """One message at a time while the reader idles: delivery done -> its ticket."""
    host, port = LMTP.split(":")
    took: list[float] = []
    missing = 0
    for n in range(count):
        sent = message(n, "p")
        address = f"p{n}@esempio.it"
        await asyncio.to_thread(_deliver, host, int(port), sent)
        t0 = time.perf_counter()
        deadline = t0 + 10
        while not await db.fetchval("SELECT 1 FROM tickets WHERE requester_email = $1",
                                    address):
            if time.perf_counter() > deadline:
                missing += 1
                break
            await asyncio.sleep(0.005)
        else:
            took.append(time.perf_counter() - t0)
        await asyncio.sleep(gap)
    return {"missing_after_10_s": missing, **percentiles(took or [0.0])}


def dovecot_version() -> str:
    done = subprocess.run(["dovecot", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.split()[0] if done.stdout.split() else "?"


def _deliver(host: str, port: int, sent: EmailMessage) -> None:
    with smtplib.LMTP(host, port) as lmtp:
        lmtp.send_message(sent, to_addrs=[USER])


async def run(count: int, pushed: int, calls: int) -> dict[str, Any]:
    url = os.environ.get("CENTRALINO_BENCH_DATABASE_URL", DEFAULT_DB)
    plain = await fresh_database(url)
    os.environ["CENTRALINO_BENCH_DATABASE_URL"] = url
    empty_folders()
    delivered = await asyncio.to_thread(deliver_backlog, count)
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config"
        shutil.copytree(CONFIG, config)
        (config / "mail.yaml").write_text(mail_yaml())
        os.environ["CENTRALINO_CONFIG_DIR"] = str(config)
        os.environ["CENTRALINO_TICKETS__ATTACHMENTS"] = str(Path(tmp) / "files")
        db = await asyncpg.connect(plain)
        async with SimCaller("http://127.0.0.1:8088", "centralino", "centralino-dev") as sim:
            proc = start_service(Path(tmp))
            try:
                await warm_up(sim)
                api("/api/admin/ari-latency?reset=1")
                dialled, navigating = await place_callers(sim, calls, 5, time.monotonic() + 3600)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                await asyncio.to_thread(doveadm, "move", "-u", USER, "INBOX", "mailbox", STAGING,
                                        "all")
                ingest = await backlog(db, count, timeout=1200)
                ingest["service_cpu_percent"] = round(
                    100 * (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0), 1)
                ingest["ari_reaction_ms"] = {
                    k: round(v, 3) for k, v in api("/api/admin/ari-latency")["wall"].items()}
                api("/api/admin/ari-latency?reset=1")
                pushing = await push(db, pushed, 0.3)
                pushing["ari_reaction_ms"] = {
                    k: round(v, 3) for k, v in api("/api/admin/ari-latency")["wall"].items()}
                calls_up = api("/healthz")["calls_in_progress"]
                for call in dialled:
                    await sim.ari.hangup(call.id)
                for task in navigating:
                    task.cancel()
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
        version = await db.fetchval("SHOW server_version")
        await db.close()
    empty_folders()
    return {
        "benchmark": "mail", "backlog_delivered_seconds": round(delivered, 1),
        "backlog": ingest, "push": pushing, "calls_meanwhile": calls,
        "calls_up_at_end": calls_up, "database": f"PostgreSQL {version}",
        "imap": "Dovecot " + dovecot_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
    }


def main(count: int, pushed: int, calls: int) -> None:
    result = asyncio.run(run(count, pushed, calls))
    print(json.dumps(result, indent=2))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mail.json").write_text(json.dumps(result, indent=2) + "\n")
