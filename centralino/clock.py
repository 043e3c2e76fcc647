"""The shell's clock: wall time for records and rules, timers for every deadline of a call.

Calls, recalls and the desk take their deadlines (a ring timeout, the next hold message, a
wrap-up) from one injected `Timers`, never from the event loop directly, so that their unit
tests run under a `VirtualClock`: minutes of waiting in a line pass in microseconds, and a test
says exactly when each timer fires.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from ivr.clock import Clock


class Timer(Protocol):
    def cancel(self) -> None: ...


class Timers(Clock, Protocol):
    def monotonic(self) -> float:
        """Seconds, for deadlines: never jumps (the wall clock may)."""
        ...

    def after(self, seconds: float) -> asyncio.Future[None]:
        """A future that is done `seconds` from now; cancelling it drops the timer."""
        ...

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer: ...


async def sleep(timers: Timers, seconds: float) -> None:
    await timers.after(seconds)


async def woken(event: asyncio.Event, timers: Timers, seconds: float) -> bool:
    """Until `event` is set or `seconds` pass on `timers`: whether the event woke us (a loop
    that works when told, and anyway every so often)."""
    waiting = asyncio.ensure_future(event.wait())
    timer = timers.after(seconds)
    try:
        await asyncio.wait((waiting, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
        timer.cancel()
    return event.is_set()


class LoopClock:
    """Wall time from `wall` (the system's, or shifted for a rehearsal); timers from the loop."""

    def __init__(self, wall: Clock):
        self.wall = wall

    def now(self) -> datetime:
        return self.wall.now()

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def after(self, seconds: float) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        handle = loop.call_later(max(0.0, seconds), _finish, done)
        done.add_done_callback(lambda _: handle.cancel())
        return done

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback)


class VirtualClock:
    """Time that moves only when a test moves it (`advance`); wall time moves with it."""

    def __init__(self, start: datetime):
        self.start = start
        self.t = 0.0
        self._timers: list[tuple[float, int, _VirtualTimer]] = []
        self._order = itertools.count()

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.t)

    def monotonic(self) -> float:
        return self.t

    def after(self, seconds: float) -> asyncio.Future[None]:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        timer = self.call_later(seconds, lambda: _finish(done))
        done.add_done_callback(lambda _: timer.cancel())
        return done

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Timer:
        timer = _VirtualTimer(callback)
        heapq.heappush(self._timers, (self.t + max(0.0, seconds), next(self._order), timer))
        return timer

    async def settle(self) -> None:
        """Let every task run until none can go on without time passing (or I/O)."""
        for _ in range(50):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        """Move time on by `seconds`, firing each timer due meanwhile at its own time and
        letting the tasks it wakes run before the next one."""
        end = self.t + seconds
        await self.settle()
        while self._timers and self._timers[0][0] <= end:
            at, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            self.t = max(self.t, at)
            timer.callback()
            await self.settle()
        self.t = end
        await self.settle()


class _VirtualTimer:
    def __init__(self, callback: Callable[[], None]):
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def _finish(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
