"""Records are written in order, off the calls' path: a call never waits for the database."""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from centralino.storage.faults import ROW, Fault, fault_of
from centralino.storage.store import step_row

log = logging.getLogger("centralino.storage")
Write = tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]


class Writer:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Why the database takes no writes now (unreachable, refusing them), since when
        # (time.time()): records wait in memory meanwhile.
        self.fault: Fault | None = None
        self.fault_since: float | None = None
        self._faulty = asyncio.Event()  # set while `fault` is
        self._unwritten = 0  # put and not written yet (nor given up)
        self._current: Write | None = None  # being written (or retried)
        self._carried: Write | None = None  # taken off the queue, next in line

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def put(self, write: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._queue.put_nowait((write, args))
        self._unwritten += 1

    async def drain(self) -> None:
        """Until everything put so far is written (tests, shutdown)."""
        await self._queue.join()

    async def caught_up(self) -> int:
        """Before reading what was just done: until everything put so far is written, or at
        once (or as soon as it happens) if the database takes no writes. How many records
        are not written yet (0: the database has everything)."""
        if self.fault is None:
            waits = [asyncio.ensure_future(self._queue.join()),
                     asyncio.ensure_future(self._faulty.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        return self._unwritten

    async def close(self, spool: Path | None = None, timeout: float = 10) -> None:
        """Write what is left; what cannot be written in `timeout` (the database is away) is
        kept in `spool` for the next start (see replay)."""
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self.drain(), timeout)
        except TimeoutError:
            pass
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None  # closed: closing again keeps nothing twice
        # The write in progress failed if the database is away; if it is merely slow, it may
        # have been committed: not kept (rather lose one than write it twice).
        left = [w for w in (self._current if self.fault else None, self._carried)
                if w is not None]
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if not left:
            return
        if spool is None:
            log.error("%d records not written at shutdown", len(left))
            return
        try:
            kept = _load(spool) + [(write.__name__, args) for write, args in left]
            _save(spool, kept)
            log.error("the database is away: %d records kept in %s, written at the next start",
                      len(left), spool)
        except Exception:
            log.exception("%d records not written at shutdown (could not keep them in %s)",
                          len(left), spool)

    @staticmethod
    async def replay(spool: Path, store: Any) -> None:
        """At start, before anything else is written: what a previous run kept in `spool`,
        in its order. A database that goes away again keeps the rest for the next try."""
        kept = [write for name, args in _load(spool) for write in _current_shape(name, args)]
        for done, (name, args) in enumerate(kept):
            try:
                await getattr(store, name)(*args)
            except Exception as exc:
                if fault_of(exc).waits:
                    _save(spool, kept[done:])
                    raise
                log.exception("could not store %s%r (kept from the previous run)", name, args)
        if kept:
            log.warning("%d records kept by the previous run are written", len(kept))
        spool.unlink(missing_ok=True)

    async def _run(self) -> None:
        while True:
            write, args = self._carried or await self._queue.get()
            self._carried, taken = None, 1
            # Consecutive inserts (queue_log lines, offers, agent events) go in one transaction:
            # one commit instead of many is most of the storage cost of a call. Order is kept:
            # the first other write ends the batch and goes next.
            while getattr(write, "batches", False) and not self._queue.empty():
                following = self._queue.get_nowait()
                if following[0] != write:
                    self._carried = following
                    break
                args += following[1]
                taken += 1
            self._current = (write, args)
            try:
                await self._write(write, args, taken)
                self._current = None
            finally:
                self._unwritten -= taken
                for _ in range(taken):
                    self._queue.task_done()

    async def _write(self, write: Callable[..., Awaitable[Any]], args: tuple[Any, ...],
                     taken: int) -> None:
        delay = 0.5
        while True:
            try:
                await write(*args)
                break
            except Exception as exc:
                fault = fault_of(exc)
                if not fault.waits:
                    if taken > 1:  # one bad row must not lose the others: one by one
                        for arg in args:
                            await self._write(write, (arg,), 1)
                        return
                    name = getattr(write, "__name__", write)
                    if fault.kind == ROW:
                        log.error("could not store %s%r: %s", name, args, fault)
                    else:
                        log.exception("could not store %s%r", name, args)
                    return
                # The database's state: records wait here, in order, until it takes them.
                if fault.kind != (self.fault and self.fault.kind):
                    log.error("database %s (%s): records wait in memory", fault.kind, fault)
                    self.fault_since = self.fault_since or time.time()
                self.fault = fault
                self._faulty.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if self.fault is not None:
            log.warning("database writable again after %.0f s: %d records to write",
                        time.time() - (self.fault_since or 0), self._queue.qsize() + taken)
            self.fault = self.fault_since = None
            self._faulty.clear()

    @property
    def waiting(self) -> int:
        """Writes queued behind the one in progress (or being retried)."""
        return self._queue.qsize()


def _current_shape(name: str, args: tuple[Any, ...]) -> list[tuple[str, tuple[Any, ...]]]:
    """A record kept by an earlier version, as today's writes: an upgrade made while the
    database was away loses nothing either."""
    if name == "finish_call" and len(args) == 3:  # before migration 0007 steps came at the end
        call_id, steps, values = args
        return [("add", tuple(step_row(call_id, n, step) for n, step in enumerate(steps))),
                ("finish_call", (call_id, values))]
    return [(name, args)]


# The spool is the service's own file in its own folder (pickle keeps the rows as they are).
def _load(spool: Path) -> list[tuple[str, tuple[Any, ...]]]:
    if not spool.exists():
        return []
    with spool.open("rb") as f:
        return pickle.load(f)  # noqa: S301


def _save(spool: Path, kept: list[tuple[str, tuple[Any, ...]]]) -> None:
    spool.parent.mkdir(parents=True, exist_ok=True)
    tmp = spool.with_name(spool.name + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(kept, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, spool)
