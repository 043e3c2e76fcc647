"""The recall request API on the running service and the real database (PostgreSQL in CI):
durable before 202, status and cancel, duplicates, refused numbers, keys, rate limits."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import aiohttp
from sqlalchemy import select

from centralino.storage.models import RecallRequest

API = "http://127.0.0.1:18081/api/recalls"
PORTAL = {"Authorization": "Bearer dev-portal"}  # tests/integration/config/centralino.yaml
OTHER = {"X-API-Key": "test-portal-2"}
ADMIN = {"Authorization": "Bearer test-admin-token"}


def fresh_mobile() -> str:
    """A number no earlier run used: the database keeps requests (and their daily limit)."""
    return f"+39 347 {random.randrange(10**7):07d}"


def payload(**changes: Any) -> dict[str, Any]:
    return {"number": fresh_mobile(), "topic": "alpha", "mode": "now", "name": "Maria Rossi",
            "note": "SUAP", **changes}


async def test_stored_before_202_then_get_and_delete(start_service, desk):
    service = await start_service()
    async with aiohttp.ClientSession() as http:
        body = payload(mode="back", slot="2026-12-02T15:30", portal_ref="P-77")
        async with http.post(API, json=body, headers=PORTAL) as resp:
            assert resp.status == 202, await resp.text()
            posted = await resp.json()
        # Straight from the database, on a connection of its own: it is committed.
        async with service.store.engine.connect() as conn:
            row = (await conn.execute(select(RecallRequest.number, RecallRequest.status,
                                             RecallRequest.due_at, RecallRequest.client)
                                      .where(RecallRequest.id == posted["id"]))).one()
        assert row.number == "+39" + body["number"][4:].replace(" ", "")
        assert (row.status, row.client) == ("waiting", "portal")
        assert posted["due_at"] == "2026-12-02T14:30:00Z"

        async with http.get("http://127.0.0.1:18081" + posted["status_url"],
                            headers=PORTAL) as resp:
            got = await resp.json()
        assert (resp.status, got["status"], got["portal_ref"], got["slot"]) == (
            200, "waiting", "P-77", "2026-12-02T14:30:00Z")
        async with http.delete(f"{API}/{posted['id']}", headers=PORTAL) as resp:
            assert (resp.status, (await resp.json())["status"]) == (200, "cancelled")
        assert (await desk.recall(posted["id"]))["status"] == "cancelled"

        # Once being called, it cannot be cancelled any more. Marked so in the database (as
        # the service marks a request it dials): no call needs placing for this.
        async with http.post(API, json=payload(), headers=PORTAL) as resp:
            second = await resp.json()
        await service.store.set_recall_status(second["id"], "calling", desk.now(),
                                              only_from=("waiting",))
        async with http.delete(f"{API}/{second['id']}", headers=PORTAL) as resp:
            assert resp.status == 409


async def test_duplicates_collapse_even_when_racing(start_service, desk):
    await start_service()
    body = payload()
    async with aiohttp.ClientSession() as http:
        async def post() -> tuple[int, dict[str, Any]]:
            async with http.post(API, json=body, headers=PORTAL) as resp:
                return resp.status, await resp.json()

        answers = await asyncio.gather(*(post() for _ in range(5)))
    assert sorted(status for status, _ in answers) == [200, 200, 200, 200, 202]
    assert len({a["id"] for _, a in answers}) == 1
    assert [a["duplicate"] for s, a in answers if s == 200] == [True] * 4
    number = "+39" + body["number"][4:].replace(" ", "")
    stored = [r for r in await desk.recalls(topic="alpha", limit=1000) if r["number"] == number]
    assert len(stored) == 1


async def test_refused_numbers_say_why(start_service):
    await start_service()
    async with aiohttp.ClientSession() as http:
        for number, reason in [("899 123 456", "premium-rate"), ("+44 20 7946 0958", "GB"),
                               ("+881 6 1234 5678", "satellite"), ("ciao", "not a phone")]:
            async with http.post(API, json=payload(number=number), headers=PORTAL) as resp:
                assert resp.status == 422
                assert reason in (await resp.json())["error"]
        # PostgreSQL refuses NUL in text: refused before it gets there, never a 500.
        async with http.post(API, json=payload(name="Maria\u0000"), headers=PORTAL) as resp:
            assert resp.status == 422


async def test_keys_and_other_portals(start_service):
    await start_service()
    async with aiohttp.ClientSession() as http:
        async with http.post(API, json=payload(), headers={"X-API-Key": "wrong"}) as resp:
            assert resp.status == 401
        async with http.post(API, json=payload(), headers={}) as resp:
            assert resp.status == 401
        async with http.post(API, json=payload(), headers=PORTAL) as resp:
            posted = await resp.json()
        async with http.get(f"{API}/{posted['id']}", headers=OTHER) as resp:
            assert resp.status == 404
        async with http.delete(f"{API}/{posted['id']}", headers=OTHER) as resp:
            assert resp.status == 404
        async with http.get(f"{API}?status=waiting&limit=1000", headers=ADMIN) as resp:
            assert posted["id"] in {r["id"] for r in await resp.json()}
        async with http.get(f"{API}/openapi.json") as resp:
            assert resp.status == 200 and "/api/recalls/{id}" in (await resp.json())["paths"]


async def test_rate_limit_per_number(start_service):
    await start_service()
    number = fresh_mobile()
    async with aiohttp.ClientSession() as http:
        for topic in ("alpha", "beta", "operator"):  # 3 a day (the test settings)
            async with http.post(API, json=payload(number=number, topic=topic),
                                 headers=PORTAL) as resp:
                assert resp.status == 202
        async with http.post(API, json=payload(number=number, topic="omega"),
                             headers=PORTAL) as resp:
            assert resp.status == 429
            assert 0 < int(resp.headers["Retry-After"]) <= 24 * 3600
