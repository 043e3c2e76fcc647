"""The agents' console files at /console/: served by name from their folder, with the
headers that keep the page from being framed or sniffed."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from centralino.web import console


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    app = web.Application()
    console.add_routes(app)
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_console_without_slash_redirects_to_the_page(client: TestClient) -> None:
    resp = await client.get("/console", allow_redirects=False)
    assert (resp.status, resp.headers["Location"]) == (302, "/console/")


@pytest.mark.parametrize("path, name, kind", [
    ("/console/", "index.html", "text/html"),
    ("/console/index.html", "index.html", "text/html"),
    ("/console/console.js", "console.js", "text/javascript"),
    ("/console/console.css", "console.css", "text/css"),
    ("/console/supervisor.html", "supervisor.html", "text/html"),
])
async def test_the_pages_files_are_served_with_their_type_and_guarding_headers(
        client: TestClient, path: str, name: str, kind: str) -> None:
    resp = await client.get(path)
    assert resp.status == 200
    assert await resp.read() == (console.FILES / name).read_bytes()
    assert resp.headers["Content-Type"] == f"{kind}; charset=utf-8"
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", [
    "/console/missing.js",
    "/console/..%2Fconsole.py",  # the module beside the folder
    "/console/%2E%2E%2F%2E%2E%2F__init__.py",
    "/console/.%2Findex.html",
])
async def test_anything_else_is_not_found(client: TestClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status == 404
