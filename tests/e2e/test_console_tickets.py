"""Written requests at the agent's console in a real browser: the inbox (deadlines near and
past with the working time left, read again every 30 s, a ticket the desk hands over), a
ticket's thread and steps, the second level taking over, two agents taking the same ticket at
once, a citizen's markup shown as text, a request opened for the caller on the line (and listed
in their next call's pop), "Prendi la prossima", "Rimetti in coda", "Esci" with requests in
charge, and axe-core's WCAG 2.1 A/AA audit. Against the real service and its
database (PostgreSQL with the README's command) and, for the call, the real Asterisk.

The inbox tests run on the example configuration (config/: agent 1001 Giulia Rossi works suap,
1003 and 1004 are the back-office group, portal key dev-portal, supervisor dev-supervisore),
with every agent logged out (so the desk hands no ticket out by itself); the calls, the
hand-over, taking the next, giving back and logging out run on the test lines
(tests/integration/config: its tickets.yaml makes alpha and beta take written requests, 1001
Agente Uno works both, supervisor dev-sup). An agent who logs in ("Accedi") and is available
is handed up to 2 tickets by the desk at once: those tests open tickets while the agent is out.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from tests.e2e.test_console import sign_in
from tests.integration.conftest import EXAMPLE_SETTINGS, MENU, record_of, settings_for

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

API = "http://127.0.0.1:18081"
PORTAL = {"X-API-Key": "dev-portal"}
SUPERVISORE = "dev-supervisore"  # config/agents.yaml
SUP = "dev-sup"  # tests/integration/config/agents.yaml
EVIL = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
AXE = Path(os.environ.get("CENTRALINO_AXE",
                          "/var/cache/centralino/axe/node_modules/axe-core/axe.min.js"))
ROME = ZoneInfo("Europe/Rome")
DIRECT = "0999000002"  # the test line straight to queue beta: agents 1001 and 1003


# --- helpers --------------------------------------------------------------------------------

@pytest.fixture
async def other_page(browser: Browser) -> AsyncIterator[Page]:
    """A second agent's tab, in a browser context of its own (as the `page` fixture: a script
    error or a Content-Security-Policy violation fails the test)."""
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


def database(tmp_path: Path) -> dict[str, str]:
    """The tests' database (PostgreSQL with the README's command), else a SQLite of this test's
    own: never the example configuration's var/centralino.db."""
    if os.environ.get("CENTRALINO_TEST_DATABASE_URL"):
        return {}
    return {"CENTRALINO_DATABASE__URL": f"sqlite+aiosqlite:///{tmp_path}/centralino.db",
            "CENTRALINO_DATABASE__SPOOL": str(tmp_path / "unwritten.pickle")}


async def start_example(start_service: Any, tmp_path: Path) -> Any:
    """The service on the example configuration (start_service closes earlier tests' open
    tickets, as they would crowd the inboxes)."""
    return await start_service(settings=settings_for(EXAMPLE_SETTINGS, **database(tmp_path)))


async def open_ticket(body: str = "Vorrei aprire un bar: quali moduli servono?",
                      name: str = "Maria Rossi", subject: str = "Avvio di attività",
                      topic: str = "suap") -> str:
    """A citizen's request through the portal's API (channel web): its number."""
    async with aiohttp.ClientSession() as http, http.post(
            f"{API}/api/tickets", headers=PORTAL,
            json={"topic": topic, "subject": subject, "body": body, "name": name,
                  "email": "maria.rossi@esempio.it"}) as resp:
        assert resp.status == 201, await resp.text()
        return (await resp.json())["number"]


async def as_supervisor(number: str, token: str = SUPERVISORE) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(
            f"{API}/api/tickets/{number}", headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def agent_state(agent: str) -> str:
    """The agent's state as `GET /api/agents/{id}` says it (to the test lines' supervisor)."""
    async with aiohttp.ClientSession() as http, http.get(
            f"{API}/api/agents/{agent}", headers={"Authorization": f"Bearer {SUP}"}) as resp:
        assert resp.status == 200, await resp.text()
        return (await resp.json())["state"]


async def signed_in(page: Page, agent: str) -> None:
    await sign_in(page, agent, f"dev-{agent}")
    await expect(page.get_by_role("heading", name="Richieste scritte")).to_be_visible()


def row(page: Page, number: str) -> Locator:
    return page.locator(f'#inbox tbody tr[data-number="{number}"]')


async def show(page: Page, number: str) -> Locator:
    """The ticket opened from the inbox: its view, with the focus on its heading."""
    await row(page, number).get_by_role("button", name=number, exact=True).click()
    view = page.locator("#ticket")
    await expect(view.locator("#ticket-title")).to_have_text(f"Richiesta {number}")
    await expect(view.locator("#ticket-title")).to_be_focused()
    return view


async def step(view: Locator, summary: str, fields: dict[str, str], button: str) -> None:
    """An action with a form: open it, fill it in, send it."""
    await view.locator("summary", has_text=summary).click()
    for label, text in fields.items():
        await view.get_by_label(label).fill(text)
    await view.get_by_role("button", name=button, exact=True).click()


def rome(iso: str) -> str:
    """A time as the console writes it (it-IT, short date and time, Europe/Rome)."""
    return datetime.fromisoformat(iso).astimezone(ROME).strftime("%d/%m/%y, %H:%M")


# --- the inbox and a ticket's life ----------------------------------------------------------

async def test_an_agent_works_a_ticket_and_the_second_level_resolves_it(start_service, page,
                                                                       other_page, tmp_path):
    await start_example(start_service, tmp_path)
    number = await open_ticket()
    await signed_in(page, "1001")

    # The new suap ticket in 1001's inbox, with its deadline and how it stands.
    mine = row(page, number)
    await expect(mine).to_contain_text("Avvio di attività")
    await expect(mine).to_contain_text("Maria Rossi")
    await expect(mine.locator("td").nth(3)).to_have_text("nuovo")
    await expect(mine.locator(".sla")).to_have_text("nei tempi")
    due = (await as_supervisor(number))["clocks"]["resolution"]["due"]
    await expect(mine.locator("td").nth(4)).to_contain_text(f"entro {rome(due)}")
    await expect(mine.locator(".left")).to_have_text("mancano 40 h di lavoro")

    view = await show(page, number)
    await expect(mine).to_have_attribute("aria-current", "true")
    await expect(view.locator("#t-channel")).to_have_text("modulo web")
    await expect(view.locator("#t-email")).to_have_text("maria.rossi@esempio.it")
    await expect(view.locator("#t-level")).to_have_text("I livello")
    await expect(view.locator("#t-owner")).to_have_text("nessuno")
    await expect(view.locator("#t-resolution")).to_contain_text(
        f"entro {rome(due)} · mancano 40 h di lavoro nei tempi")
    await expect(view.locator(".msg.in")).to_contain_text("Cittadino: Maria Rossi")
    await expect(view.locator(".msg-body")).to_have_text(
        "Vorrei aprire un bar: quali moduli servono?")
    for hidden in ("Rispondi al cittadino", "Risolvi", "Escala al II livello"):
        await expect(view.locator("summary", has_text=hidden)).to_be_hidden()

    # Taken in charge: the result is said, the actions of an owner appear.
    await view.get_by_role("button", name="Prendi in carico").click()
    await expect(view.locator("#ticket-done")).to_have_text(
        "Richiesta presa in carico. Stato: preso in carico.")
    await expect(view.locator("#t-owner")).to_have_text("Giulia Rossi (tu)")  # owner_name
    await expect(view.get_by_role("button", name="Prendi in carico")).to_be_hidden()
    await expect(mine.locator("td").nth(3)).to_have_text("preso in carico · Giulia Rossi (tu)")

    # A public answer (it stops the first-response clock), then an internal note: an empty
    # one is refused by the field before anything is sent.
    await step(view, "Rispondi al cittadino",
               {"Risposta (il cittadino la leggerà)": "Le servono la SCIA e la planimetria."},
               "Invia la risposta")
    await expect(view.locator(".msg.out")).to_contain_text("Le servono la SCIA e la planimetria.")
    await expect(view.locator(".msg.out .who")).to_have_text(
        "Al cittadino, da Giulia Rossi (tu)")
    await expect(view.locator("#t-first-response")).to_contain_text("rispettata")
    await view.locator("summary", has_text="Nota interna").click()
    await view.get_by_role("button", name="Aggiungi la nota interna").click()
    await expect(view.locator("#ticket-error")).to_have_text("Scrivi la nota.")
    note = view.get_by_label("Nota interna (solo per gli operatori)")
    await expect(note).to_be_focused()
    await expect(note).to_have_attribute("aria-invalid", "true")
    await note.fill("Locale in zona vincolata: serve il parere della soprintendenza.")
    await view.get_by_role("button", name="Aggiungi la nota interna").click()
    internal = view.locator(".msg.internal")
    await expect(internal).to_contain_text("nota interna")
    await expect(internal).to_contain_text("serve il parere della soprintendenza")

    # To the second level (the groups offered as the service lists them): the note is
    # mandatory; then the ticket leaves 1001's hands.
    await expect(page.locator('#escalate-groups option[value="back-office"]')
                 ).to_have_attribute("label", "Back office")
    await step(view, "Escala al II livello", {"Gruppo di II livello": "back-office"},
               "Invia al II livello")
    await expect(view.locator("#ticket-error")).to_have_text("Scrivi perché passa al II livello.")
    await view.get_by_label("Perché passa al II livello").fill("Serve il parere tecnico.")
    await view.get_by_role("button", name="Invia al II livello").click()
    await expect(view.locator("#t-state")).to_have_text("escalato")
    await expect(view.locator("#t-level")).to_have_text("II livello: back-office")
    await expect(view.locator("#t-owner")).to_have_text("nessuno")
    await expect(view.locator("#t-history")).to_contain_text("passata al II livello (back-office)")
    await expect(view.get_by_role("button", name="Prendi in carico")).to_be_hidden()
    await expect(view.locator("#t-no-actions")).to_be_visible()
    await expect(mine).to_have_count(0)  # neither mine nor free for me any more

    # 1004, of back-office, finds it in the inbox, takes it and resolves it with a message.
    await signed_in(other_page, "1004")
    theirs = row(other_page, number)
    await expect(theirs.locator("td").nth(3)).to_have_text("escalato · II livello: back-office")
    other = await show(other_page, number)
    await expect(other.locator(".msg.internal")).to_have_count(2)  # the note, and why it went
    await other.get_by_role("button", name="Prendi in carico").click()
    await expect(other.locator("#t-owner")).to_have_text("Luca Ferrari (tu)")
    await expect(other.locator("summary", has_text="Restituisci al I livello")).to_be_visible()
    await step(other, "Risolvi",
               {"Messaggio finale al cittadino (facoltativo)": "Parere favorevole: può aprire."},
               "Segna come risolta")
    await expect(other.locator("#ticket-done")).to_have_text(
        "Richiesta risolta. Stato: risolto.")
    await expect(other.locator("#t-state")).to_have_text("risolto")
    await expect(other.locator("#t-resolution")).to_contain_text("rispettata")
    await expect(theirs).to_have_count(0)

    # What the service stored, as a supervisor reads it.
    stored = await as_supervisor(number)
    assert (stored["state"], stored["level"], stored["owner"]) == ("risolto", "back-office",
                                                                  "1004")
    assert [(e["action"], e["by"]) for e in stored["history"]] == [
        ("opened", "citizen"), ("taken", "agent:1001"), ("replied", "agent:1001"),
        ("internal note", "agent:1001"), ("escalated to back-office", "agent:1001"),
        ("taken", "agent:1004"), ("resolved", "agent:1004")]
    assert stored["history"][4]["note"] == "Serve il parere tecnico."
    assert [(m["direction"], m["visibility"], m["author"]) for m in stored["thread"]] == [
        ("in", "public", "citizen"), ("out", "public", "agent:1001"),
        ("out", "internal", "agent:1001"), ("out", "internal", "agent:1001"),
        ("out", "public", "agent:1004")]


async def test_two_agents_take_the_same_ticket_one_has_it_the_other_is_told_why(
        start_service, page, other_page, tmp_path):
    await start_example(start_service, tmp_path)
    number = await open_ticket(subject="Pratica in corso", body="La pratica 42 è ferma.")
    await signed_in(page, "1001")
    await signed_in(other_page, "1004")  # suap is one of 1004's topics too
    views = [await show(page, number), await show(other_page, number)]

    await asyncio.gather(*(v.get_by_role("button", name="Prendi in carico").click()
                           for v in views))
    done = [v.locator("#ticket-done") for v in views]
    refused = [v.locator("#ticket-error") for v in views]
    for v in views:  # each view shows the ticket as it is now, whoever won
        await expect(v.locator("#t-state")).to_have_text("preso in carico")
        await expect(v.get_by_role("button", name="Prendi in carico")).to_be_hidden()
    owner = (await as_supervisor(number))["owner"]
    winner = ["1001", "1004"].index(owner)
    loser = 1 - winner
    await expect(done[winner]).to_have_text("Richiesta presa in carico. Stato: preso in carico.")
    await expect(refused[winner]).to_have_text("")
    await expect(refused[loser]).to_have_attribute("role", "alert")
    await expect(refused[loser]).to_have_text(re.compile("^Non è stato possibile: "))
    assert await refused[loser].text_content() in (
        # read it taken (the usual case), or read it free while the other was writing
        f"Non è stato possibile: la richiesta è già «preso in carico», dell'operatore {owner}.",
        "Non è stato possibile: la richiesta è cambiata nel frattempo: guardala di nuovo.")
    await expect(views[loser].locator("#t-owner")).to_have_text(
        {"1001": "Giulia Rossi", "1004": "Luca Ferrari"}[owner])
    await expect(views[loser].locator("summary", has_text="Rispondi al cittadino")).to_be_hidden()
    history = (await as_supervisor(number))["history"]
    assert [e["action"] for e in history] == ["opened", "taken"]


async def test_the_inbox_marks_deadlines_near_and_past(start_service, page, tmp_path):
    """40 working hours to resolve a suap ticket (office hours of config/hours.yaml, the 8th
    of December a holiday), a warning from 70%: on Thursday the 10th at 10:00 the ticket of
    Tuesday the 1st is late (48 h), the one of Thursday the 3rd near its deadline (33 h)."""
    settings = settings_for(EXAMPLE_SETTINGS, **database(tmp_path))
    numbers = []
    for at in (datetime(2026, 12, 1, 10), datetime(2026, 12, 3, 10)):
        # keep_recalls: a restart keeps the open tickets (and recalls) of before
        service = await start_service(at=at, settings=settings, keep_recalls=bool(numbers))
        numbers.append(await open_ticket(name=f"Richiedente del {at.day}"))
        await service.__aexit__(None, None, None)
    await start_service(at=datetime(2026, 12, 10, 10), settings=settings, keep_recalls=True)
    numbers.append(await open_ticket(name="Richiedente del 10"))
    late, near, fresh = numbers
    assert [(await as_supervisor(n))["clocks"]["resolution"]["standing"] for n in numbers] == [
        "breached", "warning", "ok"]

    await signed_in(page, "1001")
    # The working time left, as the service counts it (8 h past, 7 h and 40 h to go), in words.
    left = [(await as_supervisor(n))["clocks"]["resolution"]["remaining_seconds"]
            for n in numbers]
    assert [round(s / 60) for s in left] == [-8 * 60, 7 * 60, 40 * 60]
    for number, standing, words, time_left in (
            (late, "breached", "✖ scaduta", "scaduta da 8 h di lavoro"),
            (near, "warning", "⚠ in scadenza", "mancano 7 h di lavoro"),
            (fresh, "ok", "nei tempi", "mancano 40 h di lavoro")):
        await expect(row(page, number)).to_have_attribute("data-standing", standing)
        badge = row(page, number).locator(".sla")
        await expect(badge).to_have_text(words)
        await expect(badge.locator("[aria-hidden=true]")).to_have_count(0 if standing == "ok"
                                                                        else 1)
        await expect(row(page, number).locator(".left")).to_have_text(time_left)
    # Soonest deadline first.
    shown = await page.locator("#inbox tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.number)")
    assert [n for n in shown if n in numbers] == numbers
    view = await show(page, late)
    due = (await as_supervisor(late))["clocks"]["resolution"]["due"]
    await expect(view.locator("#t-resolution")).to_have_text(  # 48 working hours of 40
        f"entro {rome(due)} · scaduta da 8 h di lavoro ✖ scaduta (usato 120% del tempo)")


async def test_the_inbox_reads_itself_again_every_30_seconds(start_service, page, tmp_path):
    await start_example(start_service, tmp_path)
    await page.clock.install()  # the page's timers, under the test's hand
    await signed_in(page, "1001")
    await expect(page.locator("#inbox-updated")).to_contain_text("Aggiornato alle")
    number = await open_ticket(name="Arrivata dopo")
    await page.clock.fast_forward(25_000)
    await expect(row(page, number)).to_have_count(0)
    await page.clock.fast_forward(5_000)
    await expect(row(page, number)).to_contain_text("Arrivata dopo")


async def test_a_ticket_the_desk_hands_over_shows_at_once(start_service, page):
    await start_service()  # the test lines: 1001 works alpha, with room for 2 tickets
    await signed_in(page, "1001")
    await page.get_by_role("button", name="Accedi").click()
    await expect(page.locator("#state")).to_have_text("disponibile")
    number = await open_ticket(topic="alpha", subject="Informazioni", body="Orari?")
    await expect(page.locator("#inbox-announce")).to_have_text(
        f"Ti è stata assegnata la richiesta {number}: Informazioni.")
    await expect(row(page, number).locator("td").nth(3)).to_have_text(
        "preso in carico · Agente Uno (tu)")
    view = await show(page, number)
    await expect(view.locator("#t-history")).to_contain_text("assegnata a Agente Uno (tu)")
    await expect(view.locator("summary", has_text="Rispondi al cittadino")).to_be_visible()


async def test_a_citizens_markup_is_shown_as_text_and_nothing_runs(start_service, page,
                                                                   tmp_path):
    await start_example(start_service, tmp_path)
    number = await open_ticket(body=f"Buongiorno {EVIL}", name=EVIL)
    await signed_in(page, "1001")
    await expect(row(page, number).locator("td").nth(2)).to_have_text(EVIL)
    view = await show(page, number)
    await expect(view.locator(".msg-body")).to_have_text(f"Buongiorno {EVIL}")
    await expect(view.locator("#t-name")).to_have_text(EVIL)
    await expect(view.locator(".msg.in .who")).to_have_text(f"Cittadino: {EVIL}")

    # The operator's own words are text too, in the thread and in the history.
    await view.get_by_role("button", name="Prendi in carico").click()
    await step(view, "Nota interna", {"Nota interna (solo per gli operatori)": EVIL},
               "Aggiungi la nota interna")
    await expect(view.locator(".msg.internal .msg-body")).to_have_text(EVIL)
    await step(view, "In attesa del cittadino",
               {"Domanda al cittadino (facoltativa, la leggerà)": f"<b>{EVIL}</b>"},
               "Metti in attesa del cittadino")
    await expect(view.locator("#t-state")).to_have_text("in attesa del cittadino")
    await expect(view.locator(".msg.out .msg-body")).to_have_text(f"<b>{EVIL}</b>")
    await expect(view.locator("#t-resolution .sla")).to_contain_text("sospesa")
    group = '<img src=x onerror="window.__pwned=3">'  # a group id is at most 64 characters
    await step(view, "Escala al II livello", {"Gruppo di II livello": group,
                                              "Perché passa al II livello": EVIL},
               "Invia al II livello")
    await expect(view.locator("#ticket-error")).to_have_text(
        f"Non è stato possibile: non c'è un gruppo di II livello «{group}».")

    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("#main img, #main script").count() == 0
    assert await page.locator("#main b").count() == 0


# --- a request for the caller on the line ---------------------------------------------------

async def test_a_request_opened_for_the_caller_on_the_line(start_service, caller, phones, page):
    service = await start_service()
    await signed_in(page, "1001")
    await page.get_by_role("button", name="Accedi").click()
    await expect(page.locator("#state")).to_have_text("disponibile")

    # A caller goes through the menus to alpha; 1001's phone rings, the pop shows.
    phones.set("1001", "answer", delay=1.0)
    number = f"06{random.randrange(10**8):08d}"
    call = await caller.dial(MENU, caller_number=number, caller_name="Mario Verdi")
    await call.wait_heard("menu_main", timeout=30)
    await call.press("1")
    await call.wait_heard("menu_sub")
    await call.press("1")
    pop = page.get_by_role("article")
    await expect(pop.locator("#pop-caller")).to_contain_text(number)
    await expect(pop.get_by_text("Nessuna richiesta scritta da questo numero.")).to_be_visible()
    await pop.get_by_role("button", name="Apri una richiesta").click()

    # The form knows the caller, the line's topic and the way through the menus.
    form = page.locator("#new-ticket")
    topic = form.get_by_label("Argomento")
    await expect(topic).to_be_focused()
    await expect(topic).to_have_value("alpha")
    await expect(form.get_by_label("Telefono")).to_have_value(number)
    await expect(form.get_by_label("Nome e cognome")).to_have_value("Mario Verdi")
    body = form.get_by_label("Testo della richiesta")
    await expect(body).to_have_value("Percorso nel menu: Sub > Alpha\n\n")

    # The call ends: the form stays, for the agent to finish it.
    await phones.wait_answered("1001")
    await call.hangup()
    await expect(page.get_by_text("Nessuna chiamata in corso.")).to_be_visible()
    await expect(form).to_be_visible()

    # A subject not in the topic's list: the service says which are, the form keeps the text.
    await form.get_by_label("Oggetto").fill("Qualcosa")
    await body.fill(await body.input_value() + "Chiede a che punto è la pratica 42.")
    await form.get_by_role("button", name="Registra la richiesta").click()
    problems = form.get_by_role("alert")
    await expect(problems).to_contain_text("La richiesta non è stata registrata:")
    await expect(problems).to_contain_text(
        "Oggetto: scegli tra: Informazioni, Pratica in corso, Altro")
    subject = form.get_by_label("Oggetto")
    await expect(subject).to_be_focused()
    await expect(subject).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#nt-subjects option")).to_have_count(3)  # now suggested

    await subject.fill("pratica in corso")  # the service takes it in any case
    await form.get_by_role("button", name="Registra la richiesta").click()
    done = page.locator("#nt-done")
    await expect(done).to_contain_text("registrata (nuovo)")
    await expect(done).to_be_focused()
    await expect(form).to_be_hidden()
    made = await done.locator("strong").text_content()
    assert made and made.startswith("IT-2026-")  # tests/integration/config/tickets.yaml
    await expect(row(page, made)).to_contain_text("Pratica in corso")  # alpha is 1001's topic

    record = await record_of(service, call)
    stored = await as_supervisor(made, "dev-sup")  # tests/integration/config/agents.yaml
    assert (stored["channel"], stored["call_id"], stored["topic"], stored["subject"]) == (
        "phone", record.id, "alpha", "Pratica in corso")
    assert (stored["requester_name"], stored["requester_phone"]) == ("Mario Verdi", f"+39{number}")
    [first] = stored["thread"]
    assert first["body"] == "Percorso nel menu: Sub > Alpha\n\nChiede a che punto è la pratica 42."
    assert first["author"] == "agent:1001"
    assert (stored["history"][0]["action"], stored["history"][0]["by"]) == ("opened",
                                                                          "agent:1001")

    # The same caller again: the pop lists the request, which opens in the ticket view.
    await expect(page.locator("#state")).to_have_text("disponibile")
    again = await caller.dial(DIRECT, caller_number=number, caller_name="Mario Verdi")
    listed = pop.locator("#pop-tickets li")
    await expect(listed).to_have_count(1)
    await expect(listed).to_contain_text(f"{made} Pratica in corso · ")
    await listed.get_by_role("button", name=made).click()
    await expect(page.locator("#ticket-title")).to_have_text(f"Richiesta {made}")
    await expect(page.locator("#ticket-title")).to_be_focused()
    await expect(page.locator("#t-links")).to_contain_text(
        f"aperta durante la chiamata {record.id}")
    await again.hangup()


# --- taking the next, giving back, logging out with requests in charge -----------------------

async def test_prendi_la_prossima_takes_the_soonest_deadline_and_opens_it(start_service, page):
    await start_service()  # the test lines, every agent logged out: the desk hands nothing out
    # Opened first, but with 8 working hours to the first answer (alpha); then one with 4 (beta).
    later = await open_ticket(topic="alpha", subject="Informazioni", body="Orari?",
                              name="Anna Alfa")
    sooner = await open_ticket(topic="beta", subject="Reclami", body="Sportello chiuso.",
                               name="Bruno Beta")
    await signed_in(page, "1001")
    await expect(row(page, sooner).locator("td").nth(3)).to_have_text("nuovo")
    await expect(page.locator("#no-ticket")).to_be_visible()

    take_next = page.get_by_role("button", name="Prendi la prossima")
    await take_next.click()
    view = page.locator("#ticket")
    await expect(view.locator("#ticket-title")).to_have_text(f"Richiesta {sooner}")
    await expect(view.locator("#ticket-title")).to_be_focused()
    await expect(view.locator("#ticket-done")).to_have_text(
        f"Richiesta {sooner} presa in carico. Stato: preso in carico.")
    await expect(view.locator("#t-owner")).to_have_text("Agente Uno (tu)")
    await expect(view.locator("summary", has_text="Rispondi al cittadino")).to_be_visible()
    await expect(view.locator("summary", has_text="Rimetti in coda")).to_be_visible()
    # beta: 4 working hours to the first answer, 16 to the resolution, all still to go
    await expect(view.locator("#t-first-response .left")).to_have_text("mancano 4 h di lavoro")
    await expect(view.locator("#t-resolution .left")).to_have_text("mancano 16 h di lavoro")
    await expect(row(page, sooner).locator("td").nth(3)).to_have_text(
        "preso in carico · Agente Uno (tu)")
    await expect(row(page, sooner)).to_have_attribute("aria-current", "true")
    await expect(row(page, later).locator("td").nth(3)).to_have_text("nuovo")
    stored = await as_supervisor(sooner, SUP)
    assert (stored["state"], stored["owner"], stored["owner_name"]) == (
        "preso in carico", "1001", "Agente Uno")
    assert [(e["action"], e["by"]) for e in stored["history"]] == [
        ("opened", "citizen"), ("taken", "agent:1001")]

    # The next one is the other; then none is left: the page says so, the view stays.
    await take_next.click()
    await expect(view.locator("#ticket-title")).to_have_text(f"Richiesta {later}")
    await expect(view.locator("#t-owner")).to_have_text("Agente Uno (tu)")
    await expect(row(page, later).locator("td").nth(3)).to_have_text(
        "preso in carico · Agente Uno (tu)")
    await take_next.click()
    await expect(page.locator("#inbox-announce")).to_have_text(
        "Nessuna richiesta in attesa per te.")
    await expect(page.locator("#inbox-error")).to_have_text("")
    await expect(view.locator("#ticket-title")).to_have_text(f"Richiesta {later}")
    await expect(take_next).to_be_enabled()
    assert (await as_supervisor(later, SUP))["owner"] == "1001"


async def test_rimetti_in_coda_gives_a_ticket_back_to_its_line(start_service, page):
    await start_service()  # 1001 stays logged out: the desk would hand the ticket back at once
    number = await open_ticket(topic="alpha", subject="Pratica in corso",
                               body="La pratica 7 è ferma.")
    await signed_in(page, "1001")
    view = await show(page, number)
    release = view.locator("summary", has_text="Rimetti in coda")
    await expect(release).to_be_hidden()  # nobody's: nothing to give back
    await view.get_by_role("button", name="Prendi in carico").click()
    await expect(release).to_be_visible()

    # Waiting for the citizen, it is still its owner's to give back (its clock stands still).
    await step(view, "In attesa del cittadino",
               {"Domanda al cittadino (facoltativa, la leggerà)": "Il numero di protocollo?"},
               "Metti in attesa del cittadino")
    await expect(view.locator("#t-state")).to_have_text("in attesa del cittadino")
    await expect(view.locator("#t-resolution .sla")).to_contain_text("sospesa")
    await expect(view.locator("#t-resolution .left")).to_have_text("mancano 40 h di lavoro")
    await expect(release).to_be_visible()
    await step(view, "Rimetti in coda",
               {"Nota per i colleghi (facoltativa, resta nello storico)": "Esco prima oggi."},
               "Rimettila in coda")
    await expect(view.locator("#ticket-done")).to_have_text(
        "Richiesta rimessa in coda. Stato: nuovo.")
    await expect(view.locator("#ticket-title")).to_be_focused()
    await expect(view.locator("#t-state")).to_have_text("nuovo")
    await expect(view.locator("#t-owner")).to_have_text("nessuno")
    await expect(release).to_be_hidden()
    await expect(view.get_by_role("button", name="Prendi in carico")).to_be_visible()
    await expect(view.locator("#t-history tbody tr").last).to_contain_text("rimessa in coda")
    await expect(view.locator("#t-history tbody tr").last).to_contain_text("Esco prima oggi.")
    await expect(row(page, number).locator("td").nth(3)).to_have_text("nuovo")
    stored = await as_supervisor(number, SUP)
    assert (stored["state"], stored["level"], stored["owner"]) == ("nuovo", "I", None)
    last = stored["history"][-1]
    assert (last["action"], last["by"], last["owner"], last["note"]) == (
        "released", "agent:1001", None, "Esco prima oggi.")

    # Taken again; meanwhile a supervisor gives it to 1002: the service refuses to let 1001
    # give it back, the view says why and shows the ticket as it is now.
    await view.get_by_role("button", name="Prendi in carico").click()
    await expect(release).to_be_visible()
    async with aiohttp.ClientSession() as http, http.post(
            f"{API}/api/tickets/{number}/assign", headers={"Authorization": f"Bearer {SUP}"},
            json={"agent": "1002"}) as resp:
        assert resp.status == 200, await resp.text()
    await step(view, "Rimetti in coda", {}, "Rimettila in coda")
    await expect(view.locator("#ticket-error")).to_have_text(
        "Non è stato possibile: è in carico all'operatore 1002.")
    await expect(view.locator("#t-owner")).to_have_text("Agente Due")
    await expect(release).to_be_hidden()
    await expect(view.locator("#t-history")).to_contain_text("riassegnata a Agente Due")
    assert (await as_supervisor(number, SUP))["owner"] == "1002"


async def test_esci_with_requests_in_charge_asks_to_keep_or_release_them(start_service, page):
    await start_service()
    await signed_in(page, "1001")
    state = page.locator("#state")
    logout = page.get_by_role("button", name="Esci")
    dialog = page.locator("#leave")

    # Nothing in hand: out at once, as ever.
    await page.get_by_role("button", name="Accedi").click()
    await expect(state).to_have_text("disponibile")
    await logout.click()
    await expect(state).to_have_text("non in servizio")
    await expect(dialog).to_be_hidden()

    # Two requests arrive while 1001 is out; logging in, the desk hands both over.
    numbers = [await open_ticket(topic="alpha", subject="Informazioni", body=f"Domanda {i}",
                                 name=f"Cittadino {i}") for i in (1, 2)]
    await page.get_by_role("button", name="Accedi").click()
    for number in numbers:
        await expect(row(page, number).locator("td").nth(3)).to_have_text(
            "preso in carico · Agente Uno (tu)")

    # "Esci" asks first, in a dialog of the page; "Annulla" (and Esc) change nothing.
    await logout.click()
    asked = page.get_by_role("dialog", name="Hai 2 richieste in carico: cosa vuoi farne?")
    await expect(asked).to_be_visible()
    for number in numbers:
        await expect(asked.get_by_role("listitem").filter(has_text=number)).to_have_text(
            f"{number}: Informazioni")
    keep = asked.get_by_role("button", name="Tienile (restano tue)")
    await expect(keep).to_be_focused()
    await asked.get_by_role("button", name="Annulla").click()
    await expect(dialog).to_be_hidden()
    await expect(logout).to_be_focused()
    await page.keyboard.press("Enter")  # "Esci" again, from the keyboard
    await expect(asked).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(state).to_have_text("disponibile")
    assert await agent_state("1001") == "available"

    # "Rimettile in coda": out, and both back in their line for colleagues.
    await logout.click()
    await asked.get_by_role("button", name="Rimettile in coda (le prendono i colleghi)").click()
    await expect(dialog).to_be_hidden()
    await expect(state).to_have_text("non in servizio")
    announced = page.locator("#inbox-announce")
    await expect(announced).to_contain_text("Rimesse in coda: ")
    for number in numbers:
        await expect(announced).to_contain_text(number)
        await expect(row(page, number).locator("td").nth(3)).to_have_text("nuovo")
    await expect(page.get_by_role("button", name="Accedi")).to_be_focused()
    assert await agent_state("1001") == "logged_out"
    for number in numbers:
        stored = await as_supervisor(number, SUP)
        assert (stored["state"], stored["owner"]) == ("nuovo", None)
        assert (stored["history"][-1]["action"], stored["history"][-1]["by"]) == (
            "released", "agent:1001")

    # In again, the desk hands them back; "Tienile": out, and they wait for 1001's return.
    await page.get_by_role("button", name="Accedi").click()
    for number in numbers:
        await expect(row(page, number).locator("td").nth(3)).to_have_text(
            "preso in carico · Agente Uno (tu)")
    await logout.click()
    await keep.click()
    await expect(state).to_have_text("non in servizio")
    await expect(announced).to_contain_text("Restano in carico a te: ")
    assert await agent_state("1001") == "logged_out"
    for number in numbers:
        await expect(row(page, number).locator("td").nth(3)).to_have_text(
            "preso in carico · Agente Uno (tu)")
        stored = await as_supervisor(number, SUP)
        assert (stored["state"], stored["owner"]) == ("preso in carico", "1001")
        assert stored["history"][-1]["action"] == "assigned to 1001"


# --- accessibility --------------------------------------------------------------------------

async def violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA audit of the page as it is (axe already added to it)."""
    return await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})"
        ".then(r => r.violations.map(v => `${v.id}: ${v.help} (` +"
        " v.nodes.map(n => n.target.join(' ')).join(', ') + ')'))",
        ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"])


@pytest.fixture
def axe_installed() -> None:
    assert AXE.exists(), f"{AXE}: run ./dev test (it installs axe-core from tests/e2e/axe)"


async def test_axe_finds_no_wcag_violation_in_the_inbox_and_a_ticket(start_service, browser,
                                                                     tmp_path, axe_installed):
    await start_example(start_service, tmp_path)
    number = await open_ticket()
    await open_ticket(subject="Modulistica", body="Dove trovo il modulo?", name="Luca Bianchi")
    # The page allows no script but its own: this tab, for the audit only, does not apply it.
    context = await browser.new_context(bypass_csp=True, locale="it-IT",
                                        viewport={"width": 1366, "height": 768})
    try:
        page = await context.new_page()
        await signed_in(page, "1001")
        view = await show(page, number)
        await view.get_by_role("button", name="Prendi in carico").click()
        await expect(view.locator("#t-owner")).to_have_text("Giulia Rossi (tu)")
        for summary in await view.locator("details:visible summary").all():
            await summary.click()  # every form open
        await view.get_by_role("button", name="Invia la risposta").click()  # an error shown
        await expect(view.locator("#ticket-error")).to_have_text("Scrivi la risposta.")
        await page.add_script_tag(path=str(AXE))
        assert await violations(page) == []

        # Logged in, the desk hands 1001 the other request: "Esci" asks what becomes of both.
        await page.get_by_role("button", name="Accedi").click()
        await expect(page.locator("#inbox tbody tr")).to_have_count(2)
        for tr in await page.locator("#inbox tbody tr").all():
            await expect(tr.locator("td").nth(3)).to_have_text(
                "preso in carico · Giulia Rossi (tu)")
        await page.get_by_role("button", name="Esci").click()
        await expect(page.get_by_role("dialog", name="Hai 2 richieste in carico: cosa vuoi farne?")
                     ).to_be_visible()
        assert await violations(page) == []
    finally:
        await context.close()
