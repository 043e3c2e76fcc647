"""The topic's holding bridge (centralino/telephony.py Bridges): a caller Asterisk refuses to
add (still on the way out of another bridge) is added once more 0.2 s later on the service's
clock, with the topic's music class set first."""

import asyncio
from datetime import UTC, datetime
from typing import Any

from centralino.ari.client import AriError
from centralino.clock import VirtualClock
from centralino.telephony import HOLDING_ROLE, QUEUE_BRIDGE, Bridges


class Refusing:
    """Asterisk as Bridges asks it: refuses the first addChannel."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    async def create_bridge(self, bridge_id: str, kind: str, name: str = "") -> dict[str, Any]:
        self.asked.append(("create", bridge_id, kind))
        return {}

    async def set_var(self, channel: str, name: str, value: str) -> None:
        self.asked.append(("set", channel, name, value))

    async def add_channel(self, bridge_id: str, channel: str, role: str | None = None) -> None:
        self.asked.append(("add", bridge_id, channel, role))
        if sum(a[0] == "add" for a in self.asked) == 1:
            raise AriError("addChannel: 409 Channel is already in a bridge", 409)


async def test_a_caller_refused_by_the_holding_bridge_is_added_again_after_the_clocks_pause():
    clock, asterisk = VirtualClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)), Refusing()
    bridges = Bridges(asterisk, clock)  # type: ignore[arg-type]
    holding = asyncio.ensure_future(bridges.hold("c-1", "suap", "suap-music"))
    await clock.advance(0.19)
    adds = [a for a in asterisk.asked if a[0] == "add"]
    assert len(adds) == 1 and not holding.done()
    await clock.advance(0.01)
    assert holding.done()  # at 0.2 s of the clock: no real time has passed
    bridge = QUEUE_BRIDGE.format(topic="suap")
    assert asterisk.asked == [("create", bridge, "holding"),
                              ("set", "c-1", "CHANNEL(musicclass)", "suap-music"),
                              ("add", bridge, "c-1", HOLDING_ROLE),
                              ("add", bridge, "c-1", HOLDING_ROLE)]
