"""What a citizen's e-mail carries reaches the ticket, through a real Dovecot (LMTP in, IMAP
fetched by the running service), PostgreSQL and the tests' SMTP server (issue #12): its
attachments kept as the web form keeps them (a refused one listed with why), an HTML-only
message with a script and a remote image made safe, a reply's quoted text set apart, a DSN
bounce flagging the address until it writes again, an answer whose e-mail was refused shown
as not delivered. Asserted on the API's ticket detail and on the stored files."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import smtplib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import TEST_SETTINGS, settings_for
from tests.integration.test_mail_intake import (
    LMTP,
    MAIL_YAML,
    SUPERVISOR,
    deliver,
    detail,
    mail,
    tickets_from,
)

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

CORPUS = Path(__file__).parents[1] / "unit" / "mail_corpus"
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
AGENT = {"Authorization": "Bearer dev-1001"}


@pytest.fixture
def mail_settings(tmp_path: Path) -> Any:
    """As test_mail_intake's: only these tests' services read the test mailboxes."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    shutil.copy(MAIL_YAML, config / "mail.yaml")
    return settings_for(CENTRALINO_CONFIG_DIR=str(config))


def deliver_raw(raw: bytes, sender: str = "") -> None:
    """Bytes as they are into the help desk's INBOX (a bounce comes with a null sender)."""
    host, port = LMTP.split(":")
    with smtplib.LMTP(host, int(port)) as lmtp:
        assert not lmtp.sendmail(sender, ["helpdesk"], re.sub(rb"\r?\n", b"\r\n", raw))


async def until(desk: Any, number: str, done: Callable[[dict[str, Any]], bool],
                timeout: float = 20) -> dict[str, Any]:
    """The ticket's detail once `done` says so (or as it is at the deadline)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        seen = await detail(desk, number)
        if done(seen) or asyncio.get_running_loop().time() > deadline:
            return seen
        await asyncio.sleep(0.2)


async def fetch(desk: Any, url: str) -> bytes:
    async with desk.http.get(f"{desk.base}{url}",
                             headers={"Authorization": f"Bearer {SUPERVISOR}"}) as resp:
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        return await resp.read()


async def test_attachments_quotes_and_html_reach_the_ticket(start_service, desk, smtp_server,
                                                            mail_settings):
    service = await start_service(settings=mail_settings)
    address = f"a{uuid.uuid4().hex[:8]}@esempio.it"
    first = mail(address, "Rimborso TARI", "Allego la ricevuta del pagamento.")
    pdf = PDF + uuid.uuid4().hex.encode()  # this run's own bytes: a file stored by this run
    first.add_attachment(pdf, maintype="application", subtype="pdf",
                         filename=("iso-8859-1", "", "Ricevuta è.pdf"))  # RFC 2231, Latin-1
    first.add_attachment(b"MZ\x90\x00" + b"\x00" * 300, maintype="application",
                         subtype="octet-stream", filename="installa.exe")
    await asyncio.to_thread(deliver, "helpdesk", first)
    [ticket] = await tickets_from(desk, address)
    number = ticket["number"]
    [message] = (await detail(desk, number))["thread"]
    [kept] = message["attachments"]
    assert (kept["filename"], kept["content_type"], kept["size"]) == (
        "Ricevuta è.pdf", "application/pdf", len(pdf))
    assert message["refused"] == [(
        "installa.exe: sono accettati solo PDF, immagini (PNG, JPEG), documenti (OpenDocument, "
        "Word, Excel) e file di testo")]
    assert await fetch(desk, kept["url"]) == pdf
    stored = service.tickets.files.path_of(hashlib.sha256(pdf).hexdigest())
    assert stored.read_bytes() == pdf  # outside the database, named by its hash

    # The citizen replies from their client, quoting the earlier messages.
    reply = mail(address, "Re: Rimborso TARI", "Ecco anche il modello F24.\n\n"
                 "Il giorno lun 9 mar 2026 Help desk <helpdesk@helpdesk.test> ha scritto:\n"
                 "> Ci mandi la ricevuta.\n> Grazie", In_Reply_To=first["Message-ID"])
    await asyncio.to_thread(deliver, "helpdesk", reply)
    seen = await until(desk, number, lambda d: len(d["thread"]) >= 2)
    joined = seen["thread"][1]
    assert joined["body"] == "Ecco anche il modello F24."
    assert joined["quoted"].splitlines() == [
        "Il giorno lun 9 mar 2026 Help desk <helpdesk@helpdesk.test> ha scritto:",
        "> Ci mandi la ricevuta.", "> Grazie"]

    # An HTML-only message with a script and a tracking image (the corpus's), from another.
    raw = (CORPUS / "html_only.eml").read_bytes()
    other = f"h{uuid.uuid4().hex[:8]}@esempio.it"
    raw = raw.replace(b"Message-ID: <", f"Message-ID: <{uuid.uuid4().hex}.".encode(), 1)
    raw = raw.replace(b"\nFrom: ", f"\nFrom: <{other}>\nX-Old-From: ".encode(), 1)
    await asyncio.to_thread(deliver_raw, raw, other)
    [html_ticket] = await tickets_from(desk, other)
    [html] = (await detail(desk, html_ticket["number"]))["thread"]
    assert html["html"] and "<script" not in html["html"] and "document.cookie" not in html["html"]
    assert "tracker.example" not in html["html"] and "<img" not in html["html"]
    assert html["body"] and "<" not in html["body"]  # the text, made from the HTML


async def test_a_bounce_flags_the_address_and_a_refused_answer_shows(start_service, desk,
                                                                     smtp_server, mail_settings):
    await start_service(settings=mail_settings)
    address = f"b{uuid.uuid4().hex[:8]}@esempio.it"
    first = mail(address, "Certificato", "Mi serve un certificato.")
    await asyncio.to_thread(deliver, "helpdesk", first)
    [ticket] = await tickets_from(desk, address)
    number = ticket["number"]
    seen = await until(desk, number, lambda d: [m["status"] for m in d["mail"]] == ["sent"])
    assert [(m["kind"], m["status"]) for m in seen["mail"]] == [("acknowledgement", "sent")]
    assert seen["bounced"] is None

    # Postfix's report that our message to this address was not delivered.
    report = (CORPUS / "dsn_postfix.eml").read_bytes().replace(
        b"giulia.bianki@example.com", address.encode()).replace(
        b"<HD-2026-000123.a1b2c3d4e5f6@helpdesk.example.it>", first["Message-ID"].encode()
    ).replace(b"<20260309094002.4ZRtF8301Lz9vLm@", f"<{uuid.uuid4().hex}@".encode())
    await asyncio.to_thread(deliver_raw, report)
    seen = await until(desk, number, lambda d: d["bounced"] is not None)
    assert seen["bounced"]["address"] == address
    assert seen["bounced"]["reason"].startswith("550 5.1.1")
    assert seen["thread"][-1]["visibility"] == "internal"  # noted, not a citizen's message
    assert seen["state"] == "nuovo"

    # The operator answers; the citizen's server refuses it for good.
    smtp_server.fates[address] = ["550 5.2.1 mailbox disabled"]
    for action in ({"action": "take"}, {"action": "reply", "text": "Ecco il certificato."}):
        async with desk.http.post(f"{desk.base}/api/tickets/{number}/actions", json=action,
                                  headers=AGENT) as resp:
            assert resp.status == 200, await resp.text()
    seen = await until(desk, number, lambda d: (d["thread"][-1].get("mail") or {}).get(
        "status") == "failed")
    answer = seen["thread"][-1]
    assert (answer["body"], answer["direction"]) == ("Ecco il certificato.", "out")
    assert answer["mail"]["status"] == "failed"
    assert answer["mail"]["error"].startswith("550")
    assert answer["mail"]["recipient"] == address

    # The address writes again: no longer flagged.
    again = mail(address, "Re: Certificato", "Ho riattivato la casella.",
                 In_Reply_To=first["Message-ID"])
    await asyncio.to_thread(deliver, "helpdesk", again)
    seen = await until(desk, number, lambda d: d["bounced"] is None)
    assert seen["bounced"] is None
    assert seen["thread"][-1]["body"] == "Ho riattivato la casella."
