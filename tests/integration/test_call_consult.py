"""Attended transfer on the real Asterisk (issue #13): the caller on hold with music while
the agent talks to a colleague; completed, caller and colleague talk and the first agent's
phone is hung up; cancelled or unanswered, the caller is back with the first agent."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime
from typing import Any

from ruamel.yaml import YAML

from tests.integration.conftest import TEST_SETTINGS, record_of, settings_for, steps
from tests.integration.desk_api import staff
from tests.integration.test_call_hold import hears

DIRECT = "0999000002"  # straight to beta (agents 1001, 1003)


async def ask(desk: Any, what: str, body: dict[str, str] | None = None,
              status: int = 202) -> dict[str, Any]:
    answer: dict[str, Any] = await desk.request(
        "POST", f"/api/agents/1003/call/{what}", token="dev-1003", json_body=body or {},
        expect=(status,))
    return answer


async def talking_to_1003(desk: Any, caller: Any, phones: Any, number: str) -> tuple[Any, Any]:
    await staff(desk, "1003", "1001")  # 1003 idle longest: theirs
    call = await caller.dial(DIRECT, caller_number=number)
    first = await phones.wait_answered("1003")
    await desk.until_state("1003", "on_call")
    return call, first


async def test_an_attended_transfer_consults_then_completes(start_service, desk, caller,
                                                            phones):
    service = await start_service()
    call, first = await talking_to_1003(desk, caller, phones, "0611112222")
    sim = caller.ari
    await ask(desk, "consult", {"agent": "1001"})
    colleague = await phones.wait_answered("1001")
    await desk.until_state("1001", "on_call")
    # The agents hear each other; the caller hears the music, nothing of them.
    level, tone = await hears(phones.ari, first.channel, sim, colleague.channel)
    assert level > 0.005 and tone > 0.8
    level, tone = await hears(phones.ari, colleague.channel, sim, first.channel)
    assert level > 0.005 and tone > 0.8
    level, tone = await hears(phones.ari, first.channel, sim, call.id)
    assert level > 0.005 and tone < 0.5

    await ask(desk, "consult/complete")
    await asyncio.wait_for(first.ended.wait(), 5)  # the first agent's phone is hung up
    await desk.until_state("1003", "wrap_up", "available")
    level, tone = await hears(sim, call.id, sim, colleague.channel)
    assert level > 0.005 and tone > 0.8  # caller and colleague talk
    level, tone = await hears(phones.ari, colleague.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1001")
    events = [(e.agent, e.event) for e in await desk.queue_log(record.id)]
    assert events == [("NONE", "ENTERQUEUE"), ("1003", "CONNECT"),
                      ("1003", "ATTENDEDTRANSFER")]
    # Each agent's leg in the call's record: both answered, the first ended first.
    legs = (await desk.request("GET", f"/api/calls/{record.id}", token="dev-sup"))["legs"]
    assert [(leg["agent_id"], leg["outcome"]) for leg in legs] == [("1003", "answered"),
                                                                    ("1001", "answered")]
    assert legs[0]["ended_at"] <= legs[1]["ended_at"] and legs[1]["answered_at"] is not None


async def test_a_cancelled_or_unanswered_consultation_gives_the_caller_back(
        start_service, desk, caller, phones):
    service = await start_service()
    call, first = await talking_to_1003(desk, caller, phones, "0611113333")
    sim = caller.ari
    await ask(desk, "consult/cancel", status=409)  # nothing to cancel
    await ask(desk, "consult", {"agent": "1001"})
    colleague = await phones.wait_answered("1001")
    await desk.until_state("1001", "on_call")
    await ask(desk, "consult/cancel")
    await asyncio.wait_for(colleague.ended.wait(), 5)
    level, tone = await hears(phones.ari, first.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8  # back with the first agent, no music

    phones.set("1001", "ignore")  # this time the colleague does not answer
    await desk.until_state("1001", "available", timeout=15)
    async with desk.console("1003") as console:
        await ask(desk, "consult", {"agent": "1001"})
        await phones.wait_rings(3)
        await asyncio.wait_for(phones.rings[-1].ended.wait(), 15)  # rang out
        # Told first (the prompt), then back with the agent: the console says so.
        await console.until(lambda: any(m.get("outcome") == "no_answer"
                                        for m in console.messages))
    level, tone = await hears(phones.ari, first.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1003")
    steps = [(s["kind"], s["detail"]) for s in (await desk.request(
        "GET", f"/api/calls/{record.id}", token="dev-sup"))["steps"]
        if s["kind"] == "resume"]
    assert steps == [("resume", "consultation with 1001: cancelled"),
                     ("resume", "consultation with 1001: no_answer")]
    # Told (beta's transfer_failed) only when the colleague did not answer, not on a cancel.
    assert told(record) == [("transfer_failed", "beta", None, "not_reached", "")]


def told(record: Any) -> list[Any]:
    return steps(record, "transfer_failed")


async def test_an_unanswered_consultation_can_give_the_caller_back_to_the_line(
        start_service, desk, caller, phones, tmp_path):
    """transfer_failed.consultation: queue. The colleague does not answer: the caller is
    told, goes back to the line in their place (the first agent's phone hung up, the agent
    wrapping up) and is served again from there."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    yaml = YAML()
    queues = yaml.load(config / "queues.yaml")
    queues["queues"]["beta"]["transfer_failed"] = {"prompt": "not_reached",
                                                   "consultation": "queue"}
    yaml.dump(queues, config / "queues.yaml")
    service = await start_service(settings=settings_for(config / "centralino.yaml"))
    call, first = await talking_to_1003(desk, caller, phones, "0611115555")
    asked = desk.clock.now()
    phones.set("1001", "ignore")
    await ask(desk, "consult", {"agent": "1001"})
    await phones.wait_rings(2)
    await asyncio.wait_for(phones.rings[-1].ended.wait(), 15)  # rang out
    await asyncio.wait_for(first.ended.wait(), 10)  # told, then the first agent let go
    await desk.until_waiting("beta", bool)
    [waiting] = await desk.waiting("beta")
    assert waiting["caller"] == "0611115555"
    assert await call.listen(1) > 0.005  # the line's music again
    again = await phones.wait_answered("1003", timeout=15)  # after 1003's wrap-up
    await desk.until_state("1003", "on_call")
    level, tone = await hears(phones.ari, again.channel, caller.ari, call.id)
    assert level > 0.005 and tone > 0.8
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1003")
    assert told(record) == [("transfer_failed", "beta", None, "not_reached", "")]
    events = [(e.agent, e.event, e.data1) for e in await desk.queue_log(record.id)
              if e.event in ("CONNECT", "BLINDTRANSFER")]
    assert [(a, e) for a, e, _ in events] == [("1003", "CONNECT"), ("1003", "BLINDTRANSFER"),
                                              ("1003", "CONNECT")]
    assert events[1][2] == "beta"
    assert datetime.fromisoformat(waiting["since"]) < asked  # their place: first arrival


async def test_the_agent_swaps_between_caller_and_colleague_then_completes(
        start_service, desk, caller, phones):
    """Swapped, each one waiting hears the music and nothing of the other two; the console
    is told each step over its socket."""
    service = await start_service()
    call, first = await talking_to_1003(desk, caller, phones, "0611114444")
    sim = caller.ari
    async with desk.console("1003") as console:
        def last(key: str) -> Any:
            said = [m for m in console.messages if m["type"] == "consultation"]
            return said[-1][key] if said else None

        await ask(desk, "consult/swap", status=409)  # no consultation to swap in
        await ask(desk, "consult", {"agent": "1001"})
        colleague = await phones.wait_answered("1001")
        await console.until(lambda: last("phase") == "talking")
        await ask(desk, "consult/swap")  # back to the caller: the colleague waits
        await console.until(lambda: last("phase") == "with_caller")
        level, tone = await hears(sim, call.id, sim, first.channel)
        assert level > 0.005 and tone > 0.8  # the agent hears the caller ...
        level, tone = await hears(phones.ari, first.channel, sim, call.id)
        assert level > 0.005 and tone > 0.8  # ... and the caller the agent
        level, tone = await hears(phones.ari, first.channel, sim, colleague.channel)
        assert level > 0.005 and tone < 0.5  # the colleague: music, not the agent

        await ask(desk, "consult/swap")  # to the colleague again: the caller waits
        await console.until(lambda: last("phase") == "talking")
        level, tone = await hears(phones.ari, first.channel, sim, colleague.channel)
        assert level > 0.005 and tone > 0.8
        level, tone = await hears(phones.ari, first.channel, sim, call.id)
        assert level > 0.005 and tone < 0.5  # the caller: music, not the agent

        await ask(desk, "consult/swap")
        await console.until(lambda: last("phase") == "with_caller")
        await ask(desk, "consult/complete")  # from the caller's side: the colleague comes in
        await asyncio.wait_for(first.ended.wait(), 5)
        await console.until(lambda: last("outcome") == "completed")
    level, tone = await hears(sim, call.id, sim, colleague.channel)
    assert level > 0.005 and tone > 0.8
    level, tone = await hears(phones.ari, colleague.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8
    phases = [m["phase"] for m in console.messages if m["type"] == "consultation"]
    assert phases == ["ringing", "talking", "with_caller", "talking", "with_caller", "over"]
    await call.hangup()
    record = await record_of(service, call)
    assert (record.outcome, record.agent_id) == ("answered", "1001")


async def test_a_consultation_going_on_when_the_service_restarts(
        start_service, desk, caller, phones):
    """Nobody in silence, nobody bridged twice: the colleague's phone is let go, the caller
    keeps the music on hold with the first agent, who takes them back."""
    service = await start_service()
    call, first = await talking_to_1003(desk, caller, phones, "0611117777")
    sim = caller.ari
    await ask(desk, "consult", {"agent": "1001"})
    colleague = await phones.wait_answered("1001")
    await desk.until_state("1001", "on_call")
    await service.__aexit__(None, None, None)
    assert await call.listen(1) > 0.005  # the music, with no service

    restarted = await start_service(keep_agents=True)
    await asyncio.wait_for(colleague.ended.wait(), 10)
    await desk.until_state("1003", "on_call")  # adopted with the caller
    await desk.until_state("1001", "available")
    assert not first.ended.is_set()
    assert await call.listen(1) > 0.005  # still on hold, with the music
    answer = await desk.request("POST", "/api/agents/1003/call/resume", token="dev-1003",
                                json_body={})
    assert answer["on_hold"] is False
    level, tone = await hears(phones.ari, first.channel, sim, call.id)
    assert level > 0.005 and tone > 0.8  # back with the first agent, no music
    await call.hangup()
    record = await record_of(restarted, call)
    assert (record.outcome, record.agent_id) == ("answered", "1003")
