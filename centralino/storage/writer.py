"""Records are written in order, off the calls' path: a call never waits for the database."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("centralino.storage")


class Writer:
    def __init__(self) -> None:
        self._queue: asyncio.Queue[tuple[Callable[..., Awaitable[Any]], tuple[Any, ...]]] = (
            asyncio.Queue())
        self._task: asyncio.Task[None] | None = None

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
        try:
            await write(*args)
        except Exception:
            if taken > 1:  # one bad row must not lose the others: one by one
                for arg in args:
                    await self._write(write, (arg,), 1)
                return
            log.exception("could not store %s%r", getattr(write, "__name__", write), args)
