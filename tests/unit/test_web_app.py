"""The service's own HTTP endpoints (centralino.web.app): health, Prometheus metrics, prompt
files for Asterisk, reload, line overrides and the line status they make, the call records,
and what a request that needs an unreachable database is answered."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from centralino.promptbuild import BuiltPrompt
from centralino.storage.records import NewCall
from centralino.storage.store import Store
from centralino.storage.writer import Writer
from centralino.web.app import SCRAPES_PER_10S
from ivr.clock import LOCAL
from tests.unit.webparts import (
    ADMIN,
    NOW,
    SUPERVISOR,
    UNREACHABLE_DB,
    Parts,
    bearer,
    scrape,
    token,
    web_parts,
)

Client = TestClient[Any, Any]
METRICS_TOKEN = "metrics-token-of-the-web-tests"


@pytest.fixture
async def web(tmp_path) -> AsyncIterator[tuple[Client, Parts]]:
    async with web_parts(tmp_path) as parts:
        yield parts


# --- /healthz -----------------------------------------------------------------------------------

async def test_health_says_everything_is_fine(web):
    client, parts = web
    resp = await client.get("/healthz")  # no token
    assert resp.status == 200
    assert await resp.json() == {
        "status": "ok", "asterisk_connected": True, "database": "ok", "database_problem": None,
        "database_problem_seconds": None, "records_waiting": 0,
        "config_version": parts.config.version, "calls_in_progress": 0, "mailboxes": {}}


async def test_health_is_503_while_asterisk_is_unreachable(web):
    client, parts = web
    parts.ari.connected.clear()
    resp = await client.get("/healthz")
    body = await resp.json()
    assert (resp.status, body["status"], body["asterisk_connected"]) == (
        503, "asterisk unreachable", False)


async def test_with_the_database_away_health_stays_200_and_reads_say_what_is_missing(web):
    client, parts = web
    away = Store(UNREACHABLE_DB)
    parts.replace(writer=Writer(away.write))
    parts.records.sink = parts.writer
    parts.writer.start()
    try:
        parts.records.agent_changed("1001", NOW, "available", "", "agent:1001")
        assert await parts.writer.caught_up() == 1  # returns once the writer knows
        parts.records.agent_changed("1001", NOW, "paused", "pranzo", "agent:1001")
        resp = await client.get("/healthz")
        body = await resp.json()
        assert resp.status == 200
        assert (body["database"], body["database_problem"], body["records_waiting"]) == (
            "unreachable", "connection refused", 1)
        assert body["database_problem_seconds"] >= 0
        # What is stored is served at once, with how much is not in it yet.
        resp = await client.get("/api/calls", headers=bearer(ADMIN))
        assert (resp.status, resp.headers["X-Records-Waiting"]) == (200, "2")
        metrics = await scrape(client)
        assert metrics[("centralino_database_up", ())] == 0
        assert metrics[("centralino_records_waiting", ())] == 1
    finally:
        await parts.writer.close(timeout=0)
        await away.__aexit__()


async def test_a_request_that_needs_an_unreachable_database_is_503(web):
    client, parts = web
    good = parts.store
    parts.replace(store=Store(UNREACHABLE_DB))
    try:
        resp = await client.put("/api/lines/0612345001/override", headers=bearer(ADMIN),
                                json={"state": "closed", "until": "2026-12-01T12:00",
                                      "reason": "allagamento"})
        assert resp.status == 503 and resp.headers["Retry-After"] == "30"
        assert (await resp.json())["error"] == ("the database cannot be reached now: nothing "
                                                "was stored, try again shortly")
        lines = await (await client.get("/api/lines", headers=bearer(ADMIN))).json()
        assert lines[0]["open"] and lines[0]["override"] is None  # nothing was forced
        resp = await client.get("/api/lines/0612345001/overrides", headers=bearer(ADMIN))
        assert resp.status == 503
    finally:
        await parts.store.__aexit__()
        parts.replace(store=good)


async def test_a_caller_talking_to_an_agent_is_one_call_in_progress(web):
    client, parts = web
    session = object()
    # What calls do: the caller's channel (service._start_session) and the agent's leg
    # (AgentLeg) both lead to the one session.
    parts.registry.channels["caller-channel"] = session  # type: ignore[assignment]
    parts.registry.channels["agent-leg-channel"] = session  # type: ignore[assignment]
    assert (await (await client.get("/healthz")).json())["calls_in_progress"] == 1
    assert (await scrape(client))[("centralino_active_calls", ())] == 1


# --- /metrics -----------------------------------------------------------------------------------

async def test_metrics_show_who_waits_and_the_agents_by_state(web):
    client, parts = web
    parts.caller_waits("c1", "tributi", seconds_ago=75)
    parts.caller_waits("c2", "tributi", seconds_ago=15)
    await client.post("/api/agents/1003/login", headers=bearer(token("1003")))
    got = await scrape(client)
    assert got[("centralino_queue_waiting", (("topic", "tributi"),))] == 2
    assert got[("centralino_queue_waiting", (("topic", "suap"),))] == 0
    assert got[("centralino_queue_longest_wait_seconds", (("topic", "tributi"),))] == 75
    assert got[("centralino_agents", (("state", "available"),))] == 1
    assert got[("centralino_agents", (("state", "logged_out"),))] == 4
    assert got[("centralino_queue_agents", (("state", "available"), ("topic", "anagrafe")))] == 1
    assert got[("centralino_database_up", ())] == 1
    # A caller gone is gone from the next scrape.
    parts.queues.leave("c1")
    got = await scrape(client)
    assert got[("centralino_queue_waiting", (("topic", "tributi"),))] == 1


async def test_metrics_need_the_metrics_token_once_one_is_set(tmp_path):
    async with web_parts(tmp_path, {"CENTRALINO_HTTP__METRICS_TOKEN": METRICS_TOKEN}) as (
            client, _):
        for headers in ({}, bearer("wrong"), bearer(SUPERVISOR)):
            resp = await client.get("/metrics", headers=headers)
            assert resp.status == 401, headers
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        for secret in (METRICS_TOKEN, ADMIN):
            assert ("centralino_active_calls", ()) in await scrape(client, **bearer(secret))


async def test_more_scrapes_than_allowed_from_one_address_get_429(web):
    client, parts = web
    for _ in range(SCRAPES_PER_10S):
        await scrape(client)
    resp = await client.get("/metrics")
    assert (resp.status, resp.headers["Retry-After"]) == (429, "10")
    assert (await resp.json())["error"] == f"at most {SCRAPES_PER_10S} scrapes in 10 s"
    parts.clock.advance(10)
    assert await scrape(client)


# --- prompt files for Asterisk -----------------------------------------------------------------

async def test_prompt_files_are_served_and_cached_only_under_their_own_digest(web, tmp_path):
    client, parts = web
    audio = b"RIFF....WAVEfmt " + bytes(64)
    path = tmp_path / "welcome.wav"
    path.write_bytes(audio)
    digest = hashlib.sha256(audio).hexdigest()
    parts.catalog.built["it/welcome"] = BuiltPrompt("welcome", "it", "recording", path, digest,
                                                    1.0)
    resp = await client.get(f"/prompts/it/{digest[:16]}/welcome.wav")
    assert resp.status == 200 and await resp.read() == audio
    assert resp.headers["Content-Type"] == "audio/wav"
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    # An older digest (a call started before a reload) gets today's file, never cached.
    resp = await client.get("/prompts/it/0123456789abcdef/welcome.wav")
    assert (resp.status, resp.headers["Cache-Control"]) == (200, "no-store")
    resp = await client.get("/prompts/it/0123456789abcdef/nothing.wav")
    assert (resp.status, (await resp.json())["error"]) == (404, "no such prompt")
    path.unlink()  # built once, gone since
    assert (await client.get(f"/prompts/it/{digest[:16]}/welcome.wav")).status == 404


# --- reload ------------------------------------------------------------------------------------

async def test_reload_answers_the_new_version(web):
    client, parts = web
    for secret, status in ((SUPERVISOR, 403), (token("1001"), 403)):
        assert (await client.post("/api/admin/reload", headers=bearer(secret))).status == status
    assert parts.reloads == 0
    resp = await client.post("/api/admin/reload", headers=bearer(ADMIN))
    assert resp.status == 200
    body = await resp.json()
    assert body["version"] == parts.config.version and isinstance(body["warnings"], list)
    assert parts.reloads == 1


async def test_a_broken_configuration_is_refused_with_its_problems_and_the_running_one_stays(
        web, tmp_path):
    client, parts = web
    running = parts.config
    queues = tmp_path / "config" / "queues.yaml"
    text = queues.read_text(encoding="utf-8")
    line = text[:text.index("    service_level: 30")].count("\n") + 1
    queues.write_text(text.replace("    service_level: 30", "    service_level: trenta", 1),
                      encoding="utf-8")
    resp = await client.post("/api/admin/reload", headers=bearer(ADMIN))
    assert resp.status == 422
    body = await resp.json()
    assert body["error"] == "configuration refused; the running one stays"
    assert body["running_version"] == running.version
    [problem] = body["problems"]  # file:line:column: field: what is wrong
    assert f"{queues}:{line}:" in problem and "suap.service_level" in problem, problem


async def test_a_reload_keeps_agents_states_and_drops_those_removed(web, tmp_path):
    client, _ = web
    for agent_id in ("1001", "1005"):
        await client.post(f"/api/agents/{agent_id}/login", headers=bearer(SUPERVISOR))
    agents = tmp_path / "config" / "agents.yaml"
    text = agents.read_text(encoding="utf-8")
    start, end = text.index('  "1005":'), text.index("\nsupervisors:")
    agents.write_text(text[:start].replace("Giulia Rossi", "Giulia Rossi Verdi")
                      + text[end:], encoding="utf-8")
    resp = await client.post("/api/admin/reload", headers=bearer(ADMIN))
    assert resp.status == 200
    listed = await (await client.get("/api/agents", headers=bearer(SUPERVISOR))).json()
    assert [(a["id"], a["name"], a["state"]) for a in listed][:1] == [
        ("1001", "Giulia Rossi Verdi", "available")]
    assert "1005" not in [a["id"] for a in listed]
    resp = await client.get("/api/agents/1005", headers=bearer(SUPERVISOR))
    assert resp.status == 404
    # Their token is gone with them.
    assert (await client.get("/api/agents/1005", headers=bearer(token("1005")))).status == 401


# --- ARI latency (benchmarks) -----------------------------------------------------------------

async def test_ari_latency_percentiles_and_reset(web):
    client, parts = web
    url = "/api/admin/ari-latency"
    assert (await client.get(url, headers=bearer(SUPERVISOR))).status == 403
    assert await (await client.get(url, headers=bearer(ADMIN))).json() == {"count": 0}
    parts.ari.reaction_samples.extend((n / 1000, n / 4000) for n in range(1, 101))  # 1-100 ms
    body = await (await client.get(url + "?reset=1", headers=bearer(ADMIN))).json()
    assert body["count"] == 100
    assert body["wall"]["max_ms"] == pytest.approx(100)
    assert body["wall"]["p50_ms"] == pytest.approx(50.5)
    assert body["cpu"]["p99_ms"] == pytest.approx(99.01 / 4)
    assert await (await client.get(url, headers=bearer(ADMIN))).json() == {"count": 0}
    parts.ari.reaction_samples.append((0.007, 0.001))  # a single sample is every percentile
    body = await (await client.get(url, headers=bearer(ADMIN))).json()
    assert body["wall"] == pytest.approx({"p50_ms": 7, "p90_ms": 7, "p99_ms": 7, "max_ms": 7})
    assert "samples_ms" not in body
    body = await (await client.get(url + "?samples=1", headers=bearer(ADMIN))).json()
    assert body["samples_ms"] == [[7, 1]]  # each (wall, cpu), for a bench's windows


# --- lines and their overrides -----------------------------------------------------------------

async def lines(client: Client) -> dict[str, dict[str, Any]]:
    resp = await client.get("/api/lines", headers=bearer(SUPERVISOR))
    assert resp.status == 200
    return {line["number"]: line for line in await resp.json()}


async def test_lines_follow_their_opening_hours(web):
    client, parts = web
    now = await lines(client)
    assert set(now) == set(parts.config.call.flows)
    line = now["0612345001"]
    assert (line["name"], line["open"], line["why"], line["override"]) == (
        "Associazioni di categoria", True, "open", None)
    parts.clock.at = NOW.replace(hour=13)  # 14:00 in Rome: after lunch the office is open...
    assert (await lines(client))["0612345001"]["open"]
    parts.clock.at = NOW.replace(hour=12)  # ... 13:00: lunch break (the extended line is open)
    at_lunch = await lines(client)
    assert (at_lunch["0612345001"]["open"], at_lunch["0612345001"]["why"]) == (False, "hours")
    assert at_lunch["0612345003"]["open"]
    assert (await client.get("/api/lines", headers=bearer(token("1001")))).status == 403


async def test_an_override_closes_a_line_until_it_is_cleared(web):
    client, parts = web
    resp = await client.put("/api/lines/0612345001/override", headers=bearer(ADMIN), json={
        "state": "closed", "until": "2026-12-01T18:00", "reason": "allagamento",
        "by": "sindaco"})
    assert resp.status == 200
    forced = {"state": "closed", "until": "2026-12-01T18:00:00+01:00", "reason": "allagamento",
              "by": "sindaco"}
    assert await resp.json() == forced  # a time without offset is Italian local time
    assert parts.override_calls == [("set", "0612345001", "closed", "2026-12-01T18:00:00+01:00",
                                     "allagamento", "sindaco")]
    line = (await lines(client))["0612345001"]
    assert (line["open"], line["why"], line["detail"], line["override"]) == (
        False, "override", "allagamento", forced)
    assert (await lines(client))["0612345002"]["open"]  # the others are not touched
    parts.clock.advance(600)
    resp = await client.delete("/api/lines/0612345001/override?by=prefetto",
                               headers=bearer(ADMIN))
    assert (resp.status, await resp.json()) == (200, {"cleared": True})
    line = (await lines(client))["0612345001"]
    assert (line["open"], line["why"], line["override"]) == (True, "open", None)
    resp = await client.delete("/api/lines/0612345001/override", headers=bearer(ADMIN))
    assert await resp.json() == {"cleared": False}  # nothing left to clear
    history = await (await client.get("/api/lines/0612345001/overrides",
                                      headers=bearer(ADMIN))).json()
    assert [(h["state"], h["reason"], h["set_by"], h["set_at"], h["cleared_by"],
             h["cleared_at"]) for h in history] == [
        ("closed", "allagamento", "sindaco", NOW.isoformat(), "prefetto",
         (NOW + timedelta(seconds=600)).isoformat())]


async def test_an_override_ends_by_itself_at_its_time(web):
    client, parts = web
    until = NOW.astimezone(LOCAL).replace(hour=19)  # the office closes at 17:00
    resp = await client.put("/api/lines/0612345002/override", headers=bearer(ADMIN), json={
        "state": "open", "until": until.isoformat(), "reason": "scadenza TARI"})
    assert resp.status == 200 and (await resp.json())["by"] == "api"
    parts.clock.at = until.replace(hour=18)
    line = (await lines(client))["0612345002"]
    assert (line["open"], line["why"], line["detail"]) == (True, "override", "scadenza TARI")
    parts.clock.at = until
    line = (await lines(client))["0612345002"]
    assert (line["open"], line["why"], line["override"]) == (False, "hours", None)


@pytest.mark.parametrize("number, body, status, says", [
    ("0612345001", {"state": "closed", "until": "2026-12-01T09:00", "reason": "allagamento"},
     400, "until: must be in the future"),
    ("0612345001", {"state": "ajar", "until": "2026-12-02T09:00", "reason": "allagamento"},
     422, "state: Input should be 'open' or 'closed'"),
    ("0612345001", {"state": "closed", "until": "2026-12-02T09:00", "reason": "no"},
     422, "reason: String should have at least 3 characters"),
    ("0612345001", {"state": "closed", "until": "domani", "reason": "allagamento"},
     422, "until: Input should be a valid datetime"),
    ("0612345001", {"state": "closed"}, 422, "until: Field required"),
    ("0699999999", {"state": "closed", "until": "2026-12-02T09:00", "reason": "allagamento"},
     404, "no line with number 0699999999"),
])
async def test_a_wrong_override_is_refused_and_changes_nothing(web, number, body, status, says):
    client, parts = web
    resp = await client.put(f"/api/lines/{number}/override", json=body, headers=bearer(ADMIN))
    assert resp.status == status
    assert (await resp.json())["error"].startswith(says)
    assert parts.override_calls == [] and parts.overrides == {}


async def test_only_the_admin_forces_lines(web):
    client, parts = web
    body = {"state": "closed", "until": "2026-12-02T09:00", "reason": "allagamento"}
    for secret in (SUPERVISOR, token("1001")):
        resp = await client.put("/api/lines/0612345001/override", json=body,
                                headers=bearer(secret))
        assert resp.status == 403
        resp = await client.delete("/api/lines/0612345001/override", headers=bearer(secret))
        assert resp.status == 403
    assert (await client.delete("/api/lines/0699/override", headers=bearer(ADMIN))).status == 404
    assert parts.override_calls == []


# --- call records ------------------------------------------------------------------------------

async def test_call_records_are_found_by_number_caller_and_channel(web):
    client, parts = web
    for n, (number, caller) in enumerate([("0612345001", "3471234567"),
                                          ("0612345002", "3479999999")]):
        parts.clock.advance(60)
        parts.records.call_started(NewCall(
            id=f"call{n}", channel_id=f"chan-{n}", number=number, line="linea",
            caller_number=caller, caller_name="", config_version=parts.config.version,
            started_at=parts.clock.now()))
        parts.records.call_step(f"call{n}", 1, parts.clock.now(), "menu", "main", "1",
                                "menu_associazioni", "")
    parts.records.call_changed("call0", outcome="abandoned", topic="suap")
    parts.records.call_changed("call1", outcome="answered", topic="suap",
                               queued_at=parts.clock.now(), agent_id="1001",
                               connected_at=parts.clock.now() + timedelta(seconds=42))
    # Read right after: what was just done is there.
    resp = await client.get("/api/calls", headers=bearer(SUPERVISOR))
    assert resp.status == 200 and "X-Records-Waiting" not in resp.headers
    assert [c["id"] for c in await resp.json()] == ["call1", "call0"]  # newest first
    for query, found in [("number=0612345001", ["call0"]), ("caller=3479999999", ["call1"]),
                         ("channel_id=chan-1", ["call1"]), ("limit=1", ["call1"]),
                         ("number=0600", [])]:
        calls = await (await client.get(f"/api/calls?{query}", headers=bearer(ADMIN))).json()
        assert [c["id"] for c in calls] == found, query
    call = await (await client.get("/api/calls/call0", headers=bearer(ADMIN))).json()
    assert (call["outcome"], call["topic"], call["caller_number"]) == (
        "abandoned", "suap", "3471234567")
    assert [(s["kind"], s["node"], s["key"]) for s in call["steps"]] == [("menu", "main", "1")]
    assert (call["agent_id"], call["connected_at"], call["legs"]) == (None, None, [])  # nobody
    answered = await (await client.get("/api/calls/call1", headers=bearer(ADMIN))).json()
    queued = datetime.fromisoformat(answered["queued_at"])
    assert answered["agent_id"] == "1001"  # who took it, and after how long in the line
    assert datetime.fromisoformat(answered["connected_at"]) - queued == timedelta(seconds=42)
    resp = await client.get("/api/calls/nope", headers=bearer(ADMIN))
    assert (resp.status, (await resp.json())["error"]) == (404, "no such call")
    assert (await client.get("/api/calls", headers=bearer(token("1001")))).status == 403


@pytest.mark.parametrize("limit", ["0", "501", "-1", "dieci"])
async def test_a_limit_out_of_range_is_400(web, limit):
    client, _ = web
    resp = await client.get(f"/api/calls?limit={limit}", headers=bearer(ADMIN))
    assert (resp.status, (await resp.json())["error"]) == (
        400, "limit: a whole number from 1 to 500")


async def test_queues_list_who_waits(web):
    client, parts = web
    parts.caller_waits("c1", "anagrafe", seconds_ago=30, caller="3471234567")
    resp = await client.get("/api/queues", headers=bearer(SUPERVISOR))
    assert resp.status == 200
    assert [(w["call_id"], w["waited"], w["ringing"]) for w in (await resp.json())["anagrafe"]
            ] == [("c1", 30.0, None)]
    assert (await client.get("/api/queues", headers=bearer(token("1003")))).status == 403


# --- the console's files -------------------------------------------------------------------------

async def test_the_console_pages_are_public_and_framed_by_nobody(web):
    client, _ = web
    resp = await client.get("/console", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/console/")
    for page in ("/console/", "/console/supervisor.html"):
        resp = await client.get(page)
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    resp = await client.get("/console/console.js")
    assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/console/secrets.yaml")).status == 404
