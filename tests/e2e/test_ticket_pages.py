"""A citizen at the web form and the status page of their ticket, in a real Chromium, against
the real service and PostgreSQL: with and without JavaScript, checked by axe-core (WCAG 2.1 A
and AA), and with markup typed into every field shown as text."""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

BASE = "http://127.0.0.1:18081"
FORM = f"{BASE}/richieste"
AXE = Path(os.environ.get("CENTRALINO_AXE",
                          "/var/cache/centralino/axe/node_modules/axe-core/axe.min.js"))
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


@pytest.fixture
async def context_without_js(browser: Browser) -> AsyncIterator[BrowserContext]:
    context = await browser.new_context(java_script_enabled=False, locale="it-IT")
    yield context
    await context.close()


@pytest.fixture
def axe_installed() -> None:
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"


@pytest.fixture
async def axe_page(browser: Browser, axe_installed: None) -> AsyncIterator[Page]:
    """A tab where axe-core can be injected: the pages' Content-Security-Policy allows no
    script at all, so this one tab (for the audit only) does not apply it."""
    context = await browser.new_context(bypass_csp=True, locale="it-IT")
    yield await context.new_page()
    await context.close()


async def violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA violations on the page as shown, as readable lines."""
    await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
        ".then(r => r.violations.map(v => ({id: v.id, help: v.help,"
        " nodes: v.nodes.map(n => n.target.join(' '))})))", WCAG)
    return [f"{v['id']}: {v['help']} ({', '.join(v['nodes'])})" for v in found]


async def fill(page: Page, subject: str, body: str, name: str, email: str,
               consent: bool = True) -> None:
    await page.get_by_label("Argomento e oggetto").select_option(label=subject)
    await page.get_by_label("Descrizione della richiesta").fill(body)
    await page.get_by_label("Nome e cognome").fill(name)
    await page.get_by_label("Indirizzo e-mail").fill(email)
    if consent:
        await page.get_by_label(re.compile("Ho letto l'informativa")).check()
    await page.get_by_role("button", name="Invia la richiesta").click()


async def api(method: str, path: str, token: str, **json: Any) -> Any:
    async with aiohttp.ClientSession() as http, http.request(
            method, BASE + path, json=json or None,
            headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def test_a_citizen_sends_the_form_and_follows_the_ticket_on_its_page(start_service, page):
    await start_service()
    await page.goto(FORM)
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invia una richiesta")

    # Forgetting the consent and giving a wrong e-mail: both said, nothing typed is lost.
    await fill(page, "Pratica in corso", "La mia pratica è ferma da un mese.", "Maria Rossi",
               "maria@", consent=False)
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("La richiesta non è stata inviata")
    await expect(alert).to_contain_text("Indirizzo e-mail")
    await expect(alert).to_contain_text("Informativa sulla privacy")
    await expect(page.get_by_label("Descrizione della richiesta")).to_have_value(
        "La mia pratica è ferma da un mese.")
    await expect(page.get_by_label("Indirizzo e-mail")).to_have_attribute("aria-invalid", "true")

    await page.get_by_label("Indirizzo e-mail").fill("maria.rossi@esempio.it")
    await page.get_by_label(re.compile("Ho letto l'informativa")).check()
    await page.get_by_role("button", name="Invia la richiesta").click()
    await expect(page.get_by_role("heading", name="Richiesta registrata")).to_be_visible()
    number = (await page.locator(".conferma strong").text_content() or "").strip()
    assert re.fullmatch(r"IT-2026-\d{6}", number), number
    await expect(page.locator(".messaggi")).to_contain_text("La mia pratica è ferma da un mese.")
    status_url = page.url.split("?")[0]

    # An operator takes it and answers: the citizen's page says so.
    await api("POST", f"/api/tickets/{number}/actions", "dev-1001", action="take")
    await api("POST", f"/api/tickets/{number}/actions", "dev-1001", action="wait",
              text="Ci indica il numero di protocollo?")
    await page.goto(status_url)
    await expect(page.locator("dd").filter(has_text="in attesa di una tua risposta")
                 ).to_be_visible()
    await expect(page.locator(".messaggi li.out")).to_contain_text("numero di protocollo")

    # The citizen answers from the page: back in the operator's hands, in the thread.
    await page.get_by_label("Messaggio").fill("Protocollo 2026/123")
    await page.get_by_role("button", name="Invia il messaggio").click()
    await expect(page.locator(".messaggi li.in").last).to_contain_text("Protocollo 2026/123")
    detail = await api("GET", f"/api/tickets/{number}", "dev-1001")
    assert detail["state"] == "preso in carico"
    assert detail["thread"][-1]["body"] == "Protocollo 2026/123"


async def test_the_form_works_without_javascript_and_takes_a_file(start_service,
                                                                   context_without_js):
    await start_service()
    page = await context_without_js.new_page()
    await page.goto(FORM)
    pdf = b"%PDF-1.4\n% a citizen's scan\n" + b"0" * 2000
    await page.get_by_label("Allegati").set_input_files(
        {"name": "ricevuta.pdf", "mimeType": "application/pdf", "buffer": pdf})
    await fill(page, "Reclami", "Nessuno risponde al telefono.", "Luca Bianchi",
               "luca@esempio.it")
    await expect(page.get_by_role("heading", name="Richiesta registrata")).to_be_visible()
    await expect(page.locator(".riepilogo")).to_contain_text("Beta: Reclami")
    link = page.get_by_role("link", name="ricevuta.pdf")
    async with page.expect_download() as download:
        await link.click()
    saved = await (await download.value).path()
    assert saved is not None and saved.read_bytes() == pdf


async def test_markup_in_every_field_is_shown_as_text_and_nothing_runs(start_service, page):
    await start_service()
    await page.goto(FORM)
    await fill(page, "Altro", EVIL, EVIL, "x@esempio.it")
    await expect(page.get_by_role("heading", name="Richiesta registrata")).to_be_visible()
    await expect(page.locator(".messaggi .testo").first).to_have_text(EVIL)
    assert await page.evaluate("window.__pwned") is None
    assert await page.locator(".messaggi img").count() == 0
    # The form sent back with an error keeps the markup as text in its fields, too.
    await page.goto(FORM)
    await fill(page, "Altro", EVIL, EVIL, "not-an-address")
    await expect(page.get_by_label("Nome e cognome")).to_have_value(EVIL)
    assert await page.evaluate("window.__pwned") is None


async def test_axe_finds_no_wcag_violation_on_the_form_and_the_status_page(start_service,
                                                                            axe_page):
    await start_service()
    page = axe_page
    # The audit itself works: a page with an unlabelled field and no language fails it.
    await page.set_content("<html><body><input></body></html>")
    assert {v.split(":")[0] for v in await violations(page)} >= {"label", "html-has-lang"}
    await page.goto(FORM)
    assert await violations(page) == []
    await fill(page, "Informazioni", "", "", "nope", consent=False)  # the page with errors
    await expect(page.get_by_role("alert")).to_be_visible()
    assert await violations(page) == []
    await page.goto(FORM)
    await fill(page, "Informazioni", "Orari dello sportello?", "Anna Verdi", "anna@esempio.it")
    await expect(page.get_by_role("heading", name="Richiesta registrata")).to_be_visible()
    assert await violations(page) == []
