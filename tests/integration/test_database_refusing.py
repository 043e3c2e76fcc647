"""The database refuses writes mid-service (its SQLite file made read-only, its disk full, the
PostgreSQL role without privileges): calls go on, their records and an agent's login wait in
memory, in order, and are all written once it takes writes again; meanwhile health and
metrics say so and requests that need it answer 503. Started on a database that refuses
writes, `centralino run` says so in one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from functools import partial
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from centralino.storage.store import Store
from tests.integration.conftest import REPO, TEST_SETTINGS, record_of, settings_for
from tests.integration.waiting import eventually

MENU = "0999000001"
API = "http://127.0.0.1:18081"
ADMIN = {"Authorization": "Bearer test-admin-token"}


async def refused_then_back(start_service, caller, url: str, refuse: Callable[[], object],
                            allow: Callable[[], object], problems: set[str],
                            tmp_path: Path) -> None:
    """The guarantees, whatever makes the database refuse writes (`refuse`, then `allow`)."""
    service = await start_service(settings=settings_for(
        CENTRALINO_DATABASE__URL=url, CENTRALINO_DATABASE__SPOOL=str(tmp_path / "spool")))
    async with aiohttp.ClientSession(headers=ADMIN) as http:
        await _call(refuse)
        try:
            call = await caller.dial(MENU)
            await call.wait_heard("menu_main")
            await call.press("3")  # an information, then goodbye
            await call.wait_ended()
            assert call.heard[-2:] == ["info_b", "goodbye"]  # the caller noticed nothing

            h = await eventually(partial(_get, http, "/healthz"),
                                 lambda h: h["database"] == "refusing writes", timeout=15,
                                 what="/healthz: the database refusing writes")
            assert h["status"] == "ok" and h["database_problem"] in problems
            assert h["records_waiting"] > 0
            assert "centralino_database_up 0.0" in await _text(http, "/metrics")

            async with http.post(f"{API}/api/agents/1001/login") as resp:
                assert resp.status == 200, await resp.text()
            for method, path, body, headers in (
                    ("POST", "/api/recalls", {"number": "3471234567", "topic": "beta",
                                              "mode": "now", "name": "Maria"},
                     {"Authorization": "Bearer dev-portal"}),
                    ("PUT", f"/api/lines/{MENU}/override",
                     {"state": "closed", "until": "2026-12-01T12:00:00+01:00",
                      "reason": "test"}, {})):
                async with http.request(method, f"{API}{path}", json=body,
                                        headers=headers) as resp:
                    assert resp.status == 503, (path, await resp.text())
                    assert resp.headers["Retry-After"] == "30"
                    answer = await resp.json()
                    assert "refuses writes" in answer["error"] and "try again" in answer["error"]
            # Reading does not wait for the writer: what is stored, and how much is missing.
            async with http.get(f"{API}/api/calls",
                                params={"channel_id": call.service_half}) as resp:
                assert resp.status == 200 and await resp.json() == []
                assert int(resp.headers["X-Records-Waiting"]) > 0
        finally:
            await _call(allow)

        h = await eventually(partial(_get, http, "/healthz"),
                             lambda h: h["database"] == "ok" and not h["records_waiting"],
                             timeout=30, every=0.2, what="/healthz: writes again, all written")
        assert h["database_problem"] is None
        assert "centralino_database_up 1.0" in await _text(http, "/metrics")
        events = await _get(http, "/api/agents/1001/events")
        assert (events[0]["state"], events[0]["by"]) == ("available", "admin:admin")
        await http.delete(f"{API}/api/lines/{MENU}/override")  # had any been stored
    record = await record_of(service, call)  # everything written, in order
    assert record.outcome == "goodbye"
    assert [(s.kind, s.node, s.key) for s in record.steps if s.kind in ("menu", "key")] == [
        ("menu", "main", None), ("key", "main", "3")]
    assert [s.seq for s in record.steps] == list(range(len(record.steps)))


async def _call(action: Callable[[], object]) -> None:
    if asyncio.iscoroutine(done := action()):
        await done


async def _get(http: aiohttp.ClientSession, path: str) -> object:
    async with http.get(f"{API}{path}") as resp:
        return await resp.json()


async def _text(http: aiohttp.ClientSession, path: str) -> str:
    async with http.get(f"{API}{path}") as resp:
        return await resp.text()


# --- SQLite: the file made read-only, the disk full ------------------------------------------

def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True, capture_output=True)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Iterator[Path]:
    """A SQLite file in its own folder; made writable again at the end, whatever happened."""
    folder = tmp_path / "db"
    folder.mkdir()
    path = folder / "centralino.db"
    try:
        chattr("+i", folder)
        chattr("-i", folder)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs root and a filesystem with the immutable attribute (chattr)")
    yield path
    chattr("-i", folder)
    if path.exists():
        chattr("-i", path)


async def test_sqlite_file_made_read_only_then_writable(sqlite_file, start_service, caller,
                                                        tmp_path):
    # Immutable file and folder: not even root writes the file, or its journal beside it.
    frozen = (sqlite_file, sqlite_file.parent)
    await refused_then_back(start_service, caller, f"sqlite+aiosqlite:///{sqlite_file}",
                            lambda: chattr("+i", *frozen), lambda: chattr("-i", *frozen),
                            # the journal cannot be created; a new connection opens it read-only
                            {"cannot open the file or its journal", "read-only"}, tmp_path)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB filesystem of its own (tmpfs), unmounted once the services have stopped."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, check=False)
    if done.returncode:
        pytest.skip(f"needs root to mount a small disk: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "--lazy", str(mount)], check=True)


def fill(disk: Path) -> None:
    """Until the disk has no room left."""
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError:  # ENOSPC
        pass
    finally:
        os.close(fd)


async def test_sqlite_disk_full_then_freed(small_disk, start_service, caller, tmp_path):
    await refused_then_back(start_service, caller,
                            f"sqlite+aiosqlite:///{small_disk}/centralino.db",
                            lambda: fill(small_disk), (small_disk / "filler").unlink,
                            {"disk full"}, tmp_path)


# --- PostgreSQL: the service's role loses its privileges ---------------------------------------

@pytest.fixture
async def limited_role() -> AsyncIterator[tuple[str, Callable[[str], object]]]:
    """(the URL of a role that may only read and write the tables, as production services
    should log in; `sql(statement)` run by the superuser). Privileges back at the end."""
    url = os.environ.get("CENTRALINO_TEST_DATABASE_URL")
    if not url:
        pytest.skip("needs PostgreSQL (the README's test command provides it)")
    admin = Store(url)
    async with admin:  # migrated: the role is not allowed to
        pass
    role = f"limited_{make_url(url).database}"

    async def sql(statement: str) -> None:
        async with admin.engine.begin() as conn:
            await conn.execute(text(statement.format(role=role)))

    await sql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') "
              "THEN CREATE ROLE {role} LOGIN; END IF; END $$")
    await sql("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    await sql("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    await sql("ALTER ROLE {role} RESET default_transaction_read_only")
    yield make_url(url).set(username=role, password="s3cret").render_as_string(False), sql
    await sql("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}")
    await sql("ALTER ROLE {role} RESET default_transaction_read_only")
    await admin.engine.dispose()


async def test_postgresql_role_loses_its_privileges_then_gets_them_back(
        start_service, caller, limited_role, tmp_path):
    url, sql = limited_role
    await refused_then_back(
        start_service, caller, url,
        lambda: sql("REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public FROM {role}"),
        lambda: sql("GRANT INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"),
        {"permission denied"}, tmp_path)


async def test_postgresql_read_only_then_writable_again(start_service, caller, limited_role,
                                                        tmp_path):
    """As a primary turned standby, then back: connections opened meanwhile are read-only
    and stay so, the service must open new ones by itself."""
    url, sql = limited_role

    async def read_only() -> None:
        await sql("ALTER ROLE {role} SET default_transaction_read_only = on")
        await sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                  "WHERE usename = '{role}'")

    await refused_then_back(
        start_service, caller, url, read_only,
        lambda: sql("ALTER ROLE {role} RESET default_transaction_read_only"),
        {"read-only"}, tmp_path)


# --- starting on a database that refuses writes -----------------------------------------------

def run_centralino(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CENTRALINO_DATABASE__URL": url, "CENTRALINO_HTTP__PORT": "18083"}
    return subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", str(TEST_SETTINGS), "run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def assert_one_clear_line(result: subprocess.CompletedProcess[str], where: str,
                          why: str) -> None:
    assert result.returncode == 1
    # Start-up's information (the open files limit) may come first; the problem is one line.
    lines = [ln for ln in result.stderr.strip().splitlines() if " INFO " not in ln]
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith(f"Error: cannot open the database {where} (it refuses writes"), line
    assert why in line and "Traceback" not in line


async def test_run_on_a_read_only_sqlite_file_says_so_in_one_line(sqlite_file):
    url = f"sqlite+aiosqlite:///{sqlite_file}"
    async with Store(url):  # an existing database, up to date
        pass
    chattr("+i", sqlite_file, sqlite_file.parent)
    result = await asyncio.to_thread(run_centralino, url)
    assert_one_clear_line(result, url, "read-only")


async def test_run_on_a_read_only_postgresql_role_says_so_in_one_line(limited_role):
    url, sql = limited_role
    await sql("ALTER ROLE {role} SET default_transaction_read_only = on")
    result = await asyncio.to_thread(run_centralino, url)
    hidden = make_url(url).render_as_string(hide_password=True)
    assert_one_clear_line(result, hidden, "read-only")
    assert "s3cret" not in result.stderr
