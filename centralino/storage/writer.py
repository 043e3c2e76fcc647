"""Records are written in order, off the calls' path: a call never waits for the database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from centralino.storage.store import unavailable

log = logging.getLogger("centralino.storage")


class Writer:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]] = (
            asyncio.Queue())
        self._task: asyncio.Task[None] | None = None
        self.unreachable_since: float | None = None  # the database's, as time.time()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    def put(self, write: Callable[..., Awaitable[Any]], *args: Any) -> None:
        self._queue.put_nowait((write, args))

    async def drain(self) -> None:
        """Until everything put so far is written (tests, shutdown)."""
        await self._queue.join()

    async def close(self) -> None:
        if self._task is not None:
            try:
                await asyncio.wait_for(self.drain(), 10)
            except TimeoutError:
                log.error("%d records not written at shutdown", self._queue.qsize())
            self._task.cancel()

    async def _run(self) -> None:
        carried: tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]] | None = None
        while True:
            write, args = carried or await self._queue.get()
            carried, taken = None, 1
            # Consecutive inserts (queue_log lines, offers, agent events) go in one transaction:
            # one commit instead of many is most of the storage cost of a call. Order is kept:
            # the first other write ends the batch and goes next.
            while getattr(write, "batches", False) and not self._queue.empty():
                following = self._queue.get_nowait()
                if following[0] != write:
                    carried = following
                    break
                args += following[1]
                taken += 1
            try:
                await self._write(write, args, taken)
            finally:
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
                if not unavailable(exc):
                    if taken > 1:  # one bad row must not lose the others: one by one
                        for arg in args:
                            await self._write(write, (arg,), 1)
                        return
                    log.exception("could not store %s%r", getattr(write, "__name__", write),
                                  args)
                    return
                # The database is away: records wait here, in order, until it is back.
                if self.unreachable_since is None:
                    self.unreachable_since = time.time()
                    log.error("database unreachable (%s): records wait in memory", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        if self.unreachable_since is not None:
            log.warning("database back after %.0f s: %d records to write",
                        time.time() - self.unreachable_since, self._queue.qsize() + taken)
            self.unreachable_since = None

    @property
    def waiting(self) -> int:
        """Records not written yet."""
        return self._queue.qsize()
