"""Attended transfer from the agent console (issue #13) in a real browser, on a real call
through the real Asterisk: the agent chooses a colleague in the transfer form and talks to
them first; the consultation panel follows the steps the service sends over the socket
(ringing, talking, back to the caller and again to the colleague), what each person hears is
checked at each step, and the agent completes from the caller's side; the page says where the
call went and wraps up. A consultation the colleague does not answer gives the caller back,
said in the page. axe-core's WCAG 2.1 A/AA audit on the open panel."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from playwright.async_api import expect

from tests.e2e.test_console import DIRECT, sign_in
from tests.e2e.test_console_hold import click_twice
from tests.e2e.test_console_tickets import AXE, violations
from tests.integration.conftest import record_of
from tests.integration.desk_api import staff
from tests.integration.test_call_hold import hears

pytestmark = pytest.mark.asterisk


async def test_the_agent_consults_a_colleague_swaps_and_completes_from_the_console(
        start_service, desk, caller, phones, page):
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"
    service = await start_service()
    await staff(desk, "1003")  # beta: 1003 takes the caller
    await page.add_init_script(path=str(AXE))  # through DevTools: the page keeps its CSP
    sent: list[Any] = []  # the page's consultation requests, in order
    page.on("request", lambda r: sent.append(r.url.split("/call/", 1)[-1])
            if r.method == "POST" and "/call/consult" in r.url else None)
    await sign_in(page, "1003", "dev-1003")
    state = page.locator("#state")
    await expect(state).to_have_text("disponibile")
    call = await caller.dial(DIRECT, caller_number="0611115555")
    first = await phones.wait_answered("1003")
    await desk.until_state("1003", "on_call")
    await desk.login("1001")  # the colleague, free now
    await expect(state).to_have_text("in chiamata")
    sim = caller.ari

    # The transfer form: "talk first" is offered for a colleague only.
    pop = page.get_by_role("article")
    await pop.get_by_role("button", name="Trasferisci").click()
    form = page.get_by_role("region", name="Trasferisci la chiamata")
    target = form.get_by_label("Destinazione")
    first_talk = form.get_by_role("button", name="Parla prima con il collega")
    await expect(first_talk).to_be_hidden()
    await target.select_option(label="Agente Uno (disponibile)")
    await expect(first_talk).to_be_visible()
    await target.select_option(index=1)  # a line
    await expect(first_talk).to_be_hidden()
    await target.select_option(label="Agente Uno (disponibile)")
    await first_talk.click()

    # Ringing, then talking: the caller waits with the music, the agents hear each other.
    panel = page.get_by_role("region", name="Consultazione con un collega")
    await expect(form).to_be_hidden()
    await expect(panel).to_be_visible()
    colleague = await phones.wait_answered("1001")
    status = panel.get_by_role("status")
    await expect(status).to_have_text(
        "Parli con Agente Uno. Il chiamante è in attesa con la musica.")
    await expect(page.locator("#hold-toggle")).to_be_disabled()
    await expect(pop.get_by_role("button", name="Trasferisci")).to_be_disabled()
    level, tone = await hears(phones.ari, first.channel, sim, colleague.channel)
    assert level > 0.005 and tone > 0.8
    level, tone = await hears(phones.ari, first.channel, sim, call.id)
    assert level > 0.005 and tone < 0.5  # music, nothing of the agents
    assert await violations(page) == []

    # Back to the caller (one request for a double click): the colleague waits.
    swap = panel.locator("#consult-swap")
    await expect(swap).to_have_text("Passa al chiamante")
    assert await click_twice(page, "consult-swap") is True
    await expect(status).to_have_text(
        "Parli con il chiamante. Agente Uno è in attesa con la musica.")
    await expect(swap).to_have_text("Torna al collega")
    level, tone = await hears(phones.ari, first.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8
    level, tone = await hears(phones.ari, first.channel, sim, colleague.channel)
    assert level > 0.005 and tone < 0.5

    # To the colleague again, back to the caller, then complete: caller and colleague talk.
    await swap.click()
    await expect(status).to_have_text(
        "Parli con Agente Uno. Il chiamante è in attesa con la musica.")
    await swap.click()
    await expect(swap).to_have_text("Torna al collega")
    await panel.get_by_role("button", name="Completa il trasferimento").click()
    done = page.locator("#transfer-done")
    await expect(done).to_have_text("Chiamata trasferita a Agente Uno dopo la consultazione.")
    await expect(panel).to_be_hidden()
    await asyncio.wait_for(first.ended.wait(), 5)
    await expect(state).to_have_text(re.compile("^(post-chiamata|disponibile)$"))
    assert sent == ["consult", "consult/swap", "consult/swap", "consult/swap",
                    "consult/complete"]
    level, tone = await hears(sim, call.id, sim, colleague.channel)
    assert level > 0.005 and tone > 0.8
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1001")


async def test_a_colleague_not_answering_gives_the_caller_back_in_the_console(
        start_service, desk, caller, phones, page):
    await start_service()
    await staff(desk, "1003")
    await sign_in(page, "1003", "dev-1003")
    await expect(page.locator("#state")).to_have_text("disponibile")
    call = await caller.dial(DIRECT, caller_number="0611116666")
    first = await phones.wait_answered("1003")
    await desk.until_state("1003", "on_call")
    phones.set("1001", "ignore")  # the colleague's phone rings out
    await desk.login("1001")
    pop = page.get_by_role("article")
    await pop.get_by_role("button", name="Trasferisci").click()
    form = page.get_by_role("region", name="Trasferisci la chiamata")
    await form.get_by_label("Destinazione").select_option(label="Agente Uno (disponibile)")
    await form.get_by_role("button", name="Parla prima con il collega").click()
    panel = page.get_by_role("region", name="Consultazione con un collega")
    await expect(panel.get_by_role("status")).to_have_text(
        "Squilla il telefono di Agente Uno. Il chiamante è in attesa con la musica.")
    # Nothing to complete or swap while it rings; cancel is there.
    await expect(panel.get_by_role("button", name="Completa il trasferimento")).to_be_disabled()
    await expect(panel.locator("#consult-swap")).to_be_disabled()
    await expect(panel.get_by_role("button", name="Annulla la consultazione")).to_be_enabled()
    await expect(page.locator("#transfer-done")).to_have_text(
        "Agente Uno non ha risposto: sei di nuovo con il chiamante.", timeout=20_000)
    await expect(panel).to_be_hidden()
    await expect(page.locator("#hold-toggle")).to_be_enabled()
    await expect(page.locator("#hold-status")).to_have_text(
        "Di nuovo in conversazione con il chiamante.")
    level, tone = await hears(phones.ari, first.channel, caller.ari, call.id)
    assert level > 0.005 and tone > 0.8  # back with the agent
    await call.hangup()
