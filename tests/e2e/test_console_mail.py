"""A citizen's e-mail at the agent's console in a real browser (issue #12): its attachment as
a link that downloads it, a refused one said, the quoted earlier messages folded ("Testo
citato"), the HTML version only on request and only inside a frame with no rights (no script
run, no remote image fetched), the address our mail bounced from flagged, an answer whose
e-mail was refused shown as not delivered; and axe-core's WCAG 2.1 A/AA audit of it all.
Through the real Dovecot, SMTP test server, PostgreSQL and service (the mail tests' config:
tests/integration/config with mail.yaml, agent 1001 works topic alpha)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.test_console_tickets import AXE, show, signed_in, violations
from tests.integration import test_mail_content
from tests.integration.test_mail_content import CORPUS, deliver_raw, until
from tests.integration.test_mail_intake import deliver, mail, tickets_from

mail_settings = test_mail_content.mail_settings  # the fixture: the mail tests' config

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
HTML = ('<p>Testo in <b>formato HTML</b> della segnalazione.</p>'
        '<script>document.body.textContent = "SCRIPT ESEGUITO"</script>'
        '<img src="http://127.0.0.1:9/traccia.gif" alt="traccia">')
AGENT = {"Authorization": "Bearer dev-1001"}


async def a_ticket_with_everything(desk: Any, smtp_server: Any, pdf: bytes) -> tuple[str, str]:
    """A mail with an attachment, a refused one and an HTML version; the citizen's reply
    quoting us; a bounce of our mail to them; an answer their server refuses."""
    address = f"e{uuid.uuid4().hex[:8]}@esempio.it"
    first = mail(address, "Accesso agli atti", "Testo semplice della segnalazione.")
    first.add_alternative(HTML, subtype="html")
    first.add_attachment(pdf, maintype="application", subtype="pdf",
                         filename=("iso-8859-1", "", "Ricevuta è.pdf"))
    first.add_attachment(b"MZ\x90\x00" + b"\x00" * 300, maintype="application",
                         subtype="octet-stream", filename="installa.exe")
    await asyncio.to_thread(deliver, "helpdesk", first)
    [ticket] = await tickets_from(desk, address)
    number = ticket["number"]
    await until(desk, number, lambda d: [m["status"] for m in d["mail"]] == ["sent"])
    reply = mail(address, "Re: Accesso agli atti", "Aggiungo il numero di pratica 456.\n\n"
                 "Il giorno lun 9 mar 2026 Help desk <helpdesk@helpdesk.test> ha scritto:\n"
                 "> Abbiamo ricevuto la sua richiesta.", In_Reply_To=first["Message-ID"])
    await asyncio.to_thread(deliver, "helpdesk", reply)
    report = (CORPUS / "dsn_postfix.eml").read_bytes().replace(
        b"giulia.bianki@example.com", address.encode()).replace(
        b"<HD-2026-000123.a1b2c3d4e5f6@helpdesk.example.it>", first["Message-ID"].encode()
    ).replace(b"<20260309094002.4ZRtF8301Lz9vLm@", f"<{uuid.uuid4().hex}@".encode())
    await asyncio.to_thread(deliver_raw, report)
    await until(desk, number, lambda d: d["bounced"] is not None and len(d["thread"]) == 3)
    smtp_server.fates[address] = ["550 5.2.1 mailbox disabled"]
    for action in ({"action": "take"}, {"action": "reply", "text": "Ecco gli atti."}):
        async with desk.http.post(f"{desk.base}/api/tickets/{number}/actions", json=action,
                                  headers=AGENT) as resp:
            assert resp.status == 200, await resp.text()
    seen = await until(desk, number, lambda d: (d["thread"][-1].get("mail") or {}).get(
        "status") == "failed")
    assert seen["thread"][-1]["mail"]["status"] == "failed"
    return number, address


async def test_the_console_shows_what_a_citizen_s_mail_carried(start_service, desk, smtp_server,
                                                               mail_settings, page: Page,
                                                               browser: Browser):
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"
    await start_service(settings=mail_settings)
    pdf = PDF + uuid.uuid4().hex.encode()
    number, address = await a_ticket_with_everything(desk, smtp_server, pdf)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))

    await signed_in(page, "1001")
    view = await show(page, number)
    first = view.locator(".msg").nth(0)

    # The attachment: a link that downloads the file (with the agent's key); the refused one.
    link = first.get_by_role("link", name="Ricevuta è.pdf")
    async with page.expect_download() as downloading:
        await link.click()
    download = await downloading.value
    assert download.suggested_filename == "Ricevuta è.pdf"
    assert await asyncio.to_thread(Path(await download.path()).read_bytes) == pdf
    await expect(first.locator(".refused")).to_contain_text(
        "Allegato non accettato: installa.exe: sono accettati solo PDF")

    # The plain text first; the HTML only on request, in a frame allowed nothing.
    await expect(first.locator(".msg-body").first).to_have_text(
        "Testo semplice della segnalazione.")
    await expect(first.locator("iframe")).to_have_count(0)
    await first.get_by_role("button", name="Mostra versione HTML").click()
    frame = first.locator("iframe")
    await expect(frame).to_have_attribute("sandbox", "")
    await expect(frame).to_have_attribute("title", "Versione HTML del messaggio")
    inside = first.frame_locator("iframe")
    await expect(inside.get_by_text("Testo in formato HTML della segnalazione.")).to_be_visible()
    await expect(inside.locator("body")).not_to_contain_text("SCRIPT ESEGUITO")
    assert "<script" not in (await frame.get_attribute("srcdoc") or "")
    assert not [u for u in requested if "traccia" in u]  # the remote image never asked for
    await first.get_by_role("button", name="Mostra solo il testo").click()
    await expect(first.locator("iframe")).to_have_count(0)

    # The reply: its new words shown, what it quoted folded away.
    reply = view.locator(".msg").nth(1)
    await expect(reply.locator("> .msg-body")).to_have_text("Aggiungo il numero di pratica 456.")
    quoted = reply.locator("details.quoted")
    await expect(quoted.locator("summary")).to_have_text("Testo citato")
    await expect(quoted.get_by_text("> Abbiamo ricevuto la sua richiesta.")).to_be_hidden()
    await quoted.locator("summary").click()
    await expect(quoted.get_by_text("> Abbiamo ricevuto la sua richiesta.")).to_be_visible()

    # The bounce: the address flagged on the ticket, with when and why.
    warning = view.locator("#t-bounced")
    await expect(warning).to_contain_text(f"Indirizzo non raggiungibile: le e-mail a {address}")
    await expect(warning).to_contain_text("550 5.1.1")
    # The answer whose e-mail the citizen's server refused: said next to it.
    answer = view.locator(".msg.out")
    await expect(answer.locator(".msg-body")).to_have_text("Ecco gli atti.")
    await expect(answer.locator(".mail-state")).to_contain_text(
        f"E-mail al cittadino: NON recapitata a {address}")
    await expect(answer.locator(".mail-state")).to_contain_text("550 5.2.1 mailbox disabled")

    # axe's audit, with the quote open and the HTML shown (a tab that does not apply the
    # page's policy, for axe's own script only).
    context = await browser.new_context(bypass_csp=True, locale="it-IT",
                                        viewport={"width": 1366, "height": 768})
    try:
        audit = await context.new_page()
        await signed_in(audit, "1001")
        view = await show(audit, number)
        await view.locator("details.quoted summary").click()
        await view.get_by_role("button", name="Mostra versione HTML").click()
        await expect(view.locator("iframe")).to_have_count(1)
        await audit.add_script_tag(path=str(AXE))
        assert await violations(audit) == []
    finally:
        await context.close()
