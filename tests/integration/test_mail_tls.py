"""The mailboxes over TLS against the real Dovecot (IMAPS, and STARTTLS on the plain port,
with the certificate ./dev test made for it): mail is read only from a server whose
certificate checks out, and a password never goes out in clear."""

from __future__ import annotations

import asyncio
import imaplib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from centralino.clock import LoopClock
from centralino.mail.inbox import Inbox
from centralino.mail.tls import TlsRefused
from centralino.storage.store import Store
from ivr.clock import SystemClock
from mail.config import load_mail_config
from tests.integration.conftest import TEST_SETTINGS, settings_for
from tests.integration.test_mail_intake import IMAP, mail, tickets_from
from tests.integration.waiting import eventually

pytestmark = pytest.mark.asterisk

IMAPS = os.environ.get("CENTRALINO_TEST_IMAPS", "127.0.0.1:10993")
CA = os.environ.get("CENTRALINO_TEST_MAIL_CA", "/var/cache/centralino/mail/tls/cert.pem")


def mail_yaml(boxes: dict[str, str]) -> str:
    out = ["domain: helpdesk.test", "sweep_seconds: 5",
           ("smtp: {host: 127.0.0.1, port: 10025, tls: none, user: helpdesk, "
            "auth: {password: test}}"), "mailboxes:"]
    for n, (name, imap) in enumerate(boxes.items()):
        out += [f"  {name}:", f"    imap: {{{imap}, user: helpdesk, auth: {{password: test}}}}",
                f"    folder: {name}", "    topic: alpha", f"    address: tls{n}@helpdesk.test",
                "    acknowledge: false"]
    return "\n".join(out) + "\n"


def put(folder: str, address: str) -> str:
    """A citizen's message straight into `folder` (made if need be); its Message-ID."""
    message = mail(address, "Richiesta su TLS", "Buongiorno.")
    host, port = IMAP.split(":")
    client = imaplib.IMAP4(host, int(port))
    try:
        client.login("helpdesk", "test")
        client.create(folder)  # NO if it exists: fine
        client.append(folder, "", imaplib.Time2Internaldate(0), message.as_bytes())
    finally:
        client.logout()
    return str(message["Message-ID"])


def still_in(folder: str, message_id: str) -> bool:
    host, port = IMAP.split(":")
    client = imaplib.IMAP4(host, int(port))
    try:
        client.login("helpdesk", "test")
        client.select(folder, readonly=True)
        _, data = client.uid("SEARCH", "HEADER", "Message-ID", message_id)
        return bool(data[0].split())
    finally:
        client.logout()


async def test_mail_is_read_over_starttls_and_tls_only_with_a_trusted_certificate(
        start_service, desk, tmp_path):
    plain_port, tls_port = IMAP.split(":")[1], IMAPS.split(":")[1]
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    (config / "mail.yaml").write_text(mail_yaml({
        "starttls": f"host: 127.0.0.1, port: {plain_port}, tls: starttls, ca_file: {CA}",
        "imaps": f"host: 127.0.0.1, port: {tls_port}, tls: tls, ca_file: {CA}",
        # The same server, its certificate not trusted (no ca_file): nothing is read.
        "untrusted": f"host: 127.0.0.1, port: {plain_port}, tls: starttls",
    }))
    tag = uuid.uuid4().hex[:8]
    addresses = {name: f"{name}{tag}@esempio.it" for name in ("starttls", "imaps", "untrusted")}
    ids = {name: await asyncio.to_thread(put, name, address)
           for name, address in addresses.items()}
    await start_service(settings=settings_for(CENTRALINO_CONFIG_DIR=str(config)))
    for name in ("starttls", "imaps"):
        [ticket] = await tickets_from(desk, addresses[name])
        assert ticket["channel"] == "email"
    async def mailboxes() -> dict[str, Any]:
        return (await desk.request("GET", "/healthz"))["mailboxes"]
    health = await eventually(mailboxes, lambda h: h["untrusted"]["problem"], every=0.1,
                              what="the untrusted mailbox's problem on /healthz")
    assert health["starttls"]["connected"] and health["imaps"]["connected"]
    assert not health["untrusted"]["connected"]
    assert "certificate verify failed" in health["untrusted"]["problem"]
    assert await tickets_from(desk, addresses["untrusted"], timeout=1) == []
    assert await asyncio.to_thread(still_in, "untrusted", ids["untrusted"])
    assert not await asyncio.to_thread(still_in, "starttls", ids["starttls"])


class NoStartTls:
    """An IMAP server that does not offer STARTTLS; it keeps every line it was sent."""

    def __init__(self) -> None:
        self.heard: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK IMAP4rev1 ready\r\n")
        while line := await reader.readline():
            self.heard.append(line)
            tag, _, command = line.decode().strip().partition(" ")
            if command.upper() == "CAPABILITY":
                writer.write(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN IDLE\r\n")
            writer.write(f"{tag} OK done\r\n".encode())
            await writer.drain()
        writer.close()


async def test_a_server_without_starttls_never_hears_the_password(tmp_path: Path):
    server = NoStartTls()
    listening = await asyncio.start_server(server.serve, "127.0.0.1", 0)
    port = listening.sockets[0].getsockname()[1]
    path = tmp_path / "mail.yaml"
    path.write_text(mail_yaml({"clear": f"host: 127.0.0.1, port: {port}, tls: starttls"}))
    config = load_mail_config(path, {"alpha"}, set())
    assert config is not None
    async with Store(f"sqlite+aiosqlite:///{tmp_path}/t.db") as store:
        inbox = Inbox("clear", config.mailboxes["clear"], config, store,
                      LoopClock(SystemClock()), lambda: None)
        try:
            with pytest.raises(TlsRefused, match="does not offer STARTTLS"):
                await inbox._connect()
        finally:
            listening.close()
            await listening.wait_closed()
    assert server.heard  # it was asked what it offers ...
    assert not [line for line in server.heard if b"LOGIN" in line.upper() or b"test" in line]


class Received:
    """An SMTP server that takes mail only over STARTTLS and after a login (aiosmtpd)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.logins: list[tuple[str, bool]] = []  # (user, over TLS)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> Any:
        from aiosmtpd.smtp import AuthResult, LoginPassword

        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            b"helpdesk", b"test")
        self.logins.append((data.login.decode() if ok else "?", session.ssl is not None))
        return AuthResult(success=ok)


@pytest.mark.parametrize("trusted", [True, False])
async def test_mail_goes_out_over_starttls_only_to_a_trusted_server(tmp_path: Path, trusted):
    import ssl
    from datetime import timedelta

    from aiosmtpd.controller import Controller

    from centralino.mail.outbox import Outbox

    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(CA, str(Path(CA).with_name("key.pem")))
    relay = Received()
    port = 10026  # aiosmtpd's start checks its own port: a fixed one (mailserver.py has 10025)
    controller = Controller(relay, hostname="127.0.0.1", port=port, tls_context=server_tls,
                            require_starttls=True, authenticator=relay.authenticate,
                            auth_require_tls=True)
    controller.start()
    try:
        ca = f", ca_file: {CA}" if trusted else ""
        path = tmp_path / "mail.yaml"
        path.write_text(mail_yaml({"box": "host: 127.0.0.1, port: 10143, tls: none"}).replace(
            "port: 10025, tls: none,", f"port: {port}, tls: starttls{ca},"))
        config = load_mail_config(path, {"alpha"}, set())
        assert config is not None
        clock = LoopClock(SystemClock())
        async with Store(f"sqlite+aiosqlite:///{tmp_path}/t.db") as store:
            assert await store.queue_mail(
                ticket_id=None, message_id="<tls-1@helpdesk.test>", kind="reply",
                sender="tls0@helpdesk.test", recipient="maria@esempio.it",
                raw=b"Subject: prova\r\n\r\nCiao\r\n", created_at=clock.now(),
                next_at=clock.now() - timedelta(seconds=1))
            await Outbox(store, clock, config).send_due()
            row = await store.mail_out(1)
        assert row is not None
        if trusted:
            assert row.status == "sent"
            assert relay.logins == [("helpdesk", True)]  # logged in over TLS only
            assert len(relay.messages) == 1
        else:  # our certificate not trusted: nothing said, nothing sent, tried again later
            assert (row.status, relay.logins, relay.messages) == ("pending", [], [])
            assert "certificate verify failed" in row.error
    finally:
        controller.stop()
