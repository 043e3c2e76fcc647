"""Figures over HTTP (centralino.figures.http): `/api/figures` with its filters (period, topic,
line by name or number), the live state and the recall figures; the `queue_log` export; today's
figures on `/metrics`; and bad periods refused. The calls are stored as the service stores them
(records through the writer) and the expected numbers follow from the README's definitions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from centralino.storage.models import RecallAttempt, RecallRequest
from centralino.storage.records import NewCall
from centralino.storage.store import Store
from ivr.clock import LOCAL
from tests.unit.webparts import (
    ADMIN,
    SUPERVISOR,
    UNREACHABLE_DB,
    Parts,
    bearer,
    scrape,
    token,
    web_parts,
)

Client = TestClient[Any, Any]
ASSOCIAZIONI = ("0612345001", "Associazioni di categoria")
CITTADINI = ("0612345002", "Cittadini e imprese")


def rome(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11 if day == 30 else 12, day, hour, minute, tzinfo=LOCAL)


def a_call(parts: Parts, call_id: str, topic: str, line: tuple[str, str], entered: datetime,
           *events: tuple[float, str, str]) -> None:
    """A caller who entered `topic`'s line at `entered`, then (seconds later, agent, event)."""
    number, name = line
    parts.records.call_started(NewCall(
        id=call_id, channel_id=f"chan-{call_id}", number=number, line=name,
        caller_number="3471234567", caller_name="", config_version="v", started_at=entered))
    parts.records.queue_log(entered, call_id, topic, "NONE", "ENTERQUEUE", "", "3471234567")
    for seconds, agent, event in events:
        parts.records.queue_log(entered + timedelta(seconds=seconds), call_id, topic, agent,
                                event, int(seconds))


def seed(parts: Parts) -> None:
    """Three calls on Tuesday 1 December (the clock's day), one on Monday 30 November."""
    a_call(parts, "a1", "suap", ASSOCIAZIONI, rome(1, 9),
           (10, "1001", "CONNECT"), (130, "1001", "COMPLETECALLER"))
    # 1001's wrap-up after a1: 5 s.
    parts.records.agent_changed("1001", rome(1, 9) + timedelta(seconds=130), "wrap_up", "",
                                "system")
    parts.records.agent_changed("1001", rome(1, 9) + timedelta(seconds=135), "available", "",
                                "system")
    a_call(parts, "a2", "suap", ASSOCIAZIONI, rome(1, 9, 30), (40, "NONE", "ABANDON"))
    a_call(parts, "a3", "tributi", CITTADINI, rome(1, 9, 45),
           (25, "1002", "CONNECT"), (85, "1002", "COMPLETEAGENT"))
    a_call(parts, "b1", "anagrafe", CITTADINI, rome(30, 11),
           (5, "1003", "CONNECT"), (65, "1003", "COMPLETECALLER"))


@pytest.fixture
async def web(tmp_path) -> AsyncIterator[tuple[Client, Parts]]:
    async with web_parts(tmp_path) as (client, parts):
        seed(parts)
        yield client, parts


async def figures(client: Client, query: str = "", secret: str = SUPERVISOR) -> dict[str, Any]:
    resp = await client.get(f"/api/figures{query}", headers=bearer(secret))
    assert resp.status == 200, await resp.text()
    return await resp.json()


# --- /api/figures ------------------------------------------------------------------------------

async def test_figures_of_today_by_default(web):
    client, _ = web
    got = await figures(client)
    assert (got["from"], got["to"]) == (rome(1, 0).isoformat(), rome(2, 0).isoformat())
    total = got["total"]
    assert (total["offered"], total["answered"], total["abandoned"]) == (3, 2, 1)
    assert (total["asa_avg"], total["aht_avg"]) == (17.5, 90.0)  # waits 10 and 25, talks 120, 60
    suap, tributi = got["topics"]["suap"], got["topics"]["tributi"]
    assert (suap["offered"], suap["answered"], suap["abandoned"]) == (2, 1, 1)
    # suap answers within 30 s, tributi within 20 s: a3 waited 25 s.
    assert (suap["service_level_pct"], tributi["service_level_pct"]) == (50.0, 0.0)
    assert suap["wrap_up_avg"] == 5.0
    assert "anagrafe" not in got["topics"]  # its call was on Monday
    assert got["lines"]["Associazioni di categoria"]["numbers"] == ["0612345001"]
    assert got["lines"]["Cittadini e imprese"]["offered"] == 1
    assert [(t["topic"], t["line"], t["offered"]) for t in got["topic_lines"]] == [
        ("suap", "Associazioni di categoria", 2), ("tributi", "Cittadini e imprese", 1)]
    assert got["settings"]["suap"] == {"name": "SUAP - Sportello unico attività produttive",
                                       "service_level": 30.0, "short_abandon": 5.0}
    assert set(got["settings"]) == set(got["live"]["topics"]) == {
        "suap", "tributi", "anagrafe", "generale", "tecnico"}


async def test_a_period_of_whole_days_or_exact_times(web):
    client, _ = web
    monday = await figures(client, "?from=2026-11-30&to=2026-11-30")
    assert list(monday["topics"]) == ["anagrafe"] and monday["total"]["offered"] == 1
    both = await figures(client, "?from=2026-11-30&to=2026-12-01")
    assert both["total"]["offered"] == 4
    # Naive times are Italian; an offset is taken as given (09:15+01:00 is 08:15 UTC).
    half = await figures(client, "?from=2026-12-01T09:15&to=2026-12-01T08:50:00%2B00:00")
    assert half["total"]["offered"] == 2 and half["topics"]["suap"]["abandoned"] == 1


async def test_one_topic(web):
    client, parts = web
    parts.caller_waits("w1", "tributi", seconds_ago=60)
    got = await figures(client, "?topic=tributi")
    assert list(got["topics"]) == ["tributi"] and got["total"]["offered"] == 1
    assert list(got["settings"]) == ["tributi"] and list(got["live"]["topics"]) == ["tributi"]
    assert (got["live"]["topics"]["tributi"]["waiting"],
            got["live"]["topics"]["tributi"]["longest_wait"]) == (1, 60.0)


@pytest.mark.parametrize("line", ["Cittadini e imprese", "0612345002"])
async def test_one_line_by_its_name_or_number(web, line):
    client, _ = web
    got = await figures(client, f"?from=2026-11-30&to=2026-12-01&line={line}")
    assert list(got["lines"]) == ["Cittadini e imprese"]
    assert got["total"]["offered"] == 2
    assert sorted(got["topics"]) == ["anagrafe", "tributi"]


async def test_the_live_state_counts_callers_and_agents(web):
    client, parts = web
    parts.caller_waits("w1", "suap", seconds_ago=90)
    await client.post("/api/agents/1003/login", headers=bearer(token("1003")))
    await client.post("/api/agents/1003/pause", headers=bearer(token("1003")),
                      json={"reason": "formazione"})
    live = (await figures(client, secret=ADMIN))["live"]
    assert live["at"] == parts.clock.now().isoformat()
    suap = live["topics"]["suap"]
    assert (suap["waiting"], suap["longest_wait"], suap["ringing"]) == (1, 90.0, 0)
    assert (suap["agents"]["paused"], suap["agents"]["logged_out"]) == (0, 2)  # 1001, 1004
    assert live["topics"]["anagrafe"]["agents"]["paused"] == 1  # 1003
    assert (live["agents"]["paused"], live["agents"]["logged_out"]) == (1, 4)
    await client.post("/api/agents/1004/login", headers=bearer(token("1004")))  # rings for w1
    suap = (await figures(client, secret=ADMIN))["live"]["topics"]["suap"]
    assert (suap["waiting"], suap["ringing"], suap["agents"]["ringing"]) == (1, 1, 1)


async def recall(parts: Parts, recall_id: str, topic: str, outcome: str | None) -> None:
    now = parts.clock.now()
    await parts.store.create_recall(RecallRequest(
        id=recall_id, number=f"+39347123456{recall_id[0]}", number_type="mobile", topic=topic,
        mode="now", name="x", note="", client="portale",
        status="calling" if outcome else "waiting", created_at=now, updated_at=now, due_at=now,
        attempts=0))
    if outcome:
        await parts.store.end_recall_attempt(RecallAttempt(
            request_id=recall_id, at=now + timedelta(seconds=60), outcome=outcome,
            agent_id="1001", dialled_at=now + timedelta(seconds=5)), "done", None, counted=True)


async def test_recall_figures_of_the_requests_made_in_the_period(web):
    client, parts = web
    await recall(parts, "1" * 32, "suap", "answered")
    await recall(parts, "2" * 32, "suap", None)
    got = (await figures(client))["recalls"]
    assert got["total"]["requests"] == 2
    assert {s: n for s, n in got["topics"]["suap"]["by_status"].items() if n} == {
        "done": 1, "waiting": 1}
    assert got["topics"]["suap"]["attempts"] == {"answered": 1}
    assert got["topics"]["suap"]["first_attempt_avg"] == 5.0
    assert (await figures(client, "?topic=tributi"))["recalls"]["total"]["requests"] == 0
    # A line does not select recalls: they have none.
    assert (await figures(client, "?line=0612345002"))["recalls"]["total"]["requests"] == 2
    assert (await figures(client, "?from=2026-11-30&to=2026-11-30"))["recalls"]["topics"] == {}


@pytest.mark.parametrize("query, status, says", [
    ("?topic=ghost", 404, "no topic 'ghost' (see queues.yaml)"),
    ("?line=Nowhere", 404, "no line named or numbered 'Nowhere'"),
    ("?from=2026-13-01", 400, "from: not a date (YYYY-MM-DD)"),
    ("?to=ieri", 400, "to: expected an ISO date (2026-12-01) or date-time"),
    ("?from=1899-12-31", 400, "from: a date from 1900-01-01 to 9998-12-31"),
    ("?from=2026-12-02&to=2026-12-01", 400, "from (2026-12-02T00:00:00+01:00) must be before to"),
])
async def test_bad_filters_are_refused(web, query, status, says):
    client, _ = web
    resp = await client.get(f"/api/figures{query}", headers=bearer(SUPERVISOR))
    assert resp.status == status
    assert (await resp.json())["error"].startswith(says)


async def test_figures_are_for_supervisors_and_the_admin(web):
    client, _ = web
    for url in ("/api/figures", "/api/queue_log"):
        assert (await client.get(url, headers=bearer(token("1001")))).status == 403
        assert (await client.get(url)).status == 401


# --- /api/queue_log ------------------------------------------------------------------------------

def epoch(at: datetime, seconds: float = 0) -> str:
    return str(int((at + timedelta(seconds=seconds)).timestamp()))


async def test_the_queue_log_export_is_asterisks_file_for_the_period(web):
    client, _ = web
    resp = await client.get("/api/queue_log?from=2026-12-01&to=2026-12-01",
                            headers=bearer(ADMIN))
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
    a1, a2, a3 = rome(1, 9), rome(1, 9, 30), rome(1, 9, 45)
    assert (await resp.text()).splitlines() == [
        f"{epoch(a1)}|a1|suap|NONE|ENTERQUEUE||3471234567",
        f"{epoch(a1, 10)}|a1|suap|1001|CONNECT|10",
        f"{epoch(a1, 130)}|a1|suap|1001|COMPLETECALLER|130",
        f"{epoch(a2)}|a2|suap|NONE|ENTERQUEUE||3471234567",
        f"{epoch(a2, 40)}|a2|suap|NONE|ABANDON|40",
        f"{epoch(a3)}|a3|tributi|NONE|ENTERQUEUE||3471234567",
        f"{epoch(a3, 25)}|a3|tributi|1002|CONNECT|25",
        f"{epoch(a3, 85)}|a3|tributi|1002|COMPLETEAGENT|85"]
    # Today by default; Monday's call only in Monday's file.
    assert await (await client.get("/api/queue_log", headers=bearer(ADMIN))).text() \
        == await resp.text()
    monday = await (await client.get("/api/queue_log?from=2026-11-30&to=2026-11-30",
                                     headers=bearer(SUPERVISOR))).text()
    assert [line.split("|")[1] for line in monday.splitlines()] == ["b1"] * 3


async def test_a_long_queue_log_is_sent_whole_in_order_across_its_parts(web):
    client, parts = web
    at = rome(2, 8)  # the store reads 2,000 rows at a time: these all have one instant
    for n in range(2005):
        parts.records.queue_log(at, f"x{n}", "suap", "NONE", "ENTERQUEUE", "", str(n))
    resp = await client.get("/api/queue_log?from=2026-12-02&to=2026-12-02",
                            headers=bearer(ADMIN))
    assert resp.status == 200
    text = await resp.text()
    assert [line.split("|")[1] for line in text.splitlines()] == [f"x{n}" for n in range(2005)]


async def test_an_empty_period_is_an_empty_file_and_a_bad_one_is_400(web):
    client, _ = web
    resp = await client.get("/api/queue_log?from=2026-10-01&to=2026-10-31",
                            headers=bearer(ADMIN))
    assert (resp.status, await resp.text()) == (200, "")
    resp = await client.get("/api/queue_log?from=2026-12-01T25:00", headers=bearer(ADMIN))
    assert resp.status == 400
    assert (await resp.json())["error"].startswith("from: expected an ISO date")


# --- today's figures on /metrics ---------------------------------------------------------------

def by_topic(got: dict[Any, float], name: str) -> dict[str, float]:
    return {dict(labels)["topic"]: value for (n, labels), value in got.items() if n == name}


async def test_metrics_carry_todays_figures_per_topic(web):
    client, parts = web
    await recall(parts, "1" * 32, "suap", "answered")
    await parts.writer.drain()  # /metrics reads what is stored (it does not wait for it)
    got = await scrape(client)
    offered = by_topic(got, "centralino_today_offered")
    assert offered == {"suap": 2, "tributi": 1, "anagrafe": 0, "generale": 0, "tecnico": 0}
    assert by_topic(got, "centralino_today_answered")["suap"] == 1
    assert by_topic(got, "centralino_today_abandoned")["suap"] == 1
    # Undefined with no calls: absent rather than a fake 0.
    assert by_topic(got, "centralino_today_service_level_ratio") == {"suap": 0.5, "tributi": 0}
    assert by_topic(got, "centralino_today_asa_seconds") == {"suap": 10, "tributi": 25}
    assert by_topic(got, "centralino_today_aht_seconds") == {"suap": 120, "tributi": 60}
    requests = {(dict(k)["topic"], dict(k)["status"]): v for (n, k), v in got.items()
                if n == "centralino_today_recall_requests"}
    assert {k: v for k, v in requests.items() if v} == {("suap", "done"): 1}
    assert requests[("tributi", "waiting")] == 0
    attempts = {dict(k)["outcome"]: v for (n, k), v in got.items()
                if n == "centralino_today_recall_attempts" and dict(k)["topic"] == "suap"}
    assert attempts["answered"] == 1 and attempts["busy"] == 0  # every outcome, zeros too
    assert by_topic(got, "centralino_today_recall_first_attempt_seconds") == {"suap": 5}
    assert by_topic(got, "centralino_today_recall_attempts_per_success") == {"suap": 1}
    # The next day starts from nothing.
    parts.clock.advance(24 * 3600)
    got = await scrape(client)
    assert set(by_topic(got, "centralino_today_offered").values()) == {0}
    assert by_topic(got, "centralino_today_service_level_ratio") == {}


async def test_metrics_keep_the_live_gauges_when_the_database_is_away(web, caplog):
    client, parts = web
    parts.caller_waits("w1", "suap", seconds_ago=30)
    await parts.writer.drain()
    good = parts.store
    parts.replace(store=Store(UNREACHABLE_DB))
    try:
        got = await scrape(client)
        assert by_topic(got, "centralino_queue_waiting")["suap"] == 1
        assert by_topic(got, "centralino_queue_longest_wait_seconds")["suap"] == 30
        assert "today's figures for /metrics: database unreachable" in caplog.text
    finally:
        await parts.store.__aexit__()
        parts.replace(store=good)
