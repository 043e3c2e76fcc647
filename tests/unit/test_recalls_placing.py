"""Placing recalls, the pure rules (cti/recalls.py) with a virtual clock: retries, dial
strings, hang-up causes, the scheduler's wake-up, and FIFO order with live callers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.recalls import (
    Next,
    RecallError,
    RecallSettings,
    after_attempt,
    after_mark,
    citizen_outcome,
    dial_string,
    next_wake,
)
from ivr.hours import Schedule
from queue_manager.queues import QueueManager, Waiting

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Rome
SETTINGS = RecallSettings(retry_delays=[300, 900], max_attempts=4)


def test_answered_is_done():
    assert after_attempt("answered", 1, SETTINGS, T0).status == "done"


def test_retry_delays_then_the_last_repeats_then_failed():
    clock, dues = T0, []
    for attempt in range(1, 5):
        after = after_attempt("no_answer", attempt, SETTINGS, clock)
        if after.status == "failed":
            break
        assert after.status == "waiting" and after.due_at is not None
        dues.append((after.due_at - clock).total_seconds())
        clock = after.due_at + timedelta(seconds=20)  # the next attempt took 20 s
    assert dues == [300, 900, 900]
    assert after.status == "failed" and attempt == 4


def test_busy_and_failed_count_like_no_answer():
    for outcome in ("busy", "failed"):
        assert after_attempt(outcome, 4, SETTINGS, T0).status == "failed"
        assert after_attempt(outcome, 1, SETTINGS, T0).due_at == T0 + timedelta(seconds=300)


def test_a_retry_after_closing_time_waits_for_the_next_opening():
    office = Schedule.model_validate({"weekly": {"mon-fri": ["09:00-18:00"]}})
    late = datetime(2026, 12, 1, 16, 58, tzinfo=UTC)  # 17:58 in Rome; +5 min is closed
    after = after_attempt("no_answer", 1, SETTINGS, late, office)
    assert after.due_at == datetime(2026, 12, 2, 8, 0, tzinfo=UTC)  # 09:00 in Rome


def test_dial_strings():
    assert dial_string("Local/{number}@c", "+393471234567", "IT") == "Local/3471234567@c"
    assert dial_string("PJSIP/{number}@trunk", "+390612345678", "IT") == (
        "PJSIP/0612345678@trunk")
    assert dial_string("PJSIP/{number}@trunk", "+442079460000", "IT") == (
        "PJSIP/00442079460000@trunk")
    assert dial_string("PJSIP/{e164}@trunk", "+393471234567", "IT") == (
        "PJSIP/+393471234567@trunk")


def test_hangup_causes():
    assert [citizen_outcome(c) for c in (17, 21, 16, 19, 18, 0, 1, 34)] == [
        "busy", "busy", "no_answer", "no_answer", "no_answer", "no_answer", "failed", "failed"]


def test_scheduler_wakes_at_the_next_due_time_at_most_a_minute_later():
    assert next_wake([], T0) == 60
    assert next_wake([T0 + timedelta(seconds=5), T0 + timedelta(seconds=2)], T0) == 2
    assert next_wake([T0 - timedelta(seconds=5)], T0) == 0
    assert next_wake([T0 + timedelta(hours=2)], T0) == 60


def test_a_recall_is_served_in_fifo_order_with_live_callers():
    queues = QueueManager()
    queues.join(Waiting("live-1", "beta", T0 + timedelta(seconds=10)))
    queues.join(Waiting("recall", "beta", T0 + timedelta(seconds=5), line="recall"))
    queues.join(Waiting("live-2", "beta", T0 + timedelta(seconds=20)))
    assert [w.call_id for w in queues.waiting("beta")] == ["recall", "live-1", "live-2"]
    # The agent missed it: offered_to cleared, still first (its since is its due_at).
    recall = queues.get("recall")
    assert recall is not None
    recall.offered_to = "1003"
    assert queues.first_unoffered(["beta"]).call_id == "live-1"
    recall.offered_to = None
    assert queues.first_unoffered(["beta"]).call_id == "recall"


# --- the agent's verdict ----------------------------------------------------------------------

def test_an_answering_machine_is_retried_like_no_answer():
    settings = RecallSettings(retry_delays=[60, 600], max_attempts=3)
    assert after_mark("no_answer", "done", "answered", 1, settings, T0) == Next(
        "waiting", T0 + timedelta(seconds=60))
    assert after_mark("no_answer", "done", "answered", 3, settings, T0) == Next("failed", None)


def test_a_wrong_number_fails_and_done_changes_nothing():
    settings = RecallSettings()
    assert after_mark("wrong_number", "done", "answered", 1, settings, T0) == Next("failed", None)
    assert after_mark("done", "done", "answered", 1, settings, T0) is None


def test_a_verdict_given_stands_and_repeating_it_is_harmless():
    settings = RecallSettings()
    assert after_mark("no_answer", "waiting", "no_answer", 1, settings, T0) is None
    with pytest.raises(RecallError, match="already recorded as no_answer"):
        after_mark("wrong_number", "waiting", "no_answer", 1, settings, T0)
    with pytest.raises(RecallError, match="already recorded as busy"):
        after_mark("done", "waiting", "busy", 1, settings, T0)


def test_not_while_the_call_goes_on_nor_before_any_call():
    settings = RecallSettings()
    with pytest.raises(RecallError, match="after the call"):
        after_mark("done", "calling", "answered", 1, settings, T0)
    with pytest.raises(RecallError, match="no call was placed"):
        after_mark("no_answer", "waiting", None, 0, settings, T0)
