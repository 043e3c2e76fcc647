"""The tests' SMTP server (aiosmtpd, on loopback): what the service sends is delivered, as a
mail server would, into Dovecot's `cittadino` mailbox through LMTP (every recipient is that
test citizen), where the tests read it over IMAP as the citizen's own client would."""

from __future__ import annotations

import os
import smtplib
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

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.refuse:
            return self.refuse
        host, port = LMTP.split(":")
        with smtplib.LMTP(host, int(port)) as lmtp:
            lmtp.sendmail(envelope.mail_from, ["cittadino"], envelope.content)
        self.received += 1
        return "250 OK delivered"


@pytest.fixture
def smtp_server() -> Iterator[Relay]:
    relay = Relay()
    controller = Controller(relay, hostname="127.0.0.1", port=SMTP_PORT)
    controller.start()
    try:
        yield relay
    finally:
        controller.stop()
