"""Per-topic waiting lines.

Order: a caller's rank is the time they joined minus their boost (seconds counted as already
waited: a priority line, a priority topic). Lower rank is served first; with no boosts this is
strict arrival order. A boost never starves anyone: a caller without it who has waited longer
than the boost still goes first.

Recalls (a citizen to be called back, issue #4) wait in the same lines, ranked by when they
asked. `recall_share` bounds them when live callers wait too: of the last RECALL_WINDOW picks
of a topic made while both kinds were waiting, at most that share went to recalls; beyond it
the first live caller goes first. 1.0 (the default) is plain arrival order; 0.0 serves recalls
only when no live caller waits.

The queue manager only keeps the order; holding the caller (a holding bridge with music on
hold) is done by the service, so this module never talks to Asterisk.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from queue_manager.hold import HandleTimes

RECALL_WINDOW = 10


@dataclass(eq=False)
class Waiting:
    call_id: str
    topic: str
    since: datetime  # when the caller joined; kept across ring-no-answer and service restarts
    caller: str = ""
    line: str = ""
    boost: float = 0.0  # seconds counted as already waited
    offered_to: str | None = None  # the agent whose phone rings for this caller, if any
    for_agent: str | None = None  # transferred to this agent by name: offered only to them
    recall: bool = False  # a recall request, not a caller on the line
    rank: float = field(init=False)

    def __post_init__(self) -> None:
        self.rank = self.since.timestamp() - self.boost


class QueueManager:
    def __init__(self, recall_share: float = 1.0) -> None:
        self.recall_share = recall_share
        # per topic: was each of the last picks made with both kinds waiting a recall?
        self._contested: dict[str, deque[bool]] = {}
        self._by_id: dict[str, Waiting] = {}
        # per topic: (rank, seq, call_id) sorted; seq keeps equal ranks in arrival order
        self._order: dict[str, list[tuple[float, int, str]]] = {}
        self._seq = 0
        self._rotation: dict[str, int] = {}
        self.handle_times = HandleTimes()

    def rotation_start(self, topic: str) -> int:
        """Where the next caller of `topic` starts in a rotating message list."""
        start = self._rotation.get(topic, 0)
        self._rotation[topic] = start + 1
        return start

    def join(self, waiting: Waiting) -> int:
        """Add a caller to its topic's line; return its position (1 = next)."""
        if waiting.call_id in self._by_id:
            raise ValueError(f"call {waiting.call_id} is already waiting")
        self._seq += 1
        self._by_id[waiting.call_id] = waiting
        line = self._order.setdefault(waiting.topic, [])
        bisect.insort(line, (waiting.rank, self._seq, waiting.call_id))
        return self.position(waiting.call_id) or 0

    def leave(self, call_id: str) -> Waiting | None:
        waiting = self._by_id.pop(call_id, None)
        if waiting is not None:
            line = self._order[waiting.topic]
            for i, (_, _, cid) in enumerate(line):
                if cid == call_id:
                    del line[i]
                    break
        return waiting

    def get(self, call_id: str) -> Waiting | None:
        return self._by_id.get(call_id)

    def position(self, call_id: str) -> int | None:
        waiting = self._by_id.get(call_id)
        if waiting is None:
            return None
        for n, (_, _, cid) in enumerate(self._order[waiting.topic], start=1):
            if cid == call_id:
                return n
        return None

    def waiting(self, topic: str) -> list[Waiting]:
        """The topic's line in serving order."""
        return [self._by_id[cid] for _, _, cid in self._order.get(topic, ())]

    def first_unoffered(self, topics: Iterable[str], free: Collection[str] = ()
                        ) -> Waiting | None:
        """The best-ranked caller of these topics whose phone is not already ringing somewhere
        (recalls within their share); one transferred to a named agent only if that agent is
        among the `free` ones."""
        best: tuple[float, int, str] | None = None  # equal ranks: who joined first, any topic
        for topic in topics:
            entry = self._candidate(topic, free)
            if entry is not None and (best is None or entry < best):
                best = entry
        return None if best is None else self._by_id[best[2]]

    def release_for(self, agent_id: str) -> None:
        """The named agent will not take them (logged out, missed the ring): callers
        transferred to them wait in their line as everybody else, in their place."""
        for waiting in self._by_id.values():
            if waiting.for_agent == agent_id:
                waiting.for_agent = None

    def _candidate(self, topic: str, free: Collection[str]) -> tuple[float, int, str] | None:
        first: tuple[float, int, str] | None = None
        for entry in self._order.get(topic, ()):
            waiting = self._by_id[entry[2]]
            if waiting.offered_to is not None or (
                    waiting.for_agent is not None and waiting.for_agent not in free):
                continue
            if first is None:
                if not waiting.recall or self.recall_share >= 1:
                    return entry
                first = entry
            elif not waiting.recall:  # a recall is first, and a live caller waits behind it
                return first if self._recall_allowed(topic) else entry
        return first

    def _recall_allowed(self, topic: str) -> bool:
        picks = self._contested.get(topic, ())
        return (sum(picks) + 1) / (len(picks) + 1) <= self.recall_share

    def picked(self, waiting: Waiting) -> None:
        """The distributor offered `waiting` to an agent: count it for the recalls' share."""
        if self.recall_share >= 1:
            return
        both = any(w.recall != waiting.recall and w.offered_to is None
                   for w in self.waiting(waiting.topic) if w is not waiting)
        if both:
            self._contested.setdefault(waiting.topic, deque(maxlen=RECALL_WINDOW)).append(
                waiting.recall)

    def __iter__(self) -> Iterator[Waiting]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def snapshot(self, now: datetime) -> dict[str, list[dict[str, object]]]:
        return {
            topic: [
                {"call_id": w.call_id, "caller": w.caller, "line": w.line,
                 "since": w.since.isoformat(), "waited": round((now - w.since).total_seconds(), 1),
                 "ringing": w.offered_to, "recall": w.recall}
                for w in self.waiting(topic)
            ]
            for topic in self._order
        }
