"""The call's event reads (centralino.callport.AriCallPort), without Asterisk."""

from __future__ import annotations

import asyncio

import pytest

from centralino.callport import AriCallPort
from centralino.clock import LoopClock
from ivr.clock import SystemClock


def port() -> AriCallPort:
    return AriCallPort(None, LoopClock(SystemClock()), "channel", "it",  # type: ignore[arg-type]
                       lambda p, lang: p)


async def test_a_stopped_call_leaves_no_read_pending():
    # Otherwise each call up when the service stops logs "Task was destroyed but it is
    # pending!" once the garbage collector finds its read.
    port_ = port()
    waiting = asyncio.create_task(port_.next_event())
    await asyncio.sleep(0)
    read = port_._getter
    assert read is not None and not read.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0)
    assert read.cancelled() and port_._getter is None


async def test_a_timeout_keeps_the_read_for_the_next_wait():
    port_ = port()
    assert await port_.next_event(timeout=0.01) is None
    read = port_._getter
    assert read is not None and not read.done()  # no event is dropped between two waits
    read.cancel()
