"""What a careless or hostile client sends the running service: every malformed header, body,
query value or WebSocket message gets a short 4xx (or a clean close), never a 500, a traceback
or an answer that echoes it back (issue #9, findings 4, 7, 8 and 12)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import WSCloseCode

from tests.integration.conftest import MENU, settings_for
from tests.integration.desk_api import staff
from tests.integration.waiting import eventually

API = "http://127.0.0.1:18081"
WS = "ws://127.0.0.1:18081"
ADMIN = {"Authorization": "Bearer test-admin-token"}
PORTAL = {"Authorization": "Bearer dev-portal"}
AGENT = {"Authorization": "Bearer dev-1001"}


@pytest.fixture
async def http(start_service):
    service = await start_service()
    async with aiohttp.ClientSession() as session:
        yield service, session


def recall(**changes: object) -> dict[str, object]:
    return {"number": "347 123 4567", "topic": "alpha", "mode": "now", "name": "Maria",
            **changes}


async def test_oversized_and_noisy_bodies_get_short_answers_and_nothing_is_stored(http, desk):
    _, session = http
    before = len(await desk.recalls(limit=1000))
    # The finding: 50,000 unknown keys (770 KB) were answered with a 4 MB list of them.
    flood = json.dumps({f"key{n:05}": n for n in range(50_000)}).encode()
    for url, headers in ((f"{API}/api/recalls", PORTAL),
                         (f"{API}/api/agents/1001/pause", AGENT),
                         (f"{API}/api/lines/0999000001/override", ADMIN)):
        method = session.put if url.endswith("override") else session.post
        async with method(url, data=flood, headers=headers) as resp:
            assert resp.status == 413, url
            assert len(await resp.read()) < 200
    # Under the size limit, still many problems: a few are listed, the rest counted.
    noisy = json.dumps({**recall(), **{f"k{n}": 0 for n in range(1000)}})
    async with session.post(f"{API}/api/recalls", data=noisy, headers=PORTAL) as resp:
        body = await resp.json()
        assert resp.status == 422 and len(await resp.read()) < 1000
    assert body["problems"][-1] == "... and 995 more problems"
    assert len(body["problems"]) == 6
    assert len(await desk.recalls(limit=1000)) == before
    assert await desk.state("1001") == "logged_out"  # the pause was not taken


async def test_a_body_that_never_finishes_is_cut(http):
    _, session = http

    async def drip():
        yield b'{"reason": "'
        await asyncio.sleep(60)  # far beyond the body timeout
        yield b'x"}'

    async with session.post(f"{API}/api/agents/1001/pause", data=drip(),
                            headers={**AGENT, "Content-Type": "application/json"}) as resp:
        assert resp.status == 408
        assert "did not arrive" in (await resp.json())["error"]


@pytest.mark.parametrize("header", [
    b"Bearer \xff\xfe\xfd",  # not UTF-8
    b"Bearer caf\xc3\xa9",  # UTF-8, but no token of ours is
    b"Bearer " + b"x" * 5000,
    b"Bearer a b c",
    b"Basic dGVzdDp0ZXN0",
])
async def test_malformed_credentials_are_401_everywhere(http, header):
    for method, path in (("GET", "/api/agents"), ("GET", "/api/recalls"),
                         ("POST", "/api/recalls"), ("GET", "/api/figures"),
                         ("GET", "/api/calls")):
        for name in ("Authorization", "X-API-Key"):
            # aiohttp's client would encode the header: send the raw bytes ourselves.
            status, body = await raw_request(method, path, {name: header})
            assert status == 401, (path, name, body)
            assert b"Traceback" not in body and len(body) < 300


async def raw_request(method: str, path: str, headers: dict[str, bytes]) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", 18081)
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close",
             b"Content-Length: 0"] + [name.encode() + b": " + value
                                      for name, value in headers.items()]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_an_unknown_token_is_401_and_a_known_one_without_the_right_is_403(http):
    _, session = http
    nobody = {"Authorization": "Bearer not-a-token-anybody-has"}
    for path in ("/api/agents", "/api/recalls", "/api/figures", "/api/lines"):
        async with session.get(API + path, headers=nobody) as resp:
            assert resp.status == 401, path
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        async with session.get(API + path, headers=AGENT) as resp:
            assert resp.status == 403, path


@pytest.mark.parametrize("query", [
    "from=0001-01-01", "to=9999-12-31", "from=9999-12-31T23:59:59-12:00",
    "from=0001-01-01T00:00+14:00", "from=2026-02-30", "to=yesterday", "from=2026-13-01",
    "from=1899-12-31", "to=9999-01-01",
])
async def test_dates_at_the_edges_are_400(http, query):
    _, session = http
    for path in ("/api/figures", "/api/queue_log"):
        async with session.get(f"{API}{path}?{query}", headers=ADMIN) as resp:
            assert resp.status == 400, (path, query, await resp.text())
            assert "yesterday" not in (await resp.json())["error"]  # the input is not echoed


@pytest.mark.parametrize("limit", ["-1", "0", "501", "1e3", "ten", "99999999999999999999"])
async def test_call_listing_limits_are_checked(http, limit):
    _, session = http
    async with session.get(f"{API}/api/calls?limit={limit}", headers=ADMIN) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "limit: a whole number from 1 to 500"
    async with session.get(f"{API}/api/calls?limit=500", headers=ADMIN) as resp:
        assert resp.status == 200


@pytest.mark.parametrize("first", [
    "not json",
    '{"token": 12345}',
    '{"token": ["dev-1001"]}',
    "[" * 5000 + "]" * 5000,
    '{"token": "dev-1001", "states": {"a": ' * 2000 + "1" + "}" * 4000,
    json.dumps({"token": "x" * 10_000}),
])
async def test_a_malformed_first_message_closes_the_socket_cleanly(http, first):
    _, session = http
    for path in ("/ws/agents/1001", "/ws/supervisor"):
        async with session.ws_connect(WS + path) as ws:
            await ws.send_str(first)
            msg = await ws.receive(timeout=5)
            if msg.type == aiohttp.WSMsgType.TEXT:  # the reason, then the close
                assert json.loads(msg.data)["type"] == "error"
                msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE, msg
            assert ws.close_code in (WSCloseCode.POLICY_VIOLATION,
                                     WSCloseCode.MESSAGE_TOO_BIG), path


async def test_an_unknown_token_on_a_socket_is_4001(http):
    _, session = http
    async with session.ws_connect(f"{WS}/ws/agents/1001") as ws:
        await ws.send_str(json.dumps({"token": "not-a-token-anybody-has"}))
        assert json.loads((await ws.receive(timeout=5)).data)["error"] == "unknown token"
        await ws.receive(timeout=5)
        assert ws.close_code == 4001


@pytest.mark.parametrize("message", [
    '{"type": "ack"}', '{"type": "ack", "offer_id": 5}', "[]", '"ack"', "{" * 3000,
    json.dumps({"type": "ack", "offer_id": "x" * 1000}),
])
async def test_a_console_message_of_the_wrong_shape_closes_the_console(http, message):
    service, session = http
    async with session.ws_connect(f"{WS}/ws/agents/1001") as ws:
        await ws.send_str(json.dumps({"token": "dev-1001"}))
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
        await ws.send_str(message)
        msg = await ws.receive(timeout=5)
        assert json.loads(msg.data)["type"] == "error"
        await ws.receive(timeout=5)
        assert ws.close_code == WSCloseCode.POLICY_VIOLATION
    # The console is forgotten (its pops go nowhere): no API tells the consoles a service
    # holds open, so this looks at the service's own list.
    async def consoles() -> object:
        return service.desk.consoles.get("1001")
    await eventually(consoles, lambda open_: not open_, timeout=5, what="1001's console forgotten")


async def test_a_recall_to_the_help_desk_itself_is_refused(http):
    _, session = http
    # 0999000001 is a line of the test configuration, 0612345000 its recalls' caller id.
    for number in ("0999000001", "+39 0612345000"):
        async with session.post(f"{API}/api/recalls", json=recall(number=number),
                                headers=PORTAL) as resp:
            body = await resp.json()
            assert resp.status == 422 and body["problems"] == [
                "number: this is the help desk's own number"], body


async def test_only_a_prompt_url_with_the_current_digest_is_cached(http, caller):
    _, session = http
    call = await caller.dial(MENU)  # the URL Asterisk is told to play the menu from
    await call.wait_heard("menu_main")
    await call.hangup()
    uri = next(m for m in call.started if m.endswith("/menu_main.wav")).removeprefix("sound:")
    async with session.get(uri) as resp:
        assert resp.status == 200 and "immutable" in resp.headers["Cache-Control"]
        current = await resp.read()
    _lang, digest, _name = uri.rsplit("/", 3)[1:]
    guessed = uri.replace(f"/{digest}/", "/0123456789abcdef/")
    async with session.get(guessed) as resp:  # an old (or made-up) digest
        assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
        assert await resp.read() == current


async def test_metrics_need_their_token_and_are_rendered_at_most_once_per_max_age(
        start_service, desk):
    token = "mtr-7Hq2Lp9Xz4Nc8Vb3Kw6Jd5Rf"
    await start_service(settings=settings_for(
        CENTRALINO_HTTP__METRICS_TOKEN=token, CENTRALINO_HTTP__METRICS_MAX_AGE="60"))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{API}/metrics") as resp:
            assert resp.status == 401
        async with session.get(f"{API}/metrics", headers=PORTAL) as resp:
            assert resp.status == 401
        scrape = {"Authorization": f"Bearer {token}"}
        async with session.get(f"{API}/metrics", headers=scrape) as resp:
            assert resp.status == 200
            first = await resp.text()
        assert 'centralino_agents{state="available"} 0.0' in first

        await staff(desk, "1001", "1002")  # two agents become available...
        bodies = await asyncio.gather(*(_text(session, f"{API}/metrics", ADMIN)
                                        for _ in range(9)))
        assert set(bodies) == {first}  # ...but scrapers within 60 s get the same page
        # Ten scrapes in 10 s from one address is a loop, not Prometheus.
        async with session.get(f"{API}/metrics", headers=scrape) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def _text(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> str:
    async with session.get(url, headers=headers) as resp:
        assert resp.status == 200
        return await resp.text()


async def test_an_address_whose_requests_keep_being_refused_is_barred(http):
    """30 oversized bodies from 127.0.0.2 within a minute: its connections are then closed at
    once, while other addresses (and Asterisk's, which fetches the prompts) are served."""
    _, session = http
    flood = b"x" * 100_000
    other = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=other) as attacker:
        statuses = []
        for _ in range(40):
            try:
                async with attacker.post(f"{API}/api/agents/1001/pause", data=flood,
                                         headers=AGENT) as resp:
                    statuses.append(resp.status)
            except aiohttp.ClientError:
                statuses.append("closed")
        assert 25 <= statuses.count(413) <= 30, statuses  # (a reset may beat an answer)
        assert statuses[-5:] == ["closed"] * 5
        async with session.get(f"{API}/healthz") as resp:
            assert resp.status == 200
