"""Records are written in order, off the calls' path: a call never waits for the database.

Whatever waits when the writer gets to it is written in one transaction (at most MAX_BATCH
records), consecutive records of the same shape as one statement with many rows: one commit
for a burst of calls' records instead of one each, most of a call's storage cost. A batch
the database refuses for one bad row is written again record by record, so that row alone is
lost. While the database is away or refuses writes, records wait here, in order, and are
written when it takes them again; at a stop they are kept in a spool file for the next start.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from centralino.clock import LoopClock, Timers, sleep
from centralino.storage.faults import ROW, Fault, fault_of
from centralino.storage.records import Insert, Record, Update
from ivr.clock import SystemClock

log = logging.getLogger("centralino.storage")
MAX_BATCH = 500
# Records of the next moments join the batch: one commit for several calls' records instead of
# one for each (a transaction costs far more than a row: bench fullflow spent 16 of its 30 ms
# of CPU per call writing records 50 ms at a time). Off the calls' path; whoever reads what was
# just done cuts the wait short (caught_up); a hard crash may lose this much of the latest.
GATHER = 0.25  # seconds
Write = Callable[[Sequence[Record]], Awaitable[None]]  # Store.write: one transaction


class Writer:
    def __init__(self, write: Write, clock: Timers | None = None) -> None:
        self._write_batch = write
        # The gathering window and the retries' delays (a virtual clock in unit tests).
        self.clock: Timers = clock or LoopClock(SystemClock())
        self._queue: asyncio.Queue[Record] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        # Why the database takes no writes now (unreachable, refusing them), since when
        # (time.time()): records wait in memory meanwhile.
        self.fault: Fault | None = None
        self.fault_since: float | None = None
        self._faulty = asyncio.Event()  # set while `fault` is
        self._unwritten = 0  # put and not written yet (nor given up)
        self._current: list[Record] = []  # being written (or retried)
        self._gathering = False  # _current is not being written yet
        self._hurry = asyncio.Event()  # somebody waits for the records: write them now

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def put(self, record: Record) -> None:
        self._queue.put_nowait(record)
        self._unwritten += 1

    async def drain(self) -> None:
        """Until everything put so far is written (tests, shutdown)."""
        self._hurry.set()
        await self._queue.join()

    async def caught_up(self) -> int:
        """Before reading what was just done: until everything put so far is written, or at
        once (or as soon as it happens) if the database takes no writes. How many records
        are not written yet (0: the database has everything)."""
        if self.fault is None:
            self._hurry.set()
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
        # The batch in progress failed if the database is away; if it is merely slow, it may
        # have been committed: not kept (rather lose some than write them twice).
        left = list(self._current) if self.fault or self._gathering else []
        while not self._queue.empty():
            left.append(self._queue.get_nowait())
        if not left:
            return
        if spool is None:
            log.error("%d records not written at shutdown", len(left))
            return
        try:
            _save(spool, _load(spool) + left)
            log.error("the database is away: %d records kept in %s, written at the next start",
                      len(left), spool)
        except Exception:
            log.exception("%d records not written at shutdown (could not keep them in %s)",
                          len(left), spool)

    @staticmethod
    async def replay(spool: Path, write: Write) -> None:
        """At start, before anything else is written: what a previous run kept in `spool`,
        in its order. A database that goes away again keeps the rest for the next try."""
        kept = _load(spool)
        for start in range(0, len(kept), MAX_BATCH):
            batch = kept[start:start + MAX_BATCH]
            try:
                await write(batch)
            except Exception as exc:
                if fault_of(exc).waits:
                    _save(spool, kept[start:])
                    raise
                for record in batch:  # one bad row: the others are still written
                    try:
                        await write([record])
                    except Exception:
                        log.exception("could not store %r (kept from the previous run)", record)
        if kept:
            log.warning("%d records kept by the previous run are written", len(kept))
        spool.unlink(missing_ok=True)  # noqa: ASYNC240 - once, at start, before any call

    async def _run(self) -> None:
        while True:
            batch = self._current = [await self._queue.get()]
            if self._queue.qsize() < MAX_BATCH - 1 and self.fault is None:
                self._gathering = True
                hurried: asyncio.Future[Any] = asyncio.ensure_future(self._hurry.wait())
                window = self.clock.after(GATHER)
                try:
                    await asyncio.wait((hurried, window), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    hurried.cancel()
                    window.cancel()
                self._gathering = False
            self._hurry.clear()
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
                self._current = []
            finally:
                self._unwritten -= len(batch)
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, batch: list[Record]) -> None:
        delay = 0.5
        while True:
            try:
                await self._write_batch(batch)
                break
            except Exception as exc:
                fault = fault_of(exc)
                if not fault.waits:
                    if len(batch) > 1:  # one bad row must not lose the others: one by one
                        for record in batch:
                            await self._write([record])
                        return
                    if fault.kind == ROW:
                        log.error("could not store %r: %s", batch[0], fault)
                    else:
                        log.exception("could not store %r", batch[0])
                    return
                # The database's state: records wait here, in order, until it takes them.
                if fault.kind != (self.fault and self.fault.kind):
                    log.error("database %s (%s): records wait in memory", fault.kind, fault)
                    self.fault_since = self.fault_since or time.time()
                self.fault = fault
                self._faulty.set()
                await sleep(self.clock, delay)
                delay = min(delay * 2, 10.0)
        if self.fault is not None:
            log.warning("database writable again after %.0f s: %d records to write",
                        time.time() - (self.fault_since or 0), self._queue.qsize() + len(batch))
            self.fault = self.fault_since = None
            self._faulty.clear()

    @property
    def waiting(self) -> int:
        """Records queued behind the batch in progress (or being retried)."""
        return self._queue.qsize()


# The spool is the service's own file in its own folder (pickle keeps the records as they are).
def _load(spool: Path) -> list[Record]:
    if not spool.exists():
        return []
    with spool.open("rb") as f:
        kept = pickle.load(f)  # noqa: S301
    return [r for item in kept for r in _current_shape(item)]


def _current_shape(item: Any) -> list[Record]:
    """A record kept by an earlier version (a store method's name and its arguments), as
    today's records: an upgrade made while the database was away loses nothing either."""
    if isinstance(item, (Insert, Update)):
        return [item]
    name, args = item
    if name == "add":  # ORM rows
        return [Insert(row.__table__.name, {c.key: getattr(row, c.key)
                                            for c in row.__table__.columns
                                            if getattr(row, c.key) is not None})
                for row in args]
    if name == "start_call":
        return [Insert("calls", dict(vars(args[0])))]
    if name in ("update_call", "finish_call") and len(args) == 2:
        return [Update("calls", args[0], dict(args[1]))]
    if name == "finish_call":  # before migration 0007 steps came at the end
        call_id, steps, values = args
        return [*(Insert("call_steps", {"call_id": call_id, "seq": n, "at": s.at,
                                        "kind": s.kind, "node": s.node, "key": s.key,
                                        "prompt": s.prompt, "detail": s.detail[:255]})
                  for n, s in enumerate(steps)), Update("calls", call_id, dict(values))]
    if name == "update_offer":
        return [Update("offers", args[0], dict(args[1]))]
    if name == "ack_offer":
        offer_id, agent_id, at = args
        return [Update("offers", offer_id, {"acked_at": at},
                       (("agent_id", agent_id), ("acked_at", None)))]
    log.error("a kept record of an unknown kind (%s) is dropped", name)
    return []


def _save(spool: Path, kept: list[Record]) -> None:
    spool.parent.mkdir(parents=True, exist_ok=True)
    tmp = spool.with_name(spool.name + ".tmp")
    with tmp.open("wb") as f:
        pickle.dump(kept, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, spool)
