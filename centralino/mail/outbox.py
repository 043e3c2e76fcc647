"""What the desk sends, through SMTP: each message written first (mail_outbox), then sent.

A message is claimed (pending -> sending) before the server is spoken to, and marked sent on
its 250. A temporary refusal or a server away puts it back with a later try (shown on its
ticket: `error`); a permanent refusal (5xx, of the message or of its recipient) fails it. One
whose connection broke once its content was under way (no answer to the DATA), or left
`sending` by a stopped service, may or may not have gone: it becomes `uncertain` and is never
sent again on its own: a citizen gets a message once, or a person decides.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any, Literal

import aiosmtplib
from aiosmtplib.typing import Default

from centralino.clock import Timers, woken
from centralino.mail import tls
from centralino.mail.inbox import MailboxError, secret, stopping
from centralino.storage.models import MailOut
from centralino.storage.store import Store
from mail.config import MailConfig

log = logging.getLogger("centralino.mail")
RETRY = (30, 120, 600, 1800, 3600)  # seconds before the next try, then every hour
MAX_TRIES = 24
LOOK_EVERY = 10.0  # seconds: what is due is looked for also without being kicked


class Outbox:
    def __init__(self, store: Store, clock: Timers, config: MailConfig):
        self.store, self.clock, self.config = store, clock, config
        self.kick = asyncio.Event()

    async def run(self) -> None:
        if cut := await self.store.mail_cut_short():
            log.warning("%d messages were being sent when the service stopped: marked "
                        "uncertain, not sent again", cut)
        while True:
            self.kick.clear()
            try:
                while await self.send_due():
                    pass
            except Exception as exc:  # the database away: the messages wait in it
                stopping(exc)
                log.exception("sending mail")
            await woken(self.kick, self.clock, LOOK_EVERY)

    async def send_due(self) -> int:
        sent = 0
        for row in await self.store.mail_due(self.clock.now()):
            if not await self.store.mail_sending(row.id, "pending", "sending",
                                                 attempts=row.attempts + 1):
                continue  # another sender has it
            sent += await self._send(row)
        return sent

    async def _send(self, row: MailOut) -> int:
        smtp = self.config.smtp
        client: _Client | None = None
        try:
            password = await asyncio.to_thread(secret, smtp.auth)
            options: dict[str, Any] = {
                "hostname": smtp.host, "port": smtp.port, "timeout": 30,
                "use_tls": smtp.tls == "tls", "start_tls": smtp.tls == "starttls"}
            if smtp.tls != "none":  # no login in clear (a server on this machine needs none)
                options |= {"username": smtp.user, "password": password,
                            "tls_context": tls.context(smtp)}  # its ca_file, if any
            client = _Client(**options)
            try:
                await client.connect()
                await client.sendmail(row.sender, [row.recipient], row.raw)
            finally:  # no QUIT: the 250 is what counts, and waiting for a server that
                client.close()  # stopped answering would hold up a stop by its timeout
        except aiosmtplib.SMTPRecipientsRefused as exc:  # "no such user" comes at RCPT
            first = exc.recipients[0]
            return await self._failed(row, f"{first.code} {first.message}",
                                      500 <= first.code < 600)
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            return await self._failed(row, f"{exc.code} {exc.message}", permanent)
        except (aiosmtplib.SMTPException, OSError, MailboxError) as exc:
            error = str(exc) or type(exc).__name__
            if client is not None and client.stage == "data":  # no answer to the content:
                return await self._uncertain(row, error)  # it may have gone
            return await self._failed(row, error, False)
        await self.store.mail_sending(row.id, "sending", "sent", sent_at=self.clock.now(),
                                      error="")
        log.info("mail %s sent to %s", row.message_id, row.recipient)
        return 1

    async def _failed(self, row: MailOut, error: str, permanent: bool) -> int:
        tries = row.attempts + 1
        if permanent or tries >= MAX_TRIES:
            await self.store.mail_sending(row.id, "sending", "failed", error=error)
            log.error("mail %s to %s refused: %s", row.message_id, row.recipient, error)
        else:
            wait = RETRY[min(tries - 1, len(RETRY) - 1)]
            await self.store.mail_sending(row.id, "sending", "pending", error=error,
                                          next_at=self.clock.now() + timedelta(seconds=wait))
            log.warning("mail %s to %s not sent (%s): again in %d s", row.message_id,
                        row.recipient, error, wait)
        return 0

    async def _uncertain(self, row: MailOut, error: str) -> int:
        """The content went and no answer came: the server may have taken it (and sent it
        on). Never sent again on its own: a person decides."""
        await self.store.mail_sending(row.id, "sending", "uncertain",
                                      error=f"no answer after the message was sent: {error}")
        log.error("mail %s to %s: no answer after its content (%s): uncertain, not sent "
                  "again", row.message_id, row.recipient, error)
        return 0


class _Client(aiosmtplib.SMTP):
    """An SMTP connection that knows how far its message went: once the DATA is under way, a
    lost connection or a timeout leaves unknown whether the server took it."""

    stage = "envelope"  # then "data" (the content under way), then "accepted" (its 250)

    async def data(self, message: str | bytes, /, *,
                   timeout: float | Literal[Default.token] | None = Default.token
                   ) -> aiosmtplib.SMTPResponse:
        self.stage = "data"
        response = await super().data(message, timeout=timeout)
        self.stage = "accepted"
        return response
