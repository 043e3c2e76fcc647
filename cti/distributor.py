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

Written requests (tickets) go through the same desk, after the calls of the moment:
4. Only an available agent (not paused, not on a call, not ringing, not in wrap-up) with room
   (fewer tickets in charge than their capacity) gets a ticket: of the tickets nobody has that
   they may work (their topics' at the first level, their groups' once escalated), the one
   with the soonest deadline, then the oldest.
5. Among the agents who may take that ticket: the lowest penalty for its topic (0 for a group),
   then the fewest tickets in charge, then the one idle longest.
Calls come first, and an agent working on tickets still gets calls (agents.yaml
`calls_during_tickets`; false: only agents with no ticket in charge); `capacity.calls: 0`
makes an agent of written requests only.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from cti.agents import Agent, AgentState, Change
from queue_manager.queues import QueueManager


@dataclass(frozen=True)
class Offer:
    call_id: str
    topic: str
    agent_id: str


@dataclass(frozen=True)
class TicketOffer:
    ticket_id: str
    agent_id: str


FIRST_LEVEL = "I"  # tickets.states.FIRST_LEVEL


@dataclass(frozen=True, order=True)
class Pending:
    """A ticket nobody has: waiting in its line (its topic at the first level, its group once
    escalated), by deadline then age."""

    due: datetime  # its pressing deadline (first response, or resolution once answered)
    created_at: datetime
    number: str  # arrival order within the same instant (HD-2026-000123)
    ticket_id: str
    topic: str = field(compare=False)
    level: str = field(compare=False)  # FIRST_LEVEL or a group
    # The agent who just gave it back (released it): not handed straight back to them.
    passed_by: str | None = field(default=None, compare=False)

    @property
    def line(self) -> str:
        return self.topic if self.level == FIRST_LEVEL else f"group:{self.level}"


class Backlog:
    """The tickets nobody has, per line, in order; those being handed to an agent are kept
    aside (`reserved`) until the hand-over is stored or undone, so none is offered twice."""

    def __init__(self) -> None:
        self.lines: dict[str, list[Pending]] = {}
        self.by_id: dict[str, Pending] = {}
        self.reserved: dict[str, str] = {}  # ticket id -> agent id

    def __len__(self) -> int:
        return len(self.by_id)

    def put(self, pending: Pending) -> None:
        """Add a ticket, or move it (its deadline or level changed)."""
        self.drop(pending.ticket_id)
        self.by_id[pending.ticket_id] = pending
        bisect.insort(self.lines.setdefault(pending.line, []), pending)

    def drop(self, ticket_id: str) -> None:
        old = self.by_id.pop(ticket_id, None)
        self.reserved.pop(ticket_id, None)
        if old is not None:
            line = self.lines[old.line]
            del line[bisect.bisect_left(line, old)]
            if not line:
                del self.lines[old.line]

    def first(self, lines: Iterable[str], skip: frozenset[str] = frozenset()
              ) -> Pending | None:
        """The best unreserved ticket of these lines (not one of `skip`)."""
        best: Pending | None = None
        for name in lines:
            for pending in self.lines.get(name, ()):
                if pending.ticket_id not in self.reserved and pending.ticket_id not in skip:
                    if best is None or pending < best:
                        best = pending
                    break
        return best

    def forget_passes(self, agent_id: str) -> None:
        """The agent is back (logged in again): what they gave back may be theirs again."""
        for pending in [p for p in self.by_id.values() if p.passed_by == agent_id]:
            reserved = self.reserved.get(pending.ticket_id)
            self.put(replace(pending, passed_by=None))
            if reserved is not None:
                self.reserved[pending.ticket_id] = reserved

    def unreserve(self, ticket_id: str) -> None:
        self.reserved.pop(ticket_id, None)


def lines_of(agent: Agent) -> list[str]:
    return [*agent.topics, *(f"group:{g}" for g in agent.groups)]


class Distributor:
    def __init__(self, queues: QueueManager, agents: Iterable[Agent] = ()):
        self.queues = queues
        self.agents: dict[str, Agent] = {a.id: a for a in agents}
        self.backlog = Backlog()
        self.calls_during_tickets = True

    def match(self, now: datetime) -> list[tuple[Offer, Change]]:
        """Every offer to make now; marks the caller as offered and the agent as ringing."""
        offers: list[tuple[Offer, Change]] = []
        available = [a for a in self.agents.values() if a.state is AgentState.AVAILABLE
                     and a.takes_calls and (self.calls_during_tickets or not a.tickets)]
        while available:
            topics = {t for a in available for t in a.topics}
            waiting = self.queues.first_unoffered(topics, {a.id for a in available})
            if waiting is None:
                break
            agent = min((a for a in available if a.id in waiting.for_agents
                         or (not waiting.for_agents and waiting.topic in a.topics)),
                        key=lambda a: (a.topics.get(waiting.topic, 0), a.idle_since or now,
                                       a.id))
            change = agent.offer(waiting.call_id, now)
            self.queues.picked(waiting)
            waiting.offered_to = agent.id
            available.remove(agent)
            offers.append((Offer(waiting.call_id, waiting.topic, agent.id), change))
        return offers

    def match_tickets(self) -> list[TicketOffer]:
        """Every ticket to hand over now (see 4 and 5 above); each is reserved for its agent
        and counted in their hands until `ticket_done` says how the hand-over went."""
        offers: list[TicketOffer] = []
        free = [a for a in self.agents.values() if a.state is AgentState.AVAILABLE
                and len(a.tickets) < a.ticket_capacity]
        passed: set[str] = set()  # tickets only their releasing agent could take now
        while free:
            pending = self.backlog.first({line for a in free for line in lines_of(a)},
                                         frozenset(passed))
            if pending is None:
                break
            line = pending.line
            takers = [a for a in free if line in lines_of(a) and a.id != pending.passed_by]
            if not takers:
                passed.add(pending.ticket_id)
                continue
            agent = min(takers, key=lambda a: (
                a.topics.get(pending.topic, 0) if pending.level == FIRST_LEVEL else 0,
                len(a.tickets), a.idle_since or datetime.max.replace(tzinfo=pending.due.tzinfo),
                a.id))
            self.backlog.reserved[pending.ticket_id] = agent.id
            agent.tickets.add(pending.ticket_id)
            if len(agent.tickets) >= agent.ticket_capacity:
                free.remove(agent)
            offers.append(TicketOffer(pending.ticket_id, agent.id))
        return offers

    def ticket_done(self, offer: TicketOffer, stored: bool) -> None:
        """The hand-over of `offer` is stored (the ticket is theirs, out of the backlog), or
        it failed (someone took the ticket first, say): it is no longer counted as theirs."""
        if stored:
            self.backlog.drop(offer.ticket_id)
        else:
            self.backlog.unreserve(offer.ticket_id)
            if (agent := self.agents.get(offer.agent_id)) is not None:
                agent.tickets.discard(offer.ticket_id)
