"""The database goes away mid-service (its connections cut, new ones refused, as when
PostgreSQL restarts or the network drops): calls go on, their records wait and are written
when it is back, or at the next start if the service stops meanwhile; the API says 503 rather
than 500; health and metrics say what is going on."""

from __future__ import annotations

import asyncio
import os
from datetime import datetime
from functools import partial
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.integration.conftest import record_of, settings_for, steps
from tests.integration.desk_api import staff
from tests.integration.waiting import eventually

MENU, DIRECT = "0999000001", "0999000002"
API = "http://127.0.0.1:18081"
CLOSED = datetime(2026, 12, 1, 21, 30)


class Cable:
    """A TCP proxy to PostgreSQL that the test can unplug and plug back in."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server: asyncio.Server | None = None
        self.port = 0  # chosen at the first plug, the same afterwards
        self.pipes: set[asyncio.StreamWriter] = set()

    async def plug(self) -> None:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def unplug(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()
        for writer in list(self.pipes):
            writer.transport.abort()
        self.pipes.clear()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.pipes |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()
        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))


async def health(http: aiohttp.ClientSession) -> dict:
    async with http.get(f"{API}/healthz") as resp:
        return await resp.json()


@pytest.fixture
async def cable():
    """(the cable, the database URL through it); plugged in at the end, whatever happened."""
    url = os.environ.get("CENTRALINO_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs PostgreSQL (the README's test command provides it)")
    where = urlsplit(url.replace("postgresql+asyncpg", "postgresql"))
    cable = Cable(where.hostname or "127.0.0.1", where.port or 5432)
    await cable.plug()
    yield cable, url.replace(f"{where.hostname}:{where.port}", f"127.0.0.1:{cable.port}")
    if not cable.server.is_serving():  # type: ignore[union-attr]
        await cable.plug()  # the services, stopped after this, write what is left


async def test_calls_go_on_and_their_records_wait_for_the_database(start_service, caller,
                                                                   cable):
    cable, proxied = cable
    service = await start_service(at=CLOSED,  # a short call
                                  settings=settings_for(CENTRALINO_DATABASE__URL=proxied))
    await cable.unplug()
    call = await caller.dial(MENU)
    await call.wait_ended()
    assert call.heard == ["cost", "closed"]  # the caller noticed nothing

    async with aiohttp.ClientSession() as http:
        h = await eventually(partial(health, http), lambda h: h["database"] == "unreachable",
                             what="/healthz: the database unreachable")
        assert h["status"] == "ok" and h["records_waiting"] > 0
        async with http.get(f"{API}/metrics") as resp:
            text = await resp.text()
        assert "centralino_database_up 0.0" in text

        body = {"number": "3471234567", "topic": "beta", "mode": "now", "name": "Maria"}
        async with http.post(f"{API}/api/recalls", json=body,
                             headers={"Authorization": "Bearer dev-portal"}) as resp:
            assert resp.status == 503, await resp.text()
            assert resp.headers["Retry-After"] == "30"
            assert "try again" in (await resp.json())["error"]

        await cable.plug()
        await eventually(partial(health, http),
                         lambda h: h["database"] == "ok" and not h["records_waiting"],
                         timeout=30, every=0.2, what="/healthz: the database back, all written")
    record = await record_of(service, call)  # written once the database was back
    assert record.outcome == "closed"
    assert steps(record, "closed")[0][4] == "hours"  # why it was closed


async def test_records_kept_at_a_stop_while_the_database_is_away_are_written_at_next_start(
        start_service, caller, cable, tmp_path):
    cable, proxied = cable
    spool = tmp_path / "unwritten.pickle"
    settings = settings_for(CENTRALINO_DATABASE__URL=proxied,
                            CENTRALINO_DATABASE__SPOOL=str(spool))
    service = await start_service(at=CLOSED, settings=settings)
    await cable.unplug()
    call = await caller.dial(MENU)
    await call.wait_ended()
    async with aiohttp.ClientSession() as http:  # the service is through with the call too
        await eventually(partial(health, http), lambda h: h["calls_in_progress"] == 0,
                         what="/healthz: no call in progress")
    await service.__aexit__(None, None, None)  # waits 10 s for the database, then keeps
    assert spool.exists()

    await cable.plug()
    restarted = await start_service(at=CLOSED, settings=settings)
    assert not spool.exists()
    record = await record_of(restarted, call)
    assert (record.outcome, steps(record, "closed")[0][4]) == ("closed", "hours")


async def test_a_caller_reaches_an_agent_while_the_database_is_away(start_service, desk, caller,
                                                                     phones, cable):
    """The screen pop shows no earlier calls (they cannot be read), the call goes on."""
    cable, proxied = cable
    service = await start_service(settings=settings_for(CENTRALINO_DATABASE__URL=proxied))
    phones.set("1003", "answer")
    await staff(desk, "1003")
    await cable.unplug()
    call = await caller.dial(DIRECT, caller_number="0688888888")
    ring = await phones.wait_answered("1003")
    await desk.until_state("1003", "on_call", poll=0.05)  # bridged to the caller
    await phones.hang_up(ring)
    await call.wait_ended()
    await cable.plug()
    record = await record_of(service, call, timeout=30)
    assert (record.outcome, record.agent_id) == ("answered", "1003")
