"""Written requests' figures, beside the calls': pure arithmetic over plain rows (the web layer
fetches them; unit tests build them by hand).

Of the tickets *opened* in the period (as calls are counted in the period they arrived):
- opened, and by_state (where each stands now), by_topic, by_level (now), by_channel;
- first_response_avg / _p90: working time (the SLA calendar) from arrival to the first public
  answer to the citizen, for those answered; resolution_avg / _p90: to resolution, for those
  resolved (p90: nearest rank, as for the calls' waits);
- first_response_met_pct / resolution_met_pct: answered (resolved) no later than the deadline
  stored on the ticket, of those answered (resolved); None when there are none;
- escalations, hand_backs: steps to and from the second level.
Per agent, time in charge: how long tickets were theirs and "preso in carico" within the
period (from taking one to the next step: an answer that waits for the citizen, a resolution,
an escalation, a release), the tickets in their hands now counted up to now. Tickets worked
in parallel each count: it is time tickets spent with them, not time they spent at the desk.

The backlog now (open tickets per topic and level, the oldest, those past their deadline) is
counted by the database (Store.ticket_backlog): it must stay quick with years of tickets.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ivr.hours import Schedule
from tickets.sla import working_seconds


@dataclass(frozen=True)
class TicketRow:
    number: str
    topic: str
    level: str
    channel: str
    state: str
    created_at: datetime
    first_answer_at: datetime | None  # the first public message out
    resolved_at: datetime | None
    first_response_due: datetime | None
    resolution_due: datetime | None
    escalations: int = 0
    hand_backs: int = 0


def _p90(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def _avg(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _met(pairs: list[tuple[datetime, datetime | None]]) -> float | None:
    judged = [(done, due) for done, due in pairs if due is not None]
    if not judged:
        return None
    return round(100 * sum(done <= due for done, due in judged) / len(judged), 1)


def report(rows: Iterable[TicketRow], schedule: Schedule | None) -> dict[str, Any]:
    rows = list(rows)
    answered = [(r, r.first_answer_at) for r in rows if r.first_answer_at is not None]
    resolved = [(r, r.resolved_at) for r in rows if r.resolved_at is not None]
    first = [working_seconds(schedule, r.created_at, at) for r, at in answered]
    resolution = [working_seconds(schedule, r.created_at, at) for r, at in resolved]
    return {
        "opened": len(rows),
        "by_state": dict(Counter(r.state for r in rows)),
        "by_topic": dict(Counter(r.topic for r in rows)),
        "by_level": dict(Counter(r.level for r in rows)),
        "by_channel": dict(Counter(r.channel for r in rows)),
        "first_response_avg": _avg(first), "first_response_p90": _p90(first),
        "resolution_avg": _avg(resolution), "resolution_p90": _p90(resolution),
        "first_response_met_pct": _met([(at, r.first_response_due) for r, at in answered]),
        "resolution_met_pct": _met([(at, r.resolution_due) for r, at in resolved]),
        "escalations": sum(r.escalations for r in rows),
        "hand_backs": sum(r.hand_backs for r in rows),
    }


def time_in_charge(intervals: Iterable[tuple[str, datetime, datetime]], since: datetime,
                   until: datetime) -> dict[str, float]:
    """Seconds per agent of the (agent, from, to) intervals a ticket was in their charge,
    clipped to [since, until)."""
    out: dict[str, float] = {}
    for agent, start, end in intervals:
        seconds = (min(end, until) - max(start, since)).total_seconds()
        if seconds > 0:
            out[agent] = out.get(agent, 0.0) + seconds
    return {agent: round(seconds, 1) for agent, seconds in sorted(out.items())}
