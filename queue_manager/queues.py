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
    # Transferred to a named agent or to a second-level group: offered only to these agents
    # (empty: to anybody serving the topic), even to one not serving the topic.
    for_agents: frozenset[str] = frozenset()
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
        self._targeted = 0  # how many waiting callers are for some agents only
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
        self._targeted += bool(waiting.for_agents)
        line = self._order.setdefault(waiting.topic, [])
        bisect.insort(line, (waiting.rank, self._seq, waiting.call_id))
        return self.position(waiting.call_id) or 0

    def leave(self, call_id: str) -> Waiting | None:
        waiting = self._by_id.pop(call_id, None)
        if waiting is not None:
            self._targeted -= bool(waiting.for_agents)
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
        """The best-ranked caller whose phone is not already ringing somewhere (recalls within
        their share): of these `topics` (those the free agents serve), or transferred to one
        of the `free` agents by name or group, whatever their topic."""
        served, free = set(topics), set(free)
        lines = served | {w.topic for w in self._by_id.values() if w.for_agents & free} \
            if self._targeted else served
        best: tuple[float, int, str] | None = None  # equal ranks: who joined first, any topic
        for topic in lines:
            entry = self._candidate(topic, free, topic in served)
            if entry is not None and (best is None or entry < best):
                best = entry
        return None if best is None else self._by_id[best[2]]

    def target(self, waiting: Waiting, agents: Collection[str]) -> None:
        """Offer `waiting` only to these agents (none: to anybody serving its topic again)."""
        if bool(waiting.for_agents) != bool(agents):
            self._targeted += 1 if agents else -1
        waiting.for_agents = frozenset(agents)

    def release_for(self, agent_id: str, logged_in: Collection[str] = ()) -> None:
        """`agent_id` will not take them (logged out, missed the ring): callers transferred to
        them by name, or to a group none of whose other `logged_in` members is left, wait
        in their line as everybody else, in their place."""
        for waiting in list(self._by_id.values()):
            if agent_id in waiting.for_agents and not (
                    (waiting.for_agents - {agent_id}) & set(logged_in)):
                self.target(waiting, ())

    def _candidate(self, topic: str, free: set[str], served: bool
                   ) -> tuple[float, int, str] | None:
        first: tuple[float, int, str] | None = None
        for entry in self._order.get(topic, ()):
            waiting = self._by_id[entry[2]]
            if waiting.offered_to is not None or (
                    not (waiting.for_agents & free) if waiting.for_agents else not served):
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
