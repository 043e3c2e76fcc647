"""The mailbox reader under faults, against the real Dovecot (issue #12): the service killed
while it takes mail in, the IMAP connection cut mid-fetch and during IDLE, the folder's
UIDVALIDITY changed, another client reading and moving messages. Each time, every message is
one mail_messages row, one ticket (one thread message), out of INBOX and once in the done
folder: nothing lost, nothing doubled.

The mailboxes are shared with the other mail tests and outlive them: each test sends its own
messages (Message-IDs and senders carrying a tag of its own) and looks only at those."""

from __future__ import annotations

import asyncio
import imaplib
import inspect
import itertools
import json
import os
import shutil
import smtplib
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from centralino.clock import LoopClock
from centralino.mail.inbox import BATCH, Inbox
from centralino.storage.models import MailMessage, TicketMessage
from centralino.storage.store import Store
from ivr.clock import SystemClock
from mail.config import MailConfig, load_mail_config
from tests.integration.conftest import (
    TEST_SETTINGS,
    close_open_tickets,
    run_config,
    settings_for,
    start_run,
    stop_run,
)
from tests.integration.imap_proxy import ImapProxy
from tests.integration.test_mail_intake import IMAP, LMTP, SUPERVISOR, mail
from tests.integration.waiting import eventually

pytestmark = pytest.mark.asterisk  # the services under test connect to the real Asterisk

HOST, PORT = IMAP.split(":")
DONE = "Elaborati"
DOVECOT_CONF = "/var/cache/centralino/mail/dovecot.conf"
URL = os.environ.get("CENTRALINO_TEST_DATABASE_URL", "")


def mail_yaml(path: Path, port: int = int(PORT), sweep: int = 60) -> Path:
    """As tests/integration/mail.yaml, with only the citizens' mailbox (at `port`: Dovecot,
    or a proxy in front of it), no acknowledgements (nobody reads them here) and a full sweep
    every `sweep` seconds (60: what comes sooner came by IDLE)."""
    path.write_text(f"""domain: helpdesk.test
sweep_seconds: {sweep}
smtp: {{host: 127.0.0.1, port: 10025, tls: none, user: helpdesk, auth: {{password: test}}}}
mailboxes:
  cittadini:
    imap: {{host: {HOST}, port: {port}, tls: none, user: helpdesk, auth: {{password: test}}}}
    topic: alpha
    address: helpdesk@helpdesk.test
    acknowledge: false
""")
    return path


def config_dir(tmp_path: Path, **yaml_args: Any) -> Path:
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config, dirs_exist_ok=True)
    mail_yaml(config / "mail.yaml", **yaml_args)
    return config


def mail_config(tmp_path: Path) -> MailConfig:
    config = load_mail_config(mail_yaml(tmp_path / "mail.yaml"), {"alpha", "beta"},
                              {"back-office"})
    assert config is not None
    return config


def messages(tag: str, count: int, start: int = 0) -> list[EmailMessage]:
    """`count` requests, each from its own sender, with Message-IDs carrying `tag`."""
    out = []
    for i in range(start, start + count):
        message = mail(f"{tag}-{i}@esempio.it", f"Richiesta {tag} {i}", f"Testo {i}.")
        message.replace_header("Message-ID", f"<{tag}.{i}@esempio.it>")
        out.append(message)
    return out


def deliver_all(items: Iterable[EmailMessage], user: str = "helpdesk") -> None:
    """Into `user`'s INBOX, as the mail server's delivery agent puts them (one session)."""
    host, port = LMTP.split(":")
    with smtplib.LMTP(host, int(port)) as lmtp:
        for message in items:
            assert not lmtp.send_message(message, to_addrs=[user])


def imap_client() -> imaplib.IMAP4:
    client = imaplib.IMAP4(HOST, int(PORT))
    client.login("helpdesk", "test")
    return client


def ids_in(folder: str, tag: str) -> list[str]:
    """The Message-IDs carrying `tag` in helpdesk's `folder`, one per message there."""
    client = imap_client()
    try:
        client.select(folder, readonly=True)
        _, data = client.uid("SEARCH", "HEADER", "Message-ID", tag)
        uids = data[0].split()
        if not uids:
            return []
        _, parts = client.uid("FETCH", b",".join(uids).decode(),
                              "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        return [p[1].decode().split(":", 1)[1].strip() for p in parts if isinstance(p, tuple)]
    finally:
        client.logout()


async def rows(tag: str) -> list[MailMessage]:
    """The stored messages (mail_messages) whose Message-ID carries `tag`."""
    async with Store(URL) as store, store.sessions() as s:
        return list((await s.scalars(select(MailMessage).where(
            MailMessage.message_id.like(f"%{tag}%")))).all())


async def thread_messages(tag: str) -> list[str]:
    """The Message-IDs carrying `tag` among the tickets' thread messages, one per message."""
    async with Store(URL) as store, store.sessions() as s:
        return list((await s.scalars(select(TicketMessage.message_id).where(
            TicketMessage.message_id.like(f"%{tag}%")))).all())


def assert_once(sent: list[EmailMessage], tag: str, stored: list[MailMessage],
                in_thread: list[str], tickets: list[dict[str, Any]]) -> None:
    """Each message sent: one row, one thread message, one ticket from its sender, out of
    INBOX, once in the done folder; nothing of this test's anywhere else."""
    ids = sorted(str(m["Message-ID"]) for m in sent)
    assert sorted(r.message_id or "" for r in stored) == ids
    assert {r.status for r in stored} == {"done"}, [(r.message_id, r.status) for r in stored]
    assert sorted(in_thread) == ids
    senders = Counter(t["requester_email"] for t in tickets)
    assert senders == Counter(m["From"].addresses[0].addr_spec for m in sent)
    assert ids_in("INBOX", tag) == []
    assert sorted(ids_in(DONE, tag)) == ids


async def until(condition: Any, timeout: float, what: str) -> None:
    """Until `condition()` (awaited if it is to be) is true, at most `timeout` seconds."""
    async def probe() -> Any:
        return await _value(condition())
    await eventually(probe, timeout=timeout, every=0.1, what=what)


async def _value(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# --- 1. SIGKILL while it takes mail in -------------------------------------------------------

FAULT_PORT = 18086


def api_tickets(port: int) -> list[dict[str, Any]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/tickets?limit=500",
                                     headers={"Authorization": f"Bearer {SUPERVISOR}"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return list(json.loads(resp.read()))


def spawn(settings: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`centralino run`, not waited for (start_run waits until it serves)."""
    with open(log, "a") as out:
        return subprocess.Popen([sys.executable, "-m", "centralino", "--settings",
                                 str(settings), "run"], cwd=Path(__file__).parents[2],
                                env=env, stdout=out, stderr=subprocess.STDOUT)


async def test_killed_between_the_store_and_the_move_it_loses_and_doubles_nothing(
        asterisk, tmp_path):
    tag = f"kill{uuid.uuid4().hex[:10]}"
    sent = messages(tag, 100)
    await asyncio.to_thread(deliver_all, sent)
    settings, env, log = await asyncio.to_thread(run_config, tmp_path, FAULT_PORT)
    await close_open_tickets(env["CENTRALINO_DATABASE__URL"])  # the list shows 500

    # Through a proxy that never passes on the second MOVE (messages are stored, then moved,
    # BATCH at a time): killed (SIGKILL) while it waits for it, the second batch is stored
    # and not moved, the first is moved, the rest not fetched.
    async with ImapProxy(HOST, int(PORT)) as proxy:
        config_dir(tmp_path, port=proxy.port)  # run_config's copy, with this mail.yaml
        proxy.hold(b"MOVE", 2)
        proc = await asyncio.to_thread(spawn, settings, env, log)
        try:
            async with asyncio.timeout(30):
                await proxy.held.wait()
        finally:
            proc.kill()
            proc.wait()
            proxy.cut()
    stored_then = {r.message_id for r in await rows(tag)}
    left = await asyncio.to_thread(ids_in, "INBOX", tag)
    moved = await asyncio.to_thread(ids_in, DONE, tag)
    assert (len(stored_then), len(moved), len(left)) == (2 * BATCH, BATCH, 100 - BATCH)
    assert stored_then - set(moved) <= set(left)  # those stored, not moved

    config_dir(tmp_path)  # started again, on Dovecot itself
    proc = await asyncio.to_thread(start_run, settings, env, log)
    try:
        await until(lambda: all_done(tag, 100), 30, "all 100 taken in")
        await until(lambda: len(ids_in(DONE, tag)) >= 100, 10, "all 100 moved")
        tickets = [t for t in await asyncio.to_thread(api_tickets, FAULT_PORT)
                   if tag in (t["requester_email"] or "")]
    finally:
        await asyncio.to_thread(stop_run, proc)
    assert_once(sent, tag, await rows(tag), await thread_messages(tag), tickets)


# --- 2. the connection cut mid-fetch and during IDLE -----------------------------------------

async def my_tickets(desk: Any, tag: str) -> list[dict[str, Any]]:
    return [t for t in await desk.request("GET", "/api/tickets?limit=500", token=SUPERVISOR)
            if tag in (t["requester_email"] or "")]


async def mailbox_health(desk: Any) -> dict[str, Any]:
    health = await desk.request("GET", "/healthz", token="")
    return dict(health["mailboxes"]["cittadini"])


async def test_a_connection_cut_mid_fetch_or_in_idle_is_taken_up_again(start_service, desk,
                                                                        tmp_path):
    tag = f"cut{uuid.uuid4().hex[:10]}"
    first, second, late = messages(tag, 20), messages(tag, 5, 20), messages(tag, 1, 25)
    async with ImapProxy(HOST, int(PORT)) as proxy:
        settings = settings_for(CENTRALINO_CONFIG_DIR=str(config_dir(tmp_path,
                                                                     port=proxy.port)))
        await asyncio.to_thread(deliver_all, first)
        # (a) Cut in the middle of the messages' bytes (the second FETCH: the first asks
        # their sizes).
        proxy.cut_in_answer_to(b"FETCH", 2)
        await start_service(settings=settings)
        async with asyncio.timeout(15):
            await proxy.cut_done.wait()

        async def all_in(count: int) -> bool:
            return len(await my_tickets(desk, tag)) >= count
        await until(lambda: all_in(20), 20, "the first 20 tickets after the cut mid-fetch")
        await until(proxy.idling, 10, "idle on the new connection")

        # (b) Cut while it idles, and refuse it for a while (a server away).
        proxy.refusing = True
        cut_at = time.monotonic()
        proxy.cut()
        await until(lambda: len([a for a in proxy.attempts if a[1]]) >= 2,
                    15, "two attempts to reconnect")
        health = await mailbox_health(desk)
        assert not health["connected"] and health["problem"], health
        await asyncio.to_thread(deliver_all, second)  # while it is away
        proxy.refusing = False

        async def healthy() -> bool:
            health = await mailbox_health(desk)
            return bool(health["connected"]) and health["problem"] is None
        await until(healthy, 15, "connected again")
        await until(lambda: all_in(25), 10, "the mail that came while it was away")
        # It waited longer each time (back-off), starting again at the first step after a
        # connection that worked (the cut in (a)).
        times = [cut_at, *[t for t, _ in proxy.attempts if t > cut_at][:3]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert len(gaps) == 3 and 0.8 < gaps[0] < 1.8 and gaps[0] < gaps[1] < gaps[2], gaps

        # Idle again on the new connection: a new message is a ticket at once (the sweep is
        # every 60 s: only IDLE can bring it this soon).
        await until(proxy.idling, 10, "idle on the new connection")
        await asyncio.to_thread(deliver_all, late)
        await until(lambda: all_in(26), 5, "a ticket by IDLE after the reconnection")

    sent = first + second + late
    await until(lambda: len(ids_in(DONE, tag)) >= 26, 10, "all moved")
    assert_once(sent, tag, await rows(tag), await thread_messages(tag),
                await my_tickets(desk, tag))
    print(f"back-off after the cut in IDLE: {[round(g, 2) for g in gaps]} s")


# --- 3. UIDVALIDITY changed between the store and the move ----------------------------------

def doveadm(*args: str) -> str:
    return subprocess.run(["doveadm", "-c", DOVECOT_CONF, *args], check=True,
                          capture_output=True, text=True).stdout


def uidvalidity(folder: str = "INBOX") -> int:
    out = doveadm("mailbox", "status", "-u", "helpdesk", "uidvalidity", folder)
    return int(out.split("uidvalidity=")[1].split()[0])


def append(message: bytes, folder: str = "INBOX", flags: str = "") -> None:
    client = imap_client()
    try:
        client.append(folder, flags, imaplib.Time2Internaldate(time.time()), message)
    finally:
        client.logout()


async def test_a_uidvalidity_change_does_not_store_a_message_twice(start_service, desk,
                                                                   tmp_path):
    tag = f"uidv{uuid.uuid4().hex[:10]}"
    sent = messages(tag, 3)
    # One without a Message-ID: recognised by its bytes' hash.
    bare = mail(f"{tag}-bare@esempio.it", f"Senza identificativo {tag}", "Niente Message-ID.")
    del bare["Message-ID"]
    await asyncio.to_thread(deliver_all, sent)
    await asyncio.to_thread(append, bare.as_bytes())
    config = mail_config(tmp_path)
    async with Store(URL) as store:
        inbox = Inbox("cittadini", config.mailboxes["cittadini"], config, store,
                      LoopClock(SystemClock()), lambda: None)

        async def not_moved(_imap: Any, _uid: int) -> None:
            return None  # as if the service stopped after each store, before its move
        inbox._put_away = not_moved  # type: ignore[method-assign]
        imap = await inbox._connect()
        try:
            await inbox.sweep(imap)
        finally:
            await imap.logout()
    stored = await rows(tag)
    assert len(stored) == 3
    [bare_row] = await bare_rows(tag)
    assert bare_row.dedupe.startswith("sha256:")
    assert ids_in("INBOX", tag) and len(ids_in("INBOX", tag)) == 3

    # The folder's UIDVALIDITY changes (a server restored, migrated): every UID is new.
    before = uidvalidity()
    doveadm("mailbox", "update", "-u", "helpdesk", "--uid-validity",
            str(max(before + 1, int(time.time()))), "INBOX")
    assert uidvalidity() != before

    await start_service(settings=settings_for(
        CENTRALINO_CONFIG_DIR=str(config_dir(tmp_path, sweep=5))))
    def bare_left() -> bool:
        return bool(search("INBOX", "SUBJECT", f"\"Senza identificativo {tag}\""))
    await until(lambda: ids_in("INBOX", tag) == [] and not bare_left(), 15,
                "the stored messages moved under the new UIDVALIDITY")
    await until(lambda: all_done(tag, 3), 15, "their tickets")
    tickets = await my_tickets(desk, tag)
    assert_once(sent, tag, await rows(tag), await thread_messages(tag),
                [t for t in tickets if "bare" not in t["requester_email"]])
    # Stored once, under the old UIDVALIDITY: the new UIDs found them already kept.
    assert {r.uidvalidity for r in await rows(tag)} == {before}
    again = await bare_rows(tag)
    assert [r.id for r in again] == [bare_row.id] and again[0].status == "done"
    assert [t["requester_email"] for t in tickets if "bare" in t["requester_email"]] == [
        f"{tag}-bare@esempio.it"]
    assert len(search(DONE, "SUBJECT", f"\"Senza identificativo {tag}\"")) == 1


async def bare_rows(tag: str) -> list[MailMessage]:
    """The stored messages without a Message-ID whose bytes carry `tag`."""
    async with Store(URL) as store, store.sessions() as s:
        found = (await s.scalars(select(MailMessage).where(
            MailMessage.mailbox == "cittadini", MailMessage.message_id.is_(None)))).all()
    return [r for r in found if tag.encode() in r.raw]


def search(folder: str, *criteria: str) -> list[bytes]:
    client = imap_client()
    try:
        client.select(folder, readonly=True)
        _, data = client.uid("SEARCH", *criteria)
        return list(data[0].split())
    finally:
        client.logout()


async def all_done(tag: str, count: int) -> bool:
    found = await rows(tag)
    return len(found) >= count and {r.status for r in found} == {"done"}


# --- 4. another client reading and moving messages -------------------------------------------

async def test_another_client_reading_or_moving_messages_loses_nothing(start_service, desk,
                                                                       tmp_path):
    tag = f"other{uuid.uuid4().hex[:10]}"
    sent = messages(tag, 5)
    await asyncio.to_thread(deliver_all, sent)
    elsewhere = f"Altrove{tag}"

    def read_them() -> None:  # someone opens them on a phone: all \Seen
        client = imap_client()
        try:
            client.select("INBOX")
            _, data = client.uid("SEARCH", "HEADER", "Message-ID", tag)
            client.uid("STORE", b",".join(data[0].split()).decode(), "+FLAGS", "(\\Seen)")
        finally:
            client.logout()

    def move_away(message_id: str) -> None:  # ... and files one in a folder of their own
        client = imap_client()
        try:
            client.create(elsewhere)
            client.select("INBOX")
            _, data = client.uid("SEARCH", "HEADER", "Message-ID", message_id)
            [uid] = data[0].split()
            assert client.uid("MOVE", uid.decode(), elsewhere)[0] == "OK"
        finally:
            client.logout()

    await asyncio.to_thread(read_them)
    config = mail_config(tmp_path)
    taken = str(sent[2]["Message-ID"])
    async with Store(URL) as store:
        inbox = Inbox("cittadini", config.mailboxes["cittadini"], config, store,
                      LoopClock(SystemClock()), lambda: None)
        fetch, moved = inbox._fetch, []

        async def after_search(imap: Any, uid: int) -> bytes | None:
            if not moved:  # once, before the first FETCH
                moved.append(uid)
                await asyncio.to_thread(move_away, taken)
            return await fetch(imap, uid)
        inbox._fetch = after_search  # type: ignore[method-assign]
        imap = await inbox._connect()
        try:
            await inbox.sweep(imap)  # no error: the one gone is skipped
            assert moved
            # ... and it keeps working: the next message is taken in on the same connection.
            more = messages(tag, 1, 5)
            await asyncio.to_thread(deliver_all, more)
            await inbox.sweep(imap)
        finally:
            await imap.logout()
    kept = [m for m in sent + more if str(m["Message-ID"]) != taken]
    assert sorted(r.message_id or "" for r in await rows(tag)) == sorted(
        str(m["Message-ID"]) for m in kept)

    # The service makes them tickets (its intake takes what the reader stored).
    await start_service(settings=settings_for(
        CENTRALINO_CONFIG_DIR=str(config_dir(tmp_path, sweep=5))))
    await until(lambda: all_done(tag, 5), 15, "their tickets")
    assert_once(kept, tag, await rows(tag), await thread_messages(tag),
                await my_tickets(desk, tag))
    assert ids_in(elsewhere, tag) == [taken]  # where the other client put it, untouched
    seen = search(DONE, "HEADER", "Message-ID", tag, "SEEN")
    assert len(seen) == 4  # the ones read on the phone were taken in all the same
