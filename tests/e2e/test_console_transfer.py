"""Blind transfer from the agent console (issue #13) in a real browser, on a real call through
the real Asterisk: the first agent opens the transfer form on the call in progress (the lines
with their queues, the colleagues with their states), a refusal (409: the colleague chosen has
just left) said in Italian, then the caller sent to another line with a note; the first
agent's page says where the call went and wraps up; the second agent, in another browser,
gets the pop that says who transferred the caller, from which line, and the note (as text,
never markup), and talks to the caller. axe-core's WCAG 2.1 A/AA audit on the open form and
on the receiving pop."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from playwright.async_api import Browser, Page, expect

from tests.e2e.test_console import sign_in
from tests.e2e.test_console_hold import click_twice
from tests.e2e.test_console_tickets import AXE, violations
from tests.integration.desk_api import staff
from tests.integration.test_agents import to_alpha, until_talking

pytestmark = pytest.mark.asterisk

# Markup in the note must reach the next agent as the characters typed.
NOTE = "Chiede di un <b>rimborso</b> & della pratica 42"


@pytest.fixture
async def colleague_page(browser: Browser) -> AsyncIterator[Page]:
    """The receiving agent's tab, in a browser context of its own (as the `page` fixture: a
    script error or a Content-Security-Policy violation fails the test)."""
    context = await browser.new_context(viewport={"width": 1366, "height": 768},
                                        locale="it-IT", timezone_id="Europe/Rome")
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("console", lambda msg: problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text else None)
    yield page
    await context.close()
    assert not problems, problems


async def test_the_agent_transfers_the_caller_to_another_line_from_the_console(
        start_service, desk, caller, phones, page, colleague_page):
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"
    await start_service()
    await staff(desk, "1002", "1003")  # 1002: alpha only; 1003: beta, operator, omega
    for tab in (page, colleague_page):
        await tab.add_init_script(path=str(AXE))  # through DevTools: the page keeps its CSP
    sent: list[Any] = []  # the first agent's transfer requests, in order
    page.on("request", lambda r: sent.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/call/transfer") else None)
    await sign_in(page, "1002", "dev-1002")
    await sign_in(colleague_page, "1003", "dev-1003")
    state, colleague_state = page.locator("#state"), colleague_page.locator("#state")
    await expect(state).to_have_text("disponibile")
    await expect(colleague_state).to_have_text("disponibile")

    # 1002 talks to a caller of alpha: no transfer banner (not transferred), the form closed.
    call = await to_alpha(caller, "0655555555")
    first = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    await expect(state).to_have_text("in chiamata")
    pop = page.get_by_role("article")
    await expect(pop.locator("#pop-transfer")).to_be_hidden()
    toggle = pop.get_by_role("button", name="Trasferisci")
    form = page.get_by_role("region", name="Trasferisci la chiamata")
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(form).to_be_hidden()

    # Opened from the keyboard: the destinations as the service lists them, the caller's own
    # line not choosable, 1003 by name and state (1001 and 1004 are not in service).
    await toggle.focus()
    await page.keyboard.press("Enter")
    await expect(form).to_be_visible()
    await expect(toggle).to_have_attribute("aria-expanded", "true")
    target = form.get_by_label("Destinazione")
    await expect(target).to_be_focused()
    lines = target.locator("optgroup[label='Linee'] option")
    await expect(lines).to_have_text([
        "Alpha (linea di questa chiamata)", "Beta (0 in attesa, 1 libero)",
        "Omega (0 in attesa, 1 libero)", "Operatore (0 in attesa, 1 libero)"])
    assert await lines.first.is_disabled()
    await expect(target.locator("optgroup[label='Colleghi'] option")).to_have_text(
        ["Agente Tre (disponibile)"])
    # The second level of tickets.yaml (1003 and 1004): 1003 is in and free.
    second = target.locator("optgroup[label='II livello'] option")
    await expect(second).to_have_text(["Back office (1 libero)"])
    note = form.get_by_label("Nota per chi risponde (facoltativa)")
    await expect(note).to_have_attribute("maxlength", "500")
    assert await violations(page) == []

    # Nothing chosen: said, nothing sent.
    await form.get_by_role("button", name="Conferma trasferimento").click()
    await expect(page.locator("#call-error")).to_have_text(
        "Scegli una linea, un collega, il II livello o un numero esterno.")
    await expect(target).to_be_focused()
    assert sent == []

    # 409: the colleague chosen logs out (elsewhere) before the confirmation. The page says
    # why in Italian, the call stays, and the form shows the destinations as they are now.
    await target.select_option(label="Agente Tre (disponibile)")
    await desk.logout("1003")
    await expect(colleague_state).to_have_text("non in servizio")
    confirm = form.get_by_role("button", name="Conferma trasferimento")
    await confirm.click()
    await expect(page.get_by_role("alert").filter(has_text="Agente Tre")).to_have_text(
        "Non è possibile ora: Agente Tre è «non in servizio» e ora non riceve chiamate.")
    await expect(target.locator("optgroup[label='Colleghi']")).to_have_count(0)
    await expect(form.get_by_role("status")).to_have_text("Nessun collega in servizio ora.")
    await expect(lines.nth(1)).to_have_text("Beta (0 in attesa, nessuno in servizio)")
    await expect(second).to_have_text(["Back office (nessuno in servizio)"])
    assert await second.first.is_disabled()  # the service would refuse it
    await expect(target).to_have_value("")
    await expect(confirm).to_be_focused()
    assert await desk.state("1002") == "on_call"
    await expect(state).to_have_text("in chiamata")

    # 1003 comes back from their page; 1002 closes the form (focus back on "Trasferisci", the
    # refusal gone) and opens it again: Beta has a free agent again.
    await colleague_page.get_by_role("button", name="Accedi").click()
    await expect(colleague_state).to_have_text("disponibile")
    await form.get_by_role("button", name="Annulla").click()
    await expect(form).to_be_hidden()
    await expect(toggle).to_be_focused()
    await expect(toggle).to_have_attribute("aria-expanded", "false")
    await expect(page.locator("#call-error")).to_have_text("")  # the refusal was the form's
    await toggle.click()
    await expect(lines.nth(1)).to_have_text("Beta (0 in attesa, 1 libero)")

    # To the line Beta with a note: one request for a double click; the page says where the
    # call went; 1002's phone is hung up and the page wraps up.
    await target.select_option(label="Beta (0 in attesa, 1 libero)")
    await note.fill(NOTE)
    assert await click_twice(page, "transfer-send") is True
    done = page.locator("#transfer-done")
    await expect(done).to_have_text("Chiamata trasferita a Beta.")
    await expect(done).to_be_focused()
    assert sent == [{"agent": "1003", "note": ""}, {"topic": "beta", "note": NOTE}]
    await asyncio.wait_for(first.ended.wait(), 5)
    await expect(form).to_be_hidden()
    await expect(state).to_have_text(re.compile("^(post-chiamata|disponibile)$"))
    assert (await desk.agent("1002"))["state"] in ("wrap_up", "available")
    await expect(state).to_have_text("disponibile")  # alpha's wrap-up is 1 s
    await expect(done).to_have_text("Chiamata trasferita a Beta.")  # still said after it

    # 1003's pop: who transferred the caller and from which line, the note as typed, first in
    # the pop; then the caller talks to 1003.
    other = colleague_page.get_by_role("article")
    banner = other.locator("#pop-transfer")
    await expect(banner).to_be_visible()
    await expect(other.locator("#pop-transfer-from")).to_have_text(
        "Trasferita da Agente Due (Alpha)")
    await expect(other.locator("#pop-transfer-note")).to_have_text(NOTE)
    await expect(banner.locator("b")).to_have_count(0)  # text, not markup
    await expect(other.locator("#pop-topic")).to_have_text("Beta")
    await expect(other.locator("#pop-caller")).to_contain_text("0655555555")
    above = await banner.bounding_box()
    facts = await other.locator("#pop-caller").bounding_box()
    assert above and facts and above["y"] < facts["y"]  # read before the caller's facts
    await expect(colleague_page.locator("#announce")).to_contain_text(
        "Trasferita da Agente Due. Nota: " + NOTE)
    await phones.wait_answered("1003")
    await desk.until_state("1003", "on_call")
    await expect(colleague_state).to_have_text("in chiamata")
    await expect(other.locator("#pop-phase")).to_have_text("In conversazione")
    await expect(banner).to_be_visible()
    assert await violations(colleague_page) == []

    # The caller hangs up: 1003's pop goes, banner and all.
    await call.hangup()
    await expect(colleague_state).to_have_text(re.compile("^(post-chiamata|disponibile)$"))
    await expect(colleague_state).to_have_text("disponibile")
    await expect(other).to_be_hidden()


async def test_a_caller_sent_to_the_second_level_arrives_saying_so(
        start_service, desk, caller, phones, page):
    """1002 sends the caller to the group back-office (through the API, as the form does):
    1003, a member who does not serve alpha, gets the pop, which names the group."""
    await start_service()
    await staff(desk, "1002", "1003")  # 1003 serves beta, operator, omega: not alpha
    await sign_in(page, "1003", "dev-1003")
    await expect(page.locator("#state")).to_have_text("disponibile")
    call = await to_alpha(caller, "0655557777")
    await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                       json_body={"group": "back-office", "note": "Pratica ferma"})
    pop = page.get_by_role("article")
    await expect(pop.locator("#pop-transfer-from")).to_have_text(
        "Trasferita da Agente Due (Alpha) al II livello: Back office")
    await expect(pop.locator("#pop-transfer-note")).to_have_text("Pratica ferma")
    await expect(page.locator("#announce")).to_contain_text(
        "Trasferita da Agente Due al II livello, Back office. Nota: Pratica ferma")
    await phones.wait_answered("1003")
    await expect(page.locator("#state")).to_have_text("in chiamata")
    await call.hangup()


async def test_the_agent_transfers_the_caller_to_a_number_outside_from_the_console(
        start_service, desk, caller, phones, citizens, page):
    await start_service()
    await staff(desk, "1002")
    await sign_in(page, "1002", "dev-1002")
    await expect(page.locator("#state")).to_have_text("disponibile")
    call = await to_alpha(caller, "0655556868")
    first = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    pop = page.get_by_role("article")
    await pop.get_by_role("button", name="Trasferisci").click()
    form = page.get_by_role("region", name="Trasferisci la chiamata")
    number = form.get_by_label("Numero da chiamare")
    await expect(number).to_be_hidden()
    await form.get_by_label("Destinazione").select_option(label="Un numero esterno…")
    await expect(number).to_be_visible()
    confirm = form.get_by_role("button", name="Conferma trasferimento")
    await confirm.click()  # no number written: said, nothing sent
    await expect(page.locator("#call-error")).to_have_text("Scrivi il numero da chiamare.")
    await expect(number).to_be_focused()
    await expect(number).to_have_attribute("aria-invalid", "true")
    await number.fill("899123456")  # premium rate: the recall rules refuse it
    await confirm.click()
    await expect(page.locator("#call-error")).to_have_text(
        "Non è possibile ora: 899123456: i numeri di questo tipo (premium-rate) non si "
        "possono chiamare (ammessi: fixed_line, mobile).")
    assert await desk.state("1002") == "on_call"
    citizens.set("0612345997", "answer", delay=0.5)
    await number.fill("0612345997")
    await confirm.click()
    await expect(page.locator("#transfer-done")).to_have_text(
        "Chiamata trasferita al numero 0612345997.")
    await first.ended.wait()
    office = await citizens.wait_answered("0612345997")
    await citizens.hang_up(office)
    await call.ended.wait()
