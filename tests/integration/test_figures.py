"""Figures from real calls through the real Asterisk: one caller answered after a wait, one
who gives up, one who hangs up at once; the report, the queue_log export and /metrics."""

from __future__ import annotations

import asyncio
import random
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
from ruamel.yaml import YAML

from tests.integration.conftest import REPO, TEST_SETTINGS, record_of, settings_for
from tests.integration.desk_api import staff, stored_attempts, stored_queue_log
from tests.integration.test_agents import until_talking

DIRECT = "0999000002"  # straight to queue beta (agents 1001 and 1003)
API = "http://127.0.0.1:18081"
ADMIN = {"Authorization": "Bearer test-admin-token"}


def beta_thresholds(tmp_path: Path, service_level: float, short_abandon: float) -> Path:
    """A copy of the test configuration with beta's figure thresholds set."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    yaml = YAML()
    queues = yaml.load(config / "queues.yaml")
    queues["queues"]["beta"].update(service_level=service_level, short_abandon=short_abandon)
    yaml.dump(queues, config / "queues.yaml")
    return config / "centralino.yaml"


def a_day_of_our_own() -> datetime:
    """The database outlives the test and other tests run at 2026-12-01: a random day of
    the 2030s at 10:00 keeps "today" ours alone."""
    return datetime(random.randrange(2030, 2040), random.randrange(1, 13),
                    random.randrange(1, 29), 10, 0)


def gauge(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from Prometheus' text format (labels in any order); None if absent."""
    for found in re.finditer(rf"^{name}{{(.*)}} (\S+)$", text, re.M):
        if dict(re.findall(r'(\w+)="([^"]*)"', found.group(1))) == labels:
            return float(found.group(2))
    return None


async def test_figures_queue_log_and_metrics_from_real_calls(start_service, desk, caller, phones,
                                                             tmp_path):
    settings = settings_for(beta_thresholds(tmp_path, service_level=10, short_abandon=1.5),
                            CENTRALINO_PROMPTS__BUILD_DIR=str(REPO / "var" / "test-prompts"))
    service = await start_service(at=a_day_of_our_own(), settings=settings)
    await staff(desk)  # nobody: callers wait
    phones.set("1003", "answer", delay=0.1)
    async with aiohttp.ClientSession() as http:
        answered = await caller.dial(DIRECT, caller_number="0611111111")
        await answered.wait_idle()
        gives_up = await caller.dial(DIRECT, caller_number="0622222222")
        await gives_up.wait_idle()

        # Live, while two callers wait.
        async with http.get(f"{API}/metrics") as r:
            metrics = await r.text()
        assert gauge(metrics, "centralino_queue_waiting", topic="beta") == 2
        assert gauge(metrics, "centralino_queue_longest_wait_seconds", topic="beta") >= 0.4
        async with http.get(f"{API}/api/figures", headers=ADMIN) as r:
            assert r.status == 200
            live = (await r.json())["live"]
        assert (live["topics"]["beta"]["waiting"], live["topics"]["beta"]["ringing"]) == (2, 0)
        assert live["topics"]["beta"]["agents"]["logged_out"] == 3  # 1001, 1003 and 1004 serve beta

        await asyncio.sleep(2.0)  # real waiting in the line: the abandon's wait, measured
        await gives_up.hangup()  # waited about 2.5 s: an abandon (short_abandon is 1.5 s)
        hasty = await caller.dial(DIRECT, caller_number="0633333333")
        await hasty.wait_idle(quiet=0.2)
        await hasty.hangup()  # within 1.5 s: a short abandon

        await staff(desk, "1003")
        ring = await phones.wait_answered("1003")
        await until_talking(desk, "1003")
        await asyncio.sleep(1.0)  # a real conversation: the figures' handling time (aht_avg)
        await phones.hang_up(ring)  # the agent ends the call; 1 s wrap-up (queues.yaml)
        records = [await record_of(service, c) for c in (answered, gives_up, hasty)]
        await desk.until_state("1003", "available", timeout=5, poll=0.05)
        waits = {}
        for record in records:  # the export has whole seconds: the stored times, to the µs
            log = await stored_queue_log(service, record.id)
            waits[record.id] = (log[-1].event, (log[1].at - log[0].at).total_seconds())
        ids = [r.id for r in records]
        assert [w[0] for w in waits.values()] == ["COMPLETEAGENT", "ABANDON", "ABANDON"]
        wait_answered = waits[ids[0]][1]
        assert 2.5 < wait_answered < 10  # within beta's service level of 10 s
        assert waits[ids[1]][1] >= 1.5 > waits[ids[2]][1], waits

        async with http.get(f"{API}/api/figures", headers=ADMIN) as r:
            assert r.status == 200
            body = await r.json()
        beta = body["topics"]["beta"]
        assert {k: beta[k] for k in ("offered", "answered", "abandoned", "short_abandoned",
                                     "unfinished", "answered_within_service_level")} == {
            "offered": 3, "answered": 1, "abandoned": 1, "short_abandoned": 1, "unfinished": 0,
            "answered_within_service_level": 1}
        assert beta["service_level_pct"] == 50.0  # 1 of (3 offered - 1 short abandon)
        assert abs(beta["asa_avg"] - wait_answered) < 0.1 and beta["asa_p90"] == beta["asa_avg"]
        assert 0.9 < beta["aht_avg"] < 3
        assert 0.9 < beta["wrap_up_avg"] < 2
        assert body["lines"]["Test direct line"]["offered"] == 3
        assert body["lines"]["Test direct line"]["numbers"] == [DIRECT]
        assert body["total"]["offered"] == 3 and body["total"]["service_level_pct"] == 50.0
        assert body["settings"]["beta"] == {"name": "Beta", "service_level": 10,
                                            "short_abandon": 1.5}
        assert body["live"]["topics"]["beta"]["waiting"] == 0
        assert body["live"]["topics"]["beta"]["agents"]["available"] == 1

        # Another topic on the same line; a day with nothing.
        async with http.get(f"{API}/api/figures", headers=ADMIN,
                            params={"topic": "alpha", "line": DIRECT}) as r:
            alpha = await r.json()
        assert list(alpha["topics"]) == ["alpha"] and alpha["topics"]["alpha"]["offered"] == 0
        assert list(alpha["live"]["topics"]) == ["alpha"]
        async with http.get(f"{API}/api/figures", headers=ADMIN,
                            params={"from": "2029-01-01", "to": "2029-01-01"}) as r:
            assert (await r.json())["total"]["offered"] == 0

        # The history as Asterisk's queue_log file.
        async with http.get(f"{API}/api/queue_log", headers=ADMIN) as r:
            assert r.status == 200 and r.content_type == "text/plain"
            lines = (await r.text()).splitlines()
        fields = [line.split("|") for line in lines]
        assert [(f[1], f[4]) for f in fields] == [
            (ids[0], "ENTERQUEUE"), (ids[1], "ENTERQUEUE"), (ids[1], "ABANDON"),
            (ids[2], "ENTERQUEUE"), (ids[2], "ABANDON"), (ids[0], "CONNECT"),
            (ids[0], "COMPLETEAGENT")]
        epochs = [int(f[0]) for f in fields]
        assert epochs == sorted(epochs)
        assert abs(epochs[0] - desk.now().timestamp()) < 60
        assert {f[2] for f in fields} == {"beta"}
        enter, connect, complete = fields[0], fields[5], fields[6]
        assert (enter[3], enter[5:7]) == ("NONE", ["", "0611111111"])  # url|callerid|position
        assert connect[3] == "1003" and int(connect[5]) == round(wait_answered)
        assert complete[3] == "1003" and int(complete[6]) >= 1  # talk time
        assert 1 <= int(fields[2][7]) < 5  # ABANDON position|origposition|waittime

        async with http.get(f"{API}/metrics") as r:
            metrics = await r.text()
        assert gauge(metrics, "centralino_today_offered", topic="beta") == 3
        assert gauge(metrics, "centralino_today_answered", topic="beta") == 1
        assert gauge(metrics, "centralino_today_short_abandoned", topic="beta") == 1
        assert gauge(metrics, "centralino_today_service_level_ratio", topic="beta") == 0.5
        assert gauge(metrics, "centralino_today_service_level_ratio", topic="alpha") is None
        assert gauge(metrics, "centralino_queue_waiting", topic="beta") == 0
        assert gauge(metrics, "centralino_queue_agents", topic="beta", state="available") == 1
        assert gauge(metrics, "centralino_agents", state="available") == 1


async def test_who_may_read_figures_and_what_is_refused(start_service):
    await start_service()
    async with aiohttp.ClientSession() as http:
        for path in ("/api/figures", "/api/queue_log"):
            async with http.get(f"{API}{path}") as r:
                assert r.status == 401
            async with http.get(f"{API}{path}", headers={"Authorization": "Bearer dev-1001"}) as r:
                assert r.status == 403  # an agent
            async with http.get(f"{API}{path}", headers={"Authorization": "Bearer dev-sup"}) as r:
                assert r.status == 200  # a supervisor
            async with http.get(f"{API}{path}", headers=ADMIN, params={"from": "ieri"}) as r:
                assert r.status == 400 and "from:" in (await r.json())["error"]
            async with http.get(f"{API}{path}", headers=ADMIN,
                                params={"from": "2026-12-02", "to": "2026-12-01"}) as r:
                assert r.status == 400 and "must be before" in (await r.json())["error"]
        async with http.get(f"{API}/api/figures", headers=ADMIN, params={"topic": "tributi"}) as r:
            assert r.status == 404 and "tributi" in (await r.json())["error"]


async def test_a_caller_moved_to_another_topic_counts_in_both_and_once_in_total(
        start_service, desk, caller, phones, tmp_path):
    """omega's max_wait (3 s here) sends the caller to alpha, where 1002 answers."""
    config = beta_thresholds(tmp_path, service_level=10, short_abandon=1.5)
    yaml = YAML()
    queues = yaml.load(config.parent / "queues.yaml")
    queues["queues"]["omega"]["max_wait"]["seconds"] = 3
    yaml.dump(queues, config.parent / "queues.yaml")
    settings = settings_for(config,
                            CENTRALINO_PROMPTS__BUILD_DIR=str(REPO / "var" / "test-prompts"))
    service = await start_service(at=a_day_of_our_own(), settings=settings)
    await staff(desk, "1003", "1002")
    await desk.pause("1003", "busy")  # logged in: omega takes callers
    phones.set("1002", "answer", delay=0.5)
    call = await caller.dial("0999000004", caller_number="0640000000")
    ring = await phones.wait_answered("1002", timeout=20)
    await until_talking(desk, "1002")
    await phones.hang_up(ring)
    record = await record_of(service, call)
    assert (record.outcome, record.topic) == ("answered", "alpha")
    async with (aiohttp.ClientSession() as http,
                http.get(f"{API}/api/figures", headers=ADMIN) as r):
        body = await r.json()
    omega, alpha, total = body["topics"]["omega"], body["topics"]["alpha"], body["total"]
    assert (omega["offered"], omega["answered"], omega["exited"]) == (
        1, 0, {"EXITWITHTIMEOUT": 1})
    assert omega["service_level_pct"] == 0
    # In alpha the caller waited only for 1002 to pick up; the caller waited 3 s more in all.
    assert (alpha["offered"], alpha["answered"]) == (1, 1) and alpha["asa_avg"] < 2.5
    assert (total["offered"], total["answered"], total["exited"]) == (1, 1, {})
    assert total["asa_avg"] >= alpha["asa_avg"] + 3
    assert body["lines"]["Test rules line"]["offered"] == 1


async def test_recall_figures_from_real_recalls(start_service, desk, phones, citizens):
    """One recall answered at the first call, one always busy until it fails, one cancelled:
    what the supervisor reads in /api/figures and Prometheus."""
    from tests.integration.test_recalls_placed import API as RECALLS
    from tests.integration.test_recalls_placed import PORTAL, ask, bridged, status_is
    year, month, week = random.randrange(2030, 2200), random.choice((3, 9, 10)), random.randrange(3)
    tuesday = next(datetime(year, month, d, 10, 0) for d in range(8 + 7 * week, 15 + 7 * week)
                   if datetime(year, month, d).weekday() == 1)  # office hours, no holiday
    service = await start_service(at=tuesday)  # PostgreSQL in CI; the day is ours alone
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    answered_id, answered = await ask()
    citizens.set(answered, "answer", delay=0.1)
    ring = await citizens.wait_answered(answered)
    await bridged(desk, answered_id)
    await asyncio.sleep(3)  # a conversation: the wait for the first call must not include it
    await citizens.hang_up(ring)
    await status_is(desk, answered_id, "done")
    busy_id, busy = await ask()
    citizens.set(busy, "refuse")
    slot = (desk.now().replace(microsecond=0) + timedelta(hours=1)).isoformat()
    later_id, _ = await ask(mode="back", slot=slot)
    async with aiohttp.ClientSession() as http:
        async with http.delete(f"{RECALLS}/{later_id}", headers=PORTAL) as r:
            assert r.status == 200
        await status_is(desk, busy_id, "failed", timeout=30)

        async with http.get(f"{API}/api/figures?topic=beta", headers=ADMIN) as r:
            assert r.status == 200
            recalls = (await r.json())["recalls"]
        beta = recalls["topics"]["beta"]
        assert recalls["total"] == beta
        assert beta["requests"] == 3
        assert beta["by_status"] == {"waiting": 0, "calling": 0, "done": 1, "failed": 1,
                                     "cancelled": 1, "expired": 0}
        assert beta["by_mode"] == {"now": 2, "back": 1, "queue": 0}
        assert beta["attempts"] == {"answered": 1, "busy": 3}
        assert beta["attempts_per_success"] == 1.0
        assert beta["first_attempt_count"] == 2
        # From the request to the citizen's phone ringing (agent rung and answered first),
        # as stored with the attempts (dialled_at: not in the API): not to the end of the 3 s
        # conversation.
        waits = []
        for recall_id in (answered_id, busy_id):
            created_at = datetime.fromisoformat((await desk.recall(recall_id))["created_at"])
            first = (await stored_attempts(service, recall_id))[0]
            assert first.at - first.dialled_at >= timedelta(seconds=3 if
                                                            recall_id == answered_id else 0)
            waits.append((first.dialled_at - created_at).total_seconds())
        assert 0 < beta["first_attempt_avg"] == round(sum(waits) / 2, 1) < 3

        async with http.get(f"{API}/metrics") as r:
            metrics = await r.text()
    assert gauge(metrics, "centralino_today_recall_requests", topic="beta", status="done") == 1
    assert gauge(metrics, "centralino_today_recall_requests", topic="beta",
                 status="cancelled") == 1
    assert gauge(metrics, "centralino_today_recall_attempts", topic="beta", outcome="busy") == 3
    assert gauge(metrics, "centralino_today_recall_attempts_per_success", topic="beta") == 1
    assert gauge(metrics, "centralino_today_recall_first_attempt_seconds",
                 topic="beta") == beta["first_attempt_avg"]
    assert gauge(metrics, "centralino_today_recall_attempts_per_success", topic="alpha") is None


async def test_recall_figures_of_the_requests_made_in_the_period(start_service):
    """Requests and attempts stored as the service stores them (no call placed): which ones
    a day's figures take (made that day, attempts whenever), per topic, in /api/figures and
    in Prometheus. One made just before midnight belongs to the day before."""
    from centralino.storage.models import RecallAttempt, RecallRequest
    from ivr.clock import aware

    day = datetime(random.randrange(2200, 2400), random.randrange(1, 13),
                   random.randrange(2, 29))  # years no other test's recalls use
    at = lambda hh, mm, ss=0, d=day: aware(d.replace(hour=hh, minute=mm, second=ss))  # noqa: E731
    service = await start_service(at=day.replace(hour=10))
    rows = [  # id, topic, mode, status, created, slot, counted attempts, [(end, outcome)]
        ("a", "alpha", "now", "done", at(8, 0), None, 2,
         [(at(8, 1), "agent_missed"), (at(8, 2), "no_answer"), (at(8, 20), "answered")]),
        ("b", "alpha", "back", "waiting", at(8, 30), at(14, 0), 0, []),  # its slot is later
        ("c", "beta", "back", "done", at(7, 0), at(9, 0), 1, [(at(9, 4), "answered")]),
        ("d", "beta", "now", "failed", at(9, 0), None, 3,  # retried: due_at is the last one
         [(at(9, 0, 30), "busy"), (at(9, 15), "no_answer"), (at(9, 30), "no_answer")]),
        ("e", "beta", "queue", "cancelled", at(9, 40), None, 0, [(at(9, 41), "agent_left")]),
        # made the day before, called today: yesterday's
        ("f", "beta", "now", "done", at(23, 50, d=day - timedelta(days=1)), None, 1,
         [(at(0, 5), "answered")]),
    ]
    dialled = {("c", at(9, 4)): at(9, 0, 45)}  # rang 45 s after its slot, then talked
    tag = f"{random.getrandbits(40):x}"
    # Seeded straight into the database: no API makes requests dated in the past.
    async with service.store.sessions.begin() as s:
        for n, (key, topic, mode, status, created, slot, counted, attempts) in enumerate(rows):
            due = attempts[-1][0] if attempts else slot or created
            s.add(RecallRequest(
                id=f"{tag}{key}", number=f"+3906{n}{random.randrange(10**6, 10**7)}",
                number_type="fixed_line", topic=topic, mode=mode, slot_at=slot, name="Test",
                portal_ref=None, client="test", status=status, created_at=created,
                updated_at=due, due_at=due, attempts=counted))
        await s.flush()
        for key, *_, attempts in rows:
            s.add_all(RecallAttempt(request_id=f"{tag}{key}", at=when, outcome=outcome,
                                    dialled_at=dialled.get((key, when)))
                      for when, outcome in attempts)

    async with aiohttp.ClientSession() as http:
        async with http.get(f"{API}/api/figures", headers=ADMIN) as r:
            assert r.status == 200
            body = await r.json()
        recalls = body["recalls"]
        assert set(body) >= {"total", "topics", "lines", "topic_lines", "settings", "live"}
        alpha, beta, total = recalls["topics"]["alpha"], recalls["topics"]["beta"], recalls["total"]
        assert alpha == {
            "requests": 2,
            "by_status": {"waiting": 1, "calling": 0, "done": 1, "failed": 0, "cancelled": 0,
                          "expired": 0},
            "by_mode": {"now": 1, "back": 1, "queue": 0},
            "attempts": {"agent_missed": 1, "answered": 1, "no_answer": 1},
            "first_attempt_count": 1, "first_attempt_avg": 120.0, "first_attempt_p90": 120.0,
            "attempts_per_success": 2.0}
        assert beta["requests"] == 3  # not f
        assert beta["by_status"] == {"waiting": 0, "calling": 0, "done": 1, "failed": 1,
                                     "cancelled": 1, "expired": 0}
        assert beta["by_mode"] == {"now": 1, "back": 1, "queue": 1}
        assert beta["attempts"] == {"agent_left": 1, "answered": 1, "busy": 1, "no_answer": 2}
        # c: 45 s after its slot (not after it was asked); d: 30 s; e: never called
        assert (beta["first_attempt_count"], beta["first_attempt_avg"],
                beta["first_attempt_p90"]) == (2, 37.5, 45.0)
        assert beta["attempts_per_success"] == 1.0
        assert (total["requests"], total["first_attempt_count"]) == (5, 3)
        assert (total["first_attempt_avg"], total["first_attempt_p90"]) == (65.0, 120.0)
        assert total["attempts_per_success"] == 1.5

        async with http.get(f"{API}/api/figures", headers=ADMIN, params={"topic": "alpha"}) as r:
            only = (await r.json())["recalls"]
        assert only == {"total": alpha, "topics": {"alpha": alpha}}
        yesterday = (day - timedelta(days=1)).date().isoformat()
        async with http.get(f"{API}/api/figures", headers=ADMIN,
                            params={"from": yesterday, "to": yesterday}) as r:
            before = (await r.json())["recalls"]
        assert list(before["topics"]) == ["beta"] and before["total"]["requests"] == 1
        assert before["total"]["attempts"] == {"answered": 1}
        assert before["total"]["first_attempt_avg"] == 900.0  # 23:50 to 00:05

        async with http.get(f"{API}/metrics") as r:
            metrics = await r.text()
    for topic, figures in (("alpha", alpha), ("beta", beta)):
        for status, n in figures["by_status"].items():
            assert gauge(metrics, "centralino_today_recall_requests", topic=topic,
                         status=status) == n
        for outcome, n in figures["attempts"].items():
            assert gauge(metrics, "centralino_today_recall_attempts", topic=topic,
                         outcome=outcome) == n
    assert gauge(metrics, "centralino_today_recall_attempts", topic="beta",
                 outcome="agent_missed") == 0  # every outcome has its series
    assert gauge(metrics, "centralino_today_recall_first_attempt_seconds", topic="alpha") == 120
    assert gauge(metrics, "centralino_today_recall_first_attempt_seconds", topic="beta") == 37.5
    assert gauge(metrics, "centralino_today_recall_attempts_per_success", topic="alpha") == 2
    assert gauge(metrics, "centralino_today_recall_attempts_per_success", topic="beta") == 1
    # A topic with no requests today: zero requests, and no average rather than a fake 0.
    assert gauge(metrics, "centralino_today_recall_requests", topic="omega", status="done") == 0
    assert gauge(metrics, "centralino_today_recall_first_attempt_seconds", topic="omega") is None
    assert gauge(metrics, "centralino_today_recall_attempts_per_success", topic="omega") is None
