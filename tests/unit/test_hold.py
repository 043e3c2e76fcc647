"""What a waiting caller hears, on explicit times: messages in order or rotation and inside their
dates, position and wait phrases, the estimate, and the priority policy that starves nobody."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from cti.agents import Agent
from cti.distributor import Distributor
from ivr.schema import Announce, HoldMessages
from queue_manager.hold import (
    HandleTimes,
    HoldPlan,
    estimate_wait,
    position_phrase,
    wait_band,
    wait_phrase,
)
from queue_manager.queues import QueueManager, Waiting

TODAY = date(2026, 12, 1)


def messages(*items: dict, every: float = 30, first_after: float = 10,
             order: str = "sequence") -> HoldMessages:
    return HoldMessages.model_validate(
        {"every": every, "first_after": first_after, "order": order, "items": list(items)})


def played(plan: HoldPlan, until: float, day: date = TODAY, length: float = 5) -> list[str]:
    """Run the plan on a virtual clock: each due item plays for `length` seconds."""
    heard, now = [], 0.0
    while (now := max(now, plan.due_at)) < until:
        due = plan.take(now, day)
        if due is None:
            continue
        heard += ["announce"] * due.announce + [due.message] * bool(due.message)
        now += length
        plan.played(due, now)
    return heard


def test_messages_in_sequence_with_their_interval():
    plan = HoldPlan(messages({"prompt": "a"}, {"prompt": "b"}), None, joined=0)
    # first at 10 s, then 30 s after the end of each (5 s long): 10, 45, 80, 115
    assert played(plan, until=120) == ["a", "b", "a", "b"]


def test_messages_out_of_their_dates_are_skipped():
    items = ({"prompt": "old", "valid_until": "2026-11-30"}, {"prompt": "now"},
             {"prompt": "future", "valid_from": "2027-01-01"})
    assert played(HoldPlan(messages(*items), None, joined=0), until=120) == ["now"] * 4
    assert played(HoldPlan(messages(*items), None, joined=0), until=50,
                  day=date(2027, 1, 1)) == ["now", "future"]


def test_no_valid_message_means_only_music():
    plan = HoldPlan(messages({"prompt": "old", "valid_until": "2026-01-31"}), None, joined=0)
    assert played(plan, until=300) == []


def test_rotation_starts_each_caller_one_message_further():
    queues = QueueManager()
    msgs = messages({"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}, order="rotate")
    firsts = [played(HoldPlan(msgs, None, 0, queues.rotation_start("t")), until=11)
              for _ in range(4)]
    assert firsts == [["a"], ["b"], ["c"], ["a"]]


def test_announcement_on_entry_then_every_interval_alongside_messages():
    plan = HoldPlan(messages({"prompt": "m"}, every=20, first_after=0),
                    Announce(every=60), joined=100)
    heard = played(plan, until=200)
    # at 100 both are due (one playback: announcement first); message again at 125, 150;
    # announcement again 60 s after the first ended (165)
    assert heard == ["announce", "m", "m", "m", "announce", "m"]


def test_position_phrases_as_app_queue_says_them():
    assert position_phrase(1) == [("sound", "queue-youarenext")]
    assert position_phrase(3) == [("sound", "queue-thereare"), ("number", "3"),
                                  ("sound", "queue-callswaiting")]


def test_wait_bands():
    bands = [2, 5, 10, 15, 20, 30]
    assert wait_band(61, bands) == (True, 2)
    assert wait_band(120, bands) == (True, 2)
    assert wait_band(121, bands) == (True, 5)
    assert wait_band(30 * 60, bands) == (True, 30)
    assert wait_band(31 * 60, bands) == (False, 40)  # beyond: steps of the last gap (10)
    assert wait_phrase(61, [1, 2]) == [("sound", "queue-holdtime"), ("sound", "queue-less-than"),
                                       ("number", "2"), ("sound", "queue-minutes")]
    assert wait_phrase(50, [1, 2])[2:] == [("number", "1"), ("sound", "queue-minute")]
    assert ("sound", "queue-less-than") not in wait_phrase(31 * 60, bands)


def test_estimate_from_position_free_and_serving_agents():
    assert estimate_wait(1, free_agents=1, serving_agents=2, handle_time=180) == 0
    assert estimate_wait(1, free_agents=0, serving_agents=1, handle_time=120) == 120
    assert estimate_wait(5, free_agents=1, serving_agents=2, handle_time=100) == 200
    assert estimate_wait(3, free_agents=0, serving_agents=0, handle_time=100) is None


def test_handle_times_follow_recent_calls():
    times = HandleTimes(keep=3)
    assert times.average("a", default=180) == 180
    for seconds in (100, 200, 300, 400):
        times.add("a", seconds)
    assert times.average("a", default=180) == 300  # the last three
    assert times.average("b", default=180) == 180


def test_a_priority_line_never_starves_the_other():
    """Trade associations (boost 60 s) arrive every 5 s, forever; one agent takes a call every
    10 s. The citizen who arrived at 0 is served once every association caller who arrived
    before 60 s has been, and before any who arrived later: waiting longer than the boost
    always wins, however busy the priority line is."""
    start = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    queues = QueueManager()
    agent = Agent("1001", "Uno", "Local/1001@x", {"t": 0})
    agent.login(start, "test")
    distributor = Distributor(queues, [agent])
    queues.join(Waiting("citizen", "t", start))
    served: list[str] = []
    for second in range(0, 400, 5):
        now = start + timedelta(seconds=second)
        queues.join(Waiting(f"assoc@{second}", "t", now, boost=60))
        if second % 10 == 0:
            for offer, _ in distributor.match(now):
                served.append(offer.call_id)
                queues.leave(offer.call_id)
                agent.answered(now)
                agent.call_ended(now, 0)
    citizen_turn = served.index("citizen")
    before = served[:citizen_turn]
    assert all(int(c.split("@")[1]) < 60 for c in before)
    assert all(int(c.split("@")[1]) >= 60 for c in served[citizen_turn + 1:])
    assert len(before) == 12  # the association callers of 0..55 s, then the citizen
