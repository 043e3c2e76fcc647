"""A call from StasisStart to its end (centralino.calls.CallSession) on the fake Asterisk and a
virtual clock: what the caller hears, which agent's phone rings, what is recorded. The same
paths run against the real Asterisk in tests/integration (test_agents, test_queue_rules)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from centralino.calls import CallSession
from centralino.clock import VirtualClock
from centralino.transfers import CallControlError
from cti.agents import AgentState
from cti.recalls import RecallError
from ivr.schema import TransferFailed
from tests.unit.fakeasterisk import PROMPT_SECONDS, START, Desk_, Phone

DIRECT = "0999000002"  # the cost notice, then the line "beta" (callback key 5, music "calm")
RULES = "0999000004"  # straight into "omega": messages, announcements, max wait, leave key
CALLER = "0612345678"


@pytest.fixture
async def world() -> AsyncIterator[Desk_]:
    world = Desk_(VirtualClock(START))
    yield world
    for task in world.spawned:
        task.cancel()


async def started(world: Desk_, number: str, caller: str = CALLER) -> tuple[CallSession,
                                                                           asyncio.Task[None]]:
    session = world.call(number, caller)
    task = asyncio.ensure_future(session.run())
    await world.clock.settle()
    return session, task


def login(world: Desk_, *agents: str) -> None:
    for agent in agents:
        world.desk.ask(agent, "login", f"agent:{agent}")


def state(world: Desk_, agent: str) -> AgentState:
    return world.desk.agents[agent].state


async def test_the_first_free_agent_answers_talks_and_wraps_up(world):
    login(world, "1001")
    # The caller wrote to the desk before: the pop shows it (matched on the E.164 number).
    earlier = SimpleNamespace(number="HD-2026-000007", subject="Rimborsi", state="risolto",
                              created_at=datetime(2026, 11, 20, 9, tzinfo=UTC), call_id=None)
    world.history.tickets["+39" + CALLER] = [earlier]
    call, task = await started(world, DIRECT)
    ast = world.asterisk
    assert ast.played[call.channel_id] == ["prompt:it/cost"]
    await world.clock.advance(PROMPT_SECONDS)
    # In the line's holding bridge, with its music; the agent's phone rings with a screen pop.
    assert ast.bridge_of(call.channel_id) == "centralino-queue-beta"
    assert ast.music_of(call.channel_id) == "calm"
    leg = ast.leg_of("Local/1001@centralino-agents")
    assert leg is not None and state(world, "1001") is AgentState.RINGING
    assert ast.originated[0][2]["callerId"] == CALLER
    pop = world.desk.last_pop["1001"]
    assert (pop.caller_number, pop.topic, pop.line) == (CALLER, "beta", "Test direct line")
    assert [(t.number, t.subject, t.state) for t in pop.previous_tickets] == [
        ("HD-2026-000007", "Rimborsi", "risolto")]
    await world.clock.advance(1)  # the agent picks up
    bridge = f"centralino-call-{call.call_id}"
    assert ast.bridges[bridge].members == {call.channel_id, leg}
    assert state(world, "1001") is AgentState.ON_CALL
    await world.clock.advance(30)
    ast.hang_up(leg)  # the agent ends the conversation
    await world.clock.settle()
    await asyncio.wait_for(task, 1)
    assert call.channel_id in ast.hung_up
    assert world.collected.queue_log("beta") == [
        ("NONE", "ENTERQUEUE"), ("1001", "CONNECT"), ("1001", "COMPLETEAGENT")]
    record = world.collected.call(call.call_id)
    assert (record["outcome"], record["detail"], record["agent_id"]) == (
        "answered", "ended by the agent", "1001")
    assert state(world, "1001") is AgentState.WRAP_UP
    await world.clock.advance(1)  # beta's wrap_up
    assert state(world, "1001") is AgentState.AVAILABLE
    await world.clock.settle()
    assert bridge not in ast.bridges  # the conversation's bridge is taken down


async def test_an_agent_who_does_not_answer_is_missed_and_the_next_one_rings(world):
    world.asterisk.phones["Local/1001@centralino-agents"] = Phone(answer_after=None)
    login(world, "1001", "1003")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS)
    rung = [endpoint for _, endpoint, _ in world.asterisk.originated]
    first = rung[0]
    await world.clock.advance(3)  # beta's ring timeout
    await world.clock.advance(1)
    rung = [endpoint for _, endpoint, _ in world.asterisk.originated]
    assert first == "Local/1001@centralino-agents", rung  # idle longest
    assert rung[1] == "Local/1003@centralino-agents"
    assert world.collected.queue_log("beta")[:2] == [("NONE", "ENTERQUEUE"),
                                                     ("1001", "RINGNOANSWER")]
    assert state(world, "1003") is AgentState.ON_CALL
    assert world.desk.agents["1001"].missed == 1
    outcomes = [o.get("outcome") for o in world.collected.offers()]
    assert outcomes == ["no_answer", "answered"]
    world.asterisk.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.queue_log("beta")[-1] == ("1003", "COMPLETECALLER")


async def test_an_unregistered_phone_pauses_its_agent_and_the_caller_keeps_their_place(world):
    world.asterisk.phones["PJSIP/1004"] = Phone(unregistered=True)
    login(world, "1004")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS)
    assert state(world, "1004") is AgentState.PAUSED
    assert world.queues.position(call.call_id) == 1
    assert world.asterisk.bridge_of(call.channel_id) == "centralino-queue-beta"
    login(world, "1001")  # somebody else comes in: the caller is theirs
    await world.clock.advance(1)
    assert state(world, "1001") is AgentState.ON_CALL
    world.asterisk.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def test_a_caller_who_hangs_up_while_the_phone_rings_frees_the_agent(world):
    world.asterisk.phones["Local/1001@centralino-agents"] = Phone(answer_after=None)
    login(world, "1001")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 1)
    leg = world.asterisk.leg_of("Local/1001@centralino-agents")
    assert leg is not None
    world.asterisk.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert leg in world.asterisk.hung_up  # the agent's phone stops ringing
    assert state(world, "1001") is AgentState.AVAILABLE
    assert world.desk.agents["1001"].missed == 0  # not their fault
    assert world.collected.queue_log("beta") == [("NONE", "ENTERQUEUE"), ("NONE", "ABANDON")]
    assert world.collected.call(call.call_id)["outcome"] == "abandoned"
    assert world.collected.offers()[0]["outcome"] == "cancelled"


async def test_each_caller_in_the_line_hears_its_music_until_taken_out(world):
    """The holding bridge plays the topic's music to each caller, from joining to leaving:
    nothing for the service to restart when the line empties and fills again."""
    ast = world.asterisk
    first, _ = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS)
    second, second_task = await started(world, DIRECT, "0622222222")
    await world.clock.advance(PROMPT_SECONDS)
    assert ast.bridges["centralino-queue-beta"].members == {first.channel_id, second.channel_id}
    assert ast.music_of(first.channel_id) == ast.music_of(second.channel_id) == "calm"
    login(world, "1001")
    await world.clock.advance(2)
    assert ast.bridge_of(first.channel_id) == f"centralino-call-{first.call_id}"
    assert ast.music_of(first.channel_id) is None  # talking: no music over the agent
    ast.hang_up(second.channel_id)  # the line is empty now
    await asyncio.wait_for(second_task, 1)
    third, _ = await started(world, DIRECT, "0633333333")
    await world.clock.advance(PROMPT_SECONDS)
    assert ast.bridge_of(third.channel_id) == "centralino-queue-beta"
    assert ast.music_of(third.channel_id) == "calm"


async def test_the_agent_holds_and_resumes_the_caller(world):
    ast = world.asterisk
    call, task = await started(world, DIRECT)
    with pytest.raises(CallControlError, match="no conversation"):
        await call.hold()  # still waiting in the line
    login(world, "1001")
    await world.clock.advance(PROMPT_SECONDS + 2)
    assert state(world, "1001") is AgentState.ON_CALL
    await call.hold()
    # Out of the conversation, with the topic's music; the agent's leg stays in the bridge.
    assert ast.bridge_of(call.channel_id) is None
    assert ast.channel_music[call.channel_id] == "calm"
    assert ast.bridges[call.bridge].members == {call.leg.channel_id}
    with pytest.raises(CallControlError, match="on hold already"):
        await call.hold()
    await call.resume()
    assert ast.bridge_of(call.channel_id) == call.bridge
    assert call.channel_id not in ast.channel_music
    with pytest.raises(CallControlError, match="not on hold"):
        await call.resume()
    assert [s.kind for s in call.journal.steps if s.kind in ("hold", "resume")] == [
        "hold", "resume"]
    await call.hold()
    ast.hang_up(call.channel_id)  # the caller gives up while on hold
    await asyncio.wait_for(task, 1)
    assert world.collected.call(call.call_id)["outcome"] == "answered"
    assert state(world, "1001") is AgentState.WRAP_UP


async def test_a_blind_transfer_takes_the_caller_to_another_line_in_their_place(world):
    ast = world.asterisk
    login(world, "1003")  # beta only
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 2)
    assert state(world, "1003") is AgentState.ON_CALL
    first_leg = call.leg.channel_id
    with pytest.raises(CallControlError, match="in 'beta'"):
        await call.transfer("beta")
    with pytest.raises(CallControlError, match="no topic"):
        await call.transfer("nessuno")
    # The first agent opened a ticket from the pop (an anonymous caller's: found by the call).
    opened = SimpleNamespace(number="HD-2026-000099", subject="SUAP", state="nuovo",
                             created_at=world.clock.now(), call_id=call.call_id)
    world.history.tickets["+39000"] = [opened]
    await call.transfer("alpha", "Chiede del SUAP")
    await world.clock.advance(0.5)
    # The first agent's phone is hung up and they wrap up; the caller waits in alpha's line.
    assert first_leg in ast.hung_up and call.channel_id not in ast.hung_up
    assert state(world, "1003") is AgentState.WRAP_UP
    assert ast.bridge_of(call.channel_id) == "centralino-queue-alpha"
    assert world.collected.queue_log("beta") == [
        ("NONE", "ENTERQUEUE"), ("1003", "CONNECT"), ("1003", "BLINDTRANSFER")]
    login(world, "1002")  # alpha only: rung with the first agent's note in the pop
    await world.clock.advance(2)
    pop = world.desk.last_pop["1002"]
    assert pop.transferred is not None
    assert (pop.transferred.agent, pop.transferred.from_topic, pop.transferred.note) == (
        "1003", "beta", "Chiede del SUAP")
    assert [(t.number, t.this_call) for t in pop.previous_tickets] == [
        ("HD-2026-000099", True)]
    assert pop.topic == "alpha"
    assert state(world, "1002") is AgentState.ON_CALL
    assert ast.bridge_of(call.channel_id) == call.bridge
    assert world.collected.queue_log("alpha") == [("NONE", "ENTERQUEUE"), ("1002", "CONNECT")]
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.call(call.call_id)["agent_id"] == "1002"
    assert [s.detail for s in call.journal.steps if s.kind == "transfer"] == [
        "to alpha by 1003: Chiede del SUAP"]


async def test_a_transfer_to_a_named_agent_waits_for_them_then_the_line(world):
    login(world, "1003")  # both serve beta; 1003 has been idle longest
    await world.clock.advance(1)
    login(world, "1001")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 2)
    assert state(world, "1003") is AgentState.ON_CALL
    second, _ = await started(world, DIRECT, "0622222222")
    await world.clock.advance(PROMPT_SECONDS + 2)
    assert state(world, "1001") is AgentState.ON_CALL  # 1001 busy with the second caller
    with pytest.raises(CallControlError, match="talking to that agent already"):
        await call.transfer(agent="1003")
    assert await call.transfer(agent="1001", note="Ne ha parlato con lei") == "beta"
    await world.clock.advance(3)
    # 1003 is free after the wrap-up, yet the caller waits for 1001 alone.
    assert state(world, "1003") is AgentState.AVAILABLE
    assert world.asterisk.bridge_of(call.channel_id) == "centralino-queue-beta"
    world.asterisk.hang_up(second.channel_id)  # 1001's call ends: now them
    await world.clock.advance(3)
    assert world.desk.last_pop["1001"].call_id == call.call_id
    assert world.desk.last_pop["1001"].transferred.note == "Ne ha parlato con lei"
    assert [s.detail for s in call.journal.steps if s.kind == "transfer"] == [
        "to agent 1001 by 1003: Ne ha parlato con lei"]
    log = world.collected.queue_log("beta")
    assert ("1003", "BLINDTRANSFER") in log
    ast = world.asterisk
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def test_a_transfer_to_a_second_level_group_rings_its_members_alone(world):
    ast = world.asterisk
    for member in ("1002", "1004"):  # the second level: 1002 does not serve beta
        world.desk.agents[member].groups = frozenset({"back-office"})
    login(world, "1001")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 2)
    assert state(world, "1001") is AgentState.ON_CALL
    with pytest.raises(CallControlError, match="nobody of group 'back-office' is logged in"):
        await call.transfer(group="back-office")
    with pytest.raises(CallControlError, match="no group 'nessuno'"):
        await call.transfer(group="nessuno")
    login(world, "1002", "1003")
    world.desk.ask("1002", "pause", "agent:1002", "riunione")
    assert await call.transfer(group="back-office", note="Serve il back office") == "beta"
    await world.clock.advance(3)
    # In beta's line, with its music: 1003 serves beta and is free, yet it waits for the group.
    assert ast.bridge_of(call.channel_id) == "centralino-queue-beta"
    assert ast.music_of(call.channel_id) == "calm"
    assert state(world, "1003") is AgentState.AVAILABLE
    world.desk.ask("1002", "resume", "agent:1002")
    await world.clock.advance(0.5)
    assert state(world, "1002") is AgentState.RINGING
    pop = world.desk.last_pop["1002"]
    assert (pop.call_id, pop.topic) == (call.call_id, "beta")
    assert (pop.transferred.agent, pop.transferred.group, pop.transferred.note) == (
        "1001", "back-office", "Serve il back office")
    assert [s.detail for s in call.journal.steps if s.kind == "transfer"] == [
        "to group back-office by 1001: Serve il back office"]
    transfer = next(r.values for r in world.collected.records
                    if getattr(r, "table", "") == "queue_log"
                    and r.values["event"] == "BLINDTRANSFER")
    assert (transfer["agent"], transfer["data1"], transfer["data2"]) == (
        "1001", "back-office", "centralino-groups")
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def consulting(world: Desk_) -> tuple[CallSession, asyncio.Task[None]]:
    """1003 talks to a caller of beta; 1001 is free."""
    login(world, "1003")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 2)
    assert state(world, "1003") is AgentState.ON_CALL
    login(world, "1001")
    return call, task


async def test_an_attended_transfer_consults_then_completes(world):
    ast = world.asterisk
    call, task = await consulting(world)
    first = call.leg
    with pytest.raises(CallControlError, match="no consultation"):
        call.end_consultation("complete")
    call.consult("1001")
    with pytest.raises(CallControlError, match="going on already"):
        call.consult("1001")
    await world.clock.advance(0.5)  # ringing: the caller on hold, with music
    assert ast.channel_music[call.channel_id] == "calm"
    assert state(world, "1001") is AgentState.RINGING
    with pytest.raises(CallControlError, match="not answered yet"):
        call.end_consultation("complete")
    await world.clock.advance(1)  # 1001 answers: the two agents talk, the caller waits
    other = call.consulting
    assert other is not None and state(world, "1001") is AgentState.ON_CALL
    assert ast.bridges[call.bridge].members == {first.channel_id, other.channel_id}
    call.end_consultation("complete")
    await world.clock.advance(0.1)
    assert ast.bridges[call.bridge].members == {call.channel_id, other.channel_id}
    assert call.channel_id not in ast.channel_music
    assert first.channel_id in ast.hung_up
    assert state(world, "1003") is AgentState.WRAP_UP and call.leg is other
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.queue_log("beta") == [
        ("NONE", "ENTERQUEUE"), ("1003", "CONNECT"), ("1003", "ATTENDEDTRANSFER")]
    assert world.collected.call(call.call_id)["agent_id"] == "1001"
    assert state(world, "1001") is AgentState.WRAP_UP


async def test_the_phones_own_transfer_key_goes_where_the_console_would_or_is_declined(world):
    """A REFER from the agent's SIP phone (Asterisk leaves it to us): blind to a topic, an
    agent or a group by its id is carried out; anything else is declined, the call kept."""
    ast = world.asterisk
    world.desk.agents["1003"].device = "PJSIP/1003"
    call, task = await consulting(world)  # 1003 talks to a caller of beta
    leg = call.leg
    assert ast.channels[leg.channel_id].variables["PJSIP_TRANSFER_HANDLING()"] == "ari-only"
    ast.refer(leg.channel_id, protocol_id="abc@phone")  # attended, from the phone
    await world.clock.advance(0.1)
    ast.refer(leg.channel_id, "nessuno")
    await world.clock.advance(0.1)
    ast.refer(leg.channel_id, "beta")  # the caller's own line: refused as by the console
    await world.clock.advance(0.1)
    assert ast.transfer_answers == [(leg.channel_id, "channel_declined")] * 3
    assert call.leg is leg and ast.bridges[call.bridge].members == {call.channel_id,
                                                                    leg.channel_id}
    assert [s.detail for s in call.journal.steps if s.kind == "phone_declined"] == [
        ": an attended transfer from the phone: use the console's consultation",
        "nessuno: no topic, agent or group 'nessuno'",
        "beta: the caller is in 'beta''s line already"]
    ast.refer(leg.channel_id, "1001")  # blind, to a colleague: done, the phone told so
    await world.clock.advance(0.1)
    assert ast.transfer_answers[-1] == (leg.channel_id, "channel_answered")
    assert leg.channel_id in ast.hung_up
    await world.clock.advance(3)
    assert world.desk.last_pop["1001"].transferred.note == "trasferita dal telefono"
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert ("1003", "BLINDTRANSFER") in world.collected.queue_log("beta")


async def test_a_transfer_outside_rings_the_number_and_bridges_them(world):
    ast = world.asterisk
    call, task = await consulting(world)  # 1003 talks to a caller of beta
    first = call.leg
    with pytest.raises(CallControlError, match="premium-rate numbers cannot be called"):
        await call.transfer(number="899 123 456")
    with pytest.raises(CallControlError, match="not a phone number"):
        await call.transfer(number="nessuno")
    assert call.leg is first and first.channel_id not in ast.hung_up
    assert await call.transfer(number="06 1234 5999", note="Ufficio tributi") == "beta"
    await world.clock.advance(0.5)  # ringing: the caller hears the line's music
    assert first.channel_id in ast.hung_up and state(world, "1003") is AgentState.WRAP_UP
    assert ast.channel_music == {call.channel_id: "calm"}
    endpoint, params = ast.originated[-1][1], ast.originated[-1][2]
    assert (endpoint, params["callerId"]) == ("Local/0612345999@centralino-citizens",
                                              "0612345000")
    await world.clock.advance(1)  # answered: they talk
    [outside] = [c for c in ast.channels if "-out-" in c]
    assert ast.bridges[call.bridge].members == {call.channel_id, outside}
    assert ast.channel_music == {}
    ast.hang_up(outside)  # the office hangs up: so is the caller
    await asyncio.wait_for(task, 1)
    assert call.channel_id in ast.hung_up
    record = world.collected.call(call.call_id)
    assert (record["outcome"], record["agent_id"]) == ("answered", "1003")  # who answered
    transfer = next(r.values for r in world.collected.records
                    if getattr(r, "table", "") == "queue_log"
                    and r.values["event"] == "BLINDTRANSFER")
    assert (transfer["data1"], transfer["data2"]) == ("+390612345999", "centralino-outside")
    assert [(s.kind, s.detail) for s in call.journal.steps if "outside" in s.kind] == [
        ("outside_answered", "+390612345999")]


async def test_a_number_outside_not_answering_gives_the_caller_back_to_the_line(world):
    ast = world.asterisk
    ast.phones["Local/0612345999@centralino-citizens"] = Phone(answer_after=None)
    call, task = await consulting(world)
    await call.transfer(number="0612345999")
    await world.clock.advance(5.5)  # recalls' ring_timeout (5 s here): given up
    assert [c for c in ast.hung_up if "-out-" in c]
    assert ast.played[call.channel_id][-1] == "prompt:it/not_reached"  # told, no music
    assert call.channel_id not in ast.channel_music
    await world.clock.advance(PROMPT_SECONDS)  # then back in the line
    assert ast.bridge_of(call.channel_id) == "centralino-queue-beta"
    assert ast.music_of(call.channel_id) == "calm" and call.channel_id not in ast.channel_music
    assert [(s.kind, s.detail) for s in call.journal.steps if "outside" in s.kind] == [
        ("outside_failed", "+390612345999: no answer in 5 s")]
    await world.clock.advance(0.5)  # in their place: 1001, free in beta, is rung
    assert world.desk.last_pop["1001"].call_id == call.call_id
    assert state(world, "1001") in (AgentState.RINGING, AgentState.ON_CALL)
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def test_a_phone_hanging_up_after_its_declined_transfer_leaves_the_caller_waiting(world):
    """Phones such as baresip end their call after any REFER, refused or not: the caller is
    not dropped with it, but back in the line, in their place."""
    ast = world.asterisk
    world.desk.agents["1003"].device = "PJSIP/1003"
    call, task = await consulting(world)  # 1003 talks to a caller of beta; 1001 is free
    leg = call.leg
    ast.refer(leg.channel_id, "nessuno")
    await world.clock.advance(0.1)
    ast.hang_up(leg.channel_id)  # the phone goes, as it does after a REFER
    await world.clock.advance(0.1)
    assert call.channel_id not in ast.hung_up
    assert state(world, "1003") is AgentState.WRAP_UP
    await world.clock.advance(0.5)
    assert world.desk.last_pop["1001"].call_id == call.call_id  # offered again at once
    assert world.collected.queue_log("beta")[-2:] == [("1003", "BLINDTRANSFER"),
                                                       ("NONE", "ENTERQUEUE")]
    # Later than that, a hang-up is the end of the call as always.
    await world.clock.advance(1)
    other = call.leg
    assert other is not None and other.agent.id == "1001"
    ast.hang_up(other.channel_id)
    await asyncio.wait_for(task, 1)
    assert call.channel_id in ast.hung_up


def told(world: Desk_) -> list[tuple[str, str, str, str]]:
    """What the consoles are told of consultations: (to whom, colleague, phase, outcome)."""
    said: list[tuple[str, str, str, str]] = []
    world.desk.tell = lambda agent, m: said.append(  # type: ignore[method-assign]
        (agent, m.agent, m.phase, m.outcome))
    return said


async def test_the_agent_swaps_between_colleague_and_caller_then_completes(world):
    ast = world.asterisk
    said = told(world)
    call, task = await consulting(world)
    first = call.leg
    call.consult("1001")
    await world.clock.advance(0.5)
    with pytest.raises(CallControlError, match="not answered yet"):
        call.end_consultation("swap")
    await world.clock.advance(1)  # answered
    other = call.consulting
    assert other is not None
    call.end_consultation("swap")  # back to the caller: the colleague waits with music
    await world.clock.advance(0.1)
    assert ast.bridges[call.bridge].members == {call.channel_id, first.channel_id}
    assert ast.channel_music == {other.channel_id: "calm"}
    call.end_consultation("swap")  # to the colleague again: the caller waits
    await world.clock.advance(0.1)
    assert ast.bridges[call.bridge].members == {first.channel_id, other.channel_id}
    assert ast.channel_music == {call.channel_id: "calm"}
    call.end_consultation("swap")
    await world.clock.advance(0.1)
    call.end_consultation("complete")  # from the caller's side: the colleague comes in
    await world.clock.advance(0.1)
    assert ast.bridges[call.bridge].members == {call.channel_id, other.channel_id}
    assert ast.channel_music == {} and first.channel_id in ast.hung_up
    assert call.leg is other and state(world, "1003") is AgentState.WRAP_UP
    assert said == [("1003", "1001", "ringing", ""), ("1003", "1001", "talking", ""),
                    ("1003", "1001", "with_caller", ""), ("1003", "1001", "talking", ""),
                    ("1003", "1001", "with_caller", ""), ("1003", "1001", "over", "completed")]
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.queue_log("beta")[-1] == ("1003", "ATTENDEDTRANSFER")


async def test_a_colleague_on_hold_hanging_up_leaves_the_agent_with_the_caller(world):
    ast = world.asterisk
    said = told(world)
    call, task = await consulting(world)
    first = call.leg
    call.consult("1001")
    await world.clock.advance(1.5)
    other = call.consulting
    assert other is not None
    call.end_consultation("swap")
    await world.clock.advance(0.1)
    ast.hang_up(other.channel_id)  # the colleague, on hold, gives up
    await world.clock.advance(0.1)
    assert call.consulting is None and call.leg is first and not call.on_hold
    assert ast.bridges[call.bridge].members == {call.channel_id, first.channel_id}
    assert said[-1] == ("1003", "1001", "over", "hung_up")
    # A cancel from the caller's side: the colleague's phone hung up, nothing else moves.
    await world.clock.advance(2)  # 1001's wrap-up
    call.consult("1001")
    await world.clock.advance(1.5)
    call.end_consultation("swap")
    await world.clock.advance(0.1)
    call.end_consultation("cancel")
    await world.clock.advance(0.1)
    assert call.consulting is None and ast.channel_music == {}
    assert ast.bridges[call.bridge].members == {call.channel_id, first.channel_id}
    assert said[-1] == ("1003", "1001", "over", "cancelled")
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def test_an_attended_transfer_cancelled_or_unanswered_gives_the_caller_back(world):
    ast = world.asterisk
    call, task = await consulting(world)
    first = call.leg
    call.consult("1001")
    await world.clock.advance(1.5)  # answered: they talk
    other = call.consulting
    assert other is not None
    call.end_consultation("cancel")
    await world.clock.advance(0.1)
    assert other.channel_id in ast.hung_up
    assert ast.bridges[call.bridge].members == {call.channel_id, first.channel_id}
    assert call.channel_id not in ast.channel_music and call.leg is first
    # Again, with a colleague whose phone rings out: back to the first agent.
    await world.clock.advance(2)  # 1001's wrap-up
    ast.phones["Local/1001@centralino-agents"] = Phone(answer_after=None)
    call.consult("1001")
    await world.clock.advance(4)  # ring_timeout 3: the caller is told (beta's transfer_failed)
    assert ast.played[call.channel_id][-1] == "prompt:it/not_reached"
    assert call.channel_id not in ast.channel_music
    assert ast.bridges[call.bridge].members == {first.channel_id}
    await world.clock.advance(PROMPT_SECONDS)  # then back with the agent
    assert call.consulting is None
    assert ast.bridges[call.bridge].members == {call.channel_id, first.channel_id}
    assert [s.detail for s in call.journal.steps if s.kind == "resume"] == [
        "consultation with 1001: cancelled", "consultation with 1001: no_answer"]
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.call(call.call_id)["agent_id"] == "1003"


async def test_a_failed_consultation_can_give_the_caller_back_to_the_line(world):
    """transfer_failed.consultation: queue. The colleague does not answer: the caller is
    told, the first agent's phone is hung up (a blind transfer back to the line, as the
    records say) and the caller waits again in their place, by their first arrival."""
    beta = world.call_config.queues["beta"]
    world.call_config.queues["beta"] = beta.model_copy(update={"transfer_failed": TransferFailed(
        prompt="not_reached", consultation="queue")})
    ast = world.asterisk
    call, task = await consulting(world)
    first, arrived = call.leg, call.queued.since
    ast.phones["Local/1001@centralino-agents"] = Phone(answer_after=None)
    call.consult("1001")
    await world.clock.advance(4)  # ring_timeout 3: told first, the agent still there
    assert ast.played[call.channel_id][-1] == "prompt:it/not_reached"
    assert first.channel_id not in ast.hung_up
    await world.clock.advance(1.1)  # the prompt over (3 + PROMPT_SECONDS): 1003 let go
    assert first.channel_id in ast.hung_up
    assert state(world, "1003") is AgentState.WRAP_UP  # (beta's wrap-up: 1 s)
    assert ast.bridge_of(call.channel_id) == "centralino-queue-beta"
    assert call.queued.since == arrived and call.on_hold is False
    assert world.collected.queue_log("beta")[-2:] == [("1003", "BLINDTRANSFER"),
                                                       ("NONE", "ENTERQUEUE")]
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def test_the_caller_hanging_up_during_a_consultation_ends_it(world):
    ast = world.asterisk
    call, task = await consulting(world)
    call.consult("1001")
    await world.clock.advance(1.5)
    other = call.consulting
    assert other is not None
    ast.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert other.channel_id in ast.hung_up
    assert state(world, "1001") is not AgentState.ON_CALL
    assert world.collected.call(call.call_id)["outcome"] == "answered"


async def test_an_agent_hanging_up_as_they_answer_puts_the_caller_back_on_hold(world):
    world.asterisk.phones["Local/1001@centralino-agents"] = Phone(drop_on_answer=True)
    login(world, "1001")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 1)
    # Out of the holding bridge for the conversation's, which failed: back in it, with music.
    assert world.asterisk.bridge_of(call.channel_id) == "centralino-queue-beta"
    assert world.asterisk.music_of(call.channel_id) == "calm"
    assert world.collected.queue_log("beta") == [("NONE", "ENTERQUEUE"),
                                                 ("1001", "RINGNOANSWER")]
    assert world.desk.agents["1001"].missed == 1
    world.asterisk.phones["Local/1001@centralino-agents"] = Phone()  # it rings again
    await world.clock.advance(1)
    assert state(world, "1001") is AgentState.ON_CALL  # the caller's place was kept
    assert world.asterisk.bridge_of(call.channel_id) == f"centralino-call-{call.call_id}"
    world.asterisk.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)


async def test_asterisk_ending_the_conversation_is_lost_not_completed(world):
    login(world, "1001")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS + 1)
    assert state(world, "1001") is AgentState.ON_CALL
    world.asterisk.hang_up(call.channel_id, soft=True)  # a shutdown, an admin's hangup
    await asyncio.wait_for(task, 1)
    record = world.collected.call(call.call_id)
    assert record["outcome"] == "lost"
    assert [e for _, e in world.collected.queue_log("beta")] == ["ENTERQUEUE", "CONNECT"]
    assert state(world, "1001") is AgentState.WRAP_UP


async def test_a_number_without_a_flow_hears_no_service_and_is_hung_up(world):
    call, task = await started(world, "0999000999")
    await world.clock.advance(PROMPT_SECONDS)
    await asyncio.wait_for(task, 1)
    assert world.asterisk.played[call.channel_id] == ["sound:ss-noservice"]
    assert call.channel_id in world.asterisk.hung_up
    assert world.collected.call(call.call_id)["outcome"] == "unknown_number"


async def test_nobody_logged_in_sends_the_caller_to_the_no_agents_message(world):
    call, task = await started(world, RULES)
    await world.clock.advance(PROMPT_SECONDS)
    await asyncio.wait_for(task, 1)
    assert world.collected.queue_log("omega") == [("NONE", "JOINEMPTY")]
    assert world.asterisk.played[call.channel_id][-1] == "prompt:it/sorry"
    assert call.channel_id in world.asterisk.hung_up


async def test_the_leave_key_takes_the_caller_out_to_its_message(world):
    login(world, "1003")
    world.desk.ask("1003", "pause", "agent:1003", "lunch")
    call, task = await started(world, RULES)
    await world.clock.advance(0.5)
    world.asterisk.press(call.channel_id, "0")
    await world.clock.advance(PROMPT_SECONDS * 2)
    await asyncio.wait_for(task, 1)
    assert [e for _, e in world.collected.queue_log("omega")] == ["ENTERQUEUE", "EXITWITHKEY"]
    assert world.asterisk.played[call.channel_id][-1] == "prompt:it/info_a"
    assert world.collected.call(call.call_id)["outcome"] == "left_queue"


async def test_hold_messages_play_over_the_music_and_max_wait_moves_the_caller(world):
    login(world, "1003", "1002")
    world.desk.ask("1003", "pause", "agent:1003", "meeting")
    world.desk.ask("1002", "pause", "agent:1002", "meeting")
    call, task = await started(world, RULES)
    await world.clock.advance(PROMPT_SECONDS * 3)  # the announcement (position), then music
    heard = world.asterisk.played[call.channel_id]
    assert "prompt:it/promo_now" in heard
    assert "prompt:it/promo_old" not in heard and "prompt:it/promo_future" not in heard
    world.desk.ask("1002", "resume", "agent:1002")  # alpha's agent is back, omega's is not
    await world.clock.advance(16)  # omega's max wait: on to alpha, keeping their arrival
    await world.clock.advance(1)
    assert [e for _, e in world.collected.queue_log("omega")][-1] == "EXITWITHTIMEOUT"
    assert state(world, "1002") is AgentState.ON_CALL
    assert world.collected.queue_log("alpha")[:2] == [("NONE", "ENTERQUEUE"), ("1002", "CONNECT")]
    world.asterisk.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.call(call.call_id)["topic"] == "alpha"


async def test_the_callback_key_hands_the_callers_place_to_a_recall(world):
    login(world, "1001")
    world.desk.ask("1001", "pause", "agent:1001", "meeting")
    call, task = await started(world, DIRECT)
    await world.clock.advance(PROMPT_SECONDS)
    world.asterisk.press(call.channel_id, "5")
    await world.clock.advance(PROMPT_SECONDS)
    await asyncio.wait_for(task, 1)
    assert world.callbacks.asked == [("beta", CALLER)]
    assert world.asterisk.played[call.channel_id][-1] == "prompt:it/callback_ok"
    assert world.collected.call(call.call_id)["outcome"] == "callback"
    assert world.queues.position(call.call_id) is None


async def test_a_number_that_cannot_be_called_back_hears_why_and_keeps_waiting(world):
    world.callbacks.refuse = RecallError("number", "withheld number")
    login(world, "1001")
    world.desk.ask("1001", "pause", "agent:1001", "meeting")
    call, task = await started(world, DIRECT, caller="")
    await world.clock.advance(PROMPT_SECONDS)
    world.asterisk.press(call.channel_id, "5")
    await world.clock.advance(PROMPT_SECONDS)
    assert world.asterisk.played[call.channel_id][-1] == "prompt:it/callback_no"
    assert world.queues.position(call.call_id) == 1
    world.desk.ask("1001", "resume", "agent:1001")
    await world.clock.advance(1)
    assert state(world, "1001") is AgentState.ON_CALL
    world.asterisk.hang_up(call.channel_id)
    await asyncio.wait_for(task, 1)
    assert world.collected.call(call.call_id)["outcome"] == "answered"
