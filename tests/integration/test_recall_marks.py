"""The agent's verdict on a recall call, over HTTP, on the real Asterisk and database: an
answering machine is called again after the retry delay, a wrong number gives up, and the rules
(after the call, one's own call, a verdict once given) hold."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.integration.desk_api import staff
from tests.integration.test_recalls_placed import ask, bridged, status_is

AGENTS = "http://127.0.0.1:18081/api/agents"


async def mark(agent: str, recall_id: str, outcome: Any, token: str | None = None
               ) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token or 'dev-' + agent}"}
    async with aiohttp.ClientSession() as http, http.post(
            f"{AGENTS}/{agent}/recalls/{recall_id}/outcome", json={"outcome": outcome},
            headers=headers) as resp:
        return resp.status, await resp.json()


async def talked(desk, phones, citizens, recall_id: str, national: str, hang_up: bool = True):
    """Agent 1003 and the citizen answer the recall; the citizen hangs up (unless told not)."""
    ring = await citizens.wait_answered(national)
    await bridged(desk, recall_id)
    if hang_up:
        await citizens.hang_up(ring)
        await status_is(desk, recall_id, "done")
    return ring


async def test_an_answering_machine_is_called_again(start_service, desk, phones, citizens):
    await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    recall_id, national = await ask()
    citizens.set(national, "answer", delay=0.1)
    ring = await talked(desk, phones, citizens, recall_id, national, hang_up=False)

    status, body = await mark("1003", recall_id, "no_answer")  # still talking
    assert status == 409 and "after the call" in body["error"]
    await citizens.hang_up(ring)
    await status_is(desk, recall_id, "done")

    status, body = await mark("1003", recall_id, "no_answer", token="dev-1001")
    assert status == 403  # another agent's token
    status, body = await mark("1001", recall_id, "no_answer")
    assert status == 403 and "1003" in body["error"]  # not 1001's call
    assert (await mark("1003", "0" * 32, "no_answer"))[0] == 404
    status, body = await mark("1003", recall_id, "sometimes")
    assert status == 422 and "outcome" in body["error"]

    status, body = await mark("1003", recall_id, "no_answer")
    assert status == 200 and body["status"] == "waiting", body
    assert (await mark("1003", recall_id, "no_answer"))[0] == 200  # said twice: harmless
    assert (await mark("1003", recall_id, "wrong_number"))[0] == 409  # a verdict stands
    attempts = (await desk.recall(recall_id))["attempt_log"]
    assert [a["outcome"] for a in attempts] == ["no_answer"]
    assert "marked no_answer by agent:1003" in attempts[0]["detail"]

    # Called again after the first retry delay (1 s in the test settings).
    second = await citizens.wait_answered(national, timeout=15)
    assert len(citizens.rings_of(national)) == 2
    await bridged(desk, recall_id)
    await citizens.hang_up(second)
    await status_is(desk, recall_id, "done")
    row = await desk.recall(recall_id)
    assert row["attempts"] == 2
    assert [a["outcome"] for a in row["attempt_log"]] == ["no_answer", "answered"]


async def test_a_wrong_number_gives_up_and_done_changes_nothing(start_service, desk, phones,
                                                                citizens):
    await start_service()
    phones.set("1003", "answer", delay=0.1)
    await staff(desk, "1003")
    first_id, first = await ask()
    citizens.set(first, "answer", delay=0.1)
    await talked(desk, phones, citizens, first_id, first)
    status, body = await mark("1003", first_id, "done")
    assert (status, body["status"]) == (200, "done")
    assert [a["outcome"] for a in (await desk.recall(first_id))["attempt_log"]] == ["answered"]

    await desk.until_state("1003", "available")  # after the agent's wrap-up (1 s)
    second_id, second = await ask()
    citizens.set(second, "answer", delay=0.1)
    await talked(desk, phones, citizens, second_id, second)
    status, body = await mark("1003", second_id, "wrong_number", token="dev-sup")  # supervisor
    assert (status, body["status"]) == (200, "failed")
    await asyncio.sleep(2)  # longer than the retry delay (1 s): never called again
    assert len(citizens.rings_of(second)) == 1
    assert (await desk.recall(second_id))["status"] == "failed"
