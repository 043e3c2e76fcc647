"""Waiting lines at explicit instants: order by rank (join time minus boost), equal ranks in
arrival order, boosts that never starve anyone, and the next caller to offer across topics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from queue_manager.queues import QueueManager, Waiting

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def caller(call_id: str, at: float, topic: str = "alpha", boost: float = 0, **fields) -> Waiting:
    return Waiting(call_id, topic, t(at), boost=boost, **fields)


def line(*callers: Waiting) -> QueueManager:
    queues = QueueManager()
    for w in callers:
        queues.join(w)
    return queues


def order(queues: QueueManager, topic: str = "alpha") -> list[str]:
    return [w.call_id for w in queues.waiting(topic)]


# --- join, leave, position --------------------------------------------------------------------

def test_join_returns_the_position_and_the_line_is_in_arrival_order():
    queues = QueueManager()
    assert [queues.join(caller(c, at)) for c, at in [("a", 0), ("b", 5), ("c", 9)]] == [1, 2, 3]
    assert order(queues) == ["a", "b", "c"]
    assert [queues.position(c) for c in "abc"] == [1, 2, 3]


def test_a_caller_who_joined_earlier_goes_first_whatever_the_order_of_joining():
    # A caller back after a service restart keeps its original join time.
    queues = line(caller("late", 60), caller("restored", 10))
    assert order(queues) == ["restored", "late"]


def test_equal_ranks_keep_arrival_order():
    queues = line(*(caller(c, 30) for c in "dacb"))
    assert order(queues) == list("dacb")


def test_leave_removes_the_caller_and_the_others_move_up():
    a, b, c = caller("a", 0), caller("b", 5), caller("c", 9)
    queues = line(a, b, c)
    assert queues.leave("b") is b
    assert order(queues) == ["a", "c"]
    assert (queues.position("b"), queues.position("c"), queues.get("b")) == (None, 2, None)
    assert len(queues) == 2


def test_leave_of_an_unknown_caller_is_none():
    queues = line(caller("a", 0))
    assert queues.leave("zzz") is None
    assert queues.leave("a") is not None
    assert queues.leave("a") is None  # twice: the second does nothing


def test_position_and_get_of_an_unknown_caller():
    queues = QueueManager()
    assert (queues.position("a"), queues.get("a"), queues.waiting("alpha")) == (None, None, [])


def test_joining_twice_is_refused_even_in_another_topic():
    queues = line(caller("a", 0))
    with pytest.raises(ValueError, match="already waiting"):
        queues.join(caller("a", 5))
    with pytest.raises(ValueError, match="already waiting"):
        queues.join(caller("a", 5, topic="beta"))
    assert (order(queues), order(queues, "beta"), len(queues)) == (["a"], [], 1)


def test_after_leaving_a_caller_can_join_again():
    queues = line(caller("a", 0), caller("b", 5))
    queues.leave("a")
    assert queues.join(caller("a", 0)) == 1


def test_topics_are_separate_lines():
    queues = line(caller("a1", 0), caller("b1", 1, topic="beta"), caller("a2", 2))
    assert (order(queues), order(queues, "beta")) == (["a1", "a2"], ["b1"])
    assert (queues.position("a2"), queues.position("b1")) == (2, 1)
    assert {w.call_id for w in queues} == {"a1", "a2", "b1"}


# --- boosts -----------------------------------------------------------------------------------

def test_rank_is_join_time_minus_boost():
    w = caller("a", 100, boost=60)
    assert w.rank == t(100).timestamp() - 60 == t(40).timestamp()


def test_a_boosted_caller_goes_before_one_who_joined_less_than_the_boost_earlier():
    queues = line(caller("plain", 0), caller("boosted", 59, boost=60))
    assert order(queues) == ["boosted", "plain"]
    assert queues.position("plain") == 2  # moved down by the boosted caller


def test_a_boosted_caller_does_not_pass_one_who_joined_more_than_the_boost_earlier():
    queues = line(caller("plain", 0), caller("boosted", 61, boost=60))
    assert order(queues) == ["plain", "boosted"]


def test_exactly_the_boost_earlier_is_a_tie_kept_in_arrival_order():
    queues = line(caller("plain", 0), caller("boosted", 60, boost=60))
    assert order(queues) == ["plain", "boosted"]


def test_a_mixed_line():
    queues = line(caller("p0", 0), caller("p20", 20), caller("b30", 30, boost=25),
                  caller("p40", 40), caller("b50", 50, boost=60))
    # ranks: p0=0, p20=20, b30=5, p40=40, b50=-10
    assert order(queues) == ["b50", "p0", "b30", "p20", "p40"]


# --- first_unoffered --------------------------------------------------------------------------

def test_first_unoffered_skips_callers_already_ringing_an_agent():
    a, b, c = caller("a", 0), caller("b", 5), caller("c", 9)
    queues = line(a, b, c)
    a.offered_to = "1001"
    assert queues.first_unoffered(["alpha"]) is b
    b.offered_to = "1002"
    assert queues.first_unoffered(["alpha"]) is c
    c.offered_to = "1003"
    assert queues.first_unoffered(["alpha"]) is None
    b.offered_to = None  # ring-no-answer: back at its place
    assert queues.first_unoffered(["alpha"]) is b


def test_first_unoffered_takes_the_best_rank_across_topics():
    queues = line(caller("a1", 10), caller("b1", 5, topic="beta"), caller("g1", 20, topic="gamma"),
                  caller("a2", 30, boost=40))
    assert queues.first_unoffered(["alpha", "beta", "gamma"]).call_id == "a2"
    queues.get("a2").offered_to = "x"
    assert queues.first_unoffered(["gamma", "beta", "alpha"]).call_id == "b1"
    assert queues.first_unoffered(["alpha", "gamma"]).call_id == "a1"
    assert queues.first_unoffered(["gamma"]).call_id == "g1"


def test_first_unoffered_ignores_other_topics_and_unknown_ones():
    queues = line(caller("a1", 0))
    assert queues.first_unoffered(["beta", "nobody"]) is None
    assert queues.first_unoffered([]) is None


@pytest.mark.parametrize("topics", [
    ["alpha", "beta", "gamma", "delta"], ["delta", "gamma", "beta", "alpha"],
    {"alpha", "beta", "gamma", "delta"},
])
def test_equal_ranks_across_topics_go_in_arrival_order(topics):
    # Ties are decided by who joined first, not by the order of the topics (a set's order
    # changes with PYTHONHASHSEED from one run of the service to the next).
    queues = line(caller("c", 0, topic="gamma"), caller("a", 0, topic="alpha"),
                  caller("d", 0, topic="delta"), caller("b", 60, topic="beta", boost=60))
    assert queues.first_unoffered(topics).call_id == "c"


# --- snapshot ---------------------------------------------------------------------------------

def test_snapshot_lists_each_line_in_order_with_waiting_time_ringing_and_recalls():
    queues = line(caller("a1", 0, caller="0612345678", line="cittadini"),
                  caller("a2", 10.04, boost=30, caller="3331234567", line="associazioni"),
                  recall("b1", 20, topic="beta"))
    queues.get("a1").offered_to = "1001"
    assert queues.snapshot(t(100)) == {
        "alpha": [
            {"call_id": "a2", "caller": "3331234567", "line": "associazioni",
             "since": t(10.04).isoformat(), "waited": 90.0, "ringing": None, "recall": False},
            {"call_id": "a1", "caller": "0612345678", "line": "cittadini",
             "since": t(0).isoformat(), "waited": 100.0, "ringing": "1001", "recall": False},
        ],
        "beta": [{"call_id": "b1", "caller": "", "line": "", "since": t(20).isoformat(),
                  "waited": 80.0, "ringing": None, "recall": True}],
    }


def test_snapshot_of_nothing():
    assert QueueManager().snapshot(T0) == {}


# --- recalls' share -----------------------------------------------------------------------------

def recall(call_id: str, at: float, topic: str = "alpha") -> Waiting:
    return Waiting(call_id, topic, t(at), recall=True)


def serve(queues: QueueManager, n: int, topic: str = "alpha") -> list[str]:
    """Take the next `n` callers as agents free up one at a time."""
    served = []
    for _ in range(n):
        waiting = queues.first_unoffered([topic])
        assert waiting is not None
        queues.picked(waiting)
        queues.leave(waiting.call_id)
        served.append(waiting.call_id)
    return served


def shared_line(share: float) -> QueueManager:
    queues = QueueManager(recall_share=share)
    for i in range(6):  # the recalls asked first: by arrival they would all go first
        queues.join(recall(f"r{i}", i))
    for i in range(6):
        queues.join(caller(f"c{i}", 10 + i))
    return queues


def test_share_one_is_plain_arrival_order():
    assert serve(shared_line(1.0), 12) == [f"r{i}" for i in range(6)] + [f"c{i}" for i in range(6)]


def test_share_half_alternates_while_both_wait():
    assert serve(shared_line(0.5), 12) == ["c0", "r0", "c1", "r1", "c2", "r2", "c3", "r3",
                                           "c4", "r4", "c5", "r5"]


def test_share_zero_serves_recalls_only_when_no_live_caller_waits():
    assert serve(shared_line(0.0), 12) == [f"c{i}" for i in range(6)] + [f"r{i}" for i in range(6)]


def test_share_a_third():
    served = serve(shared_line(1 / 3), 9)
    assert served == ["c0", "c1", "r0", "c2", "c3", "r1", "c4", "c5", "r2"]


def test_an_older_live_caller_goes_first_whatever_the_share():
    queues = QueueManager(recall_share=1.0)
    queues.join(caller("c0", 0))
    queues.join(recall("r0", 5))
    assert serve(queues, 2) == ["c0", "r0"]


def test_a_recall_ringing_an_agent_does_not_hold_back_the_others():
    queues = shared_line(0.5)
    first = queues.first_unoffered(["alpha"])
    assert first is not None and first.call_id == "c0"
    queues.picked(first)
    first.offered_to = "agent-1"
    second = queues.first_unoffered(["alpha"])  # c0 still ringing: the next one, a recall
    assert second is not None and second.call_id == "r0"
