"""Tickets over HTTP on the real app and a real SQLite store: the citizens' form and status
page (no script needed), the portal's API, and an operator's steps through the console API.
The same flows run on PostgreSQL and in Chromium in tests/integration and tests/e2e."""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from centralino.tickets.http import openapi_document
from cti.recalls import DEV_PORTAL_KEY
from ivr.clock import LOCAL
from tests.unit.webparts import ADMIN, bearer, scrape, token, web_parts

FORM = "/richieste"
PORTAL = {"X-API-Key": DEV_PORTAL_KEY}
GOOD = {"argomento": "suap|Avvio di attività", "body": "Vorrei aprire un bar: che moduli "
        "servono?", "name": "Maria Rossi", "email": "maria.rossi@esempio.it", "phone": "",
        "tax_code": "", "consent": "si"}


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


async def shown_form(client: Any) -> str:
    resp = await client.get(FORM)
    assert resp.status == 200
    return csrf_of(await resp.text())


async def send(client: Any, fields: dict[str, str], **headers: str) -> Any:
    return await client.post(FORM, data={**fields, "csrf": await shown_form(client)},
                             allow_redirects=False, headers=headers)


async def stored(parts: Any) -> list[Any]:
    return await parts.store.open_tickets()


async def test_the_form_offers_each_topic_s_subjects_and_loads_nothing_from_elsewhere(tmp_path):
    async with web_parts(tmp_path) as (client, _):
        resp = await client.get(FORM)
        html = await resp.text()
        assert resp.status == 200
        assert '<html lang="it">' in html
        assert '<optgroup label="Sportello unico attività produttive">' in html or \
            "<optgroup" in html
        for subject in ("Avvio di attività", "Diritto annuale", "Reclami"):
            assert f">{subject}</option>" in html
        assert "<script" not in html
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        cookie = resp.cookies["centralino_modulo"]
        assert cookie["samesite"] == "Strict" and cookie["httponly"]
        css = await client.get(FORM + "/stile.css")
        assert css.status == 200 and css.content_type == "text/css"


async def test_a_citizen_sends_the_form_and_lands_on_the_private_page_of_their_ticket(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        resp = await send(client, GOOD)
        assert resp.status == 303, await resp.text()
        where = resp.headers["Location"]
        assert where.startswith("/richieste/stato/") and where.endswith("?nuova=1")
        page = await client.get(where)
        html = await page.text()
        [ticket] = await stored(parts)
        assert ticket.number == "HD-2026-000001"
        assert f"<strong>{ticket.number}</strong>" in html
        assert "Vorrei aprire un bar: che moduli servono?" in html
        assert "ricevuta, in attesa di essere presa in carico" in html
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert (ticket.topic, ticket.subject, ticket.channel, ticket.requester_email) == (
            "suap", "Avvio di attività", "web", "maria.rossi@esempio.it")
        # Tuesday 10:00 + 8 working hours of the office (8:30-13, 14-17): Wednesday 10:30
        assert ticket.first_response_due == datetime(2026, 12, 2, 10, 30, tzinfo=LOCAL)
        # The link is the only key: another token is nobody's ticket.
        assert (await client.get("/richieste/stato/" + "x" * 32)).status == 404


async def test_a_wrong_form_comes_back_filled_in_with_what_to_fix_next_to_each_field(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        fields = {**GOOD, "email": "maria@", "tax_code": "RSSMRA85T10A562X", "consent": "",
                  "body": "Il mio testo resta qui"}
        resp = await send(client, fields)
        html = await resp.text()
        assert resp.status == 422
        assert "La richiesta non è stata inviata" in html
        assert 'id="errore-email"' in html and 'id="errore-tax_code"' in html
        assert 'id="errore-consent"' in html
        assert 'aria-invalid="true"' in html
        assert "Il mio testo resta qui</textarea>" in html
        assert 'value="maria@"' in html
        assert 'value="suap|Avvio di attività" selected' in html
        assert await stored(parts) == []


async def test_a_form_without_its_cookie_or_from_another_site_is_refused_and_kept(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        csrf = await shown_form(client)
        client.session.cookie_jar.clear()
        resp = await client.post(FORM, data={**GOOD, "csrf": csrf}, allow_redirects=False)
        assert resp.status == 403
        assert "Maria Rossi" in await resp.text()  # what was typed is not lost
        resp = await send(client, GOOD, Origin="https://evil.example")
        assert resp.status == 403
        resp = await client.post(FORM, data={**GOOD, "csrf": "1.abc.def"},
                                 allow_redirects=False)
        assert resp.status == 403
        assert await stored(parts) == []


async def test_a_bot_filling_the_hidden_field_opens_nothing(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        resp = await send(client, {**GOOD, "sito_web": "http://spam.example"})
        assert resp.status == 422
        assert await stored(parts) == []


async def test_one_address_sending_too_many_forms_is_told_to_wait(tmp_path):
    env = {"CENTRALINO_TICKETS__PER_ADDRESS_PER_HOUR": "2"}
    async with web_parts(tmp_path, env) as (client, parts):
        assert (await send(client, GOOD)).status == 303
        assert (await send(client, {**GOOD, "email": "x"})).status == 422
        resp = await send(client, GOOD)
        assert resp.status == 429
        assert "troppe richieste" in (await resp.text()).lower()
        assert len(await stored(parts)) == 1


async def test_a_form_too_large_or_not_utf8_is_a_clear_4xx(tmp_path):
    async with web_parts(tmp_path) as (client, _):
        csrf = await shown_form(client)
        big = await client.post(FORM, data={**GOOD, "body": "x" * 40_000, "csrf": csrf})
        assert big.status == 413
        bad = await client.post(FORM, data=b"body=%ff%fe", headers={
            "Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status == 400
        json = await client.post(FORM, json=GOOD)
        assert json.status == 415


async def test_markup_a_citizen_types_is_shown_as_text(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        evil = '<script>alert(1)</script><img src=x onerror=alert(2)>'
        resp = await send(client, {**GOOD, "name": evil, "body": evil})
        page = await (await client.get(resp.headers["Location"])).text()
        assert "<script>alert" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        [ticket] = await stored(parts)
        assert ticket.requester_name == evil  # kept as typed, escaped only where shown


async def test_the_citizen_writes_on_the_status_page_and_the_operator_sees_it(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        where = (await send(client, GOOD)).headers["Location"].split("?")[0]
        page = await (await client.get(where)).text()
        resp = await client.post(where, data={"body": "Aggiungo: è in via Roma 1",
                                              "csrf": csrf_of(page)}, allow_redirects=False)
        assert resp.status == 303
        [ticket] = await stored(parts)
        detail = await client.get(f"/api/tickets/{ticket.number}", headers=bearer(token("1001")))
        bodies = [m["body"] for m in (await detail.json())["thread"]]
        assert bodies[-1] == "Aggiungo: è in via Roma 1"
        empty = await client.post(where, data={"body": "  ", "csrf": csrf_of(page)})
        assert empty.status == 422


async def test_the_portal_opens_a_ticket_and_every_problem_is_listed(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        resp = await client.post("/api/tickets", headers=PORTAL, json={
            "topic": "tributi", "subject": "rimborsi", "body": "Rimborso del 2025",
            "name": "Ditta Bianchi", "phone": "06 1234 5678", "tax_code": "00743110157"})
        assert resp.status == 201, await resp.text()
        out = await resp.json()
        assert out["number"] == "HD-2026-000001" and out["state"] == "nuovo"
        status = await client.get(out["status_url"].replace("/richieste/stato/",
                                                            "/api/tickets/status/"))
        assert (await status.json())["subject"] == "Rimborsi"
        [ticket] = await stored(parts)
        assert (ticket.requester_phone, ticket.requester_tax_code) == ("+39061234567" + "8",
                                                                        "00743110157")
        bad = await client.post("/api/tickets", headers=PORTAL, json={
            "topic": "nessuno", "subject": "x", "body": "", "name": "", "email": "a@"})
        assert bad.status == 422
        problems = (await bad.json())["problems"]
        assert {p.split(":")[0] for p in problems} == {"topic", "body", "name", "email"}
        assert (await client.post("/api/tickets", json={})).status == 401
        assert (await client.post("/api/tickets", headers=bearer(token("supervisore")),
                                  json={})).status == 403


async def test_a_supervisor_finds_a_citizen_s_tickets_by_address_or_phone(tmp_path):
    async with web_parts(tmp_path) as (client, _):
        numbers = []
        for body, who in (("Primo", {"email": "Maria@Esempio.it"}),
                          ("Secondo", {"phone": "06 1234 5678"}),
                          ("Di altri", {"email": "altri@esempio.it"})):
            resp = await client.post("/api/tickets", headers=PORTAL, json={
                "topic": "suap", "subject": "Modulistica", "body": body, "name": "M. R.",
                **who})
            numbers.append((await resp.json())["number"])
        sup = bearer(token("supervisore"))

        async def found(who: str) -> list[str]:
            resp = await client.get("/api/tickets", headers=sup, params={"requester": who})
            assert resp.status == 200, await resp.text()
            return [t["number"] for t in await resp.json()]
        assert await found("maria@esempio.it") == [numbers[0]]
        assert await found("+390612345678") == [numbers[1]]
        assert await found("nessuno@esempio.it") == []
        resp = await client.get("/api/tickets", headers=sup, params={"requester": "x" * 300})
        assert resp.status == 400


async def test_an_operator_takes_answers_escalates_and_the_second_level_resolves(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        number = (await (await client.post("/api/tickets", headers=PORTAL, json={
            "topic": "suap", "subject": "Modulistica", "body": "Quale modulo?",
            "name": "Maria Rossi", "email": "maria@esempio.it"})).json())["number"]
        giulia, luca, marco = (bearer(token(a)) for a in ("1001", "1004", "1002"))

        async def act(who: dict[str, str], action: str, **more: str) -> Any:
            return await client.post(f"/api/tickets/{number}/actions", headers=who,
                                     json={"action": action, **more})

        inbox = await (await client.get("/api/tickets", headers=giulia)).json()
        assert [t["number"] for t in inbox] == [number]
        assert await (await client.get("/api/tickets", headers=marco)).json() == []
        assert (await client.get(f"/api/tickets/{number}", headers=marco)).status == 404

        assert (await act(giulia, "take")).status == 200
        taken = await act(luca, "take")  # suap is one of his topics too: too late
        assert taken.status == 409 and "1001" in (await taken.json())["error"]
        answered = await (await act(giulia, "reply", text="Il modulo è il SCIA.")).json()
        assert answered["first_response_at"] is not None
        assert answered["clocks"]["first_response"]["standing"] == "met"
        assert (await act(giulia, "note", text="Cittadina già nota")).status == 200
        assert (await act(giulia, "escalate", group="back-office")).status == 409  # no note
        escalated = await (await act(giulia, "escalate", group="back-office",
                                     text="Serve la verifica della pratica")).json()
        assert (escalated["state"], escalated["level"], escalated["owner"]) == (
            "escalato", "back-office", None)
        assert escalated["clocks"]["first_response"]["standing"] == "ok"  # the group's clock
        assert (await act(giulia, "take")).status == 409  # not a member of back-office
        # 1004 is in back-office: the ticket is in his inbox now, and he resolves it.
        assert [t["number"] for t in await (await client.get(
            "/api/tickets", headers=luca)).json()] == [number]
        assert (await act(luca, "take")).status == 200
        done = await (await act(luca, "resolve", text="Pratica verificata: tutto in regola."
                                )).json()
        assert done["state"] == "risolto"
        assert [e["action"] for e in done["history"]] == [
            "opened", "taken", "replied", "internal note", "escalated to back-office", "taken",
            "resolved"]

        citizen = await (await client.get(f"/api/tickets/status/{await _token(parts)}")).json()
        assert [(m["author"], m["body"]) for m in citizen["thread"]] == [
            ("cittadino", "Quale modulo?"), ("operatore", "Il modulo è il SCIA."),
            ("operatore", "Pratica verificata: tutto in regola.")]  # no internal note
        assert citizen["state"] == "risolto"


async def _token(parts: Any) -> str:
    """A status token for the only ticket: tokens are stored hashed, so the test sets one."""
    from sqlalchemy import update

    from centralino.storage.models import Ticket
    from centralino.storage.store import status_token_sha256
    secret = "t" * 32
    async with parts.store.sessions.begin() as s:
        await s.execute(update(Ticket).values(status_token_sha256=status_token_sha256(secret)))
    return secret


async def test_waiting_for_the_citizen_stops_the_clock_until_they_answer(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        number = (await (await client.post("/api/tickets", headers=PORTAL, json={
            "topic": "suap", "subject": "Altro", "body": "?", "name": "M",
            "email": "m@esempio.it"})).json())["number"]
        giulia = bearer(token("1001"))
        await client.post(f"/api/tickets/{number}/actions", headers=giulia,
                          json={"action": "take"})
        asked = await (await client.post(f"/api/tickets/{number}/actions", headers=giulia, json={
            "action": "wait", "text": "Mi manda il numero di pratica?"})).json()
        due = asked["clocks"]["resolution"]["due"]
        assert asked["state"] == "in attesa del cittadino"
        assert asked["clocks"]["resolution"]["standing"] == "paused"
        parts.clock.advance(3600)  # an hour of office time passes while the citizen thinks
        secret = await _token(parts)
        resp = await client.post(f"/api/tickets/status/{secret}", json={"body": "È la 123"})
        assert resp.status == 200
        after = await (await client.get(f"/api/tickets/{number}", headers=giulia)).json()
        assert after["state"] == "preso in carico"
        moved = datetime.fromisoformat(after["clocks"]["resolution"]["due"])
        assert (moved - datetime.fromisoformat(due)).total_seconds() == 3600


async def test_the_openapi_document_describes_every_route(tmp_path):
    doc = openapi_document()
    async with web_parts(tmp_path) as (client, _):
        routes = {(r.method.lower(), r.resource.canonical) for r in client.app.router.routes()
                  if r.resource is not None
                  and r.resource.canonical.startswith("/api/tickets")
                  and not r.resource.canonical.endswith("openapi.json") and r.method != "HEAD"}
        served = await client.get("/api/tickets/openapi.json")
        assert await served.json() == doc
    described = {(method, path) for path, ops in doc["paths"].items() for method in ops}
    assert described == routes
    assert "TicketCreate" in doc["components"]["schemas"]


@pytest.fixture(scope="module")
def form_fields() -> Any:
    text = st.text(st.characters(codec="utf-8"), max_size=300)
    names = ("argomento", "body", "name", "email", "phone", "tax_code", "consent", "sito_web")
    return st.fixed_dictionaries(dict.fromkeys(names, text))


@settings(max_examples=60, deadline=None, suppress_health_check=[
    HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_no_form_or_api_input_gives_a_server_error(tmp_path, form_fields, data):
    fields = data.draw(form_fields)
    async with web_parts(tmp_path) as (client, _):
        resp = await send(client, fields)
        assert resp.status < 500, await resp.text()
        api = await client.post("/api/tickets", headers=PORTAL, json={
            k: v for k, v in fields.items() if k in ("body", "name", "email", "phone",
                                                     "tax_code")} | {"topic": "suap",
                                                                     "subject": "Altro"})
        assert api.status < 500, await api.text()


# --- the desk hands tickets out -----------------------------------------------------------------

async def open_ticket(client: Any, topic: str = "suap", subject: str = "Altro") -> str:
    resp = await client.post("/api/tickets", headers=PORTAL, json={
        "topic": topic, "subject": subject, "body": "?", "name": "M", "email": "m@esempio.it"})
    assert resp.status == 201, await resp.text()
    return (await resp.json())["number"]


async def settled(parts: Any) -> None:
    """Until the hand-overs the desk started are stored."""
    while parts.tasks:
        await asyncio.gather(*list(parts.tasks))


async def test_a_new_ticket_is_handed_to_a_free_agent_whose_console_is_told(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        giulia = bearer(token("1001"))
        assert (await client.post("/api/agents/1001/login", headers=giulia)).status == 200
        ws = await client.ws_connect("/ws/agents/1001")
        await ws.send_json({"token": token("1001")})
        assert (await ws.receive_json(timeout=2))["type"] == "hello"
        number = await open_ticket(client)
        await settled(parts)
        told = await ws.receive_json(timeout=2)
        assert (told["type"], told["number"], told["subject"]) == ("ticket", number, "Altro")
        detail = await (await client.get(f"/api/tickets/{number}", headers=giulia)).json()
        assert (detail["state"], detail["owner"]) == ("preso in carico", "1001")
        assert detail["history"][-1]["by"] == "system"
        # Her capacity is 2 (agents.yaml's default): a third waits for someone with room.
        more = [await open_ticket(client) for _ in range(2)]
        await settled(parts)
        owners = [(await (await client.get(f"/api/tickets/{n}", headers=giulia)).json())
                  ["owner"] for n in more]
        assert owners == ["1001", None]
        await ws.close()


async def test_an_agent_picks_the_next_ticket_and_releases_their_tickets_on_logout(tmp_path):
    async with web_parts(tmp_path) as (client, _):
        giulia = bearer(token("1001"))
        first = await open_ticket(client)
        second = await open_ticket(client, subject="Modulistica")
        got = await client.post("/api/tickets/next", headers=giulia)
        assert (await got.json())["number"] == first  # the soonest deadline: the first one
        assert (await (await client.post("/api/tickets/next", headers=giulia)).json()
                )["number"] == second
        assert (await client.post("/api/tickets/next", headers=giulia)).status == 404
        await client.post("/api/agents/1001/login", headers=giulia)
        out = await client.post("/api/agents/1001/logout", headers=giulia,
                                json={"tickets": "release"})
        assert out.status == 200
        for number in (first, second):
            detail = await (await client.get(f"/api/tickets/{number}", headers=giulia)).json()
            assert (detail["state"], detail["owner"]) == ("nuovo", None)
            assert detail["history"][-1]["action"] == "released"


async def test_the_console_learns_the_topics_subjects_and_groups(tmp_path):
    async with web_parts(tmp_path) as (client, _):
        desk = await (await client.get("/api/tickets/topics",
                                       headers=bearer(token("1001")))).json()
        suap = next(t for t in desk["topics"] if t["id"] == "suap")
        assert "Modulistica" in suap["subjects"]
        assert desk["groups"] == [{"id": "back-office", "name": "Back office",
                                   "members": ["1003", "1004"]}]
        assert (await client.get("/api/tickets/topics")).status == 401


# --- the supervisor's view and the figures ---------------------------------------------------

async def test_the_board_shows_the_backlog_and_the_late_and_a_supervisor_reassigns(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        boss = bearer(token("supervisore"))
        old = await open_ticket(client)
        parts.clock.advance(3 * 86400)  # Friday 10:00: 8 working hours of `old` are gone
        fresh = await open_ticket(client, topic="tributi", subject="Rimborsi")
        board = await (await client.get("/api/tickets/board", headers=boss)).json()
        assert board["backlog"]["open"] == 2
        assert board["backlog"]["by_topic_level"] == [
            {"topic": "suap", "level": "I", "open": 1},
            {"topic": "tributi", "level": "I", "open": 1}]
        assert board["backlog"]["oldest"]["number"] == old
        assert board["backlog"]["oldest"]["age_seconds"] == 3 * 86400
        late = {t["number"]: t["clocks"]["first_response"]["standing"]
                for t in board["attention"]}
        assert late == {old: "breached"}  # `fresh` is fine: not on the list
        [over] = board["attention"]
        # Tuesday 10:00 + 8 working hours = Wednesday 10:30; it is Friday 10:00: Wednesday's
        # rest (5.5 h), Thursday (7.5 h) and Friday 8:30-10 (1.5 h) past it.
        assert over["clocks"]["first_response"]["remaining_seconds"] == -14.5 * 3600
        listed = await (await client.get("/api/tickets", headers=boss)).json()
        clocks = {t["number"]: t["clocks"]["first_response"] for t in listed}
        assert clocks[fresh]["remaining_seconds"] == 8 * 3600

        # Marco (tributi) cannot work a suap ticket; Luca (suap) can.
        refused = await client.post(f"/api/tickets/{old}/assign", headers=boss,
                                    json={"agent": "1002"})
        assert refused.status == 409 and "suap" in (await refused.json())["error"]
        moved = await (await client.post(f"/api/tickets/{old}/assign", headers=boss,
                                         json={"agent": "1004"})).json()
        assert (moved["owner"], moved["owner_name"], moved["state"]) == (
            "1004", "Luca Ferrari", "preso in carico")
        assert moved["history"][-1]["by"] == "supervisor:supervisore"
        agent = await client.post(f"/api/tickets/{fresh}/assign",
                                  headers=bearer(token("1002")), json={"agent": "1002"})
        assert agent.status == 403
        assert (await client.get("/api/tickets/board",
                                 headers=bearer(token("1001")))).status == 403


async def test_ticket_figures_sit_beside_the_calls_in_the_api_and_prometheus(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        number = await open_ticket(client)
        giulia = bearer(token("1001"))
        await client.post("/api/tickets/next", headers=giulia)
        await client.post(f"/api/tickets/{number}/actions", headers=giulia,
                          json={"action": "reply", "text": "Ecco il modulo."})
        await open_ticket(client, topic="generale", subject="Reclami")
        second = await open_ticket(client, topic="tributi", subject="Rimborsi")
        await client.post("/api/tickets/next", headers=bearer(token("1002")))  # takes `second`
        parts.clock.advance(1800)
        await client.post(f"/api/tickets/{number}/actions", headers=giulia,
                          json={"action": "wait", "text": "Manca la firma."})
        got = await (await client.get("/api/figures", headers=bearer(ADMIN))).json()
        tickets = got["tickets"]
        assert tickets["opened"] == 3
        assert tickets["by_state"] == {"in attesa del cittadino": 1, "nuovo": 1,
                                       "preso in carico": 1}
        # Time in charge: Giulia's ticket for the half hour until it waited for the citizen;
        # Marco's is still his, so far half an hour too.
        assert tickets["agents_in_charge_seconds"] == {"1001": 1800.0, "1002": 1800.0}
        assert second
        assert tickets["first_response_avg"] == 0  # answered at once (the clock stood still)
        assert tickets["first_response_met_pct"] == 100.0
        assert tickets["backlog"]["open"] == 3
        metrics = await scrape(client, Authorization=f"Bearer {ADMIN}")
        assert metrics[("centralino_tickets_open", (("level", "I"), ("topic", "generale")))] == 1
        assert metrics[("centralino_today_tickets", (("state", "nuovo"),))] == 1
        assert metrics[("centralino_today_tickets_by_channel", (("channel", "web"),))] == 3
        assert metrics[("centralino_today_ticket_sla_met_ratio",
                        (("target", "first_response"),))] == 1.0


# --- attachments ----------------------------------------------------------------------------------

PDF = b"%PDF-1.7\n" + b"x" * 5000
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 300


def multipart(fields: dict[str, str], files: list[tuple[str, bytes, str]]) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for filename, content, claimed in files:
        form.add_field("allegati", content, filename=filename, content_type=claimed)
    return form


async def send_files(client: Any, files: list[tuple[str, bytes, str]],
                     **fields: str) -> Any:
    form = multipart({**GOOD, **fields, "csrf": await shown_form(client)}, files)
    return await client.post(FORM, data=form, allow_redirects=False)


async def test_files_sent_with_the_form_are_kept_once_and_offered_as_downloads(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        resp = await send_files(client, [("visura.pdf", PDF, "application/pdf"),
                                         ("../../fo\u202eto.png", PNG, "image/png"),
                                         ("copia.pdf", PDF, "application/pdf")])
        assert resp.status == 303, await resp.text()
        page = await (await client.get(resp.headers["Location"])).text()
        links = re.findall(r'<a href="(/richieste/stato/[^"]+/allegati/\d+)" download>([^<]+)',
                           page)
        assert [name for _, name in links] == ["visura.pdf", "foto.png", "copia.pdf"]
        got = await client.get(links[0][0])
        assert got.status == 200 and await got.read() == PDF
        assert got.headers["Content-Type"] == "application/pdf"
        assert got.headers["Content-Disposition"] == "attachment; filename*=UTF-8''visura.pdf"
        assert "sandbox" in got.headers["Content-Security-Policy"]
        # Stored once by content: the same PDF twice is one file.
        stored_files = [p for p in (tmp_path / "attachments").rglob("*")
                        if p.is_file() and "incoming" not in p.parts]
        assert len(stored_files) == 2
        assert not list((tmp_path / "attachments" / "incoming").iterdir())
        # The operator gets them in the thread, with their own download address.
        [ticket] = await stored(parts)
        detail = await (await client.get(f"/api/tickets/{ticket.number}",
                                         headers=bearer(token("1001")))).json()
        files = detail["thread"][0]["attachments"]
        assert [(f["filename"], f["size"]) for f in files] == [
            ("visura.pdf", len(PDF)), ("foto.png", len(PNG)), ("copia.pdf", len(PDF))]
        as_agent = await client.get(files[1]["url"], headers=bearer(token("1001")))
        assert await as_agent.read() == PNG
        assert (await client.get(files[1]["url"], headers=bearer(token("1002")))).status == 404


async def test_a_file_of_a_refused_kind_or_too_large_is_said_and_nothing_is_kept(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        page = await send_files(client, [
            ("fattura.pdf.exe", b"MZ\x90\x00" + b"\x00" * 100, "application/pdf"),
            ("pagina.html", b"<script>alert(1)</script>", "text/html"),
            ("grande.pdf", b"%PDF-" + b"x" * (10 * 1024 * 1024), "application/pdf")])
        html = await page.text()
        assert page.status == 422
        assert "fattura.pdf.exe: sono accettati solo PDF" in html
        assert "pagina.html: sono accettati solo PDF" in html
        assert "grande.pdf: supera 10 MB" in html
        assert "Maria Rossi" in html  # what was typed stays
        assert await stored(parts) == []
        assert not [p for p in (tmp_path / "attachments").rglob("*") if p.is_file()]


async def test_a_good_file_with_a_wrong_field_is_asked_again(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        page = await send_files(client, [("visura.pdf", PDF, "application/pdf")],
                                email="maria@")
        html = await page.text()
        assert page.status == 422 and "Allega di nuovo i file" in html
        assert await stored(parts) == []
        none_chosen = await send_files(client, [("", b"", "application/octet-stream")])
        assert none_chosen.status == 303  # a file input left empty is no attachment


async def test_a_form_beyond_the_total_size_is_cut_with_413(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        files = [(f"f{i}.pdf", b"%PDF-" + b"x" * (9 * 1024 * 1024), "application/pdf")
                 for i in range(3)]
        resp = await send_files(client, files)
        assert resp.status == 413
        assert await stored(parts) == []


async def test_the_group_hears_of_an_escalation_and_the_first_level_of_a_hand_back(tmp_path):
    async with web_parts(tmp_path) as (client, _):
        consoles = {}
        for agent in ("1003", "1004", "1001"):
            ws = await client.ws_connect(f"/ws/agents/{agent}")
            await ws.send_json({"token": token(agent)})
            assert (await ws.receive_json(timeout=2))["type"] == "hello"
            consoles[agent] = ws
        number = await open_ticket(client)
        giulia, luca = bearer(token("1001")), bearer(token("1004"))
        await client.post("/api/tickets/next", headers=giulia)
        await client.post(f"/api/tickets/{number}/actions", headers=giulia, json={
            "action": "escalate", "group": "back-office", "text": "verifica"})
        for member in ("1003", "1004"):
            told = await consoles[member].receive_json(timeout=2)
            assert (told["type"], told["why"], told["number"], told["level"]) == (
                "ticket", "escalated", number, "back-office")
        await client.post(f"/api/tickets/{number}/actions", headers=luca,
                          json={"action": "hand_back", "text": "manca un documento"})
        told = await consoles["1001"].receive_json(timeout=2)  # suap is hers
        assert (told["why"], told["level"]) == ("handed_back", "I")
        for ws in consoles.values():
            await ws.close()
