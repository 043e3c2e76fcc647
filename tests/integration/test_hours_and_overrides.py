"""Opening hours, holidays and operators' overrides, heard on real calls."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import aiohttp

from tests.integration.conftest import record_of, steps

MENU = "0999000001"
API = "http://127.0.0.1:18081"
ADMIN = {"Authorization": "Bearer test-admin-token"}


async def test_easter_monday_is_closed(start_service, caller):
    service = await start_service(at=datetime(2027, 3, 29, 10, 0))  # Lunedì dell'Angelo
    call = await caller.dial(MENU)
    await call.wait_ended()
    assert call.heard == ["cost", "closed"]  # only the announcement marked when_closed
    record = await record_of(service, call)
    assert record.outcome == "closed"
    assert steps(record, "closed")[0][4] == "holiday: Lunedì dell'Angelo"


async def test_night_is_closed(start_service, caller):
    service = await start_service(at=datetime(2026, 12, 1, 21, 30))
    call = await caller.dial(MENU)
    await call.wait_ended()
    assert call.heard == ["cost", "closed"]
    assert (await record_of(service, call)).outcome == "closed"


async def test_patron_saint_closure_from_config(start_service, caller):
    service = await start_service(at=datetime(2027, 6, 29, 10, 0))
    call = await caller.dial(MENU)
    await call.wait_ended()
    record = await record_of(service, call)
    assert steps(record, "closed")[0][4] == "closure: Santi Pietro e Paolo"


async def test_emergency_closure_by_api_expires_and_is_logged(start_service, desk, caller):
    await start_service()
    until = (desk.now() + timedelta(seconds=6)).isoformat()
    reason = f"guasto linee {uuid.uuid4().hex[:6]}"  # the database outlives this test
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        body = {"state": "closed", "until": until, "reason": reason, "by": "mario"}
        async with http.put(f"{API}/api/lines/{MENU}/override", json=body) as resp:
            assert resp.status == 200, await resp.text()
        async with http.get(f"{API}/api/lines") as resp:
            line = next(ln for ln in await resp.json() if ln["number"] == MENU)
            assert line["open"] is False and line["why"] == "override"
            assert line["override"]["reason"] == reason

        call = await caller.dial(MENU)
        await call.wait_ended()
        assert call.heard == ["cost", "emergency"]

        # The override expires by itself: the next call hears the normal flow.
        await _sleep_until(desk, datetime.fromisoformat(until))
        call = await caller.dial(MENU)
        await call.wait_heard("welcome")
        await call.hangup()

        async with http.get(f"{API}/api/lines/{MENU}/overrides") as resp:
            log = await resp.json()
        ours = [e for e in log if e["reason"] == reason]
        assert [(e["state"], e["set_by"], e["until"]) for e in ours] == [
            ("closed", "mario", datetime.fromisoformat(until).isoformat())]


async def test_force_open_on_a_holiday_and_clear(start_service, caller):
    await start_service(at=datetime(2026, 12, 25, 10, 0))
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        reason = f"apertura straordinaria {uuid.uuid4().hex[:6]}"
        body = {"state": "open", "until": "2026-12-25T18:00", "reason": reason}
        async with http.put(f"{API}/api/lines/{MENU}/override", json=body) as resp:
            assert resp.status == 200
        call = await caller.dial(MENU)
        await call.wait_heard("welcome")
        await call.hangup()
        async with http.delete(f"{API}/api/lines/{MENU}/override?by=anna") as resp:
            assert (await resp.json()) == {"cleared": True}
        call = await caller.dial(MENU)
        await call.wait_ended()
        assert call.heard == ["cost", "closed"]
        async with http.get(f"{API}/api/lines/{MENU}/overrides") as resp:
            entry = next(e for e in await resp.json() if e["reason"] == reason)
        assert entry["cleared_by"] == "anna" and entry["cleared_at"] is not None


async def test_override_survives_a_service_restart(start_service, desk, caller):
    service = await start_service()
    until = desk.now() + timedelta(hours=1)
    await desk.set_override(MENU, "closed", until, "sciopero", "test")
    await service.__aexit__(None, None, None)
    await start_service()
    line = next(ln for ln in await desk.lines() if ln["number"] == MENU)
    assert (line["open"], line["why"]) == (False, "override")
    assert line["override"]["reason"] == "sciopero"
    assert await desk.clear_override(MENU, "test")


async def test_bad_override_requests_get_4xx_with_a_reason(start_service):
    await start_service()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{API}/api/lines") as resp:
            assert resp.status == 401
        async with http.get(f"{API}/api/lines", headers={"Authorization": "Bearer nope"}) as resp:
            assert resp.status == 401  # nobody has this token (403: a token without the right)
        http.headers.update(ADMIN)
        cases = [
            ({"state": "shut", "until": "2030-01-01T00:00", "reason": "xyz"}, 422, "state"),
            ({"state": "closed", "until": "2001-01-01T00:00", "reason": "xyz"}, 400, "future"),
            ({"state": "closed", "reason": "xyz"}, 422, "until"),
            ({"state": "closed", "until": "2030-01-01T00:00", "reason": "xyz", "x": 1}, 422, "x"),
        ]
        for body, status, word in cases:
            async with http.put(f"{API}/api/lines/{MENU}/override", json=body) as resp:
                assert resp.status == status
                assert word in (await resp.json())["error"]
        async with http.put(f"{API}/api/lines/{MENU}/override", data=b"{not json") as resp:
            assert resp.status == 400
        async with http.put(f"{API}/api/lines/0000/override",
                            json={"state": "closed", "until": "2030-01-01T00:00",
                                  "reason": "xyz"}) as resp:
            assert resp.status == 404


async def _sleep_until(desk, when: datetime) -> None:
    import asyncio

    # Real time must pass: the service's clock (the test's ShiftedClock) runs with the wall
    # clock, and the override ends when that clock reaches its `until`.
    delay = (when - desk.now()).total_seconds()
    await asyncio.sleep(max(0.0, delay) + 0.2)
