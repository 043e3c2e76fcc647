"""The background writer: order kept, consecutive inserts batched, one bad row loses nothing
else, records wait while the database is away."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from centralino.storage.writer import Writer


class FakeStore:
    """Records each call: a unit test of the writer's own logic, not of the database."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...]]] = []

    async def add(self, *rows: object) -> None:
        if "bad" in rows:
            raise ValueError("constraint violated")
        self.calls.append(("add", rows))

    add.batches = True  # type: ignore[attr-defined]

    async def update(self, *values: object) -> None:
        self.calls.append(("update", values))


async def test_consecutive_adds_are_one_write_and_order_is_kept():
    store, writer = FakeStore(), Writer()
    for item in ("a", "b"):
        writer.put(store.add, item)
    writer.put(store.update, "u")
    writer.put(store.add, "c")
    writer.start()
    await writer.drain()
    await writer.close()
    assert store.calls == [("add", ("a", "b")), ("update", ("u",)), ("add", ("c",))]


async def test_a_bad_row_in_a_batch_loses_only_itself():
    store, writer = FakeStore(), Writer()
    for item in ("a", "bad", "c"):
        writer.put(store.add, item)
    writer.start()
    await writer.drain()
    await writer.close()
    assert store.calls == [("add", ("a",)), ("add", ("c",))]


class AwayStore(FakeStore):
    """Refuses connections for its first `away` writes, like a restarting database."""

    def __init__(self, away: int) -> None:
        super().__init__()
        self.away = away

    async def add(self, *rows: object) -> None:
        if self.away:
            self.away -= 1
            raise ConnectionRefusedError(111, "Connect call failed")
        await super().add(*rows)

    add.batches = True  # type: ignore[attr-defined]


async def test_records_wait_in_order_while_the_database_is_away():
    store, writer = AwayStore(away=2), Writer()
    writer.put(store.add, "a")
    writer.start()
    await asyncio.sleep(0.1)  # the first retry waits 0.5 s
    assert writer.fault is not None and writer.fault.kind == "unreachable"
    writer.put(store.update, "u")
    writer.put(store.add, "b")
    assert writer.waiting == 2
    await writer.drain()
    await writer.close()
    assert store.calls == [("add", ("a",)), ("update", ("u",)), ("add", ("b",))]
    assert writer.fault is None


def sqlite_error(tmp_path: Path, how: str) -> sqlite3.Error:
    """A real error of Python's sqlite3 driver (SQLite itself said it)."""
    path = tmp_path / f"{how}.db"
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (a TEXT PRIMARY KEY)")
    setup.execute("INSERT INTO t VALUES ('x')")
    setup.commit()
    db = sqlite3.connect(path, timeout=0)
    try:
        if how == "read-only":
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES ('y')")
        elif how == "full":
            db.execute("PRAGMA max_page_count = 2")  # as a disk with no room left
            db.execute("INSERT INTO t VALUES (?)", ("y" * 100_000,))
        elif how == "locked":
            setup.execute("BEGIN EXCLUSIVE")  # another writer holds the file
            db.execute("INSERT INTO t VALUES ('y')")
        elif how == "cannot open":
            sqlite3.connect(tmp_path / "no" / "such" / "dir.db").execute("SELECT 1")
        elif how == "duplicate":
            db.execute("INSERT INTO t VALUES ('x')")
        elif how == "no table":
            db.execute("INSERT INTO missing VALUES ('x')")
    except sqlite3.Error as exc:
        return exc
    finally:
        setup.close()
        db.close()
    raise AssertionError(f"SQLite did not refuse: {how}")


def sqlalchemy_error(tmp_path: Path, how: str) -> Exception:
    """The same error as SQLAlchemy hands it over (the driver's inside, as `orig`)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path}/sa.db")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS t (a TEXT PRIMARY KEY)"))
        conn.execute(text("INSERT OR IGNORE INTO t VALUES ('x')"))
    try:
        with engine.begin() as conn:
            conn.execute(text("PRAGMA max_page_count = 2" if how == "full" else "SELECT 1"))
            conn.execute(text("INSERT INTO t VALUES ('x')" if how == "duplicate"
                              else f"INSERT INTO t VALUES ('{'y' * 100_000}')"))
    except Exception as exc:
        return exc
    finally:
        engine.dispose()
    raise AssertionError(f"SQLite did not refuse: {how}")


def test_what_the_database_state_is_told_from_the_drivers_codes(tmp_path):
    from asyncpg import exceptions as pg
    from sqlalchemy.exc import DBAPIError, OperationalError

    from centralino.storage.faults import fault_of

    def said(exc: BaseException) -> tuple[str, str]:
        fault = fault_of(exc)
        return fault.kind, fault.reason

    # SQLite: the file is there, but writes fail; worth waiting for.
    assert said(sqlite_error(tmp_path, "read-only")) == ("refusing writes", "read-only")
    assert said(sqlite_error(tmp_path, "full")) == ("refusing writes", "disk full")
    assert said(sqlite_error(tmp_path, "locked")) == ("refusing writes",
                                                     "locked by another writer")
    assert fault_of(sqlite_error(tmp_path, "cannot open")).kind == "refusing writes"
    assert said(sqlalchemy_error(tmp_path, "full")) == ("refusing writes", "disk full")
    assert "SQLITE_FULL" in fault_of(sqlalchemy_error(tmp_path, "full")).detail
    # The row's fault, or a bug: they would fail again.
    assert said(sqlite_error(tmp_path, "duplicate")) == ("row refused", "constraint violated")
    assert said(sqlalchemy_error(tmp_path, "duplicate")) == ("row refused",
                                                             "constraint violated")
    assert fault_of(sqlite_error(tmp_path, "no table")).kind == "bug"

    # PostgreSQL (asyncpg's errors carry the SQLSTATE), as raised and as SQLAlchemy wraps them.
    def wrapped(orig: BaseException, invalidated: bool = False) -> DBAPIError:
        adapted = Exception(f"<class '{type(orig).__name__}'>: {orig}")
        adapted.__cause__ = orig
        return DBAPIError("INSERT ...", {}, adapted, connection_invalidated=invalidated)

    refusing = {pg.ReadOnlySQLTransactionError: "read-only",
                pg.InsufficientPrivilegeError: "permission denied",
                pg.DiskFullError: "disk full",
                pg.OutOfMemoryError: "out of memory",
                pg.SerializationError: "busy (serialization failure)",
                pg.DeadlockDetectedError: "busy (deadlock)",
                pg.PostgresIOError: "disk I/O error"}
    for error, reason in refusing.items():
        assert said(wrapped(error("no"))) == ("refusing writes", reason), error
    unreachable = {pg.CannotConnectNowError: "starting up", pg.AdminShutdownError: "shut down",
                   pg.ConnectionDoesNotExistError: "connection lost",
                   pg.TooManyConnectionsError: "too many connections",
                   pg.InvalidPasswordError: "login refused"}
    for error, reason in unreachable.items():
        assert said(wrapped(error("no"))) == ("unreachable", reason), error
    assert said(wrapped(pg.UniqueViolationError("dup"))) == ("row refused",
                                                            "constraint violated")
    assert said(pg.StringDataRightTruncationError("too long")) == ("row refused", "bad data")
    assert said(wrapped(pg.UndefinedTableError("no table"))) == ("bug", "error")
    assert fault_of(wrapped(pg.InsufficientPrivilegeError(
        "permission denied for table calls"))).detail == (
        "permission denied for table calls (42501)")

    # No connection at all.
    assert said(ConnectionRefusedError(111, "refused")) == ("unreachable", "connection refused")
    assert fault_of(TimeoutError()).kind == "unreachable"
    assert said(wrapped(Exception("closed"), invalidated=True)) == ("unreachable",
                                                                    "connection lost")
    assert fault_of(OperationalError("SELECT", {}, ValueError("odd"))).kind == "bug"
    assert fault_of(ValueError("bad")).kind == "bug"


class RefusingStore(FakeStore):
    """Refuses writes (a real read-only SQLite error) while `refusing`, as a database whose
    file was made read-only, whose disk is full or whose role lost its privileges."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error, self.refusing = error, True

    async def add(self, *rows: object) -> None:
        if self.refusing:
            raise self.error
        await super().add(*rows)

    add.batches = True  # type: ignore[attr-defined]

    async def update(self, *values: object) -> None:
        if self.refusing:
            raise self.error
        await super().update(*values)


async def test_records_wait_in_order_while_the_database_refuses_writes(tmp_path):
    store, writer = RefusingStore(sqlite_error(tmp_path, "read-only")), Writer()
    writer.start()
    writer.put(store.add, "a")
    writer.put(store.update, "u")
    writer.put(store.add, "b")
    writer.put(store.add, "c")
    async with asyncio.timeout(5):
        while writer.fault is None:
            await asyncio.sleep(0.01)
    assert (writer.fault.kind, writer.fault.reason) == ("refusing writes", "read-only")
    # A reader is not held up: it is told how many records the database does not have yet.
    assert await writer.caught_up() == 4
    writer.put(store.update, "v")

    store.refusing = False
    await writer.drain()
    assert await writer.caught_up() == 0
    await writer.close()
    assert store.calls == [("add", ("a",)), ("update", ("u",)), ("add", ("b", "c")),
                           ("update", ("v",))]
    assert writer.fault is None


async def test_a_reader_waiting_for_the_records_is_let_go_when_the_database_refuses(tmp_path):
    store, writer = RefusingStore(sqlite_error(tmp_path, "full")), Writer()
    writer.put(store.add, "a")
    reader = asyncio.ensure_future(writer.caught_up())  # before the writer even tried
    writer.start()
    assert await asyncio.wait_for(reader, 5) == 1
    store.refusing = False
    await writer.close()
    assert store.calls == [("add", ("a",))]


class DownStore(FakeStore):
    """Refuses connections for the writes named in `down` (all, while the database is away)."""

    def __init__(self, *down: str) -> None:
        super().__init__()
        self.down = set(down)

    async def add(self, *rows: object) -> None:
        self._reach("add")
        await super().add(*rows)

    add.batches = True  # type: ignore[attr-defined]

    async def update(self, *values: object) -> None:
        self._reach("update")
        await super().update(*values)

    def _reach(self, write: str) -> None:
        if write in self.down:
            raise ConnectionRefusedError(111, "Connect call failed")


async def test_what_the_database_never_took_is_kept_for_the_next_start(tmp_path):
    spool = tmp_path / "var" / "unwritten.pickle"
    store, writer = DownStore("add", "update"), Writer()
    writer.start()
    for item in ("a", "b"):
        writer.put(store.add, item)
    writer.put(store.update, "u")
    await writer.close(spool, timeout=0.2)
    assert spool.exists() and store.calls == []
    await writer.close(spool, timeout=0.2)  # closed already: nothing kept twice

    store.down.clear()  # back: the next start writes them first, in order, once
    await Writer.replay(spool, store)
    assert store.calls == [("add", ("a", "b")), ("update", ("u",))]
    assert not spool.exists()
    await Writer.replay(spool, store)  # nothing kept: nothing to do
    assert len(store.calls) == 2


async def test_a_replay_cut_short_keeps_what_it_did_not_write(tmp_path):
    spool = tmp_path / "unwritten.pickle"
    store, writer = DownStore("add", "update"), Writer()
    writer.start()
    writer.put(store.add, "a")
    writer.put(store.update, "u")
    writer.put(store.add, "b")
    await writer.close(spool, timeout=0.2)

    store.down = {"update"}  # away again halfway through the replay
    with pytest.raises(ConnectionRefusedError):
        await Writer.replay(spool, store)
    store.down.clear()
    await Writer.replay(spool, store)
    assert store.calls == [("add", ("a",)), ("update", ("u",)), ("add", ("b",))]


async def test_a_spool_kept_by_the_version_before_steps_were_stored_as_they_happen(tmp_path):
    """An upgrade made while the database was away: the old shape of finish_call (steps with
    the end) becomes today's writes, nothing lost."""
    from centralino.storage.writer import _save
    from ivr.engine import Step

    class Calls(FakeStore):
        async def finish_call(self, call_id: str, values: dict[str, object]) -> None:
            self.calls.append(("finish_call", (call_id, values)))

    spool, store = tmp_path / "old.pickle", Calls()
    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    steps = [Step(at, "key", "main", key="1", detail="Tributi"), Step(at, "queue", "tributi")]
    _save(spool, [("finish_call", ("c1", steps, {"outcome": "abandoned"}))])
    await Writer.replay(spool, store)
    (add, rows), finish = store.calls
    assert add == "add" and [(r.call_id, r.seq, r.kind, r.key) for r in rows] == [
        ("c1", 0, "key", "1"), ("c1", 1, "queue", None)]
    assert finish == ("finish_call", ("c1", {"outcome": "abandoned"}))
