"""The tests' SMTP server (aiosmtpd, on loopback): what the service sends is delivered, as a
mail server would, into Dovecot's `cittadino` mailbox through LMTP (every recipient is that
test citizen), where the tests read it over IMAP as the citizen's own client would."""

from __future__ import annotations

import asyncio
import os
import smtplib
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller

SMTP_PORT = 10025  # tests/integration/config/mail.yaml
LMTP = os.environ.get("CENTRALINO_TEST_LMTP", "127.0.0.1:10024")


class Relay:
    def __init__(self) -> None:
        self.received = 0
        self.refuse: str | None = None  # "451 ..." or "550 ...": the next messages refused
        # What happens to the next messages to an address (the other addresses' go as usual:
        # earlier tests may leave messages queued in the database), one fate each, in order:
        # a refusal ("451 ...", "550 ..."); "drop": delivered, then the connection cut before
        # the reply (the sender cannot know it went); "hold": delivered, then no reply at all
        # until the sender goes away (its send in flight: `held` is set meanwhile).
        self.fates: dict[str, list[str]] = {}
        self.unknown: dict[str, str] = {}  # address -> its refusal at RCPT ("550 5.1.1 ...")
        self.held = threading.Event()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        if refusal := self.unknown.get(address.lower()):
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        fates = self.fates.get(envelope.rcpt_tos[0].lower())
        fate = fates.pop(0) if fates else None
        if fate and fate[0] in "45":
            return fate
        if fate:
            await asyncio.to_thread(self._deliver, envelope)
            if fate == "hold":
                self.held.set()
                await asyncio.sleep(60)  # aiosmtpd cancels this when the sender goes away
            server.transport.abort()
            return "250 OK never heard"
        self._deliver(envelope)
        return "250 OK delivered"

    def _deliver(self, envelope: Any) -> None:
        host, port = LMTP.split(":")
        with smtplib.LMTP(host, int(port)) as lmtp:
            lmtp.sendmail(envelope.mail_from, ["cittadino"], envelope.content)
        self.received += 1


@pytest.fixture
def smtp_server() -> Iterator[Relay]:
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()
