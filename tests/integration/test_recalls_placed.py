"""Recalls placed through the distributor on the real Asterisk and database (issue #4, slice 2):
FIFO with live callers, agent first then citizen, retries then failed, restarts."""

from __future__ import annotations

import asyncio
import random
import shutil
from datetime import datetime, timedelta
from functools import partial
from itertools import pairwise
from typing import Any

import aiohttp

from tests.integration.conftest import REPO, TEST_SETTINGS, record_of, settings_for, steps
from tests.integration.desk_api import staff, stored_attempts, stored_offers
from tests.integration.test_agents import until_talking
from tests.integration.waiting import eventually

API = "http://127.0.0.1:18081/api/recalls"
PORTAL = {"Authorization": "Bearer dev-portal"}
DIRECT = "0999000002"  # live callers straight to queue beta (agent 1003)


async def ask(**changes: Any) -> tuple[str, str]:
    """POST a "now" recall for beta: (request id, the national number the citizen has)."""
    national = f"347{random.randrange(10**7):07d}"
    body = {"number": national, "topic": "beta", "mode": "now", "name": "Maria Rossi",
            "note": "SUAP pratica 12", "portal_ref": "P-1", **changes}
    async with aiohttp.ClientSession() as http, http.post(API, json=body,
                                                          headers=PORTAL) as resp:
        assert resp.status == 202, await resp.text()
        return (await resp.json())["id"], national


async def until(check, timeout: float = 15, what: str = "the condition"  # type: ignore[no-untyped-def]
                ) -> None:
    await eventually(check, timeout=timeout, what=what)


async def in_line(desk, recall_id: str) -> None:
    await desk.until_waiting("beta", lambda line: any(w["call_id"] == recall_id for w in line),
                             timeout=15)


async def status_is(desk, recall_id: str, *statuses: str, timeout: float = 30) -> None:
    await eventually(partial(desk.recall, recall_id), lambda row: row["status"] in statuses,
                     timeout, what=f"recall {recall_id} {' or '.join(statuses)}")


async def bridged(desk, recall_id: str) -> None:
    """Until Asterisk bridges the agent and the citizen (its bridge as ARI shows it)."""
    await eventually(partial(desk.asterisk, f"/bridges/centralino-call-{recall_id}"),
                     lambda bridge: bridge is not None and len(bridge["channels"]) == 2,
                     15, what=f"recall {recall_id}: agent and citizen bridged")  # None: not yet


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_recall_and_live_caller_in_arrival_order_then_bridged(start_service, desk, caller,
                                                                    phones, citizens):
    service = await start_service()
    recall_id, national = await ask()
    await in_line(desk, recall_id)
    live = await caller.dial(DIRECT, caller_number="0611112222")
    await live.wait_idle()
    assert [w["call_id"] == recall_id for w in await desk.waiting("beta")] == [True, False]

    phones.set("1003", "answer", delay=0.1)
    citizens.set(national, "answer", delay=0.2)
    async with desk.console("1003") as console:
        await staff(desk, "1003")
        ring = await phones.wait_answered("1003")
        assert ring.caller_number == "+39" + national  # the agent's phone shows the citizen
        assert (await console.last_pop())["type"] == "recall"
        citizen = await citizens.wait_answered(national)
        assert citizen.caller_number == "0612345000"  # settings recalls.caller_id
        await bridged(desk, recall_id)
        assert (await desk.recall(recall_id))["status"] == "calling"
        await citizens.hang_up(citizen)  # the citizen ends it: the agent's leg goes too
        await asyncio.wait_for(ring.ended.wait(), 5)
        await status_is(desk, recall_id, "done")
    row = await desk.recall(recall_id)
    assert (row["attempts"], [a["outcome"] for a in row["attempt_log"]]) == (1, ["answered"])
    assert row["attempt_log"][0]["detail"] == "ended by the citizen"
    # Which agent took it: stored with the attempt, not in the API.
    assert [a.agent_id for a in await stored_attempts(service, recall_id)] == ["1003"]

    second = await phones.wait_answered("1003")  # after the wrap-up: the live caller
    assert second.caller_number == "0611112222"
    assert [r.agent for r in phones.rings] == ["1003", "1003"]
    await until_talking(desk, "1003")
    await live.hangup()
    assert (await record_of(service, live)).agent_id == "1003"


async def test_citizen_never_answers_retries_then_failed(start_service, desk, phones, citizens):
    await start_service()
    phones.set("1003", "answer", delay=0.1)
    async with desk.console("1003") as console:
        await staff(desk, "1003")
        recall_id, national = await ask()
        citizens.set(national, "ignore")
        await status_is(desk, recall_id, "failed", timeout=40)
        row = await desk.recall(recall_id)
        attempts = row["attempt_log"]
        assert [a["outcome"] for a in attempts] == ["no_answer"] * 3  # max_attempts (test config)
        gaps = [(at(b["at"]) - at(a["at"])).total_seconds() for a, b in pairwise(attempts)]
        # Each gap: the retry delay (1 s, then 2 s) + ringing the agent and the 2 s citizen ring.
        assert gaps[0] >= 1 + 2 and gaps[1] >= 2 + 2, gaps
        rings = citizens.rings_of(national)
        assert len(rings) == 3 and all(r.ended.is_set() for r in rings)
        assert row["attempts"] == 3
        await console.last_pop(lambda pop: pop.get("status") == "failed")  # the last one says
    assert not await desk.waiting("beta")


async def test_agent_missed_ring_is_not_an_attempt(start_service, desk, phones, citizens):
    await start_service()
    phones.set("1003", "ignore")
    await staff(desk, "1003")
    recall_id, national = await ask()
    await desk.until_state("1003", "paused", timeout=20, poll=0.05)  # max_missed 2: 2 rings of 3 s
    await status_is(desk, recall_id, "waiting")
    await in_line(desk, recall_id)  # still at its place, for the next agent
    row = await desk.recall(recall_id)
    assert row["attempts"] == 0 and not citizens.rings_of(national)
    assert [a["outcome"] for a in row["attempt_log"]] == ["agent_missed"] * 2


async def test_restart_mid_dial_and_waiting_each_placed_once(start_service, desk, phones,
                                                             citizens):
    service = await start_service()
    dialled_id, dialled = await ask()
    waiting_id, waiting = await ask()
    phones.set("1003", "answer", delay=0.1)
    citizens.set(dialled, "ignore")
    await staff(desk, "1003")
    first = (await citizens.wait_rings(1))[0]
    assert first.agent == dialled
    await service.__aexit__(None, None, None)  # mid-dial; the other request waits in line
    await asyncio.wait_for(first.ended.wait(), 5)  # the stopped service hung up its legs
    # What the stopped service left stored (no API while it is down; its restart changes it).
    assert (await service.store.get_recall(dialled_id)).status == "calling"
    assert (await service.store.get_recall(waiting_id)).status == "waiting"

    citizens.set(dialled, "answer", delay=0.1)
    citizens.set(waiting, "answer", delay=0.1)
    await start_service(keep_recalls=True)
    await staff(desk, "1003")
    for recall_id, number in ((dialled_id, dialled), (waiting_id, waiting)):
        ring = await citizens.wait_answered(number)
        await bridged(desk, recall_id)
        await citizens.hang_up(ring)
        await status_is(desk, recall_id, "done")
    assert [r.agent for r in citizens.rings] == [dialled, dialled, waiting]
    assert citizens.rings[0].ended.is_set()  # never two dials of one request at once
    for recall_id in (dialled_id, waiting_id):
        attempts = (await desk.recall(recall_id))["attempt_log"]
        assert [a["outcome"] for a in attempts] == ["answered"]


async def test_callback_key_keeps_the_callers_place(start_service, desk, caller, phones,
                                                     citizens):
    """A caller presses the callback key: a recall takes their place in the line, they hear the
    confirmation and the call ends; the agent then calls them back before the caller who came
    after them."""
    service = await start_service()
    first = await caller.dial(DIRECT, caller_number="0611112222", caller_name="Anna Bianchi")
    await first.wait_idle()
    second = await caller.dial(DIRECT, caller_number="0633334444")
    await second.wait_idle()
    arrived = at((await desk.waiting("beta"))[0]["since"])

    await first.press("5")
    await first.wait_heard("callback_ok")
    await first.wait_ended()
    record = await record_of(service, first)
    assert record.outcome == "callback"
    request = await desk.open_recall("+390611112222", "beta")
    assert request is not None and (request["mode"], request["name"], request["status"]) == (
        "queue", "Anna Bianchi", "waiting")
    # the caller's arrival: their place
    assert at(request["due_at"]) == arrived == record.queued_at
    assert ("callback", "beta", None, None, f"recall {request['id']}") in steps(record,
                                                                                "callback")
    line = await desk.waiting("beta")
    assert (line[0]["call_id"], line[0]["recall"]) == (request["id"], True)
    assert len(line) == 2
    exits = [e for e in await desk.queue_log(call_id=record.id) if e.event != "ENTERQUEUE"]
    assert [(e.event, e.data1) for e in exits] == [("EXITWITHKEY", "5")]

    phones.set("1003", "answer", delay=0.1)
    citizens.set("0611112222", "answer", delay=0.1)
    async with desk.console("1003") as console:
        await staff(desk, "1003")
        ring = await phones.wait_answered("1003")
        assert ring.caller_number == "+390611112222"  # the recall first, not the second caller
        assert (await console.last_pop())["mode"] == "queue"
    citizen = await citizens.wait_answered("0611112222")
    await bridged(desk, request["id"])
    await citizens.hang_up(citizen)
    await status_is(desk, request["id"], "done")
    after = await phones.wait_answered("1003")
    assert after.caller_number == "0633334444"
    await second.hangup()


async def test_callback_key_refused_for_a_foreign_number_keeps_waiting(start_service, desk,
                                                                        caller):
    service = await start_service()
    call = await caller.dial(DIRECT, caller_number="00442071838750")
    await call.wait_idle()
    await call.press("5")
    await call.wait_heard("callback_no")
    await call.wait_idle()
    assert [w["caller"] for w in await desk.waiting("beta")] == ["00442071838750"]
    assert await desk.open_recall("+442071838750", "beta") is None
    await call.hangup()
    record = await record_of(service, call)
    assert record.outcome == "abandoned"
    refused = steps(record, "callback_refused")
    assert len(refused) == 1 and refused[0][3] == "callback_no" and "GB" in refused[0][4]


async def test_back_request_is_placed_at_its_slot_and_not_before(start_service, desk, phones,
                                                                  citizens):
    service = await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")  # free all along: only the slot holds the request back
    slot = (desk.now() + timedelta(seconds=4)).replace(microsecond=0)
    recall_id, national = await ask(mode="back", slot=slot.isoformat())
    citizens.set(national, "answer", delay=0.1)
    assert at((await desk.recall(recall_id))["due_at"]) == slot
    # Real time to a second before the slot (the service's clock runs with the wall clock).
    await asyncio.sleep((slot - desk.now()).total_seconds() - 1)
    assert not phones.rings and not await desk.waiting("beta")  # a second before: nothing
    ring = await citizens.wait_answered(national, timeout=10)
    placed = next(a for a in phones.rings if a.agent == "1003")
    assert placed.caller_number == "+39" + national
    offers = await stored_offers(service, recall_id)
    assert len(offers) == 1 and offers[0].offered_at >= slot  # the agent rung at the slot
    await bridged(desk, recall_id)
    await citizens.hang_up(ring)
    await status_is(desk, recall_id, "done")


async def test_busy_citizen_is_an_attempt_with_its_outcome(start_service, desk, phones,
                                                            citizens):
    await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    recall_id, national = await ask()
    citizens.set(national, "refuse")  # hangs up "busy"
    await status_is(desk, recall_id, "failed", timeout=40)
    attempts = (await desk.recall(recall_id))["attempt_log"]
    assert [a["outcome"] for a in attempts] == ["busy"] * 3
    assert len(citizens.rings_of(national)) == 3


async def test_cancelled_while_in_line_is_never_placed(start_service, desk, phones, citizens):
    await start_service()
    recall_id, national = await ask()
    await in_line(desk, recall_id)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{API}/{recall_id}", headers=PORTAL) as resp:
            assert (await resp.json())["position"] == 1  # the portal can tell the citizen
        async with http.delete(f"{API}/{recall_id}", headers=PORTAL) as resp:
            body = await resp.json()
            assert resp.status == 200 and (body["status"], body["position"]) == (
                "cancelled", None)
    await desk.until_waiting("beta", lambda line: not line, timeout=5)
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    # A free agent is offered a waiting request at once (at the login): 1.5 s outlasts that.
    await asyncio.sleep(1.5)
    assert not phones.rings and not citizens.rings_of(national)
    assert (await desk.recall(recall_id))["status"] == "cancelled"
    assert await desk.state("1003") == "available"


async def test_a_request_nobody_reaches_expires(start_service, desk, phones):
    await start_service(settings=settings_for(CENTRALINO_RECALLS__EXPIRE_AFTER="3"))
    recall_id, _ = await ask()
    await in_line(desk, recall_id)
    await status_is(desk, recall_id, "expired", timeout=10)
    await desk.until_waiting("beta", lambda line: not line, timeout=5)
    await staff(desk, "1003")
    await asyncio.sleep(1)  # outlasts the offer a free agent gets at once: never placed
    assert not phones.rings


async def test_recall_share_zero_serves_live_callers_first(start_service, desk, caller, phones,
                                                           citizens):
    await start_service(settings=settings_for(CENTRALINO_RECALLS__SHARE="0"))
    recall_id, national = await ask()
    await in_line(desk, recall_id)
    live = await caller.dial(DIRECT, caller_number="0611112222")
    await live.wait_idle()
    assert (await desk.waiting("beta"))[0]["call_id"] == recall_id  # first by arrival
    phones.set("1003", "answer", delay=0.1)
    citizens.set(national, "answer", delay=0.1)
    await staff(desk, "1003")
    first = await phones.wait_answered("1003")
    assert first.caller_number == "0611112222"  # share 0: the live caller goes first
    await until_talking(desk, "1003")
    await live.hangup()
    await asyncio.wait_for(first.ended.wait(), 5)
    second = await phones.wait_answered("1003")  # then the recall, nobody else waits
    assert second.caller_number == "+39" + national
    citizen = await citizens.wait_answered(national)
    await bridged(desk, recall_id)
    await citizens.hang_up(citizen)
    await status_is(desk, recall_id, "done")


async def test_restart_during_a_recall_conversation_keeps_the_agent_on_call(
        start_service, desk, caller, phones, citizens):
    service = await start_service()
    recall_id, national = await ask()
    phones.set("1003", "answer", delay=0.1)
    citizens.set(national, "answer", delay=0.1)
    await staff(desk, "1003")
    agent_leg = await phones.wait_answered("1003")
    citizen = await citizens.wait_answered(national)
    await bridged(desk, recall_id)

    await service.__aexit__(None, None, None)  # the conversation goes on in Asterisk
    assert not agent_leg.ended.is_set() and not citizen.ended.is_set()
    await start_service(keep_agents=True, keep_recalls=True)
    async def adopted() -> bool:  # the agent is on this recall's call again
        return (await desk.agent("1003"))["call_id"] == recall_id
    await until(adopted, 5, "1003 on the recall's call again")
    assert await desk.state("1003") == "on_call"
    live = await caller.dial(DIRECT, caller_number="0622223333")
    await live.wait_idle()
    assert [r.caller_number for r in phones.rings] == ["+39" + national]  # not offered

    await citizens.hang_up(citizen)  # the adopted conversation ends: the agent's leg goes too
    await asyncio.wait_for(agent_leg.ended.wait(), 5)
    nxt = await phones.wait_answered("1003", timeout=10)  # after the wrap-up: the live caller
    assert nxt.caller_number == "0622223333"
    await live.hangup()
    row = await desk.recall(recall_id)
    # one attempt, nothing dialled twice
    assert [a["outcome"] for a in row["attempt_log"]] == ["answered"]
    assert len(citizens.rings_of(national)) == 1
    assert row["status"] == "done"


async def test_callback_key_moves_up_a_later_request_of_the_same_number(start_service, desk,
                                                                        caller):
    """The citizen asked the portal for a call in an hour, then rang and pressed the callback
    key: one request, now at the caller's place (not two calls to one person)."""
    await start_service()
    slot = (desk.now() + timedelta(hours=1)).replace(microsecond=0)
    number = f"0611{random.randrange(10**6):06d}"
    recall_id, _ = await ask(mode="back", slot=slot.isoformat(), number=number)
    call = await caller.dial(DIRECT, caller_number=number)
    await call.wait_idle()
    queued_at = at((await desk.waiting("beta"))[0]["since"])
    await call.press("5")
    await call.wait_heard("callback_ok")
    await call.wait_ended()
    row = await desk.recall(recall_id)
    assert (row["status"], row["mode"], at(row["due_at"])) == ("waiting", "back", queued_at)
    await in_line(desk, recall_id)
    assert [w["call_id"] for w in await desk.waiting("beta")] == [recall_id]


async def test_callback_key_while_the_database_fails_keeps_the_caller_waiting(
        start_service, desk, caller, monkeypatch):
    service = await start_service()
    call = await caller.dial(DIRECT, caller_number="0611119999")
    await call.wait_idle()

    async def down(row):  # type: ignore[no-untyped-def]
        raise OSError("connection refused")
    monkeypatch.setattr(service.store, "create_recall", down)
    await call.press("5")
    await call.wait_heard("callback_no")  # told it cannot be done, not cut off
    await call.wait_idle()
    assert [w["caller"] for w in await desk.waiting("beta")] == ["0611119999"]
    await call.hangup()


async def test_callback_key_keeps_the_lines_priority_across_a_restart(start_service, desk, caller,
                                                                      tmp_path):
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    direct = config / "flows" / "direct.yaml"
    direct.write_text(direct.read_text() + "priority_boost: 30\n")
    settings = settings_for(config / "centralino.yaml",
                            CENTRALINO_PROMPTS__BUILD_DIR=str(REPO / "var" / "test-prompts"))
    service = await start_service(settings=settings)
    number = f"0611{random.randrange(10**6):06d}"
    call = await caller.dial(DIRECT, caller_number=number)
    await call.wait_idle()
    await call.press("5")
    await call.wait_ended()
    # A request's priority boost is neither in the recall API nor in /api/queues: it is read
    # where it is kept (the stored request, the line's entry).
    request = await service.store.open_recall(f"+39{number}", "beta")
    assert request is not None and request.boost == 30
    assert service.queues.get(request.id).boost == 30

    await service.__aexit__(None, None, None)
    restarted = await start_service(settings=settings, keep_recalls=True)
    await in_line(desk, request.id)
    assert restarted.queues.get(request.id).boost == 30  # still ahead of unboosted callers


async def answered_while_refused(service, desk, citizens, monkeypatch, write: str, times: int
                                 ) -> tuple[list[tuple[Any, ...]], str, str]:
    """One "now" recall, answered and hung up, while the store's `write` refuses its first
    `times` calls as an unreachable database does (a fault injected into the service's store:
    no API makes one write fail): (the refused calls' arguments, the request's id, the
    citizen's number), once the request is done."""
    real, refused = getattr(service.store, write), []

    async def away(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(refused) < times:
            refused.append(args)
            raise OSError("connection refused")
        return await real(*args, **kwargs)
    monkeypatch.setattr(service.store, write, away)
    recall_id, national = await ask()
    citizens.set(national, "answer", delay=0.1)
    ring = await citizens.wait_answered(national)
    await bridged(desk, recall_id)
    await citizens.hang_up(ring)
    await status_is(desk, recall_id, "done", timeout=20)
    return refused, recall_id, national


async def test_an_attempt_ending_while_the_database_is_away_is_stored_when_it_is_back(
        start_service, desk, phones, citizens, monkeypatch):
    """The conversation ends while the database refuses connections: the outcome is kept and
    stored once it answers again, and the citizen is not called a second time meanwhile."""
    service = await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    refused, recall_id, national = await answered_while_refused(
        service, desk, citizens, monkeypatch, "end_recall_attempt", times=2)
    assert [status for _, status, *_ in refused] == ["done", "done"]
    assert [a["outcome"] for a in (await desk.recall(recall_id))["attempt_log"]] == ["answered"]
    assert len(citizens.rings_of(national)) == 1


async def test_a_recall_that_fails_inside_the_service_goes_back_to_its_place(
        start_service, desk, phones, citizens, monkeypatch):
    """The database refuses the moment the request is taken for an agent: the agent is let go,
    the request waits again at its place and is placed once the database answers."""
    service = await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    refused, recall_id, national = await answered_while_refused(
        service, desk, citizens, monkeypatch, "set_recall_status", times=1)
    assert [args[0] for args in refused] == [recall_id]
    assert [a["outcome"] for a in (await desk.recall(recall_id))["attempt_log"]] == ["answered"]
    assert len(citizens.rings_of(national)) == 1
