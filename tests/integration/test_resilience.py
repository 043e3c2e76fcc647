"""Asterisk restarts, wrong credentials, an unreachable Asterisk, a service restart, a
service killed (SIGKILL) mid-call."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from functools import partial

import pytest

from centralino.ari.client import AriAuthError, AriUnavailable
from centralino.service import Service
from centralino.storage.models import Call
from centralino.storage.store import Store
from tests.integration.conftest import (
    REPO,
    TEST_SETTINGS,
    api_post,
    record_of,
    settings_for,
    start_run,
    stop_run,
)
from tests.integration.desk_api import staff
from tests.integration.waiting import eventually

MENU, DIRECT = "0999000001", "0999000002"


async def test_asterisk_restart_service_reconnects_and_takes_new_calls(
        start_service, desk, caller, asterisk):
    service = await start_service()
    waiting = await caller.dial(DIRECT)
    await waiting.wait_idle()
    assert len(await desk.waiting("beta")) == 1

    await asyncio.to_thread(asterisk.restart)  # every channel dies with it
    record = await record_of(service, waiting, timeout=30)
    assert record.outcome == "lost"
    assert await desk.waiting("beta") == []

    await service.wait_connected(timeout=30)
    # The SimCaller's own socket reconnects too; then a new call is served normally.
    await asyncio.wait_for(caller.ari.connected.wait(), 30)
    call = await caller.dial(MENU)
    await call.wait_heard("menu_main")
    await call.hangup()
    assert (await record_of(service, call)).outcome == "caller_hangup"


async def test_calls_cut_by_an_asterisk_restart_are_lost_not_abandoned(
        start_service, desk, caller, phones, asterisk):
    """Callers waiting and talking when Asterisk stops: Asterisk hung them up, they did not
    give up; figures must not count them as abandons (issue #9)."""
    service = await start_service()
    waiting = []
    for n in range(4):
        call = await caller.dial(DIRECT, caller_number=f"065555000{n}")
        await call.wait_idle()
        waiting.append(call)
    phones.set("1003", "answer")
    await staff(desk, "1003")
    await phones.wait_answered("1003")  # the first caller talks, three wait
    await desk.until_state("1003", "on_call", poll=0.05)

    await asyncio.to_thread(asterisk.restart)
    records = [await record_of(service, call, timeout=30) for call in waiting]
    assert [r.outcome for r in records] == ["lost"] * 4
    assert records[0].connected_at is not None and records[0].agent_id == "1003"
    events = [e.event for r in records for e in await desk.queue_log(call_id=r.id)]
    assert events.count("ENTERQUEUE") == 4 and events.count("CONNECT") == 1
    assert "ABANDON" not in events and "COMPLETECALLER" not in events
    await service.wait_connected(timeout=30)
    await asyncio.wait_for(caller.ari.connected.wait(), 30)
    await asyncio.wait_for(phones.ari.connected.wait(), 30)


async def test_service_restart_adopts_calls_still_in_asterisk(start_service, desk, caller):
    service = await start_service()
    waiting = await caller.dial(DIRECT, caller_number="0655555555")
    await waiting.wait_idle()
    await service.__aexit__(None, None, None)  # the service stops; the caller stays on hold
    assert await waiting.listen(1) > 0.005, "still hearing the queue's music"

    restarted = await start_service()
    await desk.until_waiting("beta", bool)
    assert [w["caller"] for w in await desk.waiting("beta")] == ["0655555555"]
    await waiting.hangup()
    record = await record_of(restarted, waiting)
    assert record.outcome == "abandoned" and record.topic == "beta"
    both = await desk.calls(channel_id=waiting.service_half)
    # the first service's part of the call, then the restarted one's
    assert sorted(c["outcome"] for c in both) == ["abandoned", "interrupted"]


async def test_wrong_ari_password_is_a_clear_error(asterisk):
    settings = settings_for(CENTRALINO_ASTERISK__PASSWORD="wrong")
    with pytest.raises(AriAuthError, match=r"refused ARI user 'centralino'.*ari\.conf"):
        async with Service(settings):
            pass


async def test_unreachable_asterisk_is_a_clear_error():
    settings = settings_for(CENTRALINO_ASTERISK__ARI_URL="http://127.0.0.1:1")
    with pytest.raises(AriUnavailable, match=r"unreachable at http://127\.0\.0\.1:1"):
        async with Service(settings):
            pass


def test_cli_run_explains_wrong_credentials(asterisk):
    env = {**os.environ, "CENTRALINO_ASTERISK__PASSWORD": "wrong",
           "CENTRALINO_HTTP__PORT": "18084"}
    result = subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", str(TEST_SETTINGS), "run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "refused ARI user 'centralino'" in result.stderr


# --- SIGKILL: nothing is written at the end of the call, what was written as it happened stays


async def records(store: Store, channel: str, count: int = 1, ended: bool = False,
                  queued: bool = False) -> list[Call]:
    """The records of a caller's channel, oldest first, once there are `count` of them (all
    ended, the latest queued, if asked)."""
    async def stored() -> list[Call]:
        return sorted(await store.find_calls(channel_id=channel), key=lambda c: c.started_at)

    def complete(found: list[Call]) -> bool:
        return (len(found) >= count and (not ended or all(c.outcome for c in found))
                and (not queued or found[-1].queued_at is not None))
    return await eventually(stored, complete, 20, 0.1, f"{count} record(s) of {channel}")


def keys(record: Call) -> list[tuple[str, str | None]]:
    return [(s.node, s.key) for s in record.steps if s.kind == "key"]


def later(env: dict[str, str], minutes: int) -> dict[str, str]:
    """The same service's environment, its clock started `minutes` later (each process starts
    its shifted clock again: without this, a restart's records would be dated before)."""
    return {**env, "CENTRALINO_CLOCK_START": f"2026-12-01T10:{minutes:02d}:00+01:00"}


async def test_a_killed_service_keeps_the_menu_path_of_a_call(run_env, caller):
    settings, env, log = run_env
    proc = await asyncio.to_thread(start_run, settings, env, log)
    try:
        async with Store(env["CENTRALINO_DATABASE__URL"]) as store:
            call = await caller.dial(MENU)
            await call.wait_heard("menu_main")
            await call.press("1")
            await call.wait_heard("menu_sub")
            # Stored as it happened: not waiting for the end of the call.
            await eventually(partial(records, store, call.service_half),
                             lambda found: keys(found[0]), 10, 0.1, "the key pressed, stored")

            proc.kill()
            proc.wait()
            proc = await asyncio.to_thread(start_run, settings, later(env, 10), log)  # adopts
            await call.wait_heard("menu_main", count=2)  # its flow starts again
            await call.hangup()
            first, again = await records(store, call.service_half, count=2, ended=True)
        assert first.outcome == "interrupted"
        assert keys(first) == [("main", "1")]
        assert [s.node for s in first.steps if s.kind == "menu"] == ["main", "sub"]
        assert again.outcome == "caller_hangup" and keys(again) == []
    finally:
        stop_run(proc)


async def connected(store: Store, channel: str) -> None:
    """Until the latest record of the channel says an agent answered."""
    await eventually(partial(records, store, channel),
                     lambda found: found[-1].connected_at is not None, 20, 0.1,
                     f"an agent answering {channel}")


@pytest.mark.parametrize("end", ["answered", "abandoned"])
async def test_queue_log_keeps_one_call_id_across_hard_restarts(run_env, caller, phones, end):
    settings, env, log = run_env
    proc = await asyncio.to_thread(start_run, settings, env, log)
    try:
        async with Store(env["CENTRALINO_DATABASE__URL"]) as store:
            call = await caller.dial(DIRECT, caller_number="0677777777")
            await records(store, call.service_half, queued=True)
            for restarts in (1, 2):
                proc.kill()
                proc.wait()
                proc = await asyncio.to_thread(start_run, settings, later(env, 10 * restarts),
                                               log)
                # Back in the line: its record for this run says so.
                await records(store, call.service_half, count=1 + restarts, queued=True)
            if end == "answered":
                phones.set("1003", "answer")
                await asyncio.to_thread(api_post, "/api/agents/1003/login")
                ring = await phones.wait_answered("1003")
                assert ring.caller_number == "0677777777"
                await connected(store, call.service_half)
                await phones.hang_up(ring)
            else:
                await call.hangup()
            found = await records(store, call.service_half, count=3, ended=True)
            lines = [e for c in found for e in await store.queue_log(call_id=c.id)]
        assert [c.outcome for c in found] == ["interrupted", "interrupted", end]
        assert {e.call_id for e in lines} == {found[0].id}  # one story for reports
        expected = (["ENTERQUEUE", "CONNECT", "COMPLETEAGENT"] if end == "answered"
                    else ["ENTERQUEUE", "ABANDON"])
        assert [e.event for e in sorted(lines, key=lambda e: e.id)] == expected
    finally:
        stop_run(proc)
