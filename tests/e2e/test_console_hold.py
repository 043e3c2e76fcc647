"""Hold and resume from the agent console (issue #13) in a real browser, on a real call through
the real Asterisk: what the caller hears (the line's music, then the agent again), what the
screen says (the status, the time on hold, the buttons), the keyboard, one request per click,
a refusal (409) said in the page, the controls gone with the call, and axe-core's WCAG 2.1
A/AA audit with the caller on hold."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Page, expect

from tests.e2e.test_console import DIRECT, sign_in
from tests.e2e.test_console_tickets import AXE, violations
from tests.integration.conftest import record_of
from tests.integration.desk_api import staff
from tests.integration.test_agents import to_alpha, until_talking

pytestmark = pytest.mark.asterisk

MUSIC = 0.005  # RMS: the caller hears music (tests/integration/test_agents.py)
QUIET = 0.002  # RMS: the simulated agent's phone sends silence


async def click_twice(page: Page, button_id: str) -> bool:
    """Two clicks in one go (a double click): whether the button was disabled in between."""
    disabled: bool = await page.evaluate(
        "id => { const b = document.getElementById(id); b.click(); const d = b.disabled;"
        " b.click(); return d; }", button_id)
    return disabled


async def test_the_agent_holds_and_resumes_the_caller_from_the_console(
        start_service, desk, caller, phones, page):
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"
    service = await start_service()
    await staff(desk, "1001")
    # axe through the DevTools protocol: the page keeps its Content-Security-Policy (the
    # `page` fixture fails the test on any violation of it).
    await page.add_init_script(path=str(AXE))
    sent: list[str] = []  # the page's hold and resume requests, in order
    page.on("request", lambda r: sent.append(r.url.rsplit("/", 1)[-1])
            if r.method == "POST" and "/call/" in r.url else None)
    await sign_in(page, "1001", "dev-1001")
    state = page.locator("#state")
    await expect(state).to_have_text("disponibile")
    controls, status = page.locator("#hold"), page.locator("#hold-status")
    since, refusal = page.locator("#hold-time"), page.locator("#call-error")
    await expect(controls).to_be_hidden()

    # Talking: the button is there, the caller hears the agent's (silent) phone.
    call = await to_alpha(caller)
    await phones.wait_answered("1001")
    await until_talking(desk, "1001")
    await expect(state).to_have_text("in chiamata")
    pop = page.get_by_role("article")
    hold = pop.get_by_role("button", name="Metti in attesa")
    await expect(hold).to_be_visible()
    await expect(pop.get_by_role("button", name="Riprendi")).to_have_count(0)
    assert await call.listen(1.5) < QUIET

    # On hold from the keyboard: the caller hears the music; the page says so and counts.
    await hold.focus()
    await page.keyboard.press("Enter")
    resume = pop.get_by_role("button", name="Riprendi")
    await expect(status).to_have_text("Chiamante in attesa (musica)")
    await expect(resume).to_be_focused()  # the same button, the focus kept through the request
    assert await resume.evaluate("b => getComputedStyle(b).outlineStyle") == "solid"  # seen
    await expect(controls).to_have_attribute("data-held", "true")
    await expect(since).to_have_text(re.compile(r"^In attesa da [01] s$"))
    assert await call.listen(1.5) > MUSIC
    await expect(since).to_have_text(re.compile(r"^In attesa da ([2-9]|\d\d+) s$"))
    assert await violations(page) == []

    # Back: a double click sends one request (the button is disabled while it runs); the
    # music stops.
    assert await click_twice(page, "hold-toggle") is True
    await expect(status).to_have_text("Di nuovo in conversazione con il chiamante.")
    await expect(hold).to_be_visible()
    await expect(since).to_be_hidden()
    await expect(controls).to_have_attribute("data-held", "false")
    assert sent == ["hold", "resume"]
    assert await call.listen(1.5) < QUIET

    # Put on hold elsewhere (the API, as another tab would): the page's "Metti in attesa" is
    # refused with the service's reason, in the page's alert, and the page follows.
    await desk.request("POST", "/api/agents/1001/call/hold", token="dev-1001", expect=(200,))
    await hold.click()
    await expect(refusal).to_have_text("Non è possibile ora: il chiamante è già in attesa.")
    await expect(page.get_by_role("alert").filter(has_text="già in attesa")).to_be_visible()
    await expect(status).to_have_text("Chiamante in attesa (musica)")
    await expect(since).to_be_hidden()  # how long: unknown to this page
    await resume.click()
    await expect(hold).to_be_visible()
    await expect(refusal).to_have_text("")

    # On hold again, and the caller hangs up: the controls go, the hold is forgotten.
    await hold.click()
    await expect(status).to_have_text("Chiamante in attesa (musica)")
    assert await call.listen(1.5) > MUSIC
    await call.hangup()
    await expect(controls).to_be_hidden()
    await expect(state).to_have_text("disponibile")
    assert sent == ["hold", "resume", "hold", "resume", "hold"]

    # The call's record: every hold and resume, in order, by the agent.
    record = await record_of(service, call)
    steps = [(s["kind"], s["detail"]) for s in (await desk.request(
        "GET", f"/api/calls/{record.id}", token="dev-sup"))["steps"]
        if s["kind"] in ("hold", "resume")]
    assert steps == [("hold", "by 1001"), ("resume", "by 1001")] * 2 + [("hold", "by 1001")]

    # The next call starts afresh: "Metti in attesa", no status, no time.
    second = await caller.dial(DIRECT)
    await phones.wait_answered("1001")
    await expect(state).to_have_text("in chiamata")
    await expect(hold).to_be_visible()
    await expect(status).to_have_text("")
    await expect(since).to_be_hidden()
    await expect(controls).to_have_attribute("data-held", "false")
    await second.hangup()
    await expect(controls).to_be_hidden()
