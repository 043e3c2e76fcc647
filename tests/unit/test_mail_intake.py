"""Stored e-mail into tickets (centralino/mail/intake.py) on a real SQLite store and the real
ticket desk: what each kind of message becomes. The same path with a real Dovecot and
PostgreSQL is tests/integration/test_mail_intake.py."""

from __future__ import annotations

import uuid
from email.message import EmailMessage
from typing import Any

from centralino.mail.intake import Intake
from mail.config import Mailbox, MailConfig, Secret, Server
from tests.unit.webparts import web_parts

SERVER = Server(host="127.0.0.1", port=10143, tls="none", user="helpdesk",
                auth=Secret(password="test"))
CONFIG = MailConfig(domain="helpdesk.test", sweep_seconds=60,
                    acknowledgements_per_sender_per_hour=3, smtp=SERVER, mailboxes={
                        "cittadini": Mailbox(imap=SERVER, topic="generale",
                                             address="helpdesk@helpdesk.test"),
                        "pec": Mailbox(imap=SERVER, topic="generale", pec=True,
                                       address="protocollo@pec.helpdesk.test"),
                        "delega": Mailbox(imap=SERVER, group="back-office",
                                          address="backoffice@helpdesk.test")},
                    digest="test")


def mail(subject: str, body: str, sender: str = "maria@esempio.it", **headers: str
         ) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Maria Rossi <{sender}>"
    message["To"] = "helpdesk@helpdesk.test"
    message["Subject"] = subject
    message["Message-ID"] = f"<{uuid.uuid4().hex}@esempio.it>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


async def arrive(parts: Any, message: EmailMessage | bytes, box: str = "cittadini") -> Any:
    """Stored as the fetcher stores it, then taken in; the stored row, as it ends."""
    raw = message if isinstance(message, bytes) else message.as_bytes()
    uid = uuid.uuid4().int % 10**9
    assert await parts.store.store_mail(box, 1, uid, f"k{uid}", None, raw, parts.clock.now())
    await Intake(parts.store, parts.tickets, CONFIG).run_once()
    async with parts.store.sessions() as s:
        from sqlalchemy import select

        from centralino.storage.models import MailMessage
        return (await s.scalars(select(MailMessage).where(MailMessage.uid == uid))).one()


async def test_each_kind_of_message_becomes_what_an_operator_expects(tmp_path):
    async with web_parts(tmp_path) as (_, parts):
        first = mail("Certificato", "Mi serve un certificato.")
        row = await arrive(parts, first)
        assert (row.status, row.kind) == ("done", "person")
        ticket = await parts.store.ticket(row.ticket_id)
        assert (ticket.channel, ticket.topic, ticket.subject, ticket.requester_email) == (
            "email", "generale", "Certificato", "maria@esempio.it")

        # A reply, found by In-Reply-To although its subject was rewritten.
        reply = mail("R: richiesta", "Ecco il documento.", In_Reply_To=first["Message-ID"])
        assert (await arrive(parts, reply)).ticket_id == ticket.id
        # The subject's number counts only from the ticket's own requester.
        quoting = mail(f"Sollecito {ticket.number}", "Novità?")
        assert (await arrive(parts, quoting)).ticket_id == ticket.id
        stranger = mail(f"Info su {ticket.number}", "Chi è?", sender="altro@esempio.it")
        assert (await arrive(parts, stranger)).ticket_id not in (None, ticket.id)

        # Automatic mail is kept as a note on its ticket and reopens nothing.
        away = mail("Fuori ufficio", "Rientro lunedì.", Auto_Submitted="auto-replied",
                    In_Reply_To=first["Message-ID"])
        assert ((await arrive(parts, away)).status, ticket.state) == ("done", "nuovo")
        thread = await parts.store.ticket_messages(ticket.id)
        assert [(m.visibility, m.body.strip()) for m in thread] == [
            ("public", "Mi serve un certificato."), ("public", "Ecco il documento."),
            ("public", "Novità?"), ("internal", "Risposta automatica: Fuori ufficio")]


async def test_noise_of_no_ticket_and_unreadable_bytes_are_kept_not_filed(tmp_path):
    async with web_parts(tmp_path) as (_, parts):
        lonely = mail("Out of Office", "Away.", Auto_Submitted="auto-replied")
        assert ((await arrive(parts, lonely)).status) == "ignored"
        broken = await arrive(parts, b"\x00\x01 not a message")
        assert (broken.status, broken.ticket_id) == ("quarantined", None)
        assert broken.reason


async def test_the_delegation_mailbox_opens_tickets_at_its_group(tmp_path):
    async with web_parts(tmp_path) as (_, parts):
        row = await arrive(parts, mail("Verifica pratica", "Da controllare."), box="delega")
        ticket = await parts.store.ticket(row.ticket_id)
        assert (ticket.level, ticket.state) == ("back-office", "escalato")


async def test_a_pec_envelope_gives_the_citizen_s_message_and_receipts_are_notes(tmp_path):
    async with web_parts(tmp_path) as (_, parts):
        inner = mail("Istanza", "Allego l'istanza.", sender="maria@pec.esempio.it")
        envelope = EmailMessage()
        envelope["From"] = "per conto di: maria@pec.esempio.it <posta-certificata@pec.it>"
        envelope["Subject"] = "POSTA CERTIFICATA: Istanza"
        envelope["X-Trasporto"] = "posta-certificata"
        envelope["Message-ID"] = "<opec.123@pec.it>"
        envelope.set_content("Il giorno ... il messaggio è stato inviato da ...")
        envelope.add_attachment(inner, filename="postacert.eml")
        row = await arrive(parts, envelope, box="pec")
        ticket = await parts.store.ticket(row.ticket_id)
        assert (ticket.subject, ticket.requester_email) == ("Istanza", "maria@pec.esempio.it")
        [first] = await parts.store.ticket_messages(ticket.id)
        assert first.body.strip() == "Allego l'istanza."

        receipt = mail("CONSEGNA: Istanza", "Ricevuta di avvenuta consegna",
                       X_Ricevuta="avvenuta-consegna",
                       X_Riferimento_Message_ID=inner["Message-ID"])
        kept = await arrive(parts, receipt, box="pec")
        assert (kept.status, kept.kind, kept.ticket_id) == ("done", "pec_receipt", ticket.id)
