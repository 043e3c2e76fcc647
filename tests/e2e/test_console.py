"""An agent at the console in a real browser, taking a real call through the real Asterisk."""

from __future__ import annotations

import asyncio
import random

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.integration.conftest import record_of
from tests.integration.desk_api import DeskApi, staff, stored_offers

pytestmark = pytest.mark.asterisk

CONSOLE = "http://127.0.0.1:18081/console/"
DIRECT = "0999000002"  # straight to queue beta: agents 1001 and 1003


async def sign_in(page: Page, agent: str, token: str) -> None:
    await page.goto(CONSOLE)
    await page.get_by_label("Codice operatore").fill(agent)
    await page.get_by_label("Chiave personale").fill(token)
    await page.get_by_role("button", name="Entra").click()


async def stored_events(desk: DeskApi, agent: str) -> list[tuple[str, str, str]]:
    """The agent's stored changes, newest first (`GET /api/agents/{id}/events`)."""
    return [(e["state"], e["reason"], e["by"]) for e in await desk.agent_events(agent)]


async def test_an_agent_signs_in_takes_a_call_and_pauses(start_service, desk, caller, phones,
                                                         page):
    service = await start_service()  # every agent logged out: 1001 logs in from the page
    state = page.locator("#state")

    # A wrong token: the page says so, nothing changes.
    before = await stored_events(desk, "1001")
    await sign_in(page, "1001", "dev-1003")
    await expect(page.get_by_role("alert").filter(has_text="non validi")).to_have_text(
        "Codice operatore o chiave personale non validi.")
    await expect(page.get_by_role("button", name="Accedi")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0
    assert await desk.state("1001") == "logged_out"
    assert await stored_events(desk, "1001") == before

    # Signed in and logged in.
    await page.get_by_label("Chiave personale").fill("dev-1001")
    await page.get_by_role("button", name="Entra").click()
    await expect(page.get_by_role("status")).to_have_text("connesso")
    await expect(state).to_have_text("non in servizio")
    assert "dev-1001" not in page.url
    await page.get_by_role("button", name="Accedi").click()
    await expect(state).to_have_text("disponibile")
    assert (await stored_events(desk, "1001"))[0] == ("available", "", "agent:1001")

    # A real call: the pop is on screen before the phone is answered.
    phones.set("1001", "answer", delay=1.5)
    number = f"06{random.randrange(10**8):08d}"
    call = await caller.dial(DIRECT, caller_number=number)
    pop = page.get_by_role("article")
    await expect(pop.locator("#pop-caller")).to_contain_text(number)
    await expect(pop.locator("#pop-line")).to_have_text("Test direct line")
    assert not any(r.answered for r in phones.rings_of("1001")), "the phone answered first"
    await expect(pop.locator("#pop-number")).to_have_text(DIRECT)
    await expect(pop.locator("#pop-topic")).to_have_text("Beta")
    await expect(pop.locator("#pop-path")).to_have_text("nessun menu (linea diretta)")
    await expect(state).to_have_text("squilla")

    ring = await phones.wait_answered("1001")
    await expect(state).to_have_text("in chiamata")
    await expect(pop.locator("#pop-phase")).to_have_text("In conversazione")

    # The caller hangs up: wrap-up (1 s for beta, too short for expect's polling, so watched
    # every frame), then available and the pop gone.
    wrap_up = asyncio.ensure_future(page.wait_for_function(
        "document.getElementById('state').textContent === 'post-chiamata'", polling="raf"))
    await call.hangup()
    await asyncio.wait_for(ring.ended.wait(), 5)
    await wrap_up
    await expect(state).to_have_text("disponibile")
    await expect(pop).to_be_hidden()
    await expect(page.get_by_text("Nessuna chiamata in corso.")).to_be_visible()
    record = await record_of(service, call)
    [offer] = await stored_offers(service, record.id)
    assert (offer.agent_id, offer.outcome) == ("1001", "answered")
    assert offer.acked_at is not None and offer.acked_at < offer.answered_at

    # A pause with a reason, stored; then back.
    await page.get_by_label("Motivo", exact=True).select_option("Pranzo")
    await page.get_by_role("button", name="Pausa", exact=True).click()
    await expect(state).to_have_text("in pausa")
    await expect(page.locator("#state-detail")).to_contain_text("Pranzo")
    assert (await stored_events(desk, "1001"))[0] == ("paused", "Pranzo", "agent:1001")
    await page.get_by_role("button", name="Riprendi").click()
    await expect(state).to_have_text("disponibile")
    assert (await stored_events(desk, "1001"))[0] == ("available", "", "agent:1001")


async def test_the_console_follows_the_system_and_a_restart(start_service, desk, caller, phones,
                                                            page):
    service = await start_service()
    await staff(desk, "1001")
    await sign_in(page, "1001", "dev-1001")
    state, detail = page.locator("#state"), page.locator("#state-detail")
    await expect(state).to_have_text("disponibile")

    # A pause asked during a call starts when the call (and its wrap-up) is over.
    phones.set("1001", "answer", delay=0.3)
    call = await caller.dial(DIRECT)
    await phones.wait_answered("1001")
    await expect(state).to_have_text("in chiamata")
    await page.get_by_label("Motivo", exact=True).select_option("Riunione")
    await page.get_by_role("button", name="Pausa dopo questa chiamata").click()
    requested = page.get_by_text("Pausa richiesta: inizierà al termine di questa chiamata.")
    await expect(requested).to_be_visible()
    await expect(state).to_have_text("in chiamata")
    await call.hangup()
    await expect(state).to_have_text("in pausa")
    await expect(detail).to_contain_text("Riunione")
    await expect(requested).to_be_hidden()
    await expect(page.get_by_role("article")).to_be_hidden()

    # Calls not answered: the service pauses the agent (max_missed: 2), the page shows why.
    await page.get_by_role("button", name="Riprendi").click()
    await expect(state).to_have_text("disponibile")
    phones.set("1001", "ignore")
    call = await caller.dial(DIRECT)
    await expect(state).to_have_text("squilla")
    await expect(state).to_have_text("in pausa", timeout=15_000)  # two rings of 3 s
    await expect(detail).to_contain_text("2 chiamate senza risposta")
    await expect(page.get_by_role("article")).to_be_hidden()
    await call.hangup()

    # The service restarts: the page says it is disconnected, then reconnects by itself.
    await service.__aexit__(None, None, None)
    await expect(page.get_by_role("status")).to_contain_text("disconnesso")
    await start_service(keep_agents=True)
    await expect(page.get_by_role("status")).to_have_text("connesso", timeout=20_000)
    await expect(state).to_have_text("in pausa")
    await expect(detail).to_contain_text("2 chiamate senza risposta")


async def test_the_supervisor_board_shows_queues_and_agents_live(start_service, desk, caller,
                                                                 phones, page):
    await start_service()
    await staff(desk)  # nobody: the caller waits
    await page.goto(CONSOLE + "supervisor.html")
    await page.get_by_label("Chiave personale").fill("dev-1001")  # an agent, not a supervisor
    await page.get_by_role("button", name="Entra").click()
    await expect(page.get_by_role("alert")).to_have_text(
        "Chiave non valida o non abilitata alla supervisione.")
    await page.get_by_label("Chiave personale").fill("dev-sup")
    await page.get_by_role("button", name="Entra").click()
    await expect(page.get_by_role("status")).to_have_text("connesso")

    number = f"06{random.randrange(10**8):08d}"
    call = await caller.dial(DIRECT, caller_number=number)
    beta = page.locator('#queues tr[data-topic="beta"]')
    await expect(beta.locator("td").nth(1)).to_have_text("1")
    await expect(beta.locator("td").nth(3)).to_have_text(number)

    phones.set("1003", "answer", delay=0.3)
    await desk.login("1003")
    agent = page.locator('#agents tr[data-agent="1003"] td.state')
    await expect(agent).to_have_text("in chiamata")
    await expect(beta.locator("td").nth(1)).to_have_text("0")
    await call.hangup()
    await expect(agent).to_have_text("disponibile")

    await desk.logout("1003")  # nobody again: a recall request waits
    national = f"347{random.randrange(10**7):07d}"
    async with aiohttp.ClientSession() as http, http.post(
            "http://127.0.0.1:18081/api/recalls", headers={"Authorization": "Bearer dev-portal"},
            json={"number": national, "topic": "beta", "mode": "now", "name": "Maria"}) as resp:
        assert resp.status == 202, await resp.text()
        recall_id = (await resp.json())["id"]
    await expect(beta.locator("td").nth(1)).to_have_text("1")
    await expect(beta.locator("td").nth(3)).to_have_text(f"da richiamare +39{national}")
    row = page.locator("#recalls tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator("td").nth(2)).to_have_text(f"Maria · +39{national}")
    await expect(row.locator("td").nth(4)).to_have_text("in coda")
    async with aiohttp.ClientSession() as http, http.delete(
            f"http://127.0.0.1:18081/api/recalls/{recall_id}",
            headers={"Authorization": "Bearer dev-portal"}) as cancelled:
        assert cancelled.status == 200
    await expect(page.get_by_text("Nessuna richiamata da fare.")).to_be_visible()
