"""A service killed (SIGKILL) in the middle of a transfer (issue #13): nobody left in silence,
nobody double-bridged. A consultation: the colleague is let go, the caller stays on hold for
the first agent, who takes them back. A caller talking to a number outside: the
conversation goes on, and whoever hangs up, the other side is hung up too."""

from __future__ import annotations

import asyncio
from functools import partial

from centralino.storage.models import Call
from centralino.storage.store import Store
from tests.integration.conftest import PORT, start_run, stop_run
from tests.integration.desk_api import DeskApi, service_side, staff
from tests.integration.test_agents import to_alpha
from tests.integration.test_call_hold import hears
from tests.integration.test_resilience import later, records
from tests.integration.waiting import eventually

DIRECT = "0999000002"  # straight to beta (agents 1001, 1003)


async def test_a_consultation_when_the_service_is_killed(run_env, caller, phones):
    settings, env, log = run_env
    proc = await asyncio.to_thread(start_run, settings, env, log)
    try:
        async with DeskApi(PORT) as desk:
            await staff(desk, "1003", "1001")  # 1003 idle longest: theirs
            call = await caller.dial(DIRECT, caller_number="0611117777")
            first = await phones.wait_answered("1003")
            await desk.until_state("1003", "on_call")
            await desk.request("POST", "/api/agents/1003/call/consult", token="dev-1003",
                               json_body={"agent": "1001"}, expect=(202,))
            colleague = await phones.wait_answered("1001")
            await desk.until_state("1001", "on_call")
            sim = caller.ari
            level, tone = await hears(phones.ari, first.channel, sim, colleague.channel)
            assert level > 0.005 and tone > 0.8  # the two agents talk, the caller on hold

            proc.kill()
            proc.wait()
            proc = await asyncio.to_thread(partial(start_run, keep_agents=True), settings,
                                           later(env, 10), log)
            await asyncio.wait_for(colleague.ended.wait(), 10)  # the colleague let go
            assert not first.ended.is_set() and not call.ended.is_set()
            assert await call.listen(1) > 0.005  # the caller: the line's music
            await desk.until_state("1001", "wrap_up", "available")
            assert await desk.state("1003") == "on_call"
            await desk.request("POST", "/api/agents/1003/call/resume", token="dev-1003",
                               expect=(200, 202))
            level, tone = await hears(phones.ari, first.channel, sim, call.id)
            assert level > 0.005 and tone > 0.8  # back with the first agent
            level, tone = await hears(sim, call.id, phones.ari, first.channel)
            assert level > 0.005 and tone > 0.8
            await call.hangup()
            await asyncio.wait_for(first.ended.wait(), 5)
            found = await eventually(partial(records_of, env, call.service_half),
                                     lambda found: found[-1].outcome is not None, 20, 0.1,
                                     "the adopted call's record")
        assert [c.outcome for c in found] == ["interrupted", "answered"]
        assert found[-1].agent_id == "1003"
    finally:
        stop_run(proc)


async def test_a_talk_with_a_number_outside_when_the_service_is_killed(run_env, caller, phones,
                                                                       citizens):
    settings, env, log = run_env
    proc = await asyncio.to_thread(start_run, settings, env, log)
    try:
        async with DeskApi(PORT) as desk:
            await staff(desk, "1002")
            call = await to_alpha(caller, "0655553333")
            first = await phones.wait_answered("1002")
            await desk.until_state("1002", "on_call")
            citizens.set("0612345997", "answer", delay=0.5)
            await desk.request("POST", "/api/agents/1002/call/transfer", token="dev-1002",
                               json_body={"number": "0612345997"}, expect=(200, 202))
            await asyncio.wait_for(first.ended.wait(), 5)
            office = await citizens.wait_answered("0612345997")
            await desk.until_bridged(call.service_half, service_side(office.channel))
            sim = caller.ari

            proc.kill()
            proc.wait()
            proc = await asyncio.to_thread(partial(start_run, keep_agents=True), settings,
                                           later(env, 10), log)
            # The restarted service has looked at Asterisk's calls: this one it leaves to
            # end by itself (the conversation goes on), hanging up either side if the other does.
            await eventually(partial(asyncio.to_thread, log.read_text),
                             lambda text: "talks to a number outside" in text,
                             what="the restarted service taking stock of the conversation")
            level, tone = await hears(citizens.ari, office.channel, sim, call.id)
            assert level > 0.005 and tone > 0.8
            level, tone = await hears(sim, call.id, citizens.ari, office.channel)
            assert level > 0.005 and tone > 0.8
            assert await desk.state("1002") in ("wrap_up", "available")  # not theirs now
            await citizens.hang_up(office)  # the office ends it: the caller's side too
            await asyncio.wait_for(call.ended.wait(), 5)
    finally:
        stop_run(proc)


async def records_of(env: dict[str, str], channel: str) -> list[Call]:
    async with Store(env["CENTRALINO_DATABASE__URL"]) as store:
        return await records(store, channel)
