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
        while True:
            write, args = await self._queue.get()
            try:
                await write(*args)
            except Exception:
                log.exception("could not store %s%r", getattr(write, "__name__", write), args)
            finally:
                self._queue.task_done()
