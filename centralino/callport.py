"""A call's channel as the flow engine sees it (ivr.engine.CallPort), over ARI.

Every event of a channel (and of the legs its session rang) goes into the port's queue and is
taken by the session's own task, so a call sees its events strictly in the order Asterisk sent
them. Timeouts come from the injected clock.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from centralino.ari.client import AriNotFound, reacting_to
from centralino.ari.models import (
    ChannelDestroyed,
    ChannelDtmfReceived,
    ChannelHangupRequest,
    Event,
    PlaybackContinuing,
    PlaybackFinished,
    StasisEnd,
)
from centralino.clock import Timers
from centralino.telephony import Telephony
from ivr.engine import ANY_KEY, CallerHungUp, Played

log = logging.getLogger("centralino.calls")
HANGUP = (StasisEnd, ChannelHangupRequest, ChannelDestroyed)


class ChannelGone(Event):
    """Ours, not Asterisk's: the channel vanished while we were disconnected (a restart)."""

    type: str = "ChannelGone"
    gone: str

    @property
    def channel_id(self) -> str | None:
        return self.gone


class Lost(CallerHungUp):
    """The call ended without the caller hanging up: Asterisk stopped or lost the channel."""

    def __init__(self, completed: int, why: str):
        super().__init__(completed)
        self.why = why


class AriCallPort:
    """CallPort over ARI for one channel. Prompt ids become media URIs through `media_uri`."""

    def __init__(self, telephony: Telephony, clock: Timers, channel_id: str, language: str,
                 media_uri: Callable[[str, str], str]):
        self.ari = telephony
        self.clock = clock
        self.channel_id = channel_id
        self.language = language
        self.media_uri = media_uri
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self._kept: deque[Event] = deque()  # set aside by a `play`, taken before the queue
        self._getter: asyncio.Future[Event] | None = None

    async def _next(self, timeout: float | None = None, completed: int = 0) -> Event | None:
        """The channel's next event (None after `timeout`). A pending read survives a timeout,
        so no event is ever dropped between two waits."""
        if self._kept:
            return self._took(self._kept.popleft(), completed)
        if self._getter is None:
            if not self.events.empty():
                event = self.events.get_nowait()
                return self._took(event, completed)
            self._getter = asyncio.ensure_future(self.events.get())
        waits: set[asyncio.Future[Any]] = {self._getter}
        timer = None if timeout is None else self.clock.after(timeout)
        if timer is not None:
            waits.add(timer)
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            # The call is being stopped (the service stops): a read left pending would be
            # collected later as "Task was destroyed but it is pending!", once per call.
            self._getter.cancel()
            self._getter = None
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not self._getter.done():
            reacting_to.set(None)  # what follows reacts to a timer, not to an event
            return None
        event, self._getter = self._getter.result(), None
        return self._took(event, completed)

    def _took(self, event: Event, completed: int) -> Event:
        reacting_to.set(event.received)
        if event.channel_id != self.channel_id:
            return event  # the agent's leg, or ours (an offer): the call decides what it means
        if isinstance(event, ChannelGone):
            raise Lost(completed, "the channel vanished while Asterisk was unreachable")
        if isinstance(event, ChannelHangupRequest) and event.soft:
            raise Lost(completed, f"Asterisk ended the call (shutdown or admin hangup, "
                                   f"cause {event.cause})")
        if isinstance(event, HANGUP):
            raise CallerHungUp(completed)
        return event

    async def play(self, prompts: Sequence[str], interrupt: str, keep: bool = False) -> Played:
        """Play to the end (or a key in `interrupt`). Other events are passed over, or with
        `keep` set aside for the call's next reads (a colleague's leg hanging up meanwhile)."""
        playback = uuid.uuid4().hex
        media = [self.media_uri(p, self.language) for p in prompts]
        log.debug("%s play %s as %s", self.channel_id, prompts, playback)
        try:
            await self.ari.play(self.channel_id, playback, media, self.language)
        except AriNotFound:
            raise CallerHungUp(0) from None
        completed, kept = 0, []
        try:
            while True:
                event = await self._next(completed=completed)
                assert event is not None  # (no timeout)
                if isinstance(event, PlaybackContinuing) and event.playback.id == playback:
                    completed += 1
                elif isinstance(event, PlaybackFinished) and event.playback.id == playback:
                    if event.playback.state == "failed":
                        log.error("Asterisk could not play %s on %s", event.playback.media_uri,
                                  self.channel_id)
                    return Played(None, len(prompts))
                elif isinstance(event, ChannelDtmfReceived) and interrupt and (
                    interrupt == ANY_KEY or event.digit in interrupt
                ):
                    await self.ari.stop_playback(playback)
                    return Played(event.digit, completed)
                elif keep and not isinstance(event, PlaybackContinuing | PlaybackFinished
                                             | ChannelDtmfReceived):
                    kept.append(event)
        finally:
            self._kept.extendleft(reversed(kept))

    async def wait_key(self, timeout: float) -> str | None:
        deadline = self.clock.monotonic() + timeout
        while (left := deadline - self.clock.monotonic()) > 0:
            event = await self._next(timeout=left)
            if event is None:
                return None
            if isinstance(event, ChannelDtmfReceived):
                return event.digit
        return None

    async def next_event(self, timeout: float | None = None) -> Event | None:
        """The next event of the call (its legs included); None after `timeout`."""
        return await self._next(timeout=timeout)
