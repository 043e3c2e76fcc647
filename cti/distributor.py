"""Who gets which caller: the first free operator of the topic, callers in rank order.

The rule, in full:
1. Of the callers not already ringing an agent, the best-ranked one (queue_manager: earliest
   join time minus boosts) among those that some available agent can take goes first.
   Recalls within their share (queue_manager.queues).
2. Among the available agents serving that caller's topic, the lowest penalty wins, then the
   one idle longest (available since the earliest time), then the agent id.
3. Repeat until no available agent can take any waiting caller.
So an agent in several topics gets the caller who has waited longest (with boosts) across them,
an agent is never offered two calls (an offer makes them `ringing`) and a caller never rings two
agents (an offer marks them `offered_to`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cti.agents import Agent, AgentState, Change
from queue_manager.queues import QueueManager


@dataclass(frozen=True)
class Offer:
    call_id: str
    topic: str
    agent_id: str


class Distributor:
    def __init__(self, queues: QueueManager, agents: Iterable[Agent] = ()):
        self.queues = queues
        self.agents: dict[str, Agent] = {a.id: a for a in agents}

    def match(self, now: datetime) -> list[tuple[Offer, Change]]:
        """Every offer to make now; marks the caller as offered and the agent as ringing."""
        offers: list[tuple[Offer, Change]] = []
        available = [a for a in self.agents.values() if a.state is AgentState.AVAILABLE]
        while available:
            topics = {t for a in available for t in a.topics}
            waiting = self.queues.first_unoffered(topics)
            if waiting is None:
                break
            agent = min((a for a in available if waiting.topic in a.topics),
                        key=lambda a: (a.topics[waiting.topic], a.idle_since or now, a.id))
            change = agent.offer(waiting.call_id, now)
            self.queues.picked(waiting)
            waiting.offered_to = agent.id
            available.remove(agent)
            offers.append((Offer(waiting.call_id, waiting.topic, agent.id), change))
        return offers
