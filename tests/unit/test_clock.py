"""The shell's clock (centralino/clock.py): `woken`, the wait of every loop that works when
told and anyway every so often (the mail intake and outbox, the recall scheduler)."""

import asyncio
from datetime import UTC, datetime

from centralino.clock import VirtualClock, woken

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


async def test_woken_by_the_event_at_once_or_by_the_clock_after_the_interval_never_sooner():
    clock, event = VirtualClock(START), asyncio.Event()
    waiting = asyncio.ensure_future(woken(event, clock, 30))
    await clock.advance(29.9)
    assert not waiting.done()
    await clock.advance(0.1)
    assert waiting.done() and waiting.result() is False  # the interval passed
    waiting = asyncio.ensure_future(woken(event, clock, 30))
    await clock.advance(5)
    event.set()
    await clock.settle()
    assert waiting.done() and waiting.result() is True  # told
    assert not [t for t in clock._timers if not t[2].cancelled]  # its timer dropped
