"""The background writer: order kept, consecutive inserts batched, one bad row loses nothing
else, records wait while the database is away."""

from __future__ import annotations

import asyncio

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
    assert writer.unreachable_since is not None
    writer.put(store.update, "u")
    writer.put(store.add, "b")
    assert writer.waiting == 2
    await writer.drain()
    await writer.close()
    assert store.calls == [("add", ("a",)), ("update", ("u",)), ("add", ("b",))]
    assert writer.unreachable_since is None


def test_what_counts_as_the_database_being_away():
    from asyncpg.exceptions import CannotConnectNowError, ConnectionDoesNotExistError
    from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

    from centralino.storage.store import unavailable

    def wrapped(orig: Exception, invalidated: bool = False) -> DBAPIError:
        return DBAPIError("INSERT ...", {}, orig, connection_invalidated=invalidated)

    assert unavailable(ConnectionRefusedError(111, "refused"))
    assert unavailable(TimeoutError())
    assert unavailable(wrapped(Exception("closed"), invalidated=True))
    dead = Exception("adapted")
    dead.__cause__ = ConnectionDoesNotExistError("connection was closed")
    assert unavailable(wrapped(dead))
    assert unavailable(CannotConnectNowError("the database system is starting up"))
    assert unavailable(OperationalError("INSERT", {}, Exception("database is locked")))
    # A refused row or a bug would fail again: not worth waiting for.
    assert not unavailable(IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed")))
    assert not unavailable(OperationalError("SELECT", {}, Exception("no such table: calls")))
    assert not unavailable(ValueError("bad"))


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
