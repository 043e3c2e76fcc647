"""A recall at the agent's console in a real browser: the pop says who asked and why, and after
the call the agent says it was an answering machine, so the citizen is called again."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.e2e.test_console import sign_in
from tests.integration.test_recalls_placed import ask, bridged, status_is

pytestmark = pytest.mark.asterisk


async def test_a_recall_pop_and_the_agents_verdict(start_service, desk, phones, citizens, page):
    await start_service()
    await sign_in(page, "1003", "dev-1003")
    await page.get_by_role("button", name="Accedi").click()
    await expect(page.locator("#state")).to_have_text("disponibile")

    phones.set("1003", "answer", delay=1.5)
    recall_id, national = await ask(name="Giulia Verdi", note="Pratica SUAP 77: integrazione",
                                    portal_ref="P-77")
    citizens.set(national, "answer", delay=0.2)
    pop = page.get_by_role("article")
    await expect(pop.locator("#recall-citizen")).to_have_text(f"Giulia Verdi · +39{national}")
    assert not any(r.answered for r in phones.rings_of("1003")), "the phone answered first"
    await expect(pop.locator("#recall-note")).to_have_text("Pratica SUAP 77: integrazione")
    await expect(pop.locator("#recall-ref")).to_have_text("P-77")
    await expect(pop.locator("#recall-topic")).to_have_text("Beta")
    await expect(pop.locator("#recall-mode")).to_contain_text("appena possibile")
    await expect(pop.locator("#recall-attempts")).to_have_text("nessuna: è la prima")
    await expect(pop.locator("#pop-caller")).to_be_hidden()  # not a live call's facts

    citizen = await citizens.wait_answered(national)
    await bridged(desk, recall_id)
    await expect(page.locator("#state")).to_have_text("in chiamata")
    await citizens.hang_up(citizen)
    await status_is(desk, recall_id, "done")
    verdict = page.locator("#verdict")
    await expect(verdict.locator("#verdict-text")).to_contain_text("com'è andata?")
    await expect(page.locator("#state")).to_have_text("disponibile")  # after the wrap-up
    await expect(verdict).to_be_visible()  # still there: the agent has not said yet

    await page.get_by_role("button", name="Segreteria / non era il cittadino").click()
    await expect(verdict.locator("#verdict-text")).to_contain_text(
        "il cittadino sarà richiamato alle")
    await expect(page.get_by_role("button", name="Risolta")).to_be_hidden()
    attempts = (await desk.recall(recall_id))["attempt_log"]
    assert [a["outcome"] for a in attempts] == ["no_answer"]

    # Called again (1 s retry delay): the new pop lists the first call.
    await expect(pop.locator("#recall-attempts")).to_contain_text("nessuna risposta (1003)",
                                                                  timeout=15_000)
    await expect(verdict).to_be_hidden()
    second = await citizens.wait_answered(national)
    await bridged(desk, recall_id)
    await citizens.hang_up(second)
    await status_is(desk, recall_id, "done")
    await page.get_by_role("button", name="Risolta").click()
    await expect(verdict.locator("#verdict-text")).to_have_text("Registrato: richiesta risolta.")
