"""A blind transfer to another topic on the real Asterisk (issue #13): the agent sends the
caller to another line; the caller hears that line's music (never the first agent hanging
up), keeps their place and their journey, and the next agent's pop says who sent them and
why; caller and new agent hear each other; the first agent's phone is hung up."""

from __future__ import annotations

import asyncio

from tests.integration.conftest import record_of
from tests.integration.conftest import steps as steps_of
from tests.integration.desk_api import service_side, staff
from tests.integration.test_agents import to_alpha, until_talking
from tests.integration.test_call_hold import hears


async def test_a_blind_transfer_to_another_line(start_service, desk, caller, phones):
    service = await start_service()
    await staff(desk, "1002")  # alpha only
    call = await to_alpha(caller, "0655555555")
    first = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    async with desk.console("1003") as console:  # beta's agent, not logged in yet
        answer = await desk.request(
            "POST", "/api/agents/1002/call/transfer", token="dev-1002",
            json_body={"topic": "beta", "note": "Chiede di un rimborso"})
        assert answer["transferred_to"] == "beta"
        await asyncio.wait_for(first.ended.wait(), 5)  # the first agent's phone hung up
        await desk.until_state("1002", "wrap_up", "available")
        assert await call.listen(1.5) > 0.005  # beta's music while nobody is free there
        [waiting] = await desk.waiting("beta")
        assert waiting["caller"] == "0655555555"

        await desk.login("1003")
        pop = await console.pop()
        second = await phones.wait_answered("1003")
        await until_talking(desk, "1003")
    assert pop["topic"] == "beta" and pop["caller_number"] == "0655555555"
    assert [s["key"] for s in pop["path"]] == ["1", "1"]  # the journey through the menus
    assert (pop["transferred"]["agent"], pop["transferred"]["from_topic"],
            pop["transferred"]["note"]) == ("1002", "alpha", "Chiede di un rimborso")
    sim = caller.ari
    level, tone = await hears(sim, call.id, sim, second.channel)
    assert level > 0.005 and tone > 0.8  # the new agent hears the caller ...
    level, tone = await hears(phones.ari, second.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8  # ... and the caller the new agent, no music

    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1003")
    events = [(e.queue, e.agent, e.event) for e in await desk.queue_log(record.id)]
    assert events == [("alpha", "NONE", "ENTERQUEUE"), ("alpha", "1002", "CONNECT"),
                      ("alpha", "1002", "BLINDTRANSFER"), ("beta", "NONE", "ENTERQUEUE"),
                      ("beta", "1003", "CONNECT"), ("beta", "1003", "COMPLETECALLER")]
    [transfer] = [e for e in await desk.queue_log(record.id) if e.event == "BLINDTRANSFER"]
    assert (transfer.data1, transfer.data2) == ("beta", "centralino")


async def test_a_blind_transfer_to_the_second_level(start_service, desk, caller, phones):
    """To tickets.yaml's group back-office (1003 and 1004): 1003 gets the caller although they
    do not serve alpha, while 1001, free and serving alpha, is not rung; figures count it as
    the second level's, with the time it took to reach it."""
    service = await start_service()
    assert desk.clock is not None
    since = desk.clock.now().isoformat(timespec="seconds")  # the service's (test) time
    before = await second_level(desk, since)
    await staff(desk, "1002", "1001")  # alpha: 1002 was idle longest, 1001 free after
    await desk.pause("1001", "riunione")
    call = await to_alpha(caller, "0655555555")
    first = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    await desk.resume("1001")
    nobody = await desk.request(
        "POST", "/api/agents/1002/call/transfer", token="dev-1002",
        json_body={"group": "back-office"}, expect=(409,))
    assert nobody["error"] == "nobody of group 'back-office' is logged in"
    targets = await desk.request("GET", "/api/agents/1002/transfer-targets", token="dev-1002")
    assert targets["groups"] == [{"id": "back-office", "name": "Back office", "logged_in": 0,
                                  "free": 0}]
    async with desk.console("1003") as console:
        await desk.login("1003")
        await desk.pause("1003", "al telefono")  # in, not free yet
        answer = await desk.request(
            "POST", "/api/agents/1002/call/transfer", token="dev-1002",
            json_body={"group": "back-office", "note": "Pratica ferma al protocollo"})
        assert (answer["transferred_to"], answer["group"]) == ("alpha", "back-office")
        await asyncio.wait_for(first.ended.wait(), 5)
        await desk.until_state("1002", "wrap_up", "available")
        assert await call.listen(1.5) > 0.005  # alpha's music: the group is busy
        assert await desk.state("1001") == "available"  # free in alpha, yet not rung
        [waiting] = await desk.waiting("alpha")
        assert waiting["caller"] == "0655555555"
        await asyncio.sleep(1)  # real waiting while 1003 is paused: the figures' reached_avg
        await desk.resume("1003")
        pop = await console.pop()
        second = await phones.wait_answered("1003")
        await until_talking(desk, "1003")
    assert await desk.state("1001") == "available"
    assert (pop["topic"], pop["caller_number"]) == ("alpha", "0655555555")
    assert (pop["transferred"]["agent"], pop["transferred"]["group"],
            pop["transferred"]["note"]) == ("1002", "back-office", "Pratica ferma al protocollo")
    sim = caller.ari
    level, tone = await hears(sim, call.id, sim, second.channel)
    assert level > 0.005 and tone > 0.8  # 1003 hears the caller ...
    level, tone = await hears(phones.ari, second.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8  # ... and the caller 1003, no music

    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1003")
    [transfer] = [e for e in await desk.queue_log(record.id) if e.event == "BLINDTRANSFER"]
    assert (transfer.agent, transfer.data1, transfer.data2) == (
        "1002", "back-office", "centralino-groups")
    after = await second_level(desk, since)
    assert after["count"] == before["count"] + 1
    assert after["reached_avg"] >= 1  # the caller waited while 1003 was paused


async def second_level(desk, since: str) -> dict:  # type: ignore[no-untyped-def, type-arg]
    """alpha's transfers to back-office in the figures since `since` (the test clock starts
    at the same moment for every test: earlier tests' calls may be in the period too)."""
    figures = (await desk.figures(**{"from": since}))["topics"].get("alpha", {})
    return figures.get("transfers", {}).get("second_level", {}).get(
        "back-office", {"count": 0, "reached_avg": None})


async def test_a_blind_transfer_to_a_number_outside(start_service, desk, caller, phones,
                                                     citizens):
    """Only numbers recalls may call (the test settings: Italian fixed and mobile); the caller
    hears the line's music while it rings; a number that does not answer gives the caller
    back to the line, in their place; one that answers talks to the caller and sees the
    desk's number."""
    service = await start_service()
    await staff(desk, "1002")
    call = await to_alpha(caller, "0655559999")
    first = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    refused = await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                                 json_body={"number": "899123456"}, expect=(409,))
    assert "premium-rate numbers cannot be called back" in refused["error"]
    assert await desk.state("1002") == "on_call"

    # Not answering (recalls' ring_timeout, 2 s here): back in alpha; 1002 takes them again.
    citizens.set("0612345998", "ignore")
    answer = await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                                json_body={"number": "06 1234 5998", "note": "Tributi"})
    assert answer["number"] == "06 1234 5998"
    await asyncio.wait_for(first.ended.wait(), 5)
    # The line's music while it rings (silence reads 0; alpha's class picks a file at random,
    # and the quietest of them averages about 0.005 over a second).
    assert await call.listen(1) > 0.002
    first = await phones.wait_answered("1002", timeout=15)  # after the ring and the wrap-up
    await until_talking(desk, "1002")

    citizens.set("0612345999", "answer", delay=0.5)
    await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                       json_body={"number": "0612345999"})
    await asyncio.wait_for(first.ended.wait(), 5)
    office = await citizens.wait_answered("0612345999")
    assert office.caller_number == "0612345000"  # settings recalls.caller_id: the desk's
    await desk.until_bridged(call.service_half, service_side(office.channel))
    sim = caller.ari
    level, tone = await hears(sim, call.id, citizens.ari, office.channel)
    assert level > 0.005 and tone > 0.8  # the office hears the caller ...
    level, tone = await hears(citizens.ari, office.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8  # ... and the caller the office, no music
    await citizens.hang_up(office)  # the office ends it: the caller's call ends too
    await asyncio.wait_for(call.ended.wait(), 5)
    record = await record_of(service, call)
    assert (record.outcome, record.detail, record.agent_id) == (
        "answered", "ended by the outside", "1002")
    transfers = [(e.agent, e.data1, e.data2) for e in await desk.queue_log(record.id)
                 if e.event == "BLINDTRANSFER"]
    assert transfers == [("1002", "+390612345998", "centralino-outside"),
                         ("1002", "+390612345999", "centralino-outside")]
    steps = [(s["kind"], s["detail"]) for s in (await desk.request(
        "GET", f"/api/calls/{record.id}", token="dev-sup"))["steps"] if "outside" in s["kind"]]
    assert steps == [("outside_failed", "+390612345998: no answer in 2 s"),
                     ("outside_answered", "+390612345999")]
    # The caller was told (alpha's transfer_failed) before going back to the line.
    assert steps_of(record, "transfer_failed") == [
        ("transfer_failed", "alpha", None, "not_reached", "")]


async def test_a_transfer_needs_a_call_and_another_line(start_service, desk, caller, phones):
    await start_service()
    await staff(desk, "1002")
    nothing = await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                                 json_body={"topic": "beta"}, expect=(409,))
    assert "no call in progress" in nothing["error"]
    call = await to_alpha(caller)
    await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    same = await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                              json_body={"topic": "alpha"}, expect=(409,))
    assert "alpha" in same["error"]
    bad = await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                             json_body={"topic": "beta", "colour": "red"}, expect=(400, 422))
    assert "colour" in str(bad)
    other = await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1003",
                               json_body={"topic": "beta"}, expect=(403,))
    assert other["error"]
    assert await desk.state("1002") == "on_call"  # nothing happened to the call
    await call.hangup()


async def test_a_blind_transfer_to_a_named_agent(start_service, desk, caller, phones):
    service = await start_service()
    await staff(desk, "1003", "1001")  # both serve beta: 1003 first
    call = await caller.dial("0999000002", caller_number="0677777777")  # beta, directly
    first = await phones.wait_answered("1003")
    await until_talking(desk, "1003")
    async with desk.console("1001") as console:
        answer = await desk.request(
            "POST", "/api/agents/1003/call/transfer", token="dev-1003",
            json_body={"agent": "1001", "note": "Pratica che segue lei"})
        assert (answer["transferred_to"], answer["agent"]) == ("beta", "1001")
        await asyncio.wait_for(first.ended.wait(), 5)
        pop = await console.pop()
        second = await phones.wait_answered("1001")
        await until_talking(desk, "1001")
    assert pop["transferred"]["agent"] == "1003" and pop["caller_number"] == "0677777777"
    level, tone = await hears(caller.ari, call.id, caller.ari, second.channel)
    assert level > 0.005 and tone > 0.8
    await call.hangup()
    record = await record_of(service, call)
    assert record.agent_id == "1001"
    [transfer] = [e for e in await desk.queue_log(record.id) if e.event == "BLINDTRANSFER"]
    assert (transfer.agent, transfer.data1, transfer.data2) == ("1003", "1001",
                                                               "centralino-agents")


async def test_a_transferred_caller_keeps_their_place_across_a_service_restart(
        start_service, desk, caller, phones):
    """Transferred, then the service restarts while the caller waits in the new line: still
    there, with the music, in their place (their first arrival), and served from there."""
    service = await start_service()
    await staff(desk, "1002")
    call = await to_alpha(caller, "0688888888")
    first = await phones.wait_answered("1002")
    await until_talking(desk, "1002")
    await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                       json_body={"topic": "beta"})
    await asyncio.wait_for(first.ended.wait(), 5)
    await desk.until_waiting("beta", bool)
    [before] = await desk.waiting("beta")
    assert await call.listen(1) > 0.005  # beta's music
    await service.__aexit__(None, None, None)
    assert await call.listen(1) > 0.005  # still hearing it

    restarted = await start_service()
    await desk.until_waiting("beta", bool)
    [after] = await desk.waiting("beta")
    assert (after["caller"], after["since"]) == ("0688888888", before["since"])
    await staff(desk, "1003")
    await phones.wait_answered("1003")
    await until_talking(desk, "1003")
    await call.hangup()
    record = await record_of(restarted, call)
    assert (record.outcome, record.agent_id, record.topic) == ("answered", "1003", "beta")


async def test_a_caller_transferred_to_a_busy_colleague_waits_for_them_across_a_restart(
        start_service, desk, caller, phones):
    """Transferred by name to a colleague on another call: the caller waits for that
    colleague only, and still does after a service restart (a free agent of the line is not
    offered them); the colleague takes them once free."""
    service = await start_service()
    await staff(desk, "1001")
    busy = await caller.dial("0999000002", caller_number="0655551111")  # beta: 1001 takes it
    busy_leg = await phones.wait_answered("1001")
    await until_talking(desk, "1001")
    await staff(desk, "1003")
    call = await caller.dial("0999000002", caller_number="0655552222")
    first = await phones.wait_answered("1003")
    await until_talking(desk, "1003")
    await desk.request("POST", "/api/agents/1003/call/transfer", token="dev-1003",
                       json_body={"agent": "1001", "note": "La segue lei"})
    await asyncio.wait_for(first.ended.wait(), 5)
    await desk.until_waiting("beta", bool)
    await desk.until_state("1003", "available")  # free, and not offered this caller

    await service.__aexit__(None, None, None)
    restarted = await start_service(keep_agents=True)
    [waiting] = await desk.until_waiting("beta", bool)
    assert waiting["caller"] == "0655552222"
    # 1003 is free all along: the caller is still 1001's. A free agent is offered a waiting
    # caller at once (the restarted service distributes as it adopts); 2 s outlasts that.
    await asyncio.sleep(2)
    assert await desk.state("1003") == "available"
    assert [w["caller"] for w in await desk.waiting("beta")] == ["0655552222"]

    await busy.hangup()  # 1001 is free after the wrap-up: theirs
    await asyncio.wait_for(busy_leg.ended.wait(), 5)
    second = await phones.wait_answered("1001", timeout=15)
    await until_talking(desk, "1001")
    level, tone = await hears(caller.ari, call.id, caller.ari, second.channel)
    assert level > 0.005 and tone > 0.8
    await call.hangup()
    record = await record_of(restarted, call)
    assert (record.outcome, record.agent_id, record.topic) == ("answered", "1001", "beta")
