"""Queues and agents on the real Asterisk: the first free operator of the topic gets the caller."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import datetime

import aiohttp

from tests.integration.conftest import MENU, record_of
from tests.integration.desk_api import staff, stored_offers
from tests.integration.waiting import eventually

DIRECT = "0999000002"  # straight to queue beta (agents 1001 and 1003)
API = "http://127.0.0.1:18081"


def token(person: str) -> dict[str, str]:
    return {"Authorization": f"Bearer dev-{person}"}


async def until_talking(desk, agent_id: str) -> None:
    """Until the service has bridged the caller to the agent (not just the phone picked up)."""
    await desk.until_state(agent_id, "on_call")


async def to_alpha(caller, number: str = "0611111111"):
    """A caller on the menu line who picks 1 (submenu) then 1 (queue alpha)."""
    call = await caller.dial(MENU, caller_number=number)
    await call.wait_heard("menu_main")
    await call.press("1")
    await call.wait_heard("menu_sub")
    await call.press("1")
    return call


async def test_three_callers_one_agent_served_in_arrival_order(start_service, desk, caller,
                                                              phones):
    service = await start_service()
    await staff(desk)  # nobody yet: the callers queue up
    calls = []
    for n in range(3):
        call = await caller.dial(DIRECT, caller_number=f"060000000{n}")
        await call.wait_idle()
        calls.append(call)
    assert [w["caller"] for w in await desk.waiting("beta")] == [
        "0600000000", "0600000001", "0600000002"]

    phones.set("1003", "answer")
    await staff(desk, "1003")
    for n in range(3):
        ring = await phones.wait_answered("1003")
        assert ring.caller_number == f"060000000{n}"
        await until_talking(desk, "1003")  # bridged, not just picked up
        await phones.hang_up(ring)  # the agent ends the call; wrap-up; the next one
    for call in calls:
        record = await record_of(service, call)
        assert (record.outcome, record.agent_id, record.detail) == (
            "answered", "1003", "ended by the agent")
        assert record.connected_at > record.queued_at


async def test_longest_idle_agent_gets_the_call(start_service, desk, caller, phones):
    service = await start_service()
    await staff(desk, "1002", "1001")  # 1002 logged in first: idle longest
    call = await to_alpha(caller)
    ring = await phones.wait_answered("1002")
    assert [r.agent for r in phones.rings] == ["1002"]
    await until_talking(desk, "1002")
    await call.hangup()
    await asyncio.wait_for(ring.ended.wait(), 5)  # the agent's leg goes with the caller
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id, record.detail) == (
        "answered", "1002", "ended by the caller")


async def test_ring_no_answer_moves_on_and_pauses_after_max_missed(start_service, desk, caller,
                                                                   phones):
    service = await start_service()
    phones.set("1001", "ignore")
    phones.set("1002", "answer")
    await staff(desk, "1001", "1002")  # 1001 is idle longest but never answers
    first = await to_alpha(caller, "0611111111")
    ring = await phones.wait_answered("1002", timeout=15)
    assert [r.agent for r in phones.rings] == ["1001", "1002"]
    assert phones.rings[0].ended.is_set()  # we hung up 1001's phone after ring_timeout
    assert await desk.state("1001") == "available"

    second = await to_alpha(caller, "0622222222")  # 1002 is busy: 1001 again, misses again
    agent = await desk.until_state("1001", "paused", timeout=15, poll=0.1)
    assert agent["reason"] == "2 calls not answered"
    assert [w["caller"] for w in await desk.waiting("alpha")] == ["0622222222"]
    await phones.hang_up(ring)
    ring2 = await phones.wait_answered("1002", timeout=15)  # after 1002's wrap-up
    assert ring2.caller_number == "0622222222"
    await second.hangup()
    record = await record_of(service, first)
    assert record.agent_id == "1002"
    log = [(e.event, e.agent) for e in await desk.queue_log(call_id=record.id)]
    assert log == [("ENTERQUEUE", "NONE"), ("RINGNOANSWER", "1001"), ("CONNECT", "1002"),
                   ("COMPLETEAGENT", "1002")]
    events = [(e["state"], e["reason"], e["by"]) for e in await desk.agent_events("1001")][:1]
    assert events == [("paused", "2 calls not answered", "system")]


async def test_wrap_up_is_respected(start_service, desk, caller, phones):
    await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    first = await caller.dial(DIRECT, caller_number="0611111111")
    await first.wait_idle()
    second = await caller.dial(DIRECT, caller_number="0622222222")
    ring = await phones.wait_answered("1003")
    await second.wait_idle()
    loop = asyncio.get_running_loop()
    await phones.hang_up(ring)
    hung_up = loop.time()
    await phones.wait_rings(2)
    assert phones.rings[1].caller_number == "0622222222"
    assert phones.rings[1].at - hung_up >= 1.0  # queues.yaml: wrap_up 1 s for beta
    await second.hangup()


async def test_abandon_is_recorded_with_its_wait(start_service, desk, caller):
    service = await start_service()
    await staff(desk)
    call = await caller.dial(DIRECT)
    await call.wait_idle()
    await asyncio.sleep(1.5)  # real waiting in the line: the wait the record must show
    await call.hangup()
    record = await record_of(service, call)
    assert record.outcome == "abandoned"
    waited = float(record.detail.split()[1])
    assert 1.5 <= waited < 5
    abandon = (await desk.queue_log(call_id=record.id))[-1]
    assert (abandon.event, abandon.data1, abandon.data2) == ("ABANDON", "1", "1")
    assert 1 <= int(abandon.data3) < 5


async def test_caller_hangs_up_while_the_agent_rings(start_service, desk, caller, phones):
    service = await start_service()
    phones.set("1003", "ignore")
    await staff(desk, "1003")
    call = await caller.dial(DIRECT)
    await phones.wait_rings(1)
    await call.hangup()
    await asyncio.wait_for(phones.rings[0].ended.wait(), 5)  # the agent's phone stops ringing
    record = await record_of(service, call)
    assert record.outcome == "abandoned"
    agent = await desk.agent("1003")
    assert agent["state"] == "available"
    assert agent["missed_in_a_row"] == 0  # not the agent's fault
    offers = await stored_offers(service, record.id)
    assert [(o.agent_id, o.outcome) for o in offers] == [("1003", "cancelled")]


async def test_screen_pop_arrives_before_the_bridge_with_the_journey(start_service, desk,
                                                                     caller, phones):
    service = await start_service()
    await staff(desk)
    number = f"06{random.randrange(10**8):08d}"  # the database outlives this test
    earlier = await caller.dial(DIRECT, caller_number=number)  # a previous contact
    await earlier.wait_idle()
    await earlier.hangup()
    await record_of(service, earlier)

    phones.set("1002", "answer", delay=1.0)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect("http://127.0.0.1:18081/ws/agents/1002") as ws:
            await ws.send_json({"token": "dev-1002"})
            assert (await ws.receive_json())["type"] == "hello"
            await staff(desk, "1002")
            call = await to_alpha(caller, number)
            pop = await ws.receive_json(timeout=20)
            popped_at = loop.time()
            await ws.send_json({"type": "ack", "offer_id": pop["offer_id"]})
            ring = await phones.wait_answered("1002")
            await until_talking(desk, "1002")
        # The console reloaded during the call (a browser refresh): the pop comes back.
        async with http.ws_connect("http://127.0.0.1:18081/ws/agents/1002") as again:
            await again.send_json({"token": "dev-1002"})
            hello = await again.receive_json()
            assert hello["agent"]["state"] == "on_call"
            assert hello["offer"] == pop
    assert popped_at < ring.at + 1.0  # before the agent could answer, let alone be bridged
    assert pop["type"] == "offer" and pop["caller_number"] == number
    assert (pop["number"], pop["line"], pop["topic"], pop["topic_name"]) == (
        MENU, "Test menu line", "alpha", "Alpha")
    assert pop["path"] == [{"menu": "main", "key": "1", "label": "Sub"},
                           {"menu": "sub", "key": "1", "label": "Alpha"}]
    assert 0 <= pop["waited_seconds"] < 5
    assert [(c["line"], c["outcome"]) for c in pop["previous_contacts"]] == [
        ("Test direct line", "abandoned")]
    await call.hangup()
    [offer] = await stored_offers(service, pop["call_id"])
    assert offer.acked_at is not None and offer.acked_at <= offer.answered_at


async def test_agents_change_only_their_own_state(start_service, desk):
    await start_service()
    await staff(desk)
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{API}/api/agents/1001/login", headers=token("1001")) as r:
            assert r.status == 200 and (await r.json())["state"] == "available"
        async with http.post(f"{API}/api/agents/1002/login", headers=token("1001")) as r:
            assert r.status == 403
        async with http.post(f"{API}/api/agents/1001/pause", headers=token("1001"),
                             json={}) as r:
            assert r.status == 400 and "reason" in (await r.json())["error"]
        async with http.post(f"{API}/api/agents/1001/pause", headers=token("1001"),
                             json={"reason": "pausa pranzo"}) as r:
            assert (await r.json())["state"] == "paused"
        async with http.post(f"{API}/api/agents/1001/pause", headers=token("1001"),
                             json={"reason": "ancora"}) as r:
            assert r.status == 200
        async with http.post(f"{API}/api/agents/1002/resume", headers=token("sup")) as r:
            assert r.status == 409  # 1002 is logged out, not paused
        async with http.post(f"{API}/api/agents/1001/resume", headers=token("sup")) as r:
            assert r.status == 200 and (await r.json())["state"] == "available"
        async with http.get(f"{API}/api/agents", headers=token("1001")) as r:
            assert r.status == 403
        async with http.get(f"{API}/api/agents/1001/events", headers=token("1001")) as r:
            events = [(e["state"], e["reason"], e["by"]) for e in await r.json()][:3]
    assert events == [("available", "", "supervisor:sup"),
                      ("paused", "ancora", "agent:1001"),
                      ("paused", "pausa pranzo", "agent:1001")]


async def test_supervisor_stream_sees_agents_and_queues(start_service, desk, caller):
    await start_service()
    await staff(desk)
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(f"{API}/ws/supervisor") as ws:
            await ws.send_json({"token": "dev-1001"})  # an agent is not a supervisor
            assert (await ws.receive_json())["type"] == "error"
        async with http.ws_connect(f"{API}/ws/supervisor") as ws:
            await ws.send_json({"token": "dev-sup"})
            snapshot = await ws.receive_json()
            assert snapshot["type"] == "snapshot" and len(snapshot["agents"]) == 4
            await desk.login("1002")
            call = await caller.dial(DIRECT, caller_number="0644444444")
            seen = []
            async with asyncio.timeout(10):
                while not any(e["type"] == "queue" for e in seen):
                    seen.append(json.loads((await ws.receive()).data))
            await call.hangup()
    assert {"type": "agent", "agent": "1002", "state": "available"}.items() <= seen[0].items()
    joined = next(e for e in seen if e["type"] == "queue")
    assert (joined["event"], joined["topic"], joined["caller"]) == ("joined", "beta", "0644444444")


async def test_restart_keeps_the_conversation_and_the_line(start_service, desk, caller, phones):
    service = await start_service()
    phones.set("1003", "answer")
    await staff(desk, "1003")
    talking = await caller.dial(DIRECT, caller_number="0610000000")
    ring = await phones.wait_answered("1003")
    await until_talking(desk, "1003")
    waiting = []
    for n in (1, 2):
        call = await caller.dial(DIRECT, caller_number=f"061000000{n}")
        await call.wait_idle()
        waiting.append(call)

    await service.__aexit__(None, None, None)  # the service stops; Asterisk keeps the calls
    assert not ring.ended.is_set() and not talking.ended.is_set()
    restarted = await start_service_keeping_agents(start_service)
    await desk.until_waiting("beta", lambda line: len(line) >= 2)
    assert [w["caller"] for w in await desk.waiting("beta")] == ["0610000001", "0610000002"]
    assert await desk.state("1003") == "on_call"  # not offered anything meanwhile

    await phones.hang_up(ring)  # the conversation that survived the restart ends
    for n in (1, 2):
        nxt = await phones.wait_answered("1003", timeout=15)
        assert nxt.caller_number == f"061000000{n}"
        await until_talking(desk, "1003")
        await phones.hang_up(nxt)
    records = [await record_of(restarted, c) for c in (talking, *waiting)]
    assert [(r.outcome, r.agent_id) for r in records] == [("answered", "1003")] * 3
    rings_per_caller = [r.caller_number for r in phones.rings]
    assert rings_per_caller == ["0610000000", "0610000001", "0610000002"]  # nobody twice
    # Reports follow each caller across the restart: one queue_log story per caller, under
    # the id its ENTERQUEUE was written with.
    for call in (talking, *waiting):
        first = min(await desk.calls(channel_id=call.service_half),
                    key=lambda c: datetime.fromisoformat(c["started_at"]))
        story = [e.event for e in await desk.queue_log(call_id=first["id"])]
        assert story == ["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"], (call, story)


async def start_service_keeping_agents(start_service):
    """Restart without logging the agents out (the fixture does by default)."""
    return await start_service(keep_agents=True)


async def test_an_unreachable_phone_pauses_its_agent_and_the_next_one_answers(
        start_service, desk, caller, phones):
    service = await start_service()
    phones.set("1003", "answer")
    await staff(desk, "1004", "1003")  # 1004 idle longest, but its SIP phone is not registered
    call = await caller.dial(DIRECT, caller_number="0640000000")
    ring = await phones.wait_answered("1003")
    assert ring.caller_number == "0640000000"
    agent = await desk.agent("1004")
    assert agent["state"] == "paused" and agent["reason"].startswith("phone unreachable")
    assert agent["missed_in_a_row"] == 0  # not a ring the agent let go
    await until_talking(desk, "1003")
    await call.hangup()
    record = await record_of(service, call)
    assert record.agent_id == "1003"
    offers = await stored_offers(service, record.id)
    assert [(o.agent_id, o.outcome) for o in offers] == [("1004", "failed"), ("1003", "answered")]
    log = [(e.event, e.agent) for e in await desk.queue_log(call_id=record.id)]
    assert ("RINGNOANSWER", "1004") not in log


async def test_an_agent_hanging_up_as_they_answer_leaves_the_caller_waiting_with_music(
        start_service, desk, caller, phones, caplog):
    """The agent's phone answers and hangs up before the service could bridge it: the caller
    goes back to the line's music and the next agent who answers gets them."""
    service = await start_service()
    phones.set("1001", "drop", delay=0.1)
    await staff(desk, "1001")
    call = await to_alpha(caller)
    await phones.wait_rings(1)
    await asyncio.wait_for(phones.rings[0].ended.wait(), 10)
    async def logged() -> str:
        return caplog.text
    await eventually(logged, lambda text: "could not bridge" in text, timeout=5,
                     what="the failed bridge in the log")
    assert await call.listen(1.5) > 0.005  # back with the music, not in silence
    phones.set("1002", "answer")
    await staff(desk, "1002")
    ring = await phones.wait_answered("1002", timeout=15)
    assert ring.caller_number == "0611111111"
    await until_talking(desk, "1002")
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1002")


async def test_music_plays_for_a_caller_after_the_line_emptied(start_service, desk, caller,
                                                              phones):
    """The holding bridge's music outlives the callers who leave it."""
    await start_service()
    await staff(desk, "1002")
    first = await to_alpha(caller)
    ring = await phones.wait_answered("1002")
    await until_talking(desk, "1002")  # out of the holding bridge: it is empty now
    second = await to_alpha(caller, "0622222222")
    await second.wait_idle()
    assert await second.listen(1.5) > 0.005
    await first.hangup()
    await asyncio.wait_for(ring.ended.wait(), 5)
    await second.hangup()
