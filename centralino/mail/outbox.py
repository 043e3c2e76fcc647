"""What the desk sends, through SMTP: each message written first (mail_outbox), then sent.

A message is claimed (pending -> sending) before the server is spoken to, and marked sent on
its 250. A temporary refusal or a server away puts it back with a later try (shown on its
ticket: `error`); a permanent refusal (5xx) fails it. One left `sending` by a stopped service
may or may not have gone: it becomes `uncertain` at the next start and is never sent again on
its own: a citizen gets a message once, or a person decides.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import Any

import aiosmtplib

from centralino.clock import Timers
from centralino.mail.inbox import secret, stopping
from centralino.storage.models import MailOut
from centralino.storage.store import Store
from mail.config import MailConfig

log = logging.getLogger("centralino.mail")
RETRY = (30, 120, 600, 1800, 3600)  # seconds before the next try, then every hour
MAX_TRIES = 24


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
            try:
                await asyncio.wait_for(self.kick.wait(), 10)
            except TimeoutError:
                pass

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
        try:
            password = await asyncio.to_thread(secret, smtp.auth)
            options: dict[str, Any] = {
                "hostname": smtp.host, "port": smtp.port, "timeout": 30,
                "use_tls": smtp.tls == "tls", "start_tls": smtp.tls == "starttls"}
            if smtp.tls != "none":  # no login in clear (a server on this machine needs none)
                options |= {"username": smtp.user, "password": password}
            await aiosmtplib.send(row.raw, sender=row.sender, recipients=[row.recipient],
                                  **options)
        except aiosmtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.code < 600
            return await self._failed(row, f"{exc.code} {exc.message}", permanent)
        except (aiosmtplib.SMTPException, OSError) as exc:
            return await self._failed(row, str(exc) or type(exc).__name__, False)
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
