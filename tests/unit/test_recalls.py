"""Recall requests (issue #4, first slice): numbers, due times on a virtual clock, rate limits,
settings, and the HTTP API on an in-memory SQLite store (no Asterisk). Hypothesis throws
arbitrary payloads and bodies at the API: no input may make it answer 5xx."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import ValidationError

from centralino.config import load_config
from centralino.recalls import http as api
from centralino.settings import Settings, load_settings
from centralino.storage.models import RecallRequest
from centralino.storage.store import Store
from centralino.web.common import WebParts, authenticate, install
from cti.config import AgentEntry, AgentsConfig, SupervisorEntry, token_hash
from cti.recalls import (
    DEV_PORTAL_KEY,
    PortalClient,
    RecallError,
    RecallLimits,
    RecallSettings,
    SlidingWindow,
    classify,
    due_time,
    key_hash,
)
from ivr.clock import LOCAL, FixedClock
from ivr.hours import Schedule
from ivr.yamlfile import ConfigError
from queue_manager.queues import QueueManager

REPO = Path(__file__).resolve().parents[2]
OFFICE = Schedule.model_validate({
    "weekly": {"mon-fri": ["09:00-13:00", "14:00-17:00"]},
    "closures": [{"date": "2027-06-29", "reason": "Santi Pietro e Paolo"}],
})
DEFAULTS = RecallSettings()


def rome(y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL)


# --- numbers (real phonenumbers results) --------------------------------------------------------

@pytest.mark.parametrize("raw, e164, kind", [
    ("+39 347 123 4567", "+393471234567", "mobile"),
    ("347 1234567", "+393471234567", "mobile"),  # no +39: Italian by default
    ("06 1234 5678", "+390612345678", "fixed_line"),
    ("0039 06 12345678", "+390612345678", "fixed_line"),
    (" 02-1234-5678 ", "+390212345678", "fixed_line"),
])
def test_italian_fixed_and_mobile_numbers_are_allowed(raw, e164, kind):
    number = classify(raw, DEFAULTS)
    assert (number.e164, number.type, number.region) == (e164, kind, "IT")


@pytest.mark.parametrize("raw, reason", [
    ("899 123 456", "premium-rate numbers cannot be called back"),
    ("848 123 456", "shared-cost numbers cannot be called back"),
    ("800 123 456", "toll-free numbers cannot be called back"),
    ("178 1234567", "personal-number numbers cannot be called back"),
    ("+44 20 7946 0958", "numbers of GB cannot be called back"),
    ("+1 212 555 0199", "numbers of US cannot be called back"),
    ("+881 6 1234 5678", "satellite and other non-geographic numbers cannot be called back"),
    ("+870 773 111 111", "satellite and other non-geographic numbers cannot be called back"),
    ("+39 06 6988 1234", "numbers of VA cannot be called back"),  # the Vatican, inside +39 06
    ("ciao", "not a phone number"),
    ("", "not a phone number"),
    ("112", "not a valid phone number"),
    ("+39 55 123456", "not a valid phone number"),
    ("06 1234 5678 ext. 12", "extensions cannot be dialled"),
])
def test_numbers_refused_with_a_reason(raw, reason):
    with pytest.raises(RecallError) as exc:
        classify(raw, DEFAULTS)
    assert exc.value.field == "number" and reason in exc.value.reason


def test_config_can_allow_more():
    wider = RecallSettings(allowed_regions=["IT", "GB", "001"],
                           allowed_types=["fixed_line", "mobile", "toll_free"])
    assert classify("+44 20 7946 0958", wider).type == "fixed_line"
    assert classify("800 123 456", wider).type == "toll_free"
    assert classify("+881 6 1234 5678", wider).region == "001"
    with pytest.raises(RecallError, match="premium-rate"):
        classify("899123456", wider)


def test_the_help_desks_own_numbers_are_never_called_back():
    own = RecallSettings(caller_id="06 1234 5000")
    lines = ["0612345001", "800123456", "not-a-number"]  # its lines, as flows number them
    for raw in ("06 1234 5000", "+39 06 12345001", "0039 800 123 456"):
        with pytest.raises(RecallError, match="the help desk's own number"):
            classify(raw, own.model_copy(update={"allowed_types": ["fixed_line", "toll_free"]}),
                     lines)
    assert classify("06 1234 5002", own, lines).e164 == "+390612345002"


@given(st.text(max_size=40))
def test_classify_never_fails_otherwise(raw):
    try:
        number = classify(raw, DEFAULTS)
    except RecallError:
        return
    assert number.e164.startswith("+39") and number.type in ("fixed_line", "mobile")


# --- when a request joins the queue (a virtual clock: explicit instants) -------------------------

def due(mode: str, now: datetime, slot: datetime | None = None, schedule: Schedule | None = OFFICE,
        horizon: int = 14) -> datetime:
    return due_time(mode, slot, now, schedule, horizon)  # type: ignore[arg-type]


def test_now_while_open_is_now_in_utc():
    assert due("now", rome(2026, 12, 1, 10)) == datetime(2026, 12, 1, 9, tzinfo=UTC)
    assert due("now", rome(2026, 12, 1, 10)).tzinfo is UTC


@pytest.mark.parametrize("now, opening, why", [
    (rome(2026, 12, 1, 13, 30), rome(2026, 12, 1, 14), "lunch break"),
    (rome(2026, 12, 1, 7), rome(2026, 12, 1, 9), "early morning"),
    (rome(2026, 12, 4, 18), rome(2026, 12, 7, 9), "Friday evening: the weekend"),
    (rome(2026, 12, 5, 11), rome(2026, 12, 7, 9), "Saturday"),
    (rome(2026, 12, 7, 17), rome(2026, 12, 9, 9), "8 December (Immacolata) is a holiday"),
    (rome(2026, 12, 24, 17), rome(2026, 12, 28, 9), "Christmas, Santo Stefano, a Sunday"),
    (rome(2027, 6, 28, 17), rome(2027, 6, 30, 9), "a closure of hours.yaml"),
    (rome(2026, 3, 27, 18), rome(2026, 3, 30, 9), "across the change to summer time"),
])
def test_now_while_closed_waits_for_the_next_opening(now, opening, why):
    assert due("now", now) == opening.astimezone(UTC), why


def test_now_without_a_schedule_is_always_now():
    sunday_night = rome(2026, 12, 6, 3)
    assert due("now", sunday_night, schedule=None) == sunday_night


def test_now_when_nothing_opens_within_the_horizon():
    shut = Schedule.model_validate({"weekly": OFFICE.weekly, "closures": [
        {"date": date(2026, 12, 1), "to": date(2027, 2, 1), "reason": "lavori"}]})
    with pytest.raises(RecallError, match="does not open in the next 14 days"):
        due("now", rome(2026, 12, 1, 10), schedule=shut)


def test_now_with_a_slot_is_refused():
    with pytest.raises(RecallError) as exc:
        due("now", rome(2026, 12, 1), slot=rome(2026, 12, 2))
    assert exc.value.field == "slot"


def test_back_in_a_slot_inside_opening_hours():
    now = rome(2026, 12, 1, 10)
    assert due("back", now, rome(2026, 12, 2, 11, 30)) == rome(2026, 12, 2, 11, 30)
    # Without an offset the slot is Italian local time.
    assert due("back", now, datetime(2026, 12, 2, 16, 59)) == rome(2026, 12, 2, 16, 59)
    # With one, it is converted (10:00 UTC is 11:00 in Rome).
    assert due("back", now, datetime(2026, 12, 2, 10, tzinfo=UTC)) == rome(2026, 12, 2, 11)


@pytest.mark.parametrize("slot, reason", [
    (rome(2026, 12, 2, 13, 30), "outside opening hours; it opens again at 2026-12-02T14:00+01:00"),
    (rome(2026, 12, 2, 17), "outside opening hours"),  # ranges end before their end time
    (rome(2026, 12, 5, 10), "outside opening hours; it opens again at 2026-12-07T09:00+01:00"),
    (rome(2026, 12, 8, 10), "a holiday (Immacolata Concezione)"),
    (rome(2026, 12, 15, 10, 1), "must be within 14 days"),
    (rome(2026, 12, 1, 9, 59), "must be in the future"),
    (rome(2026, 12, 1, 10), "must be in the future"),  # now is not the future
    (datetime(9999, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12))), "out of range"),
    (datetime(1, 1, 1, 0, 0, tzinfo=timezone(timedelta(hours=14))), "out of range"),
])
def test_back_slots_refused(slot, reason):
    with pytest.raises(RecallError) as exc:
        due("back", rome(2026, 12, 1, 10), slot)
    assert exc.value.field == "slot" and reason in exc.value.reason


def test_a_closure_day_is_refused_with_its_reason():
    with pytest.raises(RecallError, match="closed \\(Santi Pietro e Paolo\\)"):
        due("back", rome(2027, 6, 25, 10), rome(2027, 6, 29, 10))


def test_back_needs_a_slot():
    with pytest.raises(RecallError, match="required"):
        due("back", rome(2026, 12, 1))


def test_the_horizon_is_configurable():
    assert due("back", rome(2026, 12, 1), rome(2026, 12, 15, 10)) == rome(2026, 12, 15, 10)
    assert due("back", rome(2026, 12, 1), rome(2026, 12, 22, 10), horizon=30)


# --- rate limits and settings ------------------------------------------------------------------

def test_sliding_window():
    clock = FixedClock(rome(2026, 12, 1))
    window = SlidingWindow(2, 60)
    assert window.hit("a", clock.now()) is None
    clock.advance(10)
    assert window.hit("a", clock.now()) is None
    assert window.hit("b", clock.now()) is None  # per key
    clock.advance(5)
    assert window.hit("a", clock.now()) == 45  # the first one leaves the window at 60 s
    clock.advance(45)
    assert window.hit("a", clock.now()) is None


def test_dev_portal_key_is_refused_in_production():
    secrets = {"mode": "production", "asterisk": {"password": "ari-Zk3pP9qLm2xVt7wRb4n"},
               "http": {"admin_token": "adm-Q8vN2kT6yH4mW9cX3rJ7"}}
    dev = {"clients": {"portale": {"key_sha256": key_hash(DEV_PORTAL_KEY)}}}
    with pytest.raises(ValidationError, match="portale: the public development key"):
        Settings.model_validate({**secrets, "recalls": dev})
    own = {"clients": {"portale": {"key_sha256": key_hash("a-secret-key")}},
           "dial": "PJSIP/{number}@trunk", "caller_id": "0612345000"}
    assert Settings.model_validate({**secrets, "recalls": own}).recalls.client_for("a-secret-key")
    # In development the dev key is fine.
    assert Settings.model_validate({"recalls": dev}).recalls.client_for("dev-portal") == "portale"


def test_production_recalls_need_a_trunk_and_a_caller_id():
    secrets = {"mode": "production", "asterisk": {"password": "ari-Zk3pP9qLm2xVt7wRb4n"},
               "http": {"admin_token": "adm-Q8vN2kT6yH4mW9cX3rJ7"}}
    portal = {"clients": {"portale": {"key_sha256": key_hash("a-secret-key")}}}
    with pytest.raises(ValidationError, match="simulated citizens: set your trunk"):
        Settings.model_validate({**secrets, "recalls": portal})
    with pytest.raises(ValidationError, match="caller_id is empty"):
        Settings.model_validate({**secrets, "recalls": {**portal, "dial": "PJSIP/{number}@t"}})
    # No portal: recalls are not in use, nothing to set (the callback key is checked with
    # queues.yaml, see test_config_errors).
    assert Settings.model_validate(secrets).recalls.not_ready_to_call()
    # Development dials the simulated citizens, anonymously if so configured.
    assert Settings.model_validate({"recalls": portal}).recalls.dial.startswith("Local/")


def test_production_callback_keys_need_a_trunk_too(tmp_path):
    settings = tmp_path / "centralino.yaml"
    settings.write_text(f"""
mode: production
asterisk: {{password: ari-Zk3pP9qLm2xVt7wRb4n}}
http: {{admin_token: adm-Q8vN2kT6yH4mW9cX3rJ7}}
config_dir: {REPO / "config"}
prompts: {{manifest: {REPO / "prompts" / "manifest.yaml"}}}
""")
    with pytest.raises(ConfigError, match=r"suap offer the callback key, but recalls\.dial"):
        load_config(load_settings(settings, {}))
    ready = {"CENTRALINO_RECALLS__DIAL": "PJSIP/{number}@trunk",
             "CENTRALINO_RECALLS__CALLER_ID": "0612345000"}
    with pytest.raises(ConfigError, match="development token"):  # the next thing to set
        load_config(load_settings(settings, ready))


def test_two_clients_with_one_key_are_refused():
    with pytest.raises(ValidationError, match="same key as a"):
        RecallSettings(clients={"a": PortalClient(key_sha256=key_hash("k")),
                                "b": PortalClient(key_sha256=key_hash("k"))})


def test_example_settings_are_valid():
    settings = load_settings(REPO / "config" / "centralino.yaml", {})
    assert settings.recalls.hours in load_config(settings).call.schedules
    assert settings.recalls.client_for(DEV_PORTAL_KEY) == "portale"
    assert settings.recalls.retry_delays and settings.recalls.max_attempts >= 1


def test_an_unknown_schedule_or_topic_is_a_clear_error():
    settings = load_settings(REPO / "tests" / "integration" / "config" / "centralino.yaml", {})
    wrong = settings.model_copy(update={"recalls": settings.recalls.model_copy(
        update={"hours": "nope", "topics": ["alpha", "ghost"]})})
    with pytest.raises(ConfigError) as exc:
        load_config(wrong)
    text = str(exc.value)
    assert "recalls.hours: unknown schedule 'nope' (hours.yaml has: office)" in text
    assert "recalls.topics: unknown queue 'ghost'" in text


def test_env_overrides_reach_the_recalls_section():
    settings = load_settings(REPO / "config" / "centralino.yaml",
                             {"CENTRALINO_RECALLS__HORIZON_DAYS": "30"})
    assert settings.recalls.horizon_days == 30


# --- the HTTP API on an in-memory store ----------------------------------------------------------

PORTAL, OTHER, ADMIN, SUPERVISOR, AGENT = "portal-key", "other-key", "admin-token", "sup", "agent"
NOW = rome(2026, 12, 1, 10)  # a Tuesday, open
HELP_DESK = "0612345001"


def fake_service(store: Store, limits: RecallLimits) -> SimpleNamespace:
    """What the recalls API reads from the Service, and nothing else."""
    recalls = RecallSettings(
        clients={"portal": PortalClient(key_sha256=key_hash(PORTAL)),
                 "other": PortalClient(key_sha256=key_hash(OTHER))},
        hours="office", limits=limits)
    settings = Settings.model_validate({"http": {"admin_token": ADMIN}}).model_copy(
        update={"recalls": recalls})
    agents = AgentsConfig(
        3, {"1001": AgentEntry(name="Uno", device="PJSIP/1001", topics={"alpha": 0},
                               token_sha256=token_hash(AGENT))},
        {"sup": SupervisorEntry(name="Capo", token_sha256=token_hash(SUPERVISOR))}, "")
    call = SimpleNamespace(queues={"alpha": None, "beta": None}, schedules={"office": OFFICE},
                           flows={HELP_DESK: None})  # the help desk's own line
    return SimpleNamespace(settings=settings, store=store, clock=FixedClock(NOW),
                           config=SimpleNamespace(agents=agents, call=call),
                           queues=QueueManager(),  # the lines (positions of waiting requests)
                           # the scheduler (recalls.placing.Recalls): poked, told of cancels
                           recalls=SimpleNamespace(poke=lambda: None, cancelled=lambda _: None))


async def open_client(limits: RecallLimits) -> tuple[TestClient, SimpleNamespace]:
    store = await Store("sqlite+aiosqlite:///:memory:").__aenter__()
    svc = fake_service(store, limits)
    app = web.Application(middlewares=[authenticate])  # the real auth middleware
    install(app, WebParts(svc.settings, svc.clock, svc, None, svc.store, None,  # type: ignore[arg-type]
                          svc.queues, None, None, svc.recalls, None, None))
    api.add_routes(app)
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, svc


@pytest.fixture
async def http() -> AsyncIterator[tuple[TestClient, SimpleNamespace]]:
    client, svc = await open_client(RecallLimits(per_number_per_day=3, per_address_per_minute=20))
    yield client, svc
    await client.close()
    await svc.store.__aexit__()


def key(k: str, header: str = "bearer") -> dict[str, str]:
    return {"Authorization": f"Bearer {k}"} if header == "bearer" else {"X-API-Key": k}


def payload(**changes: Any) -> dict[str, Any]:
    body = {"number": "347 123 4567", "topic": "alpha", "mode": "now", "name": "Maria Rossi",
            "note": "pratica SUAP 123", "portal_ref": "PR-1"}
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def test_a_request_is_stored_before_the_202(http):
    client, svc = http
    resp = await client.post("/api/recalls", json=payload(), headers=key(PORTAL))
    assert resp.status == 202
    body = await resp.json()
    assert body == {"id": body["id"], "status": "waiting", "duplicate": False,
                    "status_url": f"/api/recalls/{body['id']}", "due_at": "2026-12-01T09:00:00Z"}
    assert resp.headers["Location"] == body["status_url"]
    row = await svc.store.get_recall(body["id"])
    assert (row.number, row.number_type, row.topic, row.mode, row.name, row.note, row.portal_ref,
            row.client, row.status, row.attempts, row.slot_at) == (
        "+393471234567", "mobile", "alpha", "now", "Maria Rossi", "pratica SUAP 123", "PR-1",
        "portal", "waiting", 0, None)
    assert row.created_at == row.updated_at == row.due_at == NOW


async def test_get_and_delete(http):
    client, svc = http
    body = await (await client.post("/api/recalls", headers=key(PORTAL, "x"), json=payload(
        mode="back", slot="2026-12-03T15:30"))).json()
    assert body["due_at"] == "2026-12-03T14:30:00Z"
    got = await (await client.get(body["status_url"], headers=key(PORTAL, "x"))).json()
    assert (got["status"], got["mode"], got["slot"], got["attempts"], got["attempt_log"]) == (
        "waiting", "back", "2026-12-03T14:30:00Z", 0, [])
    svc.clock.advance(60)
    resp = await client.delete(body["status_url"], headers=key(PORTAL))
    assert resp.status == 200
    cancelled = await resp.json()
    assert cancelled["status"] == "cancelled" and cancelled["updated_at"] == "2026-12-01T09:01:00Z"
    again = await client.delete(body["status_url"], headers=key(PORTAL))  # idempotent
    assert again.status == 200 and (await again.json())["status"] == "cancelled"
    # Cancelled is not open: the same number and topic can ask again.
    assert (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).status == 202


@pytest.mark.parametrize("status", ["calling", "done", "failed", "expired"])
async def test_only_a_waiting_request_can_be_cancelled(http, status):
    client, svc = http
    body = await (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).json()
    await svc.store.set_recall_status(body["id"], status, NOW, only_from=("waiting",))
    resp = await client.delete(body["status_url"], headers=key(PORTAL))
    assert resp.status == 409
    assert (await resp.json())["error"].startswith(f"the request is {status}")


async def test_duplicates_collapse(http):
    client, svc = http
    first = await (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).json()
    # The same number written differently, another name: still the same open request.
    resp = await client.post("/api/recalls", headers=key(PORTAL),
                             json=payload(number="+39 3471234567", name="M. Rossi"))
    assert resp.status == 200
    assert await resp.json() == {**first, "duplicate": True}
    # Another topic is another request.
    assert (await client.post("/api/recalls", json=payload(topic="beta"),
                              headers=key(PORTAL))).status == 202
    assert len(await svc.store.find_recalls()) == 2


async def test_the_store_keeps_one_open_request_per_number_and_topic(http):
    """Two inserts that both passed the duplicate check (a race): the index decides."""
    _, svc = http

    def row(recall_id: str, status: str = "waiting") -> RecallRequest:
        return RecallRequest(id=recall_id, number="+390612345678", number_type="fixed_line",
                             topic="alpha", mode="now", name="x", note="", client="portal",
                             status=status, created_at=NOW, updated_at=NOW, due_at=NOW,
                             attempts=0)

    _, created = await svc.store.create_recall(row("a" * 32))
    assert created
    again, created = await svc.store.create_recall(row("b" * 32))
    assert (again.id, created) == ("a" * 32, False)
    # Closed requests do not count.
    assert (await svc.store.create_recall(row("c" * 32, "done")))[1]
    await svc.store.set_recall_status("a" * 32, "failed", NOW, only_from=("waiting",))
    assert (await svc.store.create_recall(row("d" * 32)))[1]


async def test_auth(http):
    client, _ = http
    url = "/api/recalls"
    for headers, status, error in [
        ({}, 401, "missing API key"),
        ({"Authorization": "Basic eDp5"}, 401, "missing API key"),
        (key("wrong"), 401, "unknown API key"),
        (key("wrong", "x"), 401, "unknown API key"),
        (key(AGENT), 403, "only a portal's key"),
        (key(ADMIN), 403, "only a portal's key"),
    ]:
        resp = await client.post(url, json=payload(), headers=headers)
        assert (resp.status, (await resp.json())["error"][:len(error)]) == (status, error)
    resp = await client.post(url, json=payload(), headers={})
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_portal_sees_only_its_own_requests(http):
    client, _ = http
    body = await (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).json()
    for method in ("GET", "DELETE"):
        resp = await client.request(method, body["status_url"], headers=key(OTHER))
        assert resp.status == 404, method
        resp = await client.request(method, body["status_url"], headers=key(AGENT))
        assert resp.status == 403, method
    for token in (SUPERVISOR, ADMIN):
        assert (await client.get(body["status_url"], headers=key(token))).status == 200
    # The other portal asking for the same number and topic gets the open one's id, no more.
    resp = await client.post("/api/recalls", json=payload(), headers=key(OTHER))
    assert resp.status == 200 and (await resp.json())["id"] == body["id"]
    for bad in ("0" * 32, "nothex", "x" * 500):
        assert (await client.get(f"/api/recalls/{bad}", headers=key(PORTAL))).status == 404


async def test_supervisors_list_recalls(http):
    client, svc = http
    ids = []
    for n, number in enumerate(["347 000 0001", "347 000 0002", "347 000 0003"]):
        svc.clock.advance(1)
        body = await (await client.post("/api/recalls", json=payload(number=number),
                                        headers=key(PORTAL if n < 2 else OTHER))).json()
        ids.append(body["id"])
    await client.delete(f"/api/recalls/{ids[0]}", headers=key(PORTAL))
    listed = await (await client.get("/api/recalls", headers=key(SUPERVISOR))).json()
    assert [r["id"] for r in listed] == ids[::-1]  # newest first
    waiting = await (await client.get("/api/recalls?status=waiting&limit=10",
                                      headers=key(ADMIN))).json()
    assert [r["id"] for r in waiting] == [ids[2], ids[1]]
    other = await (await client.get("/api/recalls?client=other", headers=key(ADMIN))).json()
    assert [r["id"] for r in other] == [ids[2]]
    for query, status in [("?status=nope", 400), ("?limit=0", 400), ("?limit=x", 400)]:
        assert (await client.get("/api/recalls" + query, headers=key(ADMIN))).status == status
    assert (await client.get("/api/recalls", headers=key(PORTAL))).status == 403
    assert (await client.get("/api/recalls", headers=key(AGENT))).status == 403


@pytest.mark.parametrize("changes, status, error", [
    ({"number": "899 123 456"}, 422, "number: premium-rate numbers cannot be called back"),
    ({"number": "+44 20 7946 0958"}, 422, "number: numbers of GB cannot be called back"),
    ({"number": "not a number"}, 422, "number: not a phone number"),
    ({"topic": "ghost"}, 422, "topic: unknown topic 'ghost' (known: alpha, beta)"),
    ({"mode": "later"}, 422, "mode: Input should be 'now' or 'back'"),
    ({"mode": "back"}, 422, "slot: required for mode \"back\""),
    ({"mode": "back", "slot": "2026-12-05T10:00"}, 422, "slot: outside opening hours"),
    ({"mode": "back", "slot": "2026-12-30T10:00"}, 422, "slot: must be within 14 days"),
    ({"mode": "back", "slot": "2026-11-30T10:00"}, 422, "slot: must be in the future"),
    ({"mode": "back", "slot": "domani"}, 422, "slot: Input should be a valid datetime"),
    ({"note": "x" * 501}, 422, "note: String should have at most 500 characters"),
    ({"name": "Maria\x00"}, 422, "name: Value error, control characters are not allowed"),
    ({"name": "   "}, 422, "name: String should have at least 1 character"),
    ({"name": None}, 422, "name: Field required"),
    ({"extra": 1}, 422, "extra: Extra inputs are not permitted"),
    ({"number": 3471234567}, 422, "number: Input should be a valid string"),
    ({"number": "06 1234 5001"}, 422, "number: this is the help desk's own number"),
])
async def test_invalid_requests_say_why(http, changes, status, error):
    client, svc = http
    resp = await client.post("/api/recalls", json=payload(**changes), headers=key(PORTAL))
    body = await resp.json()
    assert resp.status == status and body["error"].startswith(error), body
    assert body["problems"] and await svc.store.find_recalls() == []


async def test_a_note_may_have_line_breaks(http):
    client, _ = http
    resp = await client.post("/api/recalls", json=payload(note="riga 1\nriga 2\tfine"),
                             headers=key(PORTAL))
    assert resp.status == 202


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"{'number': 1}", b"[" * 10000])
async def test_malformed_json_is_400(http, body):
    client, _ = http
    resp = await client.post("/api/recalls", data=body, headers=key(PORTAL))
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("the body is not valid JSON")


async def test_json_that_is_not_an_object_is_422(http):
    client, _ = http
    resp = await client.post("/api/recalls", data=b"[1, 2]", headers=key(PORTAL))
    assert resp.status == 422


async def test_now_outside_hours_is_due_at_the_next_opening(http):
    client, svc = http
    svc.clock.at = rome(2026, 12, 24, 18)  # Christmas Eve, evening
    body = await (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).json()
    assert body["due_at"] == "2026-12-28T08:00:00Z"


async def test_rate_limit_per_number(http):
    client, svc = http
    for topic in ("alpha", "beta"):
        body = await (await client.post("/api/recalls", json=payload(topic=topic),
                                        headers=key(PORTAL))).json()
        await client.delete(body["status_url"], headers=key(PORTAL))  # cancelled ones count
        svc.clock.advance(3600)
    assert (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).status == 202
    svc.clock.advance(3600)
    resp = await client.post("/api/recalls", json=payload(topic="beta"), headers=key(PORTAL))
    assert resp.status == 429
    assert "3 recalls in the last 24 hours" in (await resp.json())["error"]
    assert resp.headers["Retry-After"] == str(24 * 3600 - 3 * 3600)  # when the first one ages
    # Another number is not limited, and a duplicate is still answered (it stores nothing).
    assert (await client.post("/api/recalls", json=payload(number="06 1234 5678"),
                              headers=key(PORTAL))).status == 202
    assert (await client.post("/api/recalls", json=payload(), headers=key(PORTAL))).status == 200


async def test_rate_limit_per_address():
    client, svc = await open_client(RecallLimits(per_address_per_minute=3))
    try:
        statuses = []
        for n in range(4):  # invalid requests count too
            resp = await client.post("/api/recalls", json=payload(number=f"347 000 000{n}",
                                                                  topic="x" if n == 1 else "alpha"),
                                     headers=key(PORTAL))
            statuses.append(resp.status)
        assert statuses == [202, 422, 202, 429]
        assert resp.headers["Retry-After"] == "60"
        svc.clock.advance(60)
        assert (await client.post("/api/recalls", json=payload(number="347 000 0009"),
                                  headers=key(PORTAL))).status == 202
    finally:
        await client.close()
        await svc.store.__aexit__()


# --- the OpenAPI description matches the routes and the payloads ----------------------------

def properties(doc: dict[str, Any], name: str) -> set[str]:
    return set(doc["components"]["schemas"][name]["properties"])


async def test_openapi_matches_the_api(http):
    client, _ = http
    resp = await client.get("/api/recalls/openapi.json")  # no key needed
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    routes = {(r.resource.canonical, r.method) for r in client.app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    assert documented == {r for r in routes if r[0].startswith("/api/recalls")}

    assert properties(doc, "RecallCreate") == set(api.RecallCreate.model_fields)
    assert set(doc["components"]["schemas"]["RecallCreate"]["required"]) == {
        "number", "topic", "mode", "name"}
    full = payload(mode="back", slot="2026-12-02T10:00")
    assert set(full) == properties(doc, "RecallCreate")  # every documented field is accepted
    resp = await client.post("/api/recalls", json=full, headers=key(PORTAL))
    posted = await resp.json()
    assert str(resp.status) in doc["paths"]["/api/recalls"]["post"]["responses"]
    assert set(posted) == properties(doc, "RecallPosted")
    detail = await (await client.get(posted["status_url"], headers=key(PORTAL))).json()
    assert set(detail) == properties(doc, "RecallDetail")
    listed = await (await client.get("/api/recalls", headers=key(ADMIN))).json()
    assert set(listed[0]) == properties(doc, "RecallOut")
    resp = await client.post("/api/recalls", json=payload(topic="x"), headers=key(PORTAL))
    assert set(await resp.json()) == properties(doc, "ErrorOut")
    assert "422" in doc["paths"]["/api/recalls"]["post"]["responses"]
    statuses = doc["components"]["schemas"]["RecallOut"]["properties"]["status"]
    assert set(statuses.get("enum") or []) == {"waiting", "calling", "done", "failed",
                                               "cancelled", "expired"}


# --- no input makes the API answer 5xx (hypothesis) -----------------------------------------

@pytest.fixture(scope="module")
async def fuzz() -> AsyncIterator[TestClient]:
    # Limits out of the way: the point is reaching validation and storage with odd input.
    client, svc = await open_client(RecallLimits(per_number_per_day=1000,
                                                 per_address_per_minute=100_000))
    yield client
    await client.close()
    await svc.store.__aexit__()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)
numbers = st.sampled_from(["347 123 4567", "+39 06 1234 5678", "899123456", "+44 20 7946 0958",
                           "+881612345678", "0039 02 1234 5678", "", "+", "++39"]) | st.text(
    alphabet="0123456789 +-()#*.extEXT", max_size=40)
slots = (st.datetimes(timezones=st.none() | st.timezones()).map(datetime.isoformat)
         | st.datetimes(min_value=datetime(2026, 11, 25), max_value=datetime(2026, 12, 20))
         .map(datetime.isoformat) | st.text(max_size=30) | st.integers())
near_valid = st.fixed_dictionaries({
    "number": numbers, "topic": st.sampled_from(["alpha", "beta", "", "gamma"]) | st.text(),
    "mode": st.sampled_from(["now", "back"]) | st.text(max_size=5),
}, optional={
    "slot": slots | st.none(), "name": st.text(max_size=140), "note": st.text(max_size=520),
    "portal_ref": st.text(max_size=140) | st.none(), "extra": json_values,
})
FUZZ = hsettings(max_examples=150, deadline=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture,
                                        HealthCheck.too_slow])


async def check(resp) -> None:
    text = await resp.text()
    assert resp.status < 500, text
    if resp.status >= 400:
        assert "error" in json.loads(text)


@FUZZ
@given(body=json_values | near_valid)
async def test_no_json_payload_makes_a_5xx(fuzz, body):
    await check(await fuzz.post("/api/recalls", json=body, headers=key(PORTAL)))


@FUZZ
@given(body=st.binary(max_size=300))
async def test_no_body_makes_a_5xx(fuzz, body):
    await check(await fuzz.post("/api/recalls", data=body, headers=key(PORTAL, "x")))


@FUZZ
# Printable ASCII: what aiohttp's router can match at all ({} and controls never reach us).
@given(recall_id=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e,
                                                exclude_characters="/?#%{}"),
                         min_size=1, max_size=40)
       # "." and ".." are dot-segments the client removes (RFC 3986): another URL, not an id.
       .filter(lambda s: s not in (".", "..")),
       method=st.sampled_from(["GET", "DELETE"]),
       token=st.sampled_from([PORTAL, OTHER, ADMIN, AGENT, "wrong"]))
async def test_no_id_makes_a_5xx(fuzz, recall_id, method, token):
    await check(await fuzz.request(method, f"/api/recalls/{recall_id}", headers=key(token)))


@FUZZ
@given(query=st.dictionaries(st.sampled_from(["status", "limit", "topic", "client", "x"]),
                             st.text(max_size=20), max_size=4))
async def test_no_listing_query_makes_a_5xx(fuzz, query):
    await check(await fuzz.get("/api/recalls", params=query, headers=key(ADMIN)))
