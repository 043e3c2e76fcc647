"""Figures from hand-built queue_log rows: what a supervisor reads off the report (service
level without short abandons, p90, calls moved between topics, lines, the estimate's error),
the queue_log export format, the live state and the period parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from centralino.figures.compute import (
    AttemptRow,
    LogRow,
    RecallRow,
    Thresholds,
    build_visits,
    live,
    p90,
    queue_log_line,
    recall_report,
    report,
    topic_figures,
)
from centralino.figures.http import period
from cti.agents import Agent, AgentState
from queue_manager.queues import Waiting

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAY = (T0 - timedelta(hours=1), T0 + timedelta(hours=12))
LIMITS = {"alpha": Thresholds(service_level=20, short_abandon=5),
          "beta": Thresholds(service_level=60, short_abandon=10)}


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ev(at: float, call: str, event: str, queue: str = "alpha", agent: str = "NONE",
       line: str = "Main", number: str = "0600000001", announced: int | None = None) -> LogRow:
    return LogRow(t(at), call, queue, agent, event, line, number, announced)


def answered(call: str, enter: float, connect: float, complete: float | None = None,
             **kw) -> list[LogRow]:
    rows = [ev(enter, call, "ENTERQUEUE", **kw), ev(connect, call, "CONNECT", agent="1001", **kw)]
    if complete is not None:
        rows.append(ev(complete, call, "COMPLETECALLER", agent="1001", **kw))
    return rows


def figures_of(rows: list[LogRow], since: datetime = DAY[0], until: datetime = DAY[1], **kw):
    return report(rows, LIMITS, since, until, **kw)


# --- counts and the service level ------------------------------------------------------------

def test_service_level_leaves_out_short_abandons_and_counts_exits_as_missed():
    rows = [
        *answered("a", 0, 20, 80),  # answered exactly at the threshold: within
        *answered("b", 0, 21, 141),  # one second late
        ev(0, "c", "ENTERQUEUE"), ev(4, "c", "ABANDON"),  # short: changed their mind
        ev(0, "d", "ENTERQUEUE"), ev(5, "d", "ABANDON"),  # exactly short_abandon: a real one
        ev(0, "e", "ENTERQUEUE"), ev(300, "e", "EXITWITHTIMEOUT"),
        ev(0, "f", "ENTERQUEUE"),  # still waiting
    ]
    f = figures_of(rows).topics["alpha"]
    assert (f.offered, f.answered, f.short_abandoned, f.abandoned, f.unfinished) == (6, 2, 1, 1, 1)
    assert f.exited == {"EXITWITHTIMEOUT": 1}
    assert f.answered_within_service_level == 1
    assert f.service_level_pct == pytest.approx(100 * 1 / 5)  # 6 offered - 1 short abandon
    assert (f.asa_avg, f.longest_wait_answered) == (20.5, 21)
    assert f.aht_avg == 90  # (60 + 120) / 2


def test_each_topic_uses_its_own_thresholds():
    rows = [*answered("a", 0, 30), *answered("b", 0, 30, queue="beta"),
            ev(0, "c", "ENTERQUEUE", queue="beta"), ev(8, "c", "ABANDON", queue="beta")]
    report_ = figures_of(rows)
    assert report_.topics["alpha"].service_level_pct == 0  # 30 s > 20 s
    assert report_.topics["beta"].service_level_pct == 100  # 30 s <= 60 s; 8 s is short there
    assert report_.topics["beta"].short_abandoned == 1


def test_p90_is_the_nearest_rank():
    assert p90([]) is None
    assert p90([7]) == 7
    assert p90(list(range(1, 11))) == 9  # 9 of 10 waits are <= 9
    assert p90(list(range(1, 12))) == 10  # 10 of 11 is the first share >= 90 %
    assert p90(list(range(1, 71))) == 63
    rows = [r for n in range(1, 21) for r in answered(f"c{n}", 0, n)]
    f = figures_of(rows).topics["alpha"]
    assert (f.asa_p90, f.asa_avg, f.answered) == (18, 10.5, 20)


def test_ring_no_answer_and_refusals_are_counted_apart():
    rows = [ev(0, "a", "ENTERQUEUE"), ev(15, "a", "RINGNOANSWER", agent="1002"),
            ev(30, "a", "CONNECT", agent="1001"),
            ev(1, "b", "FULL"), ev(2, "c", "JOINEMPTY"),  # Asterisk logs no ENTERQUEUE for these
            ev(3, "d", "FULL"), ev(3, "d", "ENTERQUEUE", queue="beta"),  # sent on to beta
            ev(9, "d", "CONNECT", queue="beta", agent="1003")]
    r = figures_of(rows)
    f = r.topics["alpha"]
    assert (f.offered, f.answered, f.refused, f.ring_no_answer) == (
        1, 1, {"FULL": 2, "JOINEMPTY": 1}, 1)
    assert (f.service_level_pct, r.topics["beta"].offered) == (0, 1)  # 30 s > 20 s
    # Callers: a, d (answered in beta) offered; b and c refused.
    assert (r.total.offered, r.total.answered, r.total.refused) == (
        2, 2, {"FULL": 1, "JOINEMPTY": 1})


# --- topics, lines, the total ----------------------------------------------------------------

def test_a_call_moved_between_topics_counts_in_each_and_once_in_the_total():
    rows = [ev(0, "x", "ENTERQUEUE", announced=120), ev(60, "x", "EXITWITHTIMEOUT"),
            ev(60, "x", "ENTERQUEUE", queue="beta", announced=120),
            ev(75, "x", "CONNECT", queue="beta", agent="1003", announced=120),
            ev(135, "x", "COMPLETEAGENT", queue="beta", agent="1003", announced=120)]
    r = figures_of(rows)
    alpha, beta, total = r.topics["alpha"], r.topics["beta"], r.total
    assert (alpha.offered, alpha.answered, alpha.exited) == (1, 0, {"EXITWITHTIMEOUT": 1})
    assert (beta.offered, beta.answered, beta.asa_avg, beta.aht_avg) == (1, 1, 15, 60)
    # The caller waited 75 s in all: that is what the total (callers, not visits) says.
    assert (total.offered, total.answered, total.exited, total.asa_avg) == (1, 1, {}, 75)
    assert total.service_level_pct == 0  # beta's threshold is 60 s, the caller waited 75
    # The estimate was told in alpha, where the call entered: 120 announced - 75 actual.
    assert (alpha.estimate_count, alpha.estimate_mean_signed_error) == (1, 45)
    assert beta.estimate_count == 0
    assert total.estimate_mean_signed_error == 45
    assert topic_figures(rows, LIMITS, *DAY) == r.topics  # what /metrics shows


def test_lines_and_topic_lines():
    rows = [*answered("a", 0, 10, line="Tributi", number="0611"),
            *answered("b", 0, 40, line="Tributi", number="0612"),
            *answered("c", 0, 5, queue="beta", line="Anagrafe", number="0621"),
            ev(0, "d", "ENTERQUEUE", line="Anagrafe", number="0621"),
            ev(30, "d", "ABANDON", line="Anagrafe", number="0621")]
    r = figures_of(rows)
    assert {name: (f.offered, f.answered, f.abandoned) for name, f in r.lines.items()} == {
        "Tributi": (2, 2, 0), "Anagrafe": (2, 1, 1)}
    assert r.numbers == {"Tributi": ["0611", "0612"], "Anagrafe": ["0621"]}
    assert {k: (f.offered, f.answered) for k, f in r.topic_lines.items()} == {
        ("alpha", "Tributi"): (2, 2), ("alpha", "Anagrafe"): (1, 0), ("beta", "Anagrafe"): (1, 1)}
    assert r.lines["Tributi"].service_level_pct == 50
    assert (r.total.offered, r.total.answered, r.total.abandoned) == (4, 3, 1)
    by_number = figures_of(rows, line="0612")
    assert (by_number.total.offered, list(by_number.lines)) == (1, ["Tributi"])
    only_beta = figures_of(rows, topic="beta")
    assert (list(only_beta.topics), only_beta.total.offered) == (["beta"], 1)


def test_estimate_error_counts_answered_calls_that_heard_an_estimate():
    rows = [*answered("a", 0, 30, announced=60),  # said 60, was 30: +30
            *answered("b", 0, 50, announced=20),  # said 20, was 50: -30
            *answered("c", 0, 10),  # no estimate announced
            ev(0, "d", "ENTERQUEUE", announced=90), ev(40, "d", "ABANDON", announced=90)]
    f = figures_of(rows).topics["alpha"]
    assert (f.estimate_count, f.estimate_mean_abs_error, f.estimate_mean_signed_error) == (
        2, 30, 0)


# --- the period ------------------------------------------------------------------------------

def test_empty_period():
    r = figures_of([])
    assert (r.total.offered, r.topics, r.lines) == (0, {}, {})
    assert (r.total.service_level_pct, r.total.asa_avg, r.total.asa_p90) == (None, None, None)
    assert r.total.as_dict()["estimate"] == {"count": 0, "mean_abs_error": None,
                                             "mean_signed_error": None}
    assert figures_of([], topic="alpha").topics["alpha"].offered == 0


def test_a_call_counts_in_the_period_it_entered_the_queue():
    rows = [*answered("late", -30, 10),  # entered before the period
            *answered("edge", 590, 620, 700)]  # entered in it, answered after it ended
    r = figures_of(rows, since=t(0), until=t(600))
    f = r.topics["alpha"]
    assert (f.offered, f.answered, f.asa_avg, f.aht_avg) == (1, 1, 30, 80)


def test_events_without_their_enterqueue_are_not_counted():
    # An adopted call logged under a new id after a restart: no ENTERQUEUE to start from.
    rows = [ev(10, "new-id", "CONNECT", agent="1001"),
            ev(70, "new-id", "COMPLETEAGENT", agent="1001")]
    assert build_visits(rows) == []
    assert figures_of(rows).total.offered == 0


def test_wrap_up_is_taken_from_the_agents_state_changes():
    rows = [*answered("a", 0, 10, 70), *answered("b", 100, 110, 200)]
    changes = [("1001", t(10), "on_call"), ("1001", t(70), "wrap_up"),
               ("1001", t(75), "available"), ("1001", t(110), "on_call"),
               ("1001", t(200), "paused")]  # no wrap-up after b: 0 s
    f = figures_of(rows, agent_changes=changes).topics["alpha"]
    assert f.wrap_up_avg == 2.5
    short = answered("s", 0, 10, 11)  # answered at 10, 1 s talk, 1 s wrap-up
    changes = [("1001", t(9), "available"),  # logged in just before
               ("1001", t(9.5), "ringing"), ("1001", t(10), "on_call"),
               ("1001", t(11), "wrap_up"), ("1001", t(12), "available")]
    assert figures_of(short, agent_changes=changes).topics["alpha"].wrap_up_avg == 1
    assert figures_of(rows).topics["alpha"].wrap_up_avg is None  # unknown, not 0


def test_as_dict_rounds_durations():
    rows = answered("a", 0, 12.345, 42.0)
    out = figures_of(rows).as_dict()
    assert out["topics"]["alpha"]["asa_avg"] == 12.3
    assert out["lines"]["Main"]["numbers"] == ["0600000001"]
    assert out["topic_lines"][0]["topic"] == "alpha" and out["topic_lines"][0]["line"] == "Main"


# --- the queue_log export --------------------------------------------------------------------

def test_queue_log_lines_look_like_asterisks():
    at = datetime(2026, 12, 1, 9, 0, 5, 700000, tzinfo=UTC)
    epoch = int(at.timestamp())
    assert queue_log_line(at, "ab12", "alpha", "NONE", "ENTERQUEUE", ["", "0612", "", "", ""]) \
        == f"{epoch}|ab12|alpha|NONE|ENTERQUEUE||0612\n"
    assert queue_log_line(at, "ab12", "alpha", "1001", "RINGNOANSWER", ["3000"] + [""] * 4) \
        == f"{epoch}|ab12|alpha|1001|RINGNOANSWER|3000\n"
    assert queue_log_line(at, "ab12", "alpha", "NONE", "FULL", [""] * 5) \
        == f"{epoch}|ab12|alpha|NONE|FULL|\n"
    assert queue_log_line(at, "ab12", "alpha", "", "ENTERQUEUE", ["", "06|12\n"]) \
        == f"{epoch}|ab12|alpha|NONE|ENTERQUEUE||06 12 \n"


# --- live ------------------------------------------------------------------------------------

def test_live_longest_wait_and_agents_by_state_per_topic():
    now = t(100)
    waiting = {"alpha": [Waiting("a", "alpha", t(10)), Waiting("b", "alpha", t(70))],
               "beta": []}
    waiting["alpha"][0].offered_to = "1001"
    agents = [Agent("1001", "Uno", "d", {"alpha": 0, "beta": 0}, AgentState.RINGING),
              Agent("1002", "Due", "d", {"alpha": 0}, AgentState.PAUSED),
              Agent("1003", "Tre", "d", {"beta": 0})]
    out = live(waiting, agents, now)
    alpha, beta = out["topics"]["alpha"], out["topics"]["beta"]
    assert (alpha["waiting"], alpha["longest_wait"], alpha["ringing"]) == (2, 90, 1)
    assert (beta["waiting"], beta["longest_wait"]) == (0, 0)
    assert {s: n for s, n in alpha["agents"].items() if n} == {"ringing": 1, "paused": 1}
    assert {s: n for s, n in beta["agents"].items() if n} == {"ringing": 1, "logged_out": 1}
    assert out["agents"]["logged_out"] == 1 and sum(out["agents"].values()) == 3


# --- period parameters -----------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # already 2 December in Rome (UTC+1)


def test_period_defaults_to_today_in_local_time():
    since, until = period({}, NOW)
    assert (since.isoformat(), until.isoformat()) == (
        "2026-12-02T00:00:00+01:00", "2026-12-03T00:00:00+01:00")


def test_period_dates_are_whole_local_days_and_naive_times_are_local():
    since, until = period({"from": "2026-07-01", "to": "2026-07-01"}, NOW)
    assert (since.isoformat(), until.isoformat()) == (
        "2026-07-01T00:00:00+02:00", "2026-07-02T00:00:00+02:00")  # summer time
    since, until = period({"from": "2026-12-01T09:30", "to": "2026-12-01T10:00:00Z"}, NOW)
    assert since == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    assert until == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    # "+01:00" unencoded in a URL arrives as " 01:00"
    since, _ = period({"from": "2026-12-01T09:30:00 01:00"}, NOW)
    assert since == datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize("params, says", [
    ({"from": "yesterday"}, "from: expected an ISO date"),
    ({"to": "2026-13-01"}, "to: not a date"),
    ({"from": "2026-12-02", "to": "2026-12-01"}, "must be before"),
    ({"from": "2026-12-01T10:00", "to": "2026-12-01T10:00"}, "must be before"),
])
def test_period_refuses_bad_values(params, says):
    with pytest.raises(web.HTTPBadRequest) as refused:
        period(params, NOW)
    assert says in refused.value.text


# --- recalls -----------------------------------------------------------------------------------

def test_recall_figures_per_topic_and_in_total():
    requests = [
        # answered at once, 30 s after it was asked
        RecallRow("a", "alpha", "now", "done", t(0), None, 1),
        # no answer twice (retries moved its due time), answered the third time
        RecallRow("b", "alpha", "now", "done", t(10), None, 3),
        # a slot an hour ahead: counted from the slot, not from when it was asked
        RecallRow("c", "beta", "back", "failed", t(0), t(3600), 1),
        # an agent missed its ring (not a call to the citizen), then cancelled
        RecallRow("d", "beta", "queue", "cancelled", t(0), None, 0),
        RecallRow("e", "beta", "now", "waiting", t(50), None, 0),  # never tried yet
    ]
    attempts = [
        AttemptRow("a", t(30), "answered"),
        AttemptRow("b", t(70), "no_answer"), AttemptRow("b", t(400), "busy"),
        AttemptRow("b", t(1400), "answered"),
        AttemptRow("c", t(3610), "wrong_number"),
        AttemptRow("d", t(5), "agent_missed"),
    ]
    got = recall_report(requests, attempts)
    alpha, beta, total = got["topics"]["alpha"], got["topics"]["beta"], got["total"]
    assert alpha["requests"] == 2 and alpha["by_status"]["done"] == 2
    assert alpha["attempts"] == {"answered": 2, "busy": 1, "no_answer": 1}
    assert (alpha["first_attempt_count"], alpha["first_attempt_avg"]) == (2, 45.0)  # 30, 60
    assert alpha["attempts_per_success"] == 2.0  # (1 + 3) / 2
    assert beta["by_mode"] == {"now": 1, "back": 1, "queue": 1}
    assert beta["by_status"] == {"waiting": 1, "calling": 0, "done": 0, "failed": 1,
                                 "cancelled": 1, "expired": 0}
    assert (beta["first_attempt_count"], beta["first_attempt_avg"]) == (1, 10.0)
    assert beta["attempts_per_success"] is None  # nothing done: undefined, not 0
    assert beta["attempts"] == {"agent_missed": 1, "wrong_number": 1}
    assert total["requests"] == 5 and total["first_attempt_count"] == 3
    assert total["first_attempt_p90"] == 60.0


def test_no_recalls_no_figures():
    assert recall_report([], []) == {
        "total": {"requests": 0, "by_status": {"waiting": 0, "calling": 0, "done": 0,
                                               "failed": 0, "cancelled": 0, "expired": 0},
                  "by_mode": {"now": 0, "back": 0, "queue": 0}, "attempts": {},
                  "first_attempt_count": 0, "first_attempt_avg": None,
                  "first_attempt_p90": None, "attempts_per_success": None},
        "topics": {}}


def test_first_attempt_is_the_first_call_to_the_citizen():
    """An agent's missed ring or early hang-up is not a call to the citizen: the wait runs
    to the first one that is. A "back" request moved up (its citizen asked again from the
    line) and called before its slot waited 0, not a negative time. The wait ends when the
    citizen's phone rang (dialled_at), not when that call ended; rows stored before dialled_at
    existed fall back to the end."""
    requests = [RecallRow("a", "alpha", "now", "done", t(0), None, 2),
                RecallRow("b", "alpha", "back", "done", t(0), t(7200), 1),
                RecallRow("c", "alpha", "now", "done", t(0), None, 1)]
    attempts = [AttemptRow("a", t(300), "answered"), AttemptRow("a", t(20), "agent_missed"),
                AttemptRow("a", t(40), "agent_left"), AttemptRow("a", t(100), "no_answer"),
                AttemptRow("b", t(600), "answered"),
                AttemptRow("c", t(500), "answered", dialled_at=t(30))]  # talked 470 s
    alpha = recall_report(requests, attempts)["topics"]["alpha"]
    assert alpha["attempts"] == {"agent_left": 1, "agent_missed": 1, "answered": 3,
                                 "no_answer": 1}
    assert (alpha["first_attempt_count"], alpha["first_attempt_avg"],
            alpha["first_attempt_p90"]) == (3, 43.3, 100.0)  # a: 100 s (in any order); b: 0; c: 30
    assert alpha["attempts_per_success"] == 1.33  # the column: agents' misses are not in it


def test_an_agent_hanging_up_while_the_citizen_rang_was_still_a_first_call():
    """The citizen's phone rang at 10 s even though the agent gave up: that is when they were
    first called (the attempt does not count against them)."""
    requests = [RecallRow("a", "alpha", "now", "done", t(0), None, 1)]
    attempts = [AttemptRow("a", t(5), "agent_missed"),
                AttemptRow("a", t(15), "agent_left", dialled_at=t(10)),
                AttemptRow("a", t(400), "answered", dialled_at=t(150))]
    alpha = recall_report(requests, attempts)["topics"]["alpha"]
    assert (alpha["first_attempt_count"], alpha["first_attempt_avg"]) == (1, 10.0)
    assert alpha["attempts_per_success"] == 1.0


def test_transfers_count_where_they_went_and_how_long_until_answered_there():
    rows = [
        *answered("a", 0, 10),
        LogRow(t(70), "a", "alpha", "1001", "BLINDTRANSFER", "Main", "0600000001", None,
               "beta"),  # to beta's line ...
        ev(70, "a", "ENTERQUEUE", queue="beta"),
        ev(100, "a", "CONNECT", queue="beta", agent="1003"),  # ... answered 30 s later
        ev(200, "a", "COMPLETECALLER", queue="beta", agent="1003"),
        *answered("b", 5, 15),
        LogRow(t(40), "b", "alpha", "1001", "BLINDTRANSFER", "Main", "0600000001", None,
               "1002"),  # to agent 1002, who never answered: the caller hung up
        ev(40, "b", "ENTERQUEUE"),
        ev(90, "b", "ABANDON"),
        *answered("c", 0, 5, 50),
    ]
    r = figures_of(rows)
    alpha = r.topics["alpha"]
    assert (alpha.transferred, alpha.transfers_to) == (2, {"beta": 1, "1002": 1})
    assert alpha.transfer_reached_avg == 30.0
    assert alpha.as_dict()["transfers"] == {"count": 2, "to": {"1002": 1, "beta": 1},
                                            "reached_avg": 30.0, "second_level": {}}
    assert alpha.aht_avg == (60 + 25 + 45) / 3  # a transfer ends the first agent's talk
    assert r.topics["beta"].transferred == 0 and r.topics["beta"].answered == 1


def test_transfers_to_a_second_level_group_are_counted_apart_with_the_time_to_reach_it():
    rows = [
        *answered("a", 0, 10),
        LogRow(t(70), "a", "alpha", "1001", "BLINDTRANSFER", "Main", "0600000001", None,
               "back-office", "centralino-groups"),
        ev(70, "a", "ENTERQUEUE"),
        ev(110, "a", "CONNECT", agent="1003"),  # a member answered 40 s later
        ev(200, "a", "COMPLETECALLER", agent="1003"),
        *answered("b", 5, 15),
        LogRow(t(40), "b", "alpha", "1002", "BLINDTRANSFER", "Main", "0600000002", None,
               "back-office", "centralino-groups"),
        ev(40, "b", "ENTERQUEUE"),
        ev(60, "b", "CONNECT", agent="1004"),  # 20 s
        ev(90, "b", "COMPLETEAGENT", agent="1004"),
        *answered("c", 0, 5),
        LogRow(t(30), "c", "alpha", "1001", "BLINDTRANSFER", "Main", "0600000003", None,
               "back-office", "centralino"),  # a topic that happens to share the name
        ev(30, "c", "ENTERQUEUE", queue="back-office"),
        ev(35, "c", "ABANDON", queue="back-office"),
    ]
    alpha = figures_of(rows).topics["alpha"]
    assert alpha.transfers_to == {"group:back-office": 2, "back-office": 1}
    assert alpha.as_dict()["transfers"]["second_level"] == {
        "back-office": {"count": 2, "reached_avg": 30.0}}
