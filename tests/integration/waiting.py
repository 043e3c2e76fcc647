"""Waiting for what a test needs to have happened (issue #10).

Integration tests wait for events (an agent's state, a stored record, a line in a mailbox, a
channel in a bridge), not for fixed spans of time: `eventually` asks a probe again and again until
its answer is the one expected. Fixed sleeps are left only where real time must pass (audio being
played or listened to, a deliberately slow peer) or where a test asserts that something does NOT
happen within a deadline of the service, each with a comment saying which.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

_UNSET: Any = object()


async def eventually(probe: Callable[[], Awaitable[T]], check: Callable[[T], Any] = bool,
                     timeout: float = 10, every: float = 0.05, what: str = "the condition"
                     ) -> T:
    """`await probe()` every `every` seconds until `check` holds for its answer; that answer.

    Raises AssertionError naming `what` and the probe's last answer if `timeout` seconds pass
    first (an exception raised by the probe or the check propagates at once)."""
    last: Any = _UNSET
    try:
        async with asyncio.timeout(timeout):  # a probe that hangs is bounded too
            while True:
                last = await probe()
                if check(last):
                    return last
                await asyncio.sleep(every)
    except TimeoutError:
        seen = "nothing (the probe never answered)" if last is _UNSET else repr(last)
        if len(seen) > 2000:  # a log file, a long list: its end says most
            seen = "..." + seen[-2000:]
        raise AssertionError(f"{what}: not within {timeout} s; last seen: {seen}") from None
