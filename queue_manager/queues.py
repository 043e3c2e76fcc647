"""Per-topic waiting lines, first come first served.

The queue manager keeps the order; holding the caller (a holding bridge with music on hold) is
done by the service through `HoldPort`, so this module never talks to Asterisk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ivr.schema import QueueTopic


class HoldPort(Protocol):
    async def hold(self, topic: str, settings: QueueTopic) -> None:
        """Put the caller on hold in the topic's waiting room (music on hold)."""
        ...


@dataclass
class Waiting:
    call_id: str
    topic: str
    since: datetime
    caller: str = ""
    line: str = ""


class QueueManager:
    def __init__(self) -> None:
        # dicts keep insertion order: each topic's dict is its FIFO
        self._topics: dict[str, dict[str, Waiting]] = {}

    def join(self, waiting: Waiting) -> int:
        """Add a caller at the end of its topic's line; return its position (1 = next)."""
        line = self._topics.setdefault(waiting.topic, {})
        line[waiting.call_id] = waiting
        return len(line)

    def leave(self, call_id: str, topic: str) -> Waiting | None:
        return self._topics.get(topic, {}).pop(call_id, None)

    def position(self, call_id: str, topic: str) -> int | None:
        for n, waiting_id in enumerate(self._topics.get(topic, {}), start=1):
            if waiting_id == call_id:
                return n
        return None

    def waiting(self, topic: str) -> list[Waiting]:
        return list(self._topics.get(topic, {}).values())

    def snapshot(self, now: datetime) -> dict[str, list[dict[str, object]]]:
        return {
            topic: [
                {"call_id": w.call_id, "caller": w.caller, "line": w.line,
                 "since": w.since.isoformat(), "waited": round((now - w.since).total_seconds(), 1)}
                for w in line.values()
            ]
            for topic, line in self._topics.items()
        }
