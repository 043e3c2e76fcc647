"""What calls, recalls and the desk's sessions ask of Asterisk, and the bridges they use.

`Telephony` is the part of the ARI client (centralino.ari.client.AriClient) a session needs:
unit tests give sessions a fake with the same contract (AriNotFound once a channel is gone,
AriError otherwise). `Bridges` names and keeps the bridges: one holding bridge per topic,
where each caller hears the topic's music, and one mixing bridge per conversation.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from centralino.ari.client import AriError, AriNotFound
from centralino.clock import Timers

log = logging.getLogger("centralino.bridges")
QUEUE_BRIDGE = "centralino-queue-{topic}"  # a holding bridge per topic, with its music
CALL_BRIDGE = "centralino-call-{call}"  # caller and agent talking
# In a holding bridge, this role with no idle_mode option plays music on hold to the channel
# (Asterisk's stasis bridges default to silence: idle_mode "none").
HOLDING_ROLE = "holding_participant"


class Telephony(Protocol):
    async def answer(self, channel: str) -> None: ...
    async def play(self, channel: str, playback_id: str, media: list[str], lang: str) -> None: ...
    async def stop_playback(self, playback_id: str) -> None: ...
    async def hangup(self, channel: str, reason: str = "normal") -> None: ...
    async def originate(self, channel_id: str, endpoint: str, **params: str) -> dict[str, Any]: ...
    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> dict[str, Any]: ...
    async def add_channel(self, bridge_id: str, channel: str, role: str | None = None) -> None: ...
    async def remove_channel(self, bridge_id: str, channel: str) -> None: ...
    async def start_channel_moh(self, channel: str, music_class: str) -> None: ...
    async def stop_channel_moh(self, channel: str) -> None: ...
    async def delete_bridge(self, bridge_id: str) -> None: ...
    async def set_var(self, channel: str, name: str, value: str) -> None: ...
    async def transfer_progress(self, channel: str, state: str) -> None: ...


class Bridges:
    def __init__(self, telephony: Telephony, clock: Timers):
        self.telephony, self.clock = telephony, clock
        self._holding: dict[str, asyncio.Future[None]] = {}

    def forget(self) -> None:
        """Asterisk restarted, or a reload changed the topics: make holding bridges again."""
        self._holding.clear()

    async def hold(self, channel: str, topic: str, music_class: str) -> None:
        """Put a caller in the topic's holding bridge, where they hear the topic's music.

        The bridge plays it itself, to each caller from their joining to their leaving: a
        channel with the "holding_participant" role and no idle mode gets music on hold, in
        its CHANNEL(musicclass). One generator per caller (as app_queue), not one announcer
        per bridge: ARI's bridge music is a "lonely" announcer channel that leaves once its
        last caller did, and one started before it had gone was refused by the bridge ("only
        one announcer"), leaving the next caller in silence (CI, several times). Nothing for
        the service to keep going, and nothing lost if the service stops meanwhile."""
        ready = self._holding.get(topic)
        if ready is None or (ready.done() and (ready.cancelled() or ready.exception())):
            ready = self._holding[topic] = asyncio.ensure_future(self._make_holding(topic))
        await asyncio.shield(ready)
        bridge = QUEUE_BRIDGE.format(topic=topic)
        await self.telephony.set_var(channel, "CHANNEL(musicclass)", music_class)
        try:
            await self.telephony.add_channel(bridge, channel, HOLDING_ROLE)
        except AriNotFound:
            raise
        except AriError as exc:  # a channel still on its way out of another bridge: once more
            log.warning("%s into %s: %s; trying again", channel, bridge, exc)
            await self.clock.after(0.2)
            await self.telephony.add_channel(bridge, channel, HOLDING_ROLE)

    async def unhold(self, channel: str, topic: str) -> None:
        """Out of the topic's holding bridge (AriNotFound: the caller is gone)."""
        await self.telephony.remove_channel(QUEUE_BRIDGE.format(topic=topic), channel)

    async def _make_holding(self, topic: str) -> None:
        """The topic's holding bridge (its callers do not hear each other)."""
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
