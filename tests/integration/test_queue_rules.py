"""While waiting, on the real Asterisk: periodic messages inside their dates, position and
estimated wait said with Asterisk's Italian sounds, and the queue's rules (leave key, no
agents, too many callers, maximum wait) sending callers where the config says."""

from __future__ import annotations

from datetime import datetime

from tests.integration.conftest import record_of, steps
from tests.integration.desk_api import staff
from tests.integration.test_agents import until_talking

RULES = "0999000004"  # straight to queue omega (agent 1003); see config/queues.yaml
DIRECT = "0999000002"  # queue beta, also served by 1003


async def paused(desk, agent_id: str) -> None:
    """Logged in but taking no calls: callers wait, and the no-agents rule does not fire."""
    await staff(desk, agent_id)
    await desk.pause(agent_id, "riunione")


async def log_of(desk, call_id: str) -> list[tuple[str, ...]]:
    return [(e.queue, e.event, e.data1, e.data2, e.data3, e.data4)
            for e in await desk.queue_log(call_id=call_id)]


async def test_position_wait_and_messages_in_their_dates(start_service, desk, caller, phones):
    service = await start_service()
    phones.set("1003", "answer")
    await staff(desk, "1003")
    talking = await caller.dial(RULES, caller_number="0610000000")
    await phones.wait_answered("1003")
    await until_talking(desk, "1003")  # the only agent is busy from now on

    first = await caller.dial(RULES, caller_number="0610000001")
    await first.wait_heard("promo_now", count=2, timeout=15)
    second = await caller.dial(RULES, caller_number="0610000002")
    await second.wait_heard("promo_now", timeout=15)

    # On entry, as app_queue says it, then the wait: one busy agent, 120 s per call.
    assert first.heard[:5] == ["queue-youarenext", "queue-holdtime", "queue-less-than",
                               "number:2", "queue-minutes"]
    assert second.heard[:7] == ["queue-thereare", "number:2", "queue-callswaiting",
                                "queue-holdtime", "queue-less-than", "number:5", "queue-minutes"]
    # Only the message valid today (2026-12-01), every 2 s: never the expired or future one.
    for call in (first, second):
        assert "promo_old" not in call.heard and "promo_future" not in call.heard
    assert first.heard[5:] == ["promo_now"] * (len(first.heard) - 5)

    for call in (first, second, talking):
        await call.hangup()
    record = await record_of(service, first)
    assert steps(record, "announce") == [("announce", "omega", None, None,
                                          "position 1; wait <2 min (120 s)")]
    assert record.announced_wait == 120
    assert (await record_of(service, second)).announced_wait == 240


async def test_leave_key_plays_its_message_then_goodbye(start_service, desk, caller):
    service = await start_service()
    await paused(desk, "1003")
    call = await caller.dial(RULES)
    await call.wait_heard("queue-youarenext")  # the entry announcement (nobody serving: no wait)
    await call.press("0")
    await call.wait_heard("info_a")
    await call.wait_ended(10)
    record = await record_of(service, call)
    assert (record.outcome, record.topic) == ("left_queue", "omega")
    assert steps(record, "queue_exit")[0][4] == "left_queue -> info:info_a"
    log = await log_of(desk, record.id)
    assert [e[1] for e in log] == ["ENTERQUEUE", "EXITWITHKEY"]
    assert log[1][2:5] == ("0", "1", "1")  # key, position, position on entry
    assert not await desk.waiting("omega")


async def test_no_agents_logged_in_plays_its_message(start_service, desk, caller):
    service = await start_service()
    await staff(desk)  # nobody
    call = await caller.dial(RULES)
    await call.wait_heard("sorry")
    await call.wait_ended(10)
    record = await record_of(service, call)
    assert record.outcome == "no_agents"
    assert "queue-youarenext" not in call.heard  # never joined the line
    assert [e[:2] for e in await log_of(desk, record.id)] == [("omega", "JOINEMPTY")]


async def test_last_agent_logging_out_sends_waiting_callers_to_the_rule(start_service, desk,
                                                                        caller):
    service = await start_service()
    await paused(desk, "1003")  # paused still counts as logged in: the caller waits
    call = await caller.dial(RULES)
    await call.wait_heard("promo_now")
    await desk.logout("1003")
    await call.wait_heard("sorry", timeout=10)  # checked every few seconds
    record = await record_of(service, call)
    assert record.outcome == "no_agents"
    assert [e[1] for e in await log_of(desk, record.id)] == ["ENTERQUEUE", "EXITEMPTY"]


async def test_a_full_line_sends_the_next_caller_to_its_message(start_service, desk, caller):
    service = await start_service()
    await paused(desk, "1003")
    waiting = []
    for n, said in enumerate(["queue-youarenext", "queue-callswaiting"]):
        waiting.append(await caller.dial(RULES, caller_number=f"062000000{n}"))
        await waiting[-1].wait_heard(said)
    third = await caller.dial(RULES, caller_number="0620000009")
    await third.wait_heard("info_b")
    await third.wait_ended(10)
    record = await record_of(service, third)
    assert record.outcome == "queue_full"
    assert [e[:2] for e in await log_of(desk, record.id)] == [("omega", "FULL")]
    assert [w["caller"] for w in await desk.waiting("omega")] == ["0620000000", "0620000001"]
    for call in waiting:
        await call.hangup()


async def test_max_wait_moves_the_caller_to_another_topic_keeping_their_arrival(
        start_service, desk, caller, phones):
    service = await start_service()
    await paused(desk, "1003")
    call = await caller.dial(RULES, caller_number="0630000000")
    await call.wait_heard("promo_now")
    arrived = datetime.fromisoformat((await desk.waiting("omega"))[0]["since"])
    phones.set("1002", "answer")
    await desk.login("1002")  # alpha only, and not yet taking calls
    await desk.pause("1002", "not yet")
    moved = (await desk.until_waiting("alpha", bool, timeout=25))[0]
    assert datetime.fromisoformat(moved["since"]) == arrived  # its place in alpha: its arrival
    await desk.resume("1002")
    ring = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    await phones.hang_up(ring)
    record = await record_of(service, call)
    assert (record.outcome, record.topic, record.agent_id) == ("answered", "alpha", "1002")
    log = await log_of(desk, record.id)
    assert [(e[0], e[1]) for e in log] == [
        ("omega", "ENTERQUEUE"), ("omega", "EXITWITHTIMEOUT"), ("alpha", "ENTERQUEUE"),
        ("alpha", "CONNECT"), ("alpha", "COMPLETEAGENT")]
    assert 16 <= int(log[1][4]) <= 18  # waited, as app_queue logs it


async def test_an_offer_racing_a_rule_never_leaves_an_agent_ringing(start_service, desk,
                                                                    caller, phones):
    """The caller presses the leave key just as an agent frees up: whatever wins, the agent
    ends up available (or on the call), never stuck ringing for a caller who left."""
    service = await start_service()
    phones.set("1003", "ignore")
    await paused(desk, "1003")
    call = await caller.dial(RULES)
    await call.wait_heard("queue-youarenext")
    await desk.resume("1003")
    await call.press("0", gap=0)
    await call.wait_ended(15)
    await record_of(service, call)
    await desk.until_state("1003", "available", "paused", poll=0.1)
