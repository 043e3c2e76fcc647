"""Stored e-mail into tickets: each message kept by the fetcher (mail_messages, status
"stored") becomes a ticket, joins the thread of the ticket it answers, or is kept as noise;
the ticket's change and the message's "done" are one transaction, so a crash in between
leaves it stored, to be taken again at the next start: never lost, never doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from email.utils import getaddresses

from centralino.storage.models import MailMessage, Ticket
from centralino.storage.store import Attachment, Store, ThreadMessage
from centralino.tickets.desk import Busy, TicketDesk
from centralino.tickets.files import Files, Incoming, TooLarge
from mail import kinds, pec, threads
from mail.config import Mailbox, MailConfig
from mail.content import Bounced, Content, Unreadable, bounced, parse, read
from tickets import states
from tickets.attachments import Limits, Refused, clean_name
from tickets.numbers import find
from tickets.requests import Request
from tickets.states import TicketError

log = logging.getLogger("centralino.mail")
NO_TEXT = "(messaggio senza testo)"


Opened = Callable[[Ticket, Mailbox], Awaitable[None]]


async def _nothing(_ticket: Ticket, _box: Mailbox) -> None:
    return None


class Intake:
    def __init__(self, store: Store, tickets: TicketDesk, config: MailConfig,
                 opened: Opened = _nothing):
        self.store, self.tickets, self.config = store, tickets, config
        self._opened = opened  # a new ticket from a person's mail: acknowledged

    async def run_once(self) -> int:
        """Every stored message, oldest first; how many were handled."""
        done = 0
        while rows := await self.store.mail_to_process():
            for row in rows:
                await self.handle(row)
                done += 1
        return done

    async def handle(self, row: MailMessage) -> None:
        box = self.config.mailboxes.get(row.mailbox)
        try:
            outer = parse(row.raw)
        except Unreadable as exc:
            await self.store.mail_done(row.id, "quarantined", None, reason=str(exc))
            log.warning("mailbox %s: message %d quarantined: %s", row.mailbox, row.id, exc)
            return
        if box is None:
            await self.store.mail_done(row.id, "quarantined", None,
                                       reason=f"no mailbox {row.mailbox!r} in mail.yaml now")
            return
        if (receipt := pec.receipt(outer)) is not None:
            await self._note(row, outer, [receipt.refers_to] if receipt.refers_to else [],
                             "pec_receipt", f"Ricevuta PEC: {receipt.kind}")
            return
        message = pec.unwrap(outer) if box.pec else outer
        kind = kinds.kind(message)
        content = read(message)
        if kind == "bounce":
            failed = bounced(message)
            what = "Messaggio non consegnato: " + (content.subject or "") + "".join(
                f"\n{b.address}: {b.reason}" for b in failed)
            await self._note(row, message, threads.returned(message), "bounce", what,
                             failed=failed or [Bounced("", content.subject[:500])])
            return
        number = await self._thread(message)
        if kind == "auto":
            await self._note(row, message, threads.referenced(message), "auto",
                             "Risposta automatica: " + (content.subject or ""), number)
            return
        received, refused = await self._receive(content)
        try:
            # The files named by their hash before the ticket's transaction, as the web form
            # does: a crash in between leaves a file nobody lists, never a listed one missing.
            await self.tickets.files.keep(received)
            files = tuple(a for _, a in received)
            extras = ThreadMessage(content.text or NO_TEXT, direction="in",
                                   message_id=_id(message), mail_id=row.id,
                                   in_reply_to=kinds.header(message, "In-Reply-To")[:255]
                                   or None, attachments=files, quoted=content.quoted,
                                   html=content.html, refused=tuple(refused))
            if number is not None and (ticket := await self.store.ticket(number)) is not None:
                await self._joins(row, ticket, extras)
            else:
                await self._opens(row, box, message, content, extras)
        except (TicketError, Busy) as exc:  # changed meanwhile: taken again next round
            log.warning("mailbox %s: message %d not filed yet: %s", row.mailbox, row.id, exc)
            return
        finally:
            Files.discard([incoming for incoming, _ in received])  # those not kept
        _, address = _from(message)
        if address and await self.store.clear_bounced(address):
            log.info("mailbox %s: %s wrote again: no longer flagged as bounced", row.mailbox,
                     address)

    async def _receive(self, content: Content
                       ) -> tuple[list[tuple[Incoming, Attachment]], list[str]]:
        """The message's attachments by the web form's rules (tickets.attachments: their
        kind judged by their bytes, at most so many, so large): those accepted, written to
        temporary files; and why each other one was refused, said on the message."""
        limits = Limits()
        received: list[tuple[Incoming, Attachment]] = []
        refused: list[str] = []
        total = 0
        try:
            for part in content.attachments:
                name = clean_name(part.filename)
                if len(received) >= limits.files:
                    refused.append(f"{name}: al massimo {limits.files} allegati")
                    continue
                if total + len(part.data) > limits.total_bytes:
                    refused.append(f"{name}: gli allegati insieme superano "
                                   f"{limits.total_bytes // (1024 * 1024)} MB")
                    continue
                incoming = self.tickets.files.receive(part.filename, limits.file_bytes)
                try:
                    await incoming.write(part.data)
                    received.append((incoming, incoming.finish()))
                    total += len(part.data)
                except (TooLarge, Refused) as exc:
                    incoming.discard()
                    refused.append(str(exc))
                except BaseException:
                    incoming.discard()
                    raise
        except BaseException:
            Files.discard([incoming for incoming, _ in received])
            raise
        return received, refused

    async def _thread(self, message: EmailMessage) -> str | None:
        ids = threads.referenced(message)
        known = await self.store.ticket_of_message_ids(ids)
        prefix = self.tickets.config.prefix
        quoted = find(kinds.header(message, "Subject"), prefix)
        participants: set[str] = set()
        if quoted is not None and (ticket := await self.store.ticket(str(quoted))):
            participants = {a for a in (ticket.requester_email,) if a}
        found = threads.match(message, self.config.domain, prefix,
                              lambda wanted: known if wanted else None,
                              lambda _number: participants)
        return found.number

    async def _joins(self, row: MailMessage, ticket: Ticket, mail: ThreadMessage) -> None:
        after = await self.tickets.citizen_wrote(ticket, mail.body, mail=mail)
        log.info("mailbox %s: message %d joins %s", row.mailbox, row.id, after.number)

    async def _opens(self, row: MailMessage, box: Mailbox, message: EmailMessage,
                     content: Content, mail: ThreadMessage) -> None:
        topic, group = _destination(box, message, content)
        desk = self.tickets
        name, address = _from(message)
        request = Request(topic or next(iter(desk.config.topics)),
                          (content.subject or "(senza oggetto)")[:255], content.text or NO_TEXT,
                          name[:128] or address, address or None, None, None)
        row_ticket, _ = await desk.open(request, "email", message_id=_id(message),
                                        mail_id=row.id, level=group or states.FIRST_LEVEL,
                                        attachments=mail.attachments, mail=mail)
        log.info("mailbox %s: message %d opens %s", row.mailbox, row.id, row_ticket.number)
        if kinds.answerable(message):
            await self._opened(row_ticket, box)

    async def _note(self, row: MailMessage, message: EmailMessage, ids: list[str], kind: str,
                    what: str, number: str | None = None, failed: list[Bounced] | None = None
                    ) -> None:
        """Noise kept on the ticket it concerns (as an internal note), never answered.
        `failed`: a delivery report's addresses, flagged (one without an address it names is
        the ticket's requester's)."""
        number = number or await self.store.ticket_of_message_ids(ids) or threads.ours(
            ids, self.config.domain)
        ticket = await self.store.ticket(number) if number else None
        for failure in failed or ():
            address = failure.address or (ticket.requester_email if ticket else None)
            if address:
                await self.store.flag_bounced(address, self.tickets.clock.now(),
                                              failure.reason, ticket.id if ticket else None)
        if ticket is None:
            await self.store.mail_done(row.id, "ignored", kind, reason=what)
            return
        await self.store.add_ticket_message(ticket.id, self.tickets.clock.now(), "in",
                                            "internal", f"sistema:{kind}", what,
                                            message_id=_id(message))
        await self.store.mail_done(row.id, "done", kind, ticket.id, what)


def _id(message: EmailMessage) -> str | None:
    value = kinds.header(message, "Message-ID").strip()
    return value[:255] or None


def _from(message: EmailMessage) -> tuple[str, str]:
    pairs = getaddresses([kinds.header(message, "From")])
    name, address = pairs[0] if pairs else ("", "")
    return name.strip(), address.strip().lower()


def _destination(box: Mailbox, message: EmailMessage, content: Content
                 ) -> tuple[str | None, str | None]:
    """(topic, group) by the mailbox's rules, else its own."""
    recipients = {a.lower() for _, a in getaddresses(
        [kinds.header(message, h) for h in ("To", "Cc", "Delivered-To")])}
    subject = content.subject.lower()
    for rule in box.rules:
        if (rule.to_address and rule.to_address in recipients) or (
                rule.subject_words and any(w.lower() in subject for w in rule.subject_words)):
            return rule.topic, rule.group
    return box.topic, box.group
