"""E-mail to the help desk through a real Dovecot (IMAP, LMTP on loopback, started by
./dev test) into the running service and PostgreSQL (issue #12): a citizen's message becomes
a ticket, a reply joins it, an out-of-office does not reopen anything, the delegation
mailbox opens tickets at its group; nothing is marked read, nothing is doubled, and a
message stored but not yet moved when the service stops is not taken twice."""

from __future__ import annotations

import asyncio
import imaplib
import os
import shutil
import smtplib
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from centralino.clock import LoopClock
from centralino.mail.inbox import Inbox, MailboxError
from centralino.settings import load_settings
from centralino.storage.store import Store
from ivr.clock import SystemClock
from mail.config import load_mail_config
from tests.integration.conftest import TEST_SETTINGS, settings_for
from tests.integration.waiting import eventually

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

IMAP = os.environ.get("CENTRALINO_TEST_IMAP", "127.0.0.1:10143")
LMTP = os.environ.get("CENTRALINO_TEST_LMTP", "127.0.0.1:10024")
SUPERVISOR = "dev-sup"
MAIL_YAML = Path(__file__).with_name("mail.yaml")
OPEN = ("nuovo", "preso in carico", "in attesa del cittadino", "escalato")


@pytest.fixture
def mail_settings(tmp_path: Path) -> Any:
    """The tests' configuration with the mailboxes of mail.yaml: only these tests' services
    read them (another test's service would take their messages)."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    shutil.copy(MAIL_YAML, config / "mail.yaml")
    return settings_for(CENTRALINO_CONFIG_DIR=str(config))


def deliver(user: str, message: EmailMessage) -> None:
    """Into `user`'s INBOX, as the mail server's delivery agent puts it."""
    host, port = LMTP.split(":")
    with smtplib.LMTP(host, int(port)) as lmtp:
        refused = lmtp.send_message(message, to_addrs=[user])
    assert not refused, refused


def mail(sender: str, subject: str, body: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Maria Rossi <{sender}>"
    message["To"] = "helpdesk@helpdesk.test"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@esempio.it>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def folder(user: str, name: str) -> list[tuple[bytes, bytes]]:
    """(flags, Message-ID header) of every message in `user`'s folder."""
    host, port = IMAP.split(":")
    imap = imaplib.IMAP4(host, int(port))
    try:
        imap.login(user, "test")
        imap.select(name, readonly=True)
        _, data = imap.uid("SEARCH", "ALL")
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            head = parts[0]
            assert isinstance(head, tuple)
            out.append((head[0], head[1].strip()))
        return out
    finally:
        imap.logout()


async def tickets_from(desk: Any, address: str, count: int = 1, timeout: float = 20
                       ) -> list[dict[str, Any]]:
    """The open tickets whose requester is `address`, once there are `count` of them."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = [t for t in await desk.request(
            "GET", "/api/tickets", token=SUPERVISOR, params={"requester": address})
                 if t["requester_email"] == address and t["state"] in OPEN]
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.2)


async def detail(desk: Any, number: str) -> dict[str, Any]:
    return await desk.request("GET", f"/api/tickets/{number}", token=SUPERVISOR)


async def thread_of(desk: Any, number: str) -> list[dict[str, Any]]:
    return (await detail(desk, number))["thread"]


async def test_a_citizen_s_mail_becomes_a_ticket_and_leaves_the_inbox_unread(start_service,
                                                                              desk,
                                                                              mail_settings):
    await start_service(settings=mail_settings)
    address = f"m{uuid.uuid4().hex[:8]}@esempio.it"
    first = mail(address, "Certificato di iscrizione", "Buongiorno, mi serve il certificato.")
    await asyncio.to_thread(deliver, "helpdesk", first)
    [ticket] = await tickets_from(desk, address)
    assert (ticket["channel"], ticket["topic"], ticket["subject"], ticket["state"]) == (
        "email", "alpha", "Certificato di iscrizione", "nuovo")
    assert ticket["requester_name"] == "Maria Rossi"
    thread = (await detail(desk, ticket["number"]))["thread"]
    assert thread[0]["body"].startswith("Buongiorno, mi serve il certificato.")
    # Out of the inbox, kept in the done folder, never marked read (someone may read it).
    moved = await asyncio.to_thread(folder, "helpdesk", "Elaborati")
    [(flags, _)] = [m for m in moved if first["Message-ID"].encode() in m[1]]
    assert b"\\Seen" not in flags
    assert not [m for m in await asyncio.to_thread(folder, "helpdesk", "INBOX")
                if first["Message-ID"].encode() in m[1]]

    # The same message again (a client re-sending it, the server redelivering): no second.
    await asyncio.to_thread(deliver, "helpdesk", first)
    # A reply to it joins the thread; an out-of-office about it only leaves a note.
    reply = mail(address, "Re: Certificato di iscrizione", "Aggiungo la partita IVA.",
                 In_Reply_To=first["Message-ID"])
    await asyncio.to_thread(deliver, "helpdesk", reply)
    away = mail(address, "Risposta automatica: Certificato", "Sono fuori ufficio.",
                Auto_Submitted="auto-replied", In_Reply_To=first["Message-ID"])
    await asyncio.to_thread(deliver, "helpdesk", away)
    thread = await eventually(lambda: thread_of(desk, ticket["number"]),
                              lambda thread: len(thread) >= 3, timeout=20, every=0.2,
                              what="the reply and the automatic answer in the thread")
    assert [(m["direction"], m["visibility"], m["body"].strip()) for m in thread] == [
        ("in", "public", "Buongiorno, mi serve il certificato."),
        ("in", "public", "Aggiungo la partita IVA."),
        ("in", "internal", "Risposta automatica: Risposta automatica: Certificato"),
    ]
    assert len(await tickets_from(desk, address, count=2, timeout=2)) == 1


async def test_the_rules_and_the_delegation_mailbox_choose_where_a_ticket_goes(
        start_service, desk, smtp_server, mail_settings):
    """...and the second level's answer goes back to the office in the thread, from the
    delegation mailbox's address; the office's reply updates the same ticket."""
    await start_service(settings=mail_settings)
    address = f"r{uuid.uuid4().hex[:8]}@esempio.it"
    await asyncio.to_thread(deliver, "helpdesk", mail(address, "Reclamo sul servizio", "..."))
    [complaint] = await tickets_from(desk, address)
    assert complaint["topic"] == "beta"  # the rule on the word "reclamo"

    office = f"b{uuid.uuid4().hex[:8]}@comune.example.it"
    delegation = mail(office, "Verifica pratica 42", "Da verificare presso l'ufficio.")
    await asyncio.to_thread(deliver, "secondolivello", delegation)
    [delegated] = await tickets_from(desk, office)
    assert (delegated["level"], delegated["state"]) == ("back-office", "escalato")
    number = delegated["number"]
    member = {"Authorization": "Bearer dev-1003"}  # of back-office (tickets.yaml)
    for action in ({"action": "take"}, {"action": "reply", "text": "Pratica verificata."}):
        async with desk.http.post(f"{desk.base}/api/tickets/{number}/actions", json=action,
                                  headers=member) as resp:
            assert resp.status == 200, await resp.text()
    [answer] = await mail_about(number, office, 1)  # (no acknowledgement: acknowledge false)
    assert "Pratica verificata." in answer.get_content()
    assert answer["From"].addresses[0].addr_spec == "backoffice@helpdesk.test"
    assert "Verifica pratica 42" in answer["Subject"]
    assert answer["In-Reply-To"] == delegation["Message-ID"]  # in the office's thread
    reply = mail(office, f"Re: {answer['Subject']}", "Grazie, chiudiamo.",
                 In_Reply_To=answer["Message-ID"], References=answer["References"])
    await asyncio.to_thread(deliver, "secondolivello", reply)
    thread = await eventually(lambda: thread_of(desk, number),
                              lambda thread: thread[-1]["body"].strip() == "Grazie, chiudiamo.",
                              timeout=20, every=0.2, what="the office's reply in the thread")
    assert [m["body"].strip() for m in thread] == [
        "Da verificare presso l'ufficio.", "Pratica verificata.", "Grazie, chiudiamo."]
    assert len(await tickets_from(desk, office, count=2, timeout=1)) == 1


async def test_a_message_stored_but_not_moved_is_not_taken_twice(asterisk):
    """The service stopped (or the IMAP connection broke) between storing a message and
    moving it: the next sweep finds it by its UIDs and only moves it."""
    settings = load_settings(TEST_SETTINGS, {})
    config = load_mail_config(MAIL_YAML, {"alpha", "beta"}, {"back-office"})
    assert config is not None
    box = config.mailboxes["cittadini"]
    address = f"k{uuid.uuid4().hex[:8]}@esempio.it"
    message = mail(address, "Prova", "Una volta sola.")
    url = os.environ.get("CENTRALINO_TEST_DATABASE_URL", settings.database.url)
    async with Store(url) as store:
        clock = LoopClock(SystemClock())
        inbox = Inbox("prova-crash", box.model_copy(update={"folder": "Crash"}), config, store,
                      clock, lambda: None)
        imap = await inbox._connect()
        try:
            await imap.create("Crash")
            await imap.select("Crash")
            host, port = IMAP.split(":")

            def put() -> None:
                client = imaplib.IMAP4(host, int(port))
                client.login("helpdesk", "test")
                client.append("Crash", "", imaplib.Time2Internaldate(0), message.as_bytes())
                client.logout()
            await asyncio.to_thread(put)

            async def broken(_imap: Any, _uid: int) -> None:
                raise MailboxError("connection lost before the move")
            inbox._put_away = broken  # type: ignore[method-assign]
            with pytest.raises(MailboxError):
                await inbox.sweep(imap)
            del inbox._put_away  # the real one again, as after a restart
            assert await inbox.sweep(imap) == 0  # found stored: moved, not stored again
            rows = [r for r in await store.mail_to_process(1000) if r.mailbox == "prova-crash"]
            assert len(rows) == 1 and message["Message-ID"] in (rows[0].message_id or "")
            await store.mail_done(rows[0].id, "ignored", "person", reason="test")
        finally:
            await imap.logout()


def citizen_mail(number: str, address: str) -> list[EmailMessage]:
    """What reached the test citizen's mailbox about ticket `number`, sent to `address`
    (numbers start again with each test database; the mailbox outlives them), oldest first."""
    from email import policy
    from email.parser import BytesParser

    host, port = IMAP.split(":")
    imap = imaplib.IMAP4(host, int(port))
    try:
        imap.login("cittadino", "test")
        imap.select("INBOX", readonly=True)
        _, data = imap.uid("SEARCH", "SUBJECT", number, "TO", address)
        out = []
        for uid in data[0].split():
            _, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
            raw = parts[0]
            assert isinstance(raw, tuple)
            parsed = BytesParser(policy=policy.default).parsebytes(raw[1])
            assert isinstance(parsed, EmailMessage)
            out.append(parsed)
        return out
    finally:
        imap.logout()


async def mail_about(number: str, address: str, count: int, timeout: float = 20
                     ) -> list[EmailMessage]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await asyncio.to_thread(citizen_mail, number, address)
        if len(found) >= count or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.3)


async def test_the_citizen_gets_the_number_then_the_answer_and_their_reply_joins_it(
        start_service, desk, smtp_server, mail_settings):
    await start_service(settings=mail_settings)
    address = f"c{uuid.uuid4().hex[:8]}@esempio.it"
    first = mail(address, "Rimborso diritti", "Ho pagato due volte.")
    await asyncio.to_thread(deliver, "helpdesk", first)
    [ticket] = await tickets_from(desk, address)
    number = ticket["number"]
    [ack] = await mail_about(number, address, 1)
    assert ack["Auto-Submitted"] == "auto-replied"  # no out-of-office answers it
    assert ack["In-Reply-To"] == first["Message-ID"]
    assert number in ack["Subject"] and number in ack.get_content()

    # An operator answers: it reaches the citizen in the same thread.
    agent = {"Authorization": "Bearer dev-1001"}
    for action in ({"action": "take"}, {"action": "reply", "text": "Le rimborsiamo 10 euro."}):
        async with desk.http.post(f"{desk.base}/api/tickets/{number}/actions", json=action,
                                  headers=agent) as resp:
            assert resp.status == 200, await resp.text()
    answer = (await mail_about(number, address, 2))[-1]
    assert "Le rimborsiamo 10 euro." in answer.get_content()
    assert answer["Auto-Submitted"] is None
    assert first["Message-ID"] in answer["References"]

    # The citizen answers from their client: the reply joins the ticket.
    again = mail(address, f"Re: {answer['Subject']}", "Grazie, ricevuto.",
                 In_Reply_To=answer["Message-ID"], References=answer["References"])
    await asyncio.to_thread(deliver, "helpdesk", again)
    thread = await eventually(lambda: thread_of(desk, number),
                              lambda thread: thread[-1]["body"].strip() == "Grazie, ricevuto.",
                              timeout=20, every=0.2, what="the citizen's reply in the thread")
    assert [m["body"].strip() for m in thread] == [
        "Ho pagato due volte.", "Le rimborsiamo 10 euro.", "Grazie, ricevuto."]
    assert len(await tickets_from(desk, address, count=2, timeout=1)) == 1


async def test_the_service_stops_at_once_whatever_its_mailboxes_are_doing(asterisk,
                                                                          mail_settings):
    """Stopped while its mailboxes connect, sweep or idle: a stop is a stop (a cleanup that
    failed during it once made an inbox retry for ever, and the service never stopped), and
    nothing of the mail goes on (an inbox left running once took later tests' mail: moved
    out of the box by a service that had stopped, stored nowhere)."""
    from centralino.service import Service

    def mail_work() -> list[str]:
        return [repr(t.get_coro()) for t in asyncio.all_tasks() if not t.done()
                and any(name in repr(t.get_coro()) for name in ("Inbox.", "Outbox.", "_take_in"))]

    for n in range(20):
        service = Service(mail_settings)
        await service.__aenter__()
        # Deliberately at different moments of their work (no event to wait for: any moment
        # must do).
        await asyncio.sleep(n % 5 * 0.05)
        async with asyncio.timeout(20):
            await service.__aexit__(None, None, None)
        assert mail_work() == [], f"stop {n}: still running"
