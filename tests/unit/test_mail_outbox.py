"""What the desk sends goes out once (centralino/mail/outbox.py), through a real SMTP server
(aiosmtpd in this process) and a real SQLite store: a temporary refusal is tried again later,
a permanent one fails, and a message cut mid-send by a stop is never sent again on its own."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from centralino.mail.outbox import Outbox
from centralino.storage.models import MailOut
from mail import compose, threads
from mail.config import Mailbox, MailConfig, Secret, Server
from tests.unit.webparts import web_parts


class Catcher:
    def __init__(self) -> None:
        self.got: list[Any] = []
        self.answer: str | None = None  # a refusal to give instead of taking it

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.answer:
            return self.answer
        self.got.append(envelope)
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Catcher, int]]:
    catcher, port = Catcher(), free_port()
    controller = Controller(catcher, hostname="127.0.0.1", port=port)
    controller.start()
    yield catcher, port
    controller.stop()


def config(port: int) -> MailConfig:
    server = Server(host="127.0.0.1", port=port, tls="none", user="helpdesk",
                    auth=Secret(password="test"))
    return MailConfig("helpdesk.test", 60, 3, server,
                      {"cittadini": Mailbox(imap=server, topic="generale",
                                            address="helpdesk@helpdesk.test")}, "test")


async def queue(parts: Any, subject: str = "Prova") -> str:
    ticket = compose.Ticketed("HD-2026-000001", subject, "Maria Rossi", "maria@esempio.it",
                              None, ("<a@esempio.it>",))
    message: EmailMessage = compose.reply(ticket, "helpdesk@helpdesk.test", "Help desk",
                                          "helpdesk.test", parts.clock.now(), "Risposta.")
    assert await parts.store.queue_mail(
        ticket_id=None, message_id=str(message["Message-ID"]), kind="reply",
        sender="helpdesk@helpdesk.test", recipient="maria@esempio.it", raw=message.as_bytes(),
        created_at=parts.clock.now(), next_at=parts.clock.now())
    return str(message["Message-ID"])


async def row(parts: Any, message_id: str) -> MailOut:
    async with parts.store.sessions() as s:
        return (await s.scalars(select(MailOut).where(MailOut.message_id == message_id))).one()


async def test_a_message_goes_out_once_with_its_thread(tmp_path, smtp):
    catcher, port = smtp
    async with web_parts(tmp_path) as (_, parts):
        outbox = Outbox(parts.store, parts.clock, config(port))
        sent_id = await queue(parts)
        assert await outbox.send_due() == 1
        assert await outbox.send_due() == 0  # nothing twice
        [envelope] = catcher.got
        assert envelope.rcpt_tos == ["maria@esempio.it"]
        assert b"In-Reply-To: <a@esempio.it>" in envelope.content
        assert threads.ours([sent_id], "helpdesk.test") == "HD-2026-000001"
        done = await row(parts, sent_id)
        assert (done.status, done.attempts, done.sent_at) == ("sent", 1, parts.clock.now())


async def test_a_temporary_refusal_is_tried_later_and_a_permanent_one_fails(tmp_path, smtp):
    catcher, port = smtp
    async with web_parts(tmp_path) as (_, parts):
        outbox = Outbox(parts.store, parts.clock, config(port))
        later = await queue(parts)
        catcher.answer = "451 4.3.0 try again later"
        assert await outbox.send_due() == 0
        waiting = await row(parts, later)
        assert waiting.status == "pending" and "451" in waiting.error
        assert await outbox.send_due() == 0  # not before its time
        catcher.answer = None
        parts.clock.advance(31)
        assert await outbox.send_due() == 1
        assert len(catcher.got) == 1 and (await row(parts, later)).status == "sent"

        never = await queue(parts, "Altro")
        catcher.answer = "550 5.1.1 no such user"
        assert await outbox.send_due() == 0
        refused = await row(parts, never)
        assert refused.status == "failed" and "550" in refused.error
        parts.clock.advance(timedelta(days=1).total_seconds())
        assert await outbox.send_due() == 0


async def test_a_message_cut_mid_send_is_uncertain_and_not_sent_again(tmp_path, smtp):
    catcher, port = smtp
    async with web_parts(tmp_path) as (_, parts):
        cut = await queue(parts)
        assert await parts.store.mail_sending((await row(parts, cut)).id, "pending", "sending")
        # The service stopped here; at the next start:
        assert await parts.store.mail_cut_short() == 1
        assert await Outbox(parts.store, parts.clock, config(port)).send_due() == 0
        assert (await row(parts, cut)).status == "uncertain" and catcher.got == []
