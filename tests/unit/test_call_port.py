"""The call's event reads (centralino.calls.AriCallPort), without Asterisk."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from centralino.calls import AriCallPort


async def test_a_stopped_call_leaves_no_read_pending():
    # Otherwise each call up when the service stops logs "Task was destroyed but it is
    # pending!" once the garbage collector finds its read.
    port = AriCallPort(SimpleNamespace(ari=None), "channel", "it", lambda p, lang: p)
    waiting = asyncio.create_task(port.next_event())
    await asyncio.sleep(0)
    read = port._getter
    assert read is not None and not read.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0)
    assert read.cancelled() and port._getter is None


async def test_a_timeout_keeps_the_read_for_the_next_wait():
    port = AriCallPort(SimpleNamespace(ari=None), "channel", "it", lambda p, lang: p)
    assert await port.next_event(timeout=0.01) is None
    read = port._getter
    assert read is not None and not read.done()  # no event is dropped between two waits
    read.cancel()
