"""Written requests on the supervisors' board in a real browser: the backlog per topic and level,
the oldest and the late, the tickets to follow, a supervisor giving a ticket to an agent (and
being refused), a citizen's markup shown as text, and axe-core's WCAG 2.1 A/AA audit. Against
the real service and its database (PostgreSQL with the README's command).

On the test lines (tests/integration/config: tickets.yaml makes alpha and beta take written
requests, numbers IT-..., group back-office of 1003 and 1004, office hours Mon-Fri 9-13 and
14-17; agents.yaml: supervisor `sup`), with every agent logged out, so the desk hands no ticket
out by itself.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Locator, Page, Route, expect
from sqlalchemy import update

from centralino.storage.models import Ticket
from centralino.storage.store import Store
from tests.integration.conftest import OPEN, settings_for

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

API = "http://127.0.0.1:18081"
BOARD = f"{API}/console/supervisor.html"
PORTAL = {"X-API-Key": "dev-portal"}
SUPERVISOR = "dev-sup"  # tests/integration/config/agents.yaml
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
AXE = Path(os.environ.get("CENTRALINO_AXE",
                          "/var/cache/centralino/axe/node_modules/axe-core/axe.min.js"))
ROME = ZoneInfo("Europe/Rome")
# Three days and two and a half hours after OPEN (Tuesday 10:00): Friday 12:30. A beta ticket
# (16 working hours to resolve) opened at OPEN was due Thursday at 12:00.
LATER = datetime(2026, 12, 4, 12, 30)


# --- helpers --------------------------------------------------------------------------------

async def open_ticket(topic: str, subject: str, name: str = "Maria Rossi") -> str:
    """A citizen's request through the portal's API (channel web): its number."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{API}/api/tickets", headers=PORTAL,
            json={"topic": topic, "subject": subject, "body": "Vorrei sapere a che punto è.",
                  "name": name, "email": "maria.rossi@esempio.it"}) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["number"]


async def as_supervisor(number: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{API}/api/tickets/{number}",
            headers={"Authorization": f"Bearer {SUPERVISOR}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def agent_does(agent: str, number: str, action: str, **fields: str) -> None:
    """An agent's step through the API, with their own token (logging in is not needed)."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{API}/api/tickets/{number}/actions", json={"action": action, **fields},
            headers={"Authorization": f"Bearer dev-{agent}"}) as resp:
        assert resp.status == 200, await resp.text()


async def signed_in(page: Page) -> Locator:
    """The board signed in as the supervisor: its written requests' section."""
    await page.goto(BOARD)
    await page.get_by_label("Chiave personale").fill(SUPERVISOR)
    await page.get_by_role("button", name="Entra").click()
    await expect(page.get_by_role("status")).to_have_text("connesso")
    written = page.get_by_role("region", name="Richieste scritte")
    await expect(written.get_by_role("heading", name="Richieste scritte")).to_be_visible()
    return written


def backlog_row(page: Page, topic: str, level: str) -> Locator:
    return page.locator(f'#tk-backlog tbody tr[data-topic="{topic}"][data-level="{level}"]')


def open_row(page: Page, number: str) -> Locator:
    return page.locator(f'#tk-open tbody tr[data-number="{number}"]')


def rome(iso: str) -> str:
    """A time as the board writes it (it-IT, short date and time, Europe/Rome)."""
    return datetime.fromisoformat(iso).astimezone(ROME).strftime("%d/%m/%y, %H:%M")


# --- the backlog and the late ---------------------------------------------------------------

async def test_the_board_shows_the_backlog_per_topic_and_level_and_the_late(start_service,
                                                                            page):
    service = await start_service(at=OPEN)
    late = await open_ticket("beta", "Reclami")
    # Three days later: the same database, the service's clock on Friday.
    await service.__aexit__(None, None, None)
    await start_service(at=LATER, keep_recalls=True)
    first = await open_ticket("alpha", "Informazioni")
    await open_ticket("alpha", "Altro")
    escalated = await open_ticket("beta", "Altro")
    await agent_does("1001", escalated, "take")
    await agent_does("1001", escalated, "escalate", group="back-office",
                     text="Serve il parere del back office.")

    await page.clock.install()  # timers the test can move on (the 30 s refresh)
    written = await signed_in(page)

    # The backlog per topic and level, by name, in a table with its caption and headers.
    table = written.get_by_role("table", name="Richieste aperte per argomento e livello")
    await expect(table.get_by_role("columnheader")).to_have_text(
        ["Argomento", "Livello", "Aperte"])
    for topic, level, name, level_text, count in (
            ("alpha", "I", "Alpha", "I livello", "2"),
            ("beta", "I", "Beta", "I livello", "1"),
            ("beta", "back-office", "Beta", "II livello: Back office", "1")):
        row = backlog_row(page, topic, level)
        await expect(row.get_by_role("rowheader")).to_have_text(name)
        await expect(row.locator("td")).to_have_text([level_text, count])
    await expect(page.locator("#tk-backlog tbody tr")).to_have_count(3)
    await expect(page.locator("#tk-total")).to_have_text("4")

    # The oldest, its age in words; one past its resolution deadline.
    await expect(page.locator("#tk-oldest")).to_have_text(
        f"{late} (Beta, I livello): aperta da 3 giorni 2 ore")
    await expect(page.locator("#tk-late")).to_have_text("1")

    # The late one is the only one to follow: both its clocks say so in words, with Rome's
    # deadlines.
    clocks = (await as_supervisor(late))["clocks"]
    attention = written.get_by_role("table", name="Richieste aperte vicine alla scadenza")
    rows = attention.locator("tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows).to_have_attribute("data-number", late)
    await expect(rows.get_by_role("rowheader")).to_have_text(late)
    await expect(rows.locator("td")).to_have_text([
        "Reclami", "Beta", "I livello", "nessuno",
        f"✖ scaduta entro {rome(clocks['first_response']['due'])}",
        f"✖ scaduta entro {rome(clocks['resolution']['due'])}"])
    await expect(rows.locator(".standing").first).to_have_attribute("data-standing", "breached")
    await expect(page.locator("#tk-no-attention")).to_be_hidden()

    # Every open ticket, the soonest deadline first (the late one).
    opened = page.locator("#tk-open tbody tr")
    await expect(opened).to_have_count(4)
    await expect(opened.first).to_have_attribute("data-number", late)
    await expect(open_row(page, escalated).locator("td.level")).to_have_text(
        "II livello: Back office")
    await expect(open_row(page, escalated).locator("td.ticket-state")).to_have_text("escalato")
    await expect(open_row(page, first).locator("td.clock")).to_contain_text("nei tempi")

    # A new request shows at the next refresh, 30 s later, without reloading the page.
    newer = await open_ticket("beta", "Reclami")
    await page.clock.fast_forward(30_000)
    await expect(open_row(page, newer)).to_be_visible()
    await expect(backlog_row(page, "beta", "I").locator("td").nth(1)).to_have_text("2")
    await expect(page.locator("#tk-total")).to_have_text("5")


# --- reassigning ----------------------------------------------------------------------------

async def test_a_supervisor_gives_a_ticket_to_an_agent_and_is_told_a_refusal(start_service,
                                                                             page):
    await start_service()
    beta = await open_ticket("beta", "Reclami")
    alpha = await open_ticket("alpha", "Informazioni")
    await signed_in(page)
    done, refused = page.locator("#tk-done"), page.get_by_role("alert")
    await expect(done).to_have_attribute("aria-live", "polite")

    # No agent chosen: said, and the list has the focus.
    row = open_row(page, beta)
    await expect(row.locator("td.owner")).to_have_text("nessuno")
    await row.get_by_role("button", name=f"Assegna {beta}").click()
    await expect(refused).to_have_text(f"Scegli l'operatore a cui assegnare {beta}.")
    choose = row.get_by_label(f"Operatore a cui assegnare {beta}")
    await expect(choose).to_be_focused()

    # Beta to 1003 (who works beta): done, and the list shows its new owner.
    await choose.select_option(label="Agente Tre (1003)")
    await row.get_by_role("button", name=f"Assegna {beta}").click()
    await expect(done).to_have_text(f"{beta} assegnata. In carico a: Agente Tre (1003).")
    await expect(refused).to_have_text("")
    await expect(row.locator("td.owner")).to_have_text("Agente Tre (1003)")
    await expect(row.locator("td.ticket-state")).to_have_text("preso in carico")
    await expect(row.get_by_role("button", name=f"Assegna {beta}")).to_be_focused()
    stored = await as_supervisor(beta)
    assert (stored["owner"], stored["state"]) == ("1003", "preso in carico")
    assert stored["history"][-1]["by"] == "supervisor:sup"

    # Alpha to 1003, from the keyboard: 1003 does not work alpha; the reason is said, nothing
    # changes.
    other = open_row(page, alpha)
    await other.get_by_label(f"Operatore a cui assegnare {alpha}").select_option("1003")
    await other.get_by_label(f"Operatore a cui assegnare {alpha}").focus()
    await page.keyboard.press("Tab")
    await expect(other.get_by_role("button", name=f"Assegna {alpha}")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(refused).to_have_text(
        f"{alpha} non assegnata: Alpha non è tra gli argomenti di Agente Tre (1003).")
    await expect(done).to_have_text("")
    await expect(other.locator("td.owner")).to_have_text("nessuno")
    await expect(other.get_by_role("button", name=f"Assegna {alpha}")).to_be_focused()
    assert (await as_supervisor(alpha))["owner"] is None

    # Then to 1002, who works alpha.
    await other.get_by_label(f"Operatore a cui assegnare {alpha}").select_option("1002")
    await other.get_by_role("button", name=f"Assegna {alpha}").click()
    await expect(done).to_have_text(f"{alpha} assegnata. In carico a: Agente Due (1002).")
    await expect(other.locator("td.owner")).to_have_text("Agente Due (1002)")
    assert (await as_supervisor(alpha))["owner"] == "1002"


# --- what citizens type ---------------------------------------------------------------------

async def test_a_citizens_markup_is_shown_as_text(start_service, page):
    await start_service()
    number = await open_ticket("alpha", "Informazioni", name=EVIL)
    # Subjects come from the topic's list today; the board must not trust them anyway (an
    # older configuration, another channel): the stored one is made hostile.
    async with Store(settings_for().database.url) as store, store.sessions.begin() as s:
        await s.execute(update(Ticket).where(Ticket.number == number).values(
            subject=f"Informazioni {EVIL}"))
    await signed_in(page)

    row = open_row(page, number)
    await expect(row.locator("td.subject")).to_have_text(f"Informazioni {EVIL}")
    await expect(row.locator("td.citizen")).to_have_text(EVIL)
    await expect(page.locator("#written img, #written script")).to_have_count(0)
    assert await page.evaluate("window.__pwned") is None


async def test_without_written_requests_the_board_has_no_such_section(start_service, page):
    """A service without tickets.yaml answers 503 on /api/tickets (as the unit tests check):
    here the browser is given such answers from a refresh on (the test configuration has
    tickets), and the section goes away; the rest of the board goes on."""
    await start_service()
    await page.clock.install()  # timers the test can move on (the 30 s refresh)
    written = await signed_in(page)
    asked: list[str] = []

    async def no_tickets(route: Route) -> None:
        asked.append(route.request.url)
        await route.fulfill(status=503, json={
            "error": "this desk takes no written requests (no tickets.yaml)"})

    await page.route(lambda url: "/api/tickets" in url, no_tickets)
    await page.clock.fast_forward(30_000)
    await expect(written).to_be_hidden()
    assert any("/api/tickets/board" in url for url in asked)
    await expect(page.get_by_role("heading", name="Richieste scritte")).to_have_count(0)
    await expect(page.locator('#agents tr[data-agent="1003"]')).to_be_visible()


# --- accessibility --------------------------------------------------------------------------

@pytest.fixture
def axe_installed() -> None:
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"


async def test_axe_finds_no_wcag_violation_on_the_board(start_service, browser, axe_installed):
    service = await start_service(at=OPEN)
    await open_ticket("beta", "Reclami")
    await service.__aexit__(None, None, None)
    await start_service(at=LATER, keep_recalls=True)
    alpha = await open_ticket("alpha", "Informazioni")
    # The page allows no script but its own: this tab, for the audit only, does not apply it.
    context = await browser.new_context(bypass_csp=True, locale="it-IT",
                                        viewport={"width": 1366, "height": 768})
    try:
        page = await context.new_page()
        await signed_in(page)
        row = open_row(page, alpha)
        await row.get_by_label(f"Operatore a cui assegnare {alpha}").select_option("1003")
        await row.get_by_role("button", name=f"Assegna {alpha}").click()
        await expect(page.get_by_role("alert")).to_contain_text("non assegnata")
        await page.add_script_tag(path=str(AXE))
        found = await page.evaluate(
            "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
            ".then(r => r.violations.map(v => `${v.id}: ${v.help} (` +"
            " v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))",
            ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"])
        assert found == []
    finally:
        await context.close()
