"""Sending and storing mail when SMTP or the database fail, against the real servers (issue
#12): Dovecot (the citizen reads what arrived over IMAP), the tests' SMTP relay
(mailserver.py, which refuses, cuts or holds messages to the addresses a test names) and
PostgreSQL. A temporary refusal is tried again until the message goes, once; a permanent one
fails and is never tried again; a message whose answer never came is `uncertain`, never sent
twice; mail arriving while the database is away stays in the INBOX and becomes one ticket
each once it is back; a service stopped or killed mid-send sends the rest once after its
restart, and not the message in flight."""

from __future__ import annotations

import asyncio
import imaplib
import os
import shutil
import signal
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from sqlalchemy import select

from centralino.mail.outbox import RETRY
from centralino.storage.models import MailOut
from centralino.storage.store import Store
from tests.integration.conftest import run_config, settings_for, start_run, stop_run
from tests.integration.test_database_away import cable  # noqa: F401 (a fixture)
from tests.integration.test_mail_intake import (
    IMAP,
    MAIL_YAML,
    deliver,
    detail,
    folder,
    mail,
    tickets_from,
)
from tests.integration.waiting import eventually

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

T = TypeVar("T")


def with_mail(tmp_path: Path, **env: str) -> Any:
    """The tests' settings with the mailboxes of mail.yaml (as test_mail_intake's)."""
    config = tmp_path / "config"
    shutil.copytree(Path(settings_for().config_dir), config)
    shutil.copy(MAIL_YAML, config / "mail.yaml")
    return settings_for(CENTRALINO_CONFIG_DIR=str(config), **env)


def unique(tag: str) -> str:
    """A citizen's address of its own: the mailboxes outlive the tests."""
    return f"{tag}{uuid.uuid4().hex[:10]}@esempio.it"


def received(address: str) -> list[EmailMessage]:
    """What reached the test citizen's mailbox addressed to `address`, oldest first."""
    host, port = IMAP.split(":")
    imap = imaplib.IMAP4(host, int(port))
    try:
        imap.login("cittadino", "test")
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "HEADER", "TO", address)
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            assert isinstance(parts[0], tuple)
            parsed = BytesParser(policy=policy.default).parsebytes(parts[0][1])
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out
    finally:
        imap.logout()


async def until(check: Callable[[], Awaitable[T | None]], timeout: float = 20,
                what: str = "") -> T:
    """`check()`'s first true answer, polled; fails after `timeout` seconds."""
    found = await eventually(check, timeout=timeout, every=0.2, what=what or "never happened")
    assert found is not None
    return found


async def outgoing(store: Store, address: str) -> list[MailOut]:
    """What the desk wrote to send to `address` (mail_outbox), oldest first."""
    async with store.sessions() as s:
        return list((await s.scalars(select(MailOut).where(MailOut.recipient == address)
                                     .order_by(MailOut.id))).all())


def later(service: Any, desk: Any, seconds: float) -> None:
    """Time passes for the service (its clock is the test's ShiftedClock, which has no
    `advance`), and its outbox looks at once rather than at its next 10 s round."""
    desk.clock._offset += timedelta(seconds=seconds)
    service.mail.outbox.kick.set()


async def test_a_temporary_refusal_is_tried_again_until_the_message_goes_once(
        start_service, desk, smtp_server, tmp_path):
    service = await start_service(settings=with_mail(tmp_path))
    address = unique("t")
    smtp_server.fates[address] = ["451 4.3.0 Riprovare piu' tardi"] * 3
    first = mail(address, f"Certificato {uuid.uuid4().hex[:6]}", "Mi serve il certificato.")
    await asyncio.to_thread(deliver, "helpdesk", first)
    [ticket] = await tickets_from(desk, address)

    for tries in (1, 2, 3):  # refused: on the ticket, waiting for its next try, and why
        async def refused(tries: int = tries) -> dict[str, Any] | None:
            sends = (await detail(desk, ticket["number"]))["mail"]
            return sends[0] if sends and sends[0]["attempts"] == tries and (
                sends[0]["status"] != "sending") else None
        shown = await until(refused, what=f"refusal {tries} on the ticket")
        assert (shown["status"], shown["kind"], shown["recipient"]) == (
            "pending", "acknowledgement", address)
        assert shown["error"].startswith("451") and shown["sent_at"] is None
        assert datetime.fromisoformat(shown["next_at"]) > desk.now()
        assert await asyncio.to_thread(received, address) == []
        later(service, desk, RETRY[tries - 1] + 1)

    async def sent() -> MailOut | None:
        rows = await outgoing(service.store, address)
        return rows[0] if rows[0].status == "sent" else None
    row = await until(sent, what="accepted")
    assert (row.attempts, row.error) == (4, "")
    [ack] = await until(lambda: asyncio.to_thread(received, address), what="in the mailbox")
    assert (ack["Message-ID"], ack["In-Reply-To"]) == (row.message_id, first["Message-ID"])
    assert ticket["number"] in ack["Subject"]
    [shown] = (await detail(desk, ticket["number"]))["mail"]
    assert (shown["status"], shown["attempts"], shown["error"]) == ("sent", 4, "")

    later(service, desk, 86400)  # a day later, nothing of it is due again
    assert await service.mail.outbox.send_due() == 0
    assert len(await asyncio.to_thread(received, address)) == 1
    assert [r.status for r in await outgoing(service.store, address)] == ["sent"]


async def test_a_permanent_refusal_fails_at_once_and_is_never_tried_again(
        start_service, desk, smtp_server, tmp_path):
    service = await start_service(settings=with_mail(tmp_path))
    # Refused once its content was sent (550 to the DATA), and refused as a recipient no
    # server knows (550 to the RCPT: how "no such user" usually comes).
    refused_data, unknown = unique("p"), unique("u")
    smtp_server.fates[refused_data] = ["550 5.7.1 Messaggio rifiutato"]
    smtp_server.unknown[unknown] = "550 5.1.1 Utente sconosciuto"
    for address in (refused_data, unknown):
        await asyncio.to_thread(deliver, "helpdesk", mail(address, "Richiesta", "Testo."))
        [ticket] = await tickets_from(desk, address)

        async def failed(address: str = address) -> MailOut | None:
            rows = await outgoing(service.store, address)
            return rows[0] if rows and rows[0].status not in ("pending", "sending") else None
        row = await until(failed, what=f"refused {address}")
        assert (row.status, row.attempts) == ("failed", 1), row.error
        assert row.error.startswith("550 5.")
        [shown] = (await detail(desk, ticket["number"]))["mail"]  # on the ticket, with why
        assert (shown["status"], shown["error"]) == ("failed", row.error)

    later(service, desk, 86400)
    assert await service.mail.outbox.send_due() == 0
    for address in (refused_data, unknown):
        assert [(r.status, r.attempts) for r in await outgoing(service.store, address)] == [
            ("failed", 1)]
        assert await asyncio.to_thread(received, address) == []


async def test_a_message_whose_answer_never_came_is_uncertain_and_never_sent_twice(
        start_service, desk, smtp_server, tmp_path):
    """The relay takes the message (it reaches the citizen) and the connection breaks before
    its 250: the desk cannot know it went, so it does not send it again on its own."""
    service = await start_service(settings=with_mail(tmp_path))
    address = unique("d")
    smtp_server.fates[address] = ["drop"]
    await asyncio.to_thread(deliver, "helpdesk", mail(address, "Passaporto", "Quando?"))
    [ticket] = await tickets_from(desk, address)

    async def settled() -> MailOut | None:
        rows = await outgoing(service.store, address)
        return rows[0] if rows and rows[0].status != "sending" and rows[0].attempts else None
    row = await until(settled, what="the send settled")
    assert (row.status, row.attempts) == ("uncertain", 1), row.error
    assert "no answer" in row.error
    [shown] = (await detail(desk, ticket["number"]))["mail"]  # for a person to decide
    assert shown["status"] == "uncertain"

    later(service, desk, 86400)  # however long it waits, it is not sent again
    assert await service.mail.outbox.send_due() == 0
    assert [r.status for r in await outgoing(service.store, address)] == ["uncertain"]
    assert len(await asyncio.to_thread(received, address)) == 1  # the relay had taken it


async def test_mail_arriving_while_the_database_is_away_waits_in_the_inbox_then_is_taken_once(
        start_service, desk, smtp_server, cable, tmp_path):  # noqa: F811 (the fixture)
    cable, proxied = cable
    await start_service(settings=with_mail(tmp_path, CENTRALINO_DATABASE__URL=proxied))
    await cable.unplug()
    addresses = [unique("a") for _ in range(3)]
    messages = [mail(a, f"Richiesta {n}", f"Testo {n}.") for n, a in enumerate(addresses)]
    for message in messages:
        await asyncio.to_thread(deliver, "helpdesk", message)
    ids = {m["Message-ID"].encode() for m in messages}

    def where(name: str) -> list[bytes]:
        return [mid for _, head in folder("helpdesk", name) for mid in ids if mid in head]

    async with aiohttp.ClientSession() as http:
        async def problem() -> dict[str, Any] | None:
            async with http.get(f"{desk.base}/healthz") as resp:
                h = await resp.json()
            return h if h["mailboxes"]["cittadini"]["problem"] else None
        health = await until(problem, what="the mailbox's problem on /healthz")
        assert not health["mailboxes"]["cittadini"]["connected"]
        # The reader tried (and keeps trying, every few seconds): nothing it could not store
        # has left the INBOX.
        for _ in range(3):  # 3 s, beyond its first retries (inbox BACKOFF: 1 s, then 2 s)
            assert sorted(await asyncio.to_thread(where, "INBOX")) == sorted(ids)
            await asyncio.sleep(1)
        await cable.plug()

    for address in addresses:  # one ticket each, once the database is back
        assert len(await tickets_from(desk, address, timeout=30)) == 1
    moved = await until(lambda: asyncio.to_thread(lambda: where("Elaborati") or None),
                        what="moved")
    assert sorted(moved) == sorted(ids) and await asyncio.to_thread(where, "INBOX") == []
    for address in addresses:
        assert len(await tickets_from(desk, address, count=2, timeout=1)) == 1


async def test_healthz_says_it_is_the_database_that_keeps_mail_from_being_stored(
        start_service, desk, smtp_server, cable, tmp_path):  # noqa: F811 (the fixture)
    """An operator reading /healthz (or the board) must look at the database, not at the
    mail server."""
    cable, proxied = cable
    await start_service(settings=with_mail(tmp_path, CENTRALINO_DATABASE__URL=proxied))
    await cable.unplug()
    await asyncio.to_thread(deliver, "helpdesk", mail(unique("z"), "Richiesta", "Testo."))
    async with aiohttp.ClientSession() as http:
        async def problem() -> dict[str, Any] | None:
            async with http.get(f"{desk.base}/healthz") as resp:
                h = await resp.json()
            return h if h["mailboxes"]["cittadini"]["problem"] else None
        health = await until(problem, what="the mailbox's problem on /healthz")
    said = health["mailboxes"]["cittadini"]["problem"]
    assert said.startswith("database unreachable"), health
    assert "the messages wait in the mailbox" in said


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
async def test_a_service_stopped_mid_send_sends_the_rest_once_and_not_the_one_in_flight(
        asterisk, smtp_server, tmp_path, stop):
    """`centralino run` as a real process: its outbox is stuck on a message the relay took
    but has not answered, two more wait behind it; it is stopped (SIGTERM) or killed
    (SIGKILL), then started again."""
    port = 18086
    settings, env, log = await asyncio.to_thread(run_config, tmp_path, port)
    shutil.copy(MAIL_YAML, settings.parent / "mail.yaml")
    url = env["CENTRALINO_DATABASE__URL"]
    in_flight, queued = unique("h"), [unique("q"), unique("q")]
    smtp_server.fates[in_flight] = ["hold"]
    proc = await asyncio.to_thread(start_run, settings, env, log)
    try:
        async with Store(url) as store:
            await asyncio.to_thread(deliver, "helpdesk", mail(in_flight, "Prima", "Uno."))
            await until(lambda: asyncio.to_thread(smtp_server.held.wait, 0.1),
                        what="the first acknowledgement held by the relay")
            for address in queued:
                await asyncio.to_thread(deliver, "helpdesk", mail(address, "Dopo", "Due."))

            async def waiting() -> bool:
                rows = [await outgoing(store, a) for a in queued]
                return all(r and r[0].status == "pending" for r in rows)
            await until(waiting, what="two acknowledgements waiting behind it")
            assert [r.status for r in await outgoing(store, in_flight)] == ["sending"]

            if stop == "SIGTERM":
                await asyncio.to_thread(stop_run, proc)
            else:
                proc.send_signal(signal.SIGKILL)
                assert await asyncio.to_thread(proc.wait, 10) == -signal.SIGKILL
            # Started again a little later: the test's clock starts over at each start, and
            # would otherwise be before the waiting messages' times.
            env["CENTRALINO_CLOCK_START"] = "2026-12-01T10:10:00+01:00"
            proc = await asyncio.to_thread(start_run, settings, env, log)

            async def all_sent() -> bool:
                rows = [await outgoing(store, a) for a in queued]
                return all(r and r[0].status == "sent" for r in rows)
            await until(all_sent, timeout=25, what="the two waiting ones sent")
            for address in queued:
                assert [(r.status, r.attempts) for r in await outgoing(store, address)] == [
                    ("sent", 1)]
                assert len(await asyncio.to_thread(received, address)) == 1
            [row] = await outgoing(store, in_flight)
            assert (row.status, row.attempts) == ("uncertain", 1), row.error
            # The relay had taken it before it stopped answering: the citizen has it once.
            assert len(await asyncio.to_thread(received, in_flight)) == 1
    finally:
        if proc.poll() is None:
            await asyncio.to_thread(stop_run, proc)
    print(os.linesep.join(line for line in log.read_text().splitlines() if "mail" in line))
