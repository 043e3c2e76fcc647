"""What calls, recalls and the desk's sessions ask of Asterisk, and the bridges they use.

`Telephony` is the part of the ARI client (centralino.ari.client.AriClient) a session needs:
unit tests give sessions a fake with the same contract (AriNotFound once a channel is gone,
AriError otherwise). `Bridges` names and keeps the bridges: one holding bridge per topic,
with its music, and one mixing bridge per conversation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from centralino.ari.client import AriError, AriNotFound

log = logging.getLogger("centralino.bridges")
QUEUE_BRIDGE = "centralino-queue-{topic}"  # a holding bridge per topic, with its music
CALL_BRIDGE = "centralino-call-{call}"  # caller and agent talking


class Telephony(Protocol):
    async def answer(self, channel: str) -> None: ...
    async def play(self, channel: str, playback_id: str, media: list[str], lang: str) -> None: ...
    async def stop_playback(self, playback_id: str) -> None: ...
    async def hangup(self, channel: str, reason: str = "normal") -> None: ...
    async def originate(self, channel_id: str, endpoint: str, **params: str) -> dict[str, Any]: ...
    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> dict[str, Any]: ...
    async def add_channel(self, bridge_id: str, channel: str, role: str | None = None) -> None: ...
    async def remove_channel(self, bridge_id: str, channel: str) -> None: ...
    async def start_moh(self, bridge_id: str, music_class: str) -> None: ...
    async def stop_moh(self, bridge_id: str) -> None: ...
    async def bridge_channels(self, bridge_id: str) -> list[str]: ...
    async def start_channel_moh(self, channel: str, music_class: str) -> None: ...
    async def stop_channel_moh(self, channel: str) -> None: ...
    async def delete_bridge(self, bridge_id: str) -> None: ...


class Bridges:
    def __init__(self, telephony: Telephony):
        self.telephony = telephony
        self._holding: dict[str, asyncio.Future[None]] = {}
        self._waiting: dict[str, set[str]] = {}  # topic -> callers this run put on its hold

    def forget(self) -> None:
        """Asterisk restarted, or a reload changed the topics: make holding bridges again."""
        self._holding.clear()
        self._waiting.clear()

    async def hold(self, channel: str, topic: str, music_class: str) -> None:
        """Put a caller in the topic's holding bridge, which plays the topic's music."""
        ready = self._holding.get(topic)
        if ready is None or (ready.done() and (ready.cancelled() or ready.exception())):
            ready = self._holding[topic] = asyncio.ensure_future(self._make_holding(topic))
        await asyncio.shield(ready)
        bridge = QUEUE_BRIDGE.format(topic=topic)
        try:
            await self.telephony.add_channel(bridge, channel, "participant")
        except AriNotFound:
            raise
        except AriError as exc:  # a channel still on its way out of another bridge: once more
            log.warning("%s into %s: %s; trying again", channel, bridge, exc)
            await asyncio.sleep(0.2)
            await self.telephony.add_channel(bridge, channel, "participant")
        waiting = self._waiting.setdefault(topic, set())
        alone = not waiting
        waiting.add(channel)
        # To the end even if the call's task is cancelled meanwhile (the service stopping):
        # the caller, in the bridge already, must not be left without the music.
        await asyncio.shield(self._music(bridge, channel, music_class, alone))

    async def _music(self, bridge: str, channel: str, music_class: str, alone: bool) -> None:
        # ARI's addChannel answers before the channel is in the bridge; the music's announcer
        # is a "lonely" channel that leaves a bridge it would be alone in: started before the
        # caller is there, it is gone at once and the caller waits in silence.
        await self._until_in(bridge, channel)
        if alone:
            # Nobody else hears this line's music, and it may be gone quiet: Asterisk 22 lets a
            # holding bridge's announcer fall silent once its last caller left, and one left by
            # a previous run of the service may be on its way out. A fresh announcer, then.
            try:
                await self.telephony.stop_moh(bridge)
            except AriNotFound:
                raise
            except AriError:
                pass  # no music to stop
        # Started for every caller too (the same single stream per topic): one more request.
        await self.telephony.start_moh(bridge, music_class)

    async def _until_in(self, bridge: str, channel: str) -> None:
        """Until `channel` is listed in `bridge` (a few ms; 1 s at most, then on anyway)."""
        for attempt in range(40):
            if channel in await self.telephony.bridge_channels(bridge):
                return
            await asyncio.sleep(0.005 if attempt < 10 else 0.025)
        log.warning("%s not seen in %s after 1 s", channel, bridge)

    async def unhold(self, channel: str, topic: str) -> None:
        """Out of the topic's holding bridge (AriNotFound: the caller is gone)."""
        self.gone(channel, topic)
        await self.telephony.remove_channel(QUEUE_BRIDGE.format(topic=topic), channel)

    def gone(self, channel: str, topic: str) -> None:
        """The caller is no longer on the topic's hold (taken out, or hung up)."""
        self._waiting.get(topic, set()).discard(channel)

    async def _make_holding(self, topic: str) -> None:
        """One music stream per topic, heard by every waiting caller (one MOH generator
        instead of hundreds), which `hold` starts as each caller joins."""
        try:
            await self.telephony.create_bridge(QUEUE_BRIDGE.format(topic=topic), "holding",
                                               f"queue {topic}")
        except AriError as exc:
            if exc.status != 409:  # 409: it exists already (we restarted, Asterisk did not)
                raise

    async def open_call(self, call: str, name: str) -> str:
        """The conversation's mixing bridge (kept if a previous attempt left it)."""
        bridge = CALL_BRIDGE.format(call=call)
        try:
            await self.telephony.create_bridge(bridge, "mixing", name)
        except AriError as exc:  # 409: left by an agent who hung up before we could bridge
            if exc.status != 409:
                raise
        return bridge

    async def close_call(self, call: str) -> None:
        await self.telephony.delete_bridge(CALL_BRIDGE.format(call=call))
