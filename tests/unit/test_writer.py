"""The background writer: order kept, what waits written in one batch, one bad row loses
nothing else, records wait while the database is away or refuses writes; and the store's
batches on a real SQLite file."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from centralino.clock import VirtualClock
from centralino.storage.records import Insert, Record, Update, runs
from centralino.storage.writer import Writer


def ins(name: str) -> Insert:
    return Insert("t", {"name": name})


def upd(name: str) -> Update:
    return Update("t", name, {"seen": True})


class FakeDatabase:
    """Takes batches of records (a unit test of the writer's own logic: the real store's
    batches are tested on SQLite below)."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []
        self.error: Exception | None = None  # raised by every write while set

    async def write(self, batch: list[Record]) -> None:
        if self.error is not None:
            raise self.error
        if any(r.values.get("name") == "bad" for r in batch):
            raise sqlite3.IntegrityError("constraint violated")
        self.batches.append(list(batch))

    @property
    def written(self) -> list[Record]:
        return [r for batch in self.batches for r in batch]


async def test_what_waits_is_one_batch_and_order_is_kept():
    db = FakeDatabase()
    writer = Writer(db.write)
    records = [ins("a"), ins("b"), upd("a"), ins("c")]
    for record in records:
        writer.put(record)
    writer.start()
    await writer.drain()
    await writer.close()
    assert db.batches == [records]


async def test_records_of_the_next_moments_join_the_batch():
    """A call's records come one by one a few ms apart: they are written in one transaction."""
    db = FakeDatabase()
    writer = Writer(db.write)
    writer.start()
    writer.put(ins("a"))
    await asyncio.sleep(0.01)  # the writer took "a" and gathers
    writer.put(upd("a"))
    writer.put(ins("b"))
    await writer.drain()
    await writer.close()
    assert db.batches == [[ins("a"), upd("a"), ins("b")]]


async def test_a_reader_does_not_wait_for_the_gathering(monkeypatch):
    """The API reads what was just done after caught_up(): the records go at once, not when
    the gathering window ends (an hour here: it must not matter)."""
    from centralino.storage import writer as module

    monkeypatch.setattr(module, "GATHER", 3600)
    db = FakeDatabase()
    writer = Writer(db.write)
    writer.start()
    writer.put(ins("a"))
    await asyncio.sleep(0.01)  # the writer took "a" and gathers
    writer.put(ins("b"))
    assert await asyncio.wait_for(writer.caught_up(), 2) == 0
    assert db.written == [ins("a"), ins("b")]
    writer.put(ins("c"))  # and the next batch gathers again, as before
    await asyncio.sleep(0.05)
    assert db.written == [ins("a"), ins("b")]
    await asyncio.wait_for(writer.drain(), 2)
    assert db.batches[-1] == [ins("c")]
    await writer.close()


async def test_a_stop_while_gathering_keeps_the_gathered_records(tmp_path):
    db = FakeDatabase()
    writer = Writer(db.write)
    spool = tmp_path / "unwritten.pickle"
    writer.start()
    writer.put(ins("a"))
    await asyncio.sleep(0.01)  # taken off the queue, not written yet
    await writer.close(spool, timeout=0)
    assert db.batches == []
    await Writer.replay(spool, db.write)
    assert db.written == [ins("a")]


async def test_a_bad_row_in_a_batch_loses_only_itself(caplog):
    db = FakeDatabase()
    writer = Writer(db.write)
    for name in ("a", "bad", "c"):
        writer.put(ins(name))
    writer.start()
    await writer.drain()
    await writer.close()
    assert db.written == [ins("a"), ins("c")]
    assert "could not store Insert(table='t', values={'name': 'bad'})" in caplog.text


async def test_records_wait_in_order_while_the_database_is_away():
    db = FakeDatabase()
    db.error = ConnectionRefusedError(111, "Connect call failed")
    writer = Writer(db.write)
    writer.put(ins("a"))
    writer.start()
    async with asyncio.timeout(5):
        while writer.fault is None:
            await asyncio.sleep(0.01)
    assert writer.fault.kind == "unreachable"
    writer.put(upd("a"))
    writer.put(ins("b"))
    assert writer.waiting == 2
    db.error = None
    await writer.drain()
    await writer.close()
    assert db.written == [ins("a"), upd("a"), ins("b")]
    assert writer.fault is None


async def test_the_retries_back_off_on_the_injected_clock_up_to_ten_seconds():
    """An hour without the database: about 360 tries (every 10 s at most), not a busy loop;
    on a virtual clock, so the test takes no time."""
    clock = VirtualClock(datetime(2026, 12, 2, 9, tzinfo=UTC))
    tries: list[float] = []

    async def away(batch: list[Record]) -> None:
        tries.append(clock.monotonic())
        raise ConnectionRefusedError(111, "Connect call failed")

    writer = Writer(away, clock)
    writer.put(ins("a"))
    writer.start()
    await clock.advance(3600)
    gaps = [round(b - a, 2) for a, b in pairwise(tries)]
    assert gaps[:6] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0]  # after the gathering window
    assert set(gaps[6:]) == {10.0} and 350 < len(tries) < 370
    assert writer.fault is not None and writer.fault.kind == "unreachable"
    writer._task.cancel()


def test_runs_group_consecutive_records_of_one_shape():
    a, b = Insert("t", {"x": 1}), Insert("t", {"x": 2})
    other = Insert("t", {"x": 3, "y": 4})  # other columns: another statement
    u1, u2 = Update("t", 1, {"x": 5}), Update("t", 2, {"x": 6})
    ack = Update("t", 3, {"x": 7}, only_if=(("y", None),))
    assert list(runs([a, b, other, u1, u2, ack, a])) == [[a, b], [other], [u1, u2], [ack], [a]]


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
                              else f"INSERT INTO t VALUES ('{'y' * 100_000}')"))  # noqa: S608 - a constant
    except DBAPIError as exc:
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


async def test_records_wait_in_order_while_the_database_refuses_writes(tmp_path):
    db = FakeDatabase()
    db.error = sqlite_error(tmp_path, "read-only")
    writer = Writer(db.write)
    writer.start()
    for record in (ins("a"), upd("a"), ins("b"), ins("c")):
        writer.put(record)
    async with asyncio.timeout(5):
        while writer.fault is None:
            await asyncio.sleep(0.01)
    assert (writer.fault.kind, writer.fault.reason) == ("refusing writes", "read-only")
    # A reader is not held up: it is told how many records the database does not have yet.
    assert await writer.caught_up() == 4
    writer.put(upd("b"))

    db.error = None
    await writer.drain()
    assert await writer.caught_up() == 0
    await writer.close()
    assert db.written == [ins("a"), upd("a"), ins("b"), ins("c"), upd("b")]
    assert writer.fault is None


async def test_a_reader_waiting_for_the_records_is_let_go_when_the_database_refuses(tmp_path):
    db = FakeDatabase()
    db.error = sqlite_error(tmp_path, "full")
    writer = Writer(db.write)
    writer.put(ins("a"))
    reader = asyncio.ensure_future(writer.caught_up())  # before the writer even tried
    writer.start()
    assert await asyncio.wait_for(reader, 5) == 1
    db.error = None
    await writer.close()
    assert db.written == [ins("a")]


async def test_what_the_database_never_took_is_kept_for_the_next_start(tmp_path):
    spool = tmp_path / "var" / "unwritten.pickle"
    db = FakeDatabase()
    db.error = ConnectionRefusedError(111, "Connect call failed")
    writer = Writer(db.write)
    writer.start()
    for record in (ins("a"), ins("b"), upd("a")):
        writer.put(record)
    await writer.close(spool, timeout=0.2)
    assert spool.exists() and db.batches == []
    await writer.close(spool, timeout=0.2)  # closed already: nothing kept twice

    db.error = None  # back: the next start writes them first, in order, once
    await Writer.replay(spool, db.write)
    assert db.written == [ins("a"), ins("b"), upd("a")]
    assert not spool.exists()
    await Writer.replay(spool, db.write)  # nothing kept: nothing to do
    assert len(db.written) == 3


async def test_a_replay_cut_short_keeps_what_it_did_not_write(tmp_path, monkeypatch):
    from centralino.storage import writer as module

    monkeypatch.setattr(module, "MAX_BATCH", 2)
    spool = tmp_path / "unwritten.pickle"
    module._save(spool, [ins("a"), upd("a"), ins("b")])
    db = FakeDatabase()
    calls = 0

    async def away_the_second_time(batch: list[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionRefusedError(111, "Connect call failed")
        await db.write(batch)

    with pytest.raises(ConnectionRefusedError):
        await Writer.replay(spool, away_the_second_time)
    assert module._load(spool) == [ins("b")]
    await Writer.replay(spool, db.write)
    assert db.written == [ins("a"), upd("a"), ins("b")]


async def test_a_spool_kept_by_an_earlier_version_is_written_in_todays_shape(tmp_path):
    """An upgrade made while the database was away: what the previous version kept (a store
    method's name and its arguments) becomes today's records, nothing lost."""
    from centralino.storage.models import AgentEvent
    from centralino.storage.store import NewCall
    from centralino.storage.writer import _save
    from ivr.engine import Step

    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    steps = [Step(at, "key", "main", key="1", detail="Tributi"), Step(at, "queue", "tributi")]
    new = NewCall("c1", "ch", "0612345001", "Linea", "333", "", "v1", at, None)
    spool = tmp_path / "old.pickle"
    _save(spool, [("start_call", (new,)),
                  ("add", (AgentEvent(agent_id="1001", at=at, state="available", reason="",
                                      by="system"),)),
                  ("finish_call", ("c1", steps, {"outcome": "abandoned"})),
                  ("ack_offer", ("o1", "1001", at))])
    db = FakeDatabase()
    await Writer.replay(spool, db.write)
    start, event, step0, step1, end, ack = db.written
    assert start == Insert("calls", {"id": "c1", "channel_id": "ch", "number": "0612345001",
                                     "line": "Linea", "caller_number": "333", "caller_name": "",
                                     "config_version": "v1", "started_at": at,
                                     "queue_log_id": None})
    assert event == Insert("agent_events", {"agent_id": "1001", "at": at,
                                            "state": "available", "reason": "", "by": "system"})
    assert [(s.values["seq"], s.values["kind"], s.values["key"]) for s in (step0, step1)] == [
        (0, "key", "1"), (1, "queue", None)]
    assert end == Update("calls", "c1", {"outcome": "abandoned"})
    assert ack == Update("offers", "o1", {"acked_at": at}, (("agent_id", "1001"),
                                                            ("acked_at", None)))


# --- the store's batches, on a real SQLite file ---------------------------------------------

async def test_the_store_writes_a_batch_in_one_transaction_with_its_conditions(tmp_path):
    from centralino.storage.records import NewCall, Records
    from centralino.storage.store import Store

    at = datetime(2026, 12, 1, 9, tzinfo=UTC)
    batch: list[Record] = []

    class Collect:
        def put(self, record: Record) -> None:
            batch.append(record)

    records = Records(Collect())
    records.call_started(NewCall("c1", "ch", "0612345001", "Linea", "333", "Maria", "v1", at,
                                 "c1"))
    for seq, key in enumerate("12"):
        records.call_step("c1", seq, at, "key", "main", key, None, "x" * 300)
    records.queue_log(at, "c1", "alpha", "NONE", "ENTERQUEUE", "", "333", 1)
    records.offer_made("o1", "c1", "1001", at)
    records.offer_seen("o1", "1002", at)  # not their offer: nothing changes
    records.offer_seen("o1", "1001", at)
    records.offer_seen("o1", "1001", datetime(2026, 12, 1, 10, tzinfo=UTC))  # seen already
    records.call_changed("c1", outcome="answered", detail="y" * 300, agent_id="1001")
    records.agent_changed("1001", at, "on_call", "", "system")
    async with Store(f"sqlite+aiosqlite:///{tmp_path}/db.sqlite") as store:
        await store.write(batch)
        call = await store.get_call("c1")
        assert call is not None and (call.outcome, call.agent_id) == ("answered", "1001")
        assert len(call.detail) == 255 and call.caller_name == "Maria"
        assert [(s.seq, s.key, len(s.detail)) for s in call.steps] == [(0, "1", 255),
                                                                        (1, "2", 255)]
        (offer,) = await store.offers_for("c1")
        assert offer.acked_at == at  # the first time, by the agent it was for
        assert [(e.event, e.data3) for e in await store.queue_log(call_id="c1")] == [
            ("ENTERQUEUE", "1")]
        assert (await store.last_agent_states())["1001"].state == "on_call"

        with pytest.raises(IntegrityError):  # one bad row: nothing of the batch is written
            await store.write([Insert("agent_events", {"agent_id": "1002", "at": at,
                                                       "state": "available"}),
                               Insert("offers", {"id": "o1", "call_id": "c1",
                                                 "agent_id": "1001", "offered_at": at})])
        assert "1002" not in await store.last_agent_states()
