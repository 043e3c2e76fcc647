"""The mailboxes and the intake together, as the service runs them (mail.yaml at start)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

from centralino.clock import Timers, woken
from centralino.mail.inbox import Inbox, stopping
from centralino.mail.intake import Intake
from centralino.mail.outbox import Outbox
from centralino.storage.faults import fault_of
from centralino.storage.models import Ticket
from centralino.storage.store import Store
from centralino.tickets.desk import TicketDesk
from mail import compose
from mail.config import Mailbox, MailConfig

log = logging.getLogger("centralino.mail")
INTAKE_EVERY = 30.0  # seconds: stored mail is also looked at without being woken


class MailDesk:
    def __init__(self, store: Store, tickets: TicketDesk, clock: Timers, config: MailConfig,
                 spawn: Callable[[Coroutine[Any, Any, None]], asyncio.Task[Any]]):
        self.config = config
        self.store, self.tickets, self.clock = store, tickets, clock
        self.intake = Intake(store, tickets, config, opened=self.acknowledge)
        self.outbox = Outbox(store, clock, config)
        self.public_url = ""  # the status pages' address, for the confirmation's link
        self._kick = asyncio.Event()
        self.inboxes = {name: Inbox(name, box, config, store, clock, self._kick.set)
                        for name, box in config.mailboxes.items()}
        self._spawn = spawn

    def start(self) -> None:
        """Each mailbox's reader, the intake and the outbox, as tasks of the service (which
        cancels them when it stops, and cancels again any that swallowed that)."""
        for inbox in self.inboxes.values():
            self._spawn(inbox.run())
        self._spawn(self._take_in())
        self._spawn(self.outbox.run())

    async def _take_in(self) -> None:
        while True:
            self._kick.clear()
            try:
                await self.intake.run_once()
            except Exception as exc:  # the database away: the stored mail waits for it
                stopping(exc)
                fault = fault_of(exc)
                if not fault.waits:
                    log.exception("e-mail intake")
                else:
                    log.error("e-mail intake: database %s (%s)", fault.kind, fault)
            await woken(self._kick, self.clock, INTAKE_EVERY)

    def health(self) -> dict[str, dict[str, Any]]:
        """Each mailbox now: connected, its problem and since when (wall time, ISO), how many
        messages this run stored; /healthz, the supervisors' board and /metrics show it."""
        now, mono = self.clock.now(), self.clock.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for name, inbox in self.inboxes.items():
            h = inbox.health
            since = None if h.since is None or h.problem is None else (
                now - timedelta(seconds=max(0.0, mono - h.since))).isoformat()
            out[name] = {"connected": h.connected, "problem": h.problem,
                         "problem_since": since, "stored": h.stored}
        return out

    # --- what the desk sends ----------------------------------------------------------------

    def _box_for(self, ticket: Ticket) -> Mailbox:
        """The mailbox a ticket's mail goes out of: its topic's (or group's), else the first."""
        boxes = self.config.mailboxes.values()
        return next((b for b in boxes if b.group == ticket.level), None) or next(
            (b for b in boxes if b.topic == ticket.topic), next(iter(boxes)))

    async def _queue(self, ticket: Ticket, kind: str, build: EmailMessage) -> None:
        box = self._box_for(ticket)
        assert ticket.requester_email
        queued = await self.store.queue_mail(
            ticket_id=ticket.id, message_id=str(build["Message-ID"]), kind=kind,
            sender=box.address, recipient=ticket.requester_email, raw=build.as_bytes(),
            created_at=self.clock.now(), next_at=self.clock.now())
        if queued:
            self.outbox.kick.set()

    async def _ticketed(self, ticket: Ticket, status_url: str | None = None
                        ) -> compose.Ticketed:
        thread = [m.message_id for m in await self.store.ticket_messages(ticket.id,
                                                                         public_only=True)
                  if m.message_id]
        thread += [o.message_id for o in await self.store.outbox_of(ticket.id)]
        return compose.Ticketed(ticket.number, ticket.subject, ticket.requester_name,
                                ticket.requester_email or "", status_url, tuple(thread))

    async def acknowledge(self, ticket: Ticket, box: Mailbox) -> None:
        """A new request by e-mail: its number, at most a few times an hour per address."""
        if not box.acknowledge or not ticket.requester_email:
            return
        hour_ago = self.clock.now() - timedelta(hours=1)
        if await self.store.mail_sent_to(ticket.requester_email, "acknowledgement",
                                         hour_ago) >= (
                self.config.acknowledgements_per_sender_per_hour):
            return
        message = compose.acknowledgement(await self._ticketed(ticket), box.address,
                                          "Help desk", self.config.domain, self.clock.now())
        await self._queue(ticket, "acknowledgement", message)

    async def answer(self, ticket: Ticket, body: str) -> None:
        """An operator's public answer, to the citizen's address."""
        if not ticket.requester_email:
            return
        box = self._box_for(ticket)
        message = compose.reply(await self._ticketed(ticket), box.address, "Help desk",
                                self.config.domain, self.clock.now(), body)
        await self._queue(ticket, "reply", message)

    async def confirm(self, ticket: Ticket, status_path: str) -> None:
        """The web form's request: its number and its private link, by e-mail."""
        if not ticket.requester_email:
            return
        box = self._box_for(ticket)
        message = compose.confirmation(
            await self._ticketed(ticket, self.public_url.rstrip("/") + status_path),
            box.address, "Help desk", self.config.domain, self.clock.now())
        await self._queue(ticket, "confirmation", message)
