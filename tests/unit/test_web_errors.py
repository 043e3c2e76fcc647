"""Refused requests leave nothing for the garbage collector: under a flood of bad requests
(oversized bodies, unknown tokens, invalid content) reference cycles made the collector stop
the calls for tens of milliseconds every few seconds (issue #9, the hostile-load benchmark)."""

from __future__ import annotations

import gc
import json

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import BaseModel

from centralino.web.common import error, json_body, plain_errors


class Body(BaseModel):
    name: str


async def strict(request: web.Request) -> web.Response:
    body = await json_body(request, Body)
    if body.name == "nobody":
        raise error(web.HTTPNotFound, "no such name")
    return web.json_response({"name": body.name})


async def cycles_per_request(middlewares: list, requests: list[tuple[bytes, int]]) -> float:
    app = web.Application(middlewares=middlewares)
    app.router.add_post("/", strict)
    async with TestClient(TestServer(app)) as client:
        gc.collect()
        gc.disable()
        try:
            for body, status in requests:
                resp = await client.post("/", data=body)
                assert resp.status == status, await resp.text()
                await resp.read()
            return gc.collect() / len(requests)
        finally:
            gc.enable()


REFUSED = [(b"x" * 20_000, 413), (json.dumps({"name": 5}).encode(), 422), (b"{", 400),
           (json.dumps({"name": "nobody"}).encode(), 404)] * 25


async def test_refused_requests_leave_no_reference_cycles():
    assert await cycles_per_request([plain_errors], REFUSED) < 1
    # Without the middleware each refusal left dozens (what it is there for).
    assert await cycles_per_request([], REFUSED) > 10


async def test_the_answer_is_the_same_with_the_plain_response():
    app = web.Application(middlewares=[plain_errors])
    app.router.add_post("/", strict)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/", data=b"x" * 20_000)
        assert resp.status == 413 and resp.content_type == "application/json"
        assert await resp.json() == {"error": "the body is larger than 16384 bytes",
                                     "problems": []}
        assert (await client.get("/nowhere")).status == 404  # aiohttp's own refusals too
