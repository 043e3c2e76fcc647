"""Call-centre figures, computed from the `queue_log` event stream the way Asterisk's reporting
tools do, plus the live state of the lines and the agents. Pure functions over plain rows: no
database, no HTTP (the web layer fetches the rows; unit tests build them by hand).

A *visit* is one call in one topic's queue: it starts with ENTERQUEUE and ends with CONNECT
(answered), ABANDON or an EXIT* event. A call moved from one topic to another (an overflow rule)
makes one visit in each. Times are measured between the events' timestamps (the data fields
carry the same durations, rounded to whole seconds).

Definitions (per topic, per line, per topic and line, and in total):

- offered: ENTERQUEUE events (visits) that started in the period. A call is counted in the
  period in which it entered the queue, even if it was answered or ended after the period.
- answered: visits that got a CONNECT. Wait = CONNECT time - ENTERQUEUE time.
- abandoned: ABANDON after waiting at least the topic's `short_abandon` seconds;
  short_abandoned: ABANDON before that (a caller who changed their mind, not one we failed).
- exited: EXITWITHTIMEOUT (max wait reached), EXITEMPTY (no agents), EXITWITHKEY (left with a
  key), ... by event. refused: FULL and JOINEMPTY events, by event (the queue would not take
  the caller: Asterisk logs no ENTERQUEUE for these, so they are not part of `offered`).
- unfinished: offered visits with no outcome yet (still waiting or talking to nobody yet), or
  whose outcome was never logged (the service stopped).
- service_level_pct: answered within the topic's `service_level` seconds, divided by
  (offered - short_abandoned), x100; None when that is 0. Exits and unfinished visits count
  as not answered in time.
- asa_avg / asa_p90: the average and the 90th percentile (nearest rank: the smallest wait
  that at least 90% of answered visits did not exceed) of the wait of answered visits;
  longest_wait_answered: the largest of those waits.
- aht_avg: average talk time (CONNECT to COMPLETECALLER/COMPLETEAGENT) of completed calls;
  wrap_up_avg: average wrap-up after them (from the agents' state changes), reported apart.
- ring_no_answer: RINGNOANSWER events (an agent's phone rang out or was refused).
- transfers: answered visits the agent passed on (BLINDTRANSFER, ATTENDEDTRANSFER: the first
  agent's talk ends there), by destination (a topic or an agent, the event's first field, or
  "group:<id>" for a second-level group), and reached_avg: the average seconds from the
  transfer to the answer at the destination; second_level: per group, its transfers and that
  average (the time to reach the second level).
- estimate: for answered calls that were told an estimated wait (`calls.announced_wait`, the
  first one announced): count, mean absolute error and mean signed error (announced - actual,
  positive = we said longer than it was), where actual = first ENTERQUEUE to CONNECT of the call.
  Counted in the topic where the estimate was announced (the call's first).

Recall requests (issue #4), per topic and in total, of the requests *created* in the period:

- requests, by_status (waiting, calling, done, failed, cancelled, expired: where each request
  stands now) and by_mode (now, back: the portal; queue: the callback key).
- attempts: every call placed for them, by outcome: the citizen's (answered, no_answer, busy,
  failed, wrong_number; an agent's verdict replaces `answered`) and the agent's, not counted
  against the citizen (agent_missed: the agent did not answer, the citizen was not dialled;
  agent_left: the agent hung up while the citizen's phone rang).
- first_attempt_avg / first_attempt_p90 (count: first_attempt_count): from the time the
  citizen asked to be called (the request's creation; the slot for "back") to the moment
  their phone was first dialled. A "now" request made while closed includes the wait for
  the opening.
- attempts_per_success: calls to the citizen per done request, on average.

Per topic and per (topic, line) the figures count visits. Per line and in total they count
callers: a call moved from one topic to another is one offered call, with the outcome of its
last visit, its wait measured from its first ENTERQUEUE, and the thresholds of the topic where
it ended. So the topics' `offered` may add up to more than the total.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from cti.agents import AgentState
from cti.recalls import AGENT_OUTCOMES, STATUSES

# A transfer ends the agent's part as a completion does (app_queue writes one or the other).
TRANSFERS = ("BLINDTRANSFER", "ATTENDEDTRANSFER")
# A transfer's context (its second field) when it went to a second-level group (tickets.yaml):
# its destination is then "group:<id>", counted apart as the second level.
SECOND_LEVEL_CONTEXT = "centralino-groups"
OUTSIDE_CONTEXT = "centralino-outside"  # ... to a number outside the desk (its E.164 first)
COMPLETE = ("COMPLETECALLER", "COMPLETEAGENT", *TRANSFERS)
REFUSED = ("FULL", "JOINEMPTY", "JOINUNAVAIL")  # the caller never entered the queue
# A wrap-up state change follows COMPLETE* at once (same instant, written by another path).
WRAP_UP_MATCH = timedelta(seconds=2)
_TALKING = (AgentState.RINGING, AgentState.ON_CALL)


class LogRow(NamedTuple):
    """One queue_log line, with what the `calls` table says about its call. (A named tuple:
    thousands are made per report, and a frozen dataclass is several times slower to build.)"""

    at: datetime
    call_id: str
    queue: str
    agent: str
    event: str
    line: str = ""  # the flow's name
    number: str = ""  # the number dialled
    announced_wait: int | None = None  # seconds, the first estimate told to the caller
    data1: str = ""  # the event's first field (a transfer's destination)
    data2: str = ""  # its second (a transfer's context)


@dataclass(frozen=True)
class Thresholds:
    """A topic's settings for figures (ivr.schema.QueueTopic has the same two fields)."""

    service_level: float = 20
    short_abandon: float = 5


@dataclass
class Visit:
    call_id: str
    topic: str
    line: str
    number: str
    entered: datetime
    announced_wait: int | None = None
    outcome: str | None = None  # answered | abandoned | EXIT* | FULL... | None (no outcome yet)
    ended: datetime | None = None  # CONNECT, ABANDON or EXIT* time
    agent: str = ""
    completed: datetime | None = None  # COMPLETE* time
    transferred_to: str = ""  # the agent passed the caller on: where (a topic, an agent)
    reached_after: float | None = None  # ... and the seconds until somebody answered there
    ring_no_answer: int = 0
    wrap_up: float | None = None
    estimate_error: float | None = None  # announced - actual; on the call's first visit

    @property
    def wait(self) -> float | None:
        return (self.ended - self.entered).total_seconds() if self.ended else None

    @property
    def talk(self) -> float | None:
        if self.completed is None or self.ended is None:
            return None
        return (self.completed - self.ended).total_seconds()


@dataclass
class Figures:
    offered: int = 0
    answered: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    exited: dict[str, int] = field(default_factory=dict)
    refused: dict[str, int] = field(default_factory=dict)
    unfinished: int = 0
    ring_no_answer: int = 0
    answered_within_service_level: int = 0
    service_level_pct: float | None = None
    asa_avg: float | None = None
    asa_p90: float | None = None
    longest_wait_answered: float | None = None
    aht_avg: float | None = None
    wrap_up_avg: float | None = None
    estimate_count: int = 0
    estimate_mean_abs_error: float | None = None
    estimate_mean_signed_error: float | None = None
    transferred: int = 0  # answered visits the agent passed on
    transfers_to: dict[str, int] = field(default_factory=dict)  # by destination
    transfer_reached_avg: float | None = None  # transfer -> answered at the destination
    # per second-level group: (transfers, average seconds until a member answered)
    second_level: dict[str, tuple[int, float | None]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready; durations in seconds, rounded to 0.1."""
        r = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {
            "offered": self.offered, "answered": self.answered, "abandoned": self.abandoned,
            "short_abandoned": self.short_abandoned, "exited": dict(sorted(self.exited.items())),
            "refused": dict(sorted(self.refused.items())), "unfinished": self.unfinished,
            "ring_no_answer": self.ring_no_answer,
            "answered_within_service_level": self.answered_within_service_level,
            "service_level_pct": r(self.service_level_pct),
            "asa_avg": r(self.asa_avg), "asa_p90": r(self.asa_p90),
            "longest_wait_answered": r(self.longest_wait_answered),
            "aht_avg": r(self.aht_avg), "wrap_up_avg": r(self.wrap_up_avg),
            "estimate": {"count": self.estimate_count,
                         "mean_abs_error": r(self.estimate_mean_abs_error),
                         "mean_signed_error": r(self.estimate_mean_signed_error)},
            "transfers": {"count": self.transferred, "to": dict(sorted(self.transfers_to.items())),
                          "reached_avg": r(self.transfer_reached_avg),
                          "second_level": {g: {"count": n, "reached_avg": r(avg)}
                                           for g, (n, avg) in sorted(self.second_level.items())}},
        }


@dataclass
class Report:
    since: datetime
    until: datetime
    total: Figures
    topics: dict[str, Figures]
    lines: dict[str, Figures]
    topic_lines: dict[tuple[str, str], Figures]
    numbers: dict[str, list[str]]  # line -> the numbers its calls dialled

    def as_dict(self) -> dict[str, Any]:
        return {
            "from": self.since.isoformat(), "to": self.until.isoformat(),
            "total": self.total.as_dict(),
            "topics": {t: f.as_dict() for t, f in sorted(self.topics.items())},
            "lines": {name: {**f.as_dict(), "numbers": self.numbers.get(name, [])}
                      for name, f in sorted(self.lines.items())},
            "topic_lines": [{"topic": t, "line": name, **f.as_dict()}
                            for (t, name), f in sorted(self.topic_lines.items())],
        }


# --- from rows to visits ---------------------------------------------------------------------

def build_visits(rows: Iterable[LogRow]) -> list[Visit]:
    """Replay the event stream (any order: it is sorted by time, stably) into visits.

    Events of a call in a queue with no ENTERQUEUE before them cannot be placed in a visit and
    are skipped (rows of a period start with the ENTERQUEUE of their calls, see the store)."""
    visits: list[Visit] = []
    open_: dict[tuple[str, str], Visit] = {}
    for r in sorted(rows, key=lambda r: r.at):
        key = (r.call_id, r.queue)
        if r.event == "ENTERQUEUE":
            open_[key] = Visit(r.call_id, r.queue, r.line, r.number, r.at, r.announced_wait)
            visits.append(open_[key])
            continue
        if r.event in REFUSED:
            visits.append(Visit(r.call_id, r.queue, r.line, r.number, r.at, r.announced_wait,
                                outcome=r.event, ended=r.at))
            continue
        v = open_.get(key)
        if v is None:
            continue
        if r.event == "CONNECT" and v.outcome is None:
            v.outcome, v.ended, v.agent = "answered", r.at, r.agent
        elif r.event in COMPLETE and v.outcome == "answered":
            v.completed = r.at
            if r.event in TRANSFERS:
                v.transferred_to = (f"group:{r.data1}" if r.data2 == SECOND_LEVEL_CONTEXT
                                    else r.data1 or "?")
            del open_[key]
        elif r.event == "ABANDON" and v.outcome is None:
            v.outcome, v.ended = "abandoned", r.at
            del open_[key]
        elif r.event.startswith("EXIT") and v.outcome is None:
            v.outcome, v.ended = r.event, r.at
            del open_[key]
        elif r.event == "RINGNOANSWER":
            v.ring_no_answer += 1
    _estimate_errors(visits)
    _transfer_reach(visits)
    return visits


def _transfer_reach(visits: list[Visit]) -> None:
    """A transferred visit: how long until the caller's next visit was answered."""
    for calls in _by_call(visits).values():
        for n, v in enumerate(calls):
            if not v.transferred_to or v.completed is None:
                continue
            after = next((w for w in calls[n + 1:] if w.entered >= v.completed), None)
            if after is not None and after.outcome == "answered" and after.ended is not None:
                v.reached_after = (after.ended - v.completed).total_seconds()


def _by_call(visits: Iterable[Visit]) -> dict[str, list[Visit]]:
    calls: dict[str, list[Visit]] = defaultdict(list)
    for v in visits:
        calls[v.call_id].append(v)
    return calls


def _estimate_errors(visits: list[Visit]) -> None:
    for own in _by_call(visits).values():
        queued = [v for v in own if v.outcome not in REFUSED]
        answered = next((v for v in queued if v.outcome == "answered"), None)
        if not queued or answered is None or answered.ended is None:
            continue
        first = queued[0]
        if first.announced_wait is not None:
            actual = (answered.ended - first.entered).total_seconds()
            first.estimate_error = first.announced_wait - actual


def journeys(visits: Iterable[Visit]) -> list[Visit]:
    """One visit per call for the per-line and total figures: from its first ENTERQUEUE to the
    outcome of its answered visit (or else its last one), in the topic where it ended."""
    out = []
    for own in _by_call(visits).values():
        queued = [v for v in own if v.outcome not in REFUSED]
        if not queued:
            out.append(own[0])  # refused, and never queued elsewhere
            continue
        if len(queued) == 1:  # the usual case: the visit is the journey
            out.append(queued[0])
            continue
        first = queued[0]
        end = next((v for v in queued if v.outcome == "answered"), queued[-1])
        out.append(replace(end, entered=first.entered, announced_wait=first.announced_wait,
                           estimate_error=first.estimate_error,
                           ring_no_answer=sum(v.ring_no_answer for v in queued)))
    return out


# --- wrap-up, from the agents' state changes -------------------------------------------------

def attach_wrap_ups(visits: Iterable[Visit],
                    changes: Iterable[tuple[str, datetime, str]]) -> None:
    """Set each completed visit's wrap-up time from the agents' state changes (agent id, time,
    state), in time order per agent. The agent's first change after the call was answered
    (other than ringing/on_call) comes when it ends: a `wrap_up` there lasts until their
    next change; any other state means no wrap-up (0 s); none within WRAP_UP_MATCH of the
    call's end (still wrapping up, or changes not given) leaves it unknown."""
    per_agent: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for agent, at, state in changes:
        per_agent[agent].append((at, state))
    for v in visits:
        if v.completed is None or not v.agent:
            continue
        own = per_agent.get(v.agent, [])
        # The first change after the call was answered that is not the answer itself.
        i = bisect.bisect_left(own, v.ended or v.completed, key=lambda c: c[0])
        while i < len(own) and own[i][1] in _TALKING:
            i += 1
        if i >= len(own) or own[i][0] > v.completed + WRAP_UP_MATCH:
            continue
        if own[i][1] != AgentState.WRAP_UP:
            v.wrap_up = 0.0
        elif i + 1 < len(own):
            v.wrap_up = (own[i + 1][0] - own[i][0]).total_seconds()


# --- figures -------------------------------------------------------------------------------

def p90(values: Sequence[float]) -> float | None:
    """Nearest rank: the smallest value that at least 90% of the values do not exceed."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[(9 * len(ordered) + 9) // 10 - 1]  # ceil(0.9 n), in integers


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def compute(visits: Iterable[Visit], thresholds: Callable[[str], Thresholds]) -> Figures:
    f = Figures()
    exited: Counter[str] = Counter()
    refused: Counter[str] = Counter()
    waits: list[float] = []
    talks: list[float] = []
    wrap_ups: list[float] = []
    errors: list[float] = []
    transfers: Counter[str] = Counter()
    reached: list[float] = []
    reached_group: dict[str, list[float]] = defaultdict(list)
    for v in visits:
        if v.outcome in REFUSED:
            refused[v.outcome] += 1
            continue
        limits = thresholds(v.topic)
        f.offered += 1
        f.ring_no_answer += v.ring_no_answer
        wait = v.wait
        if v.outcome == "answered" and wait is not None:
            f.answered += 1
            waits.append(wait)
            if wait <= limits.service_level:
                f.answered_within_service_level += 1
            if v.talk is not None:
                talks.append(v.talk)
            if v.wrap_up is not None:
                wrap_ups.append(v.wrap_up)
            if v.transferred_to:
                transfers[v.transferred_to] += 1
                if v.reached_after is not None:
                    reached.append(v.reached_after)
                    if v.transferred_to.startswith("group:"):
                        reached_group[v.transferred_to].append(v.reached_after)
        elif v.outcome == "abandoned" and wait is not None:
            if wait < limits.short_abandon:
                f.short_abandoned += 1
            else:
                f.abandoned += 1
        elif v.outcome is not None:
            exited[v.outcome] += 1
        else:
            f.unfinished += 1
        if v.estimate_error is not None:
            errors.append(v.estimate_error)
    f.exited, f.refused = dict(exited), dict(refused)
    counted = f.offered - f.short_abandoned
    if counted > 0:
        f.service_level_pct = 100 * f.answered_within_service_level / counted
    f.asa_avg, f.asa_p90 = _mean(waits), p90(waits)
    f.longest_wait_answered = max(waits) if waits else None
    f.aht_avg, f.wrap_up_avg = _mean(talks), _mean(wrap_ups)
    f.estimate_count = len(errors)
    f.estimate_mean_abs_error = _mean([abs(e) for e in errors])
    f.estimate_mean_signed_error = _mean(errors)
    f.transferred, f.transfers_to = sum(transfers.values()), dict(transfers)
    f.transfer_reached_avg = _mean(reached)
    f.second_level = {to.removeprefix("group:"): (n, _mean(reached_group[to]))
                      for to, n in transfers.items() if to.startswith("group:")}
    return f


def topic_figures(rows: Iterable[LogRow], thresholds: Mapping[str, Thresholds],
                  since: datetime, until: datetime) -> dict[str, Figures]:
    """Only the per-topic figures (what /metrics shows): a third of report()'s work."""
    default = Thresholds()
    topics: dict[str, list[Visit]] = defaultdict(list)
    for v in build_visits(rows):
        if since <= v.entered < until:
            topics[v.topic].append(v)
    return {t: compute(vs, lambda t: thresholds.get(t, default)) for t, vs in topics.items()}


def report(rows: Iterable[LogRow], thresholds: Mapping[str, Thresholds], since: datetime,
           until: datetime, *, agent_changes: Iterable[tuple[str, datetime, str]] = (),
           topic: str | None = None, line: str | None = None) -> Report:
    """The figures of the visits (and calls) that entered a queue in [since, until).
    `line` matches a line's name or one of its numbers; `topic` and `line` select visits."""
    visits = build_visits(rows)
    attach_wrap_ups(visits, agent_changes)
    if topic is not None:
        visits = [v for v in visits if v.topic == topic]
    if line is not None:
        visits = [v for v in visits if line in (v.line, v.number)]
    calls = [c for c in journeys(visits) if since <= c.entered < until]
    visits = [v for v in visits if since <= v.entered < until]
    default = Thresholds()
    limits = lambda t: thresholds.get(t, default)  # noqa: E731
    topics: dict[str, list[Visit]] = defaultdict(list)
    pairs: dict[tuple[str, str], list[Visit]] = defaultdict(list)
    for v in visits:
        topics[v.topic].append(v)
        pairs[(v.topic, v.line)].append(v)
    lines: dict[str, list[Visit]] = defaultdict(list)
    numbers: dict[str, set[str]] = defaultdict(set)
    for c in calls:
        lines[c.line].append(c)
        numbers[c.line].add(c.number)
    if topic is not None:
        topics.setdefault(topic, [])
    return Report(
        since, until, compute(calls, limits),
        {t: compute(vs, limits) for t, vs in topics.items()},
        {name: compute(cs, limits) for name, cs in lines.items()},
        {p: compute(vs, limits) for p, vs in pairs.items()},
        {name: sorted(n for n in ns if n) for name, ns in numbers.items()},
    )


# --- recalls ----------------------------------------------------------------------------------

RECALL_MODES = ("now", "back", "queue")


class RecallRow(NamedTuple):
    """A recall request, as the figures need it."""

    id: str
    topic: str
    mode: str
    status: str
    created_at: datetime
    slot_at: datetime | None
    attempts: int  # calls to the citizen


class AttemptRow(NamedTuple):
    request_id: str
    at: datetime  # when it ended
    outcome: str
    dialled_at: datetime | None = None  # when the citizen was dialled (older rows: unknown)

    @property
    def called_at(self) -> datetime:
        return self.dialled_at or self.at  # rows before migration 0006 know only the end


@dataclass
class RecallFigures:
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    by_mode: dict[str, int] = field(default_factory=lambda: dict.fromkeys(RECALL_MODES, 0))
    attempts: dict[str, int] = field(default_factory=dict)
    first_attempt_count: int = 0
    first_attempt_avg: float | None = None
    first_attempt_p90: float | None = None
    attempts_per_success: float | None = None

    def as_dict(self) -> dict[str, Any]:
        r = lambda v: None if v is None else round(v, 1)  # noqa: E731
        return {"requests": self.requests, "by_status": self.by_status, "by_mode": self.by_mode,
                "attempts": dict(sorted(self.attempts.items())),
                "first_attempt_count": self.first_attempt_count,
                "first_attempt_avg": r(self.first_attempt_avg),
                "first_attempt_p90": r(self.first_attempt_p90),
                "attempts_per_success": (None if self.attempts_per_success is None
                                         else round(self.attempts_per_success, 2))}


def _recall_figures(requests: Sequence[RecallRow],
                    attempts: Mapping[str, Sequence[AttemptRow]]) -> RecallFigures:
    f = RecallFigures(requests=len(requests))
    outcomes: Counter[str] = Counter()
    firsts: list[float] = []
    successes: list[int] = []
    for req in requests:
        f.by_status[req.status] = f.by_status.get(req.status, 0) + 1
        f.by_mode[req.mode] = f.by_mode.get(req.mode, 0) + 1
        own = attempts.get(req.id, ())
        outcomes.update(a.outcome for a in own)
        dialled = [a.called_at for a in own
                   if a.dialled_at is not None or a.outcome not in AGENT_OUTCOMES]
        if dialled:
            # From when the citizen asked to be called (a "back" request: its slot) to when
            # their phone first rang, not to the end of that call.
            asked = req.slot_at if req.mode == "back" and req.slot_at else req.created_at
            firsts.append(max(0.0, (min(dialled) - asked).total_seconds()))
        if req.status == "done":
            successes.append(req.attempts)
    f.attempts = dict(outcomes)
    f.first_attempt_count = len(firsts)
    f.first_attempt_avg, f.first_attempt_p90 = _mean(firsts), p90(firsts)
    f.attempts_per_success = _mean(successes)
    return f


def recall_report(requests: Iterable[RecallRow], attempts: Iterable[AttemptRow]
                  ) -> dict[str, Any]:
    """The recall figures of these requests (those created in the period), per topic and in
    total; JSON-ready."""
    requests = list(requests)
    by_request: dict[str, list[AttemptRow]] = defaultdict(list)
    for a in attempts:
        by_request[a.request_id].append(a)
    topics: dict[str, list[RecallRow]] = defaultdict(list)
    for req in requests:
        topics[req.topic].append(req)
    return {"total": _recall_figures(requests, by_request).as_dict(),
            "topics": {t: _recall_figures(rs, by_request).as_dict()
                       for t, rs in sorted(topics.items())}}


# --- live -------------------------------------------------------------------------------------

class _Waiting(Protocol):
    since: datetime
    offered_to: str | None


class _Agent(Protocol):
    state: AgentState
    topics: dict[str, int]


def live(waiting: Mapping[str, Sequence[_Waiting]], agents: Iterable[_Agent],
         now: datetime) -> dict[str, Any]:
    """Callers waiting and agents by state, per topic (every topic in `waiting`) and overall."""
    agents = list(agents)
    states = [str(s) for s in AgentState]
    topics = {}
    for topic, line in waiting.items():
        longest = max(((now - w.since).total_seconds() for w in line), default=0.0)
        by_state = Counter(str(a.state) for a in agents if topic in a.topics)
        topics[topic] = {
            "waiting": len(line), "longest_wait": round(max(longest, 0.0), 1),
            "ringing": sum(1 for w in line if w.offered_to is not None),
            "agents": {s: by_state.get(s, 0) for s in states},
        }
    overall = Counter(str(a.state) for a in agents)
    return {"at": now.isoformat(), "topics": topics,
            "agents": {s: overall.get(s, 0) for s in states}}


# --- the queue_log export ---------------------------------------------------------------------

def queue_log_line(at: datetime, call_id: str, queue: str, agent: str, event: str,
                   data: Sequence[str]) -> str:
    """One line of Asterisk's queue_log file: `epoch|callid|queue|agent|event|data1|data2...`.
    Like Asterisk, the line has as many data fields as the event carries (trailing empty
    ones dropped) and a lone `|` after an event with none. Separators inside values (a
    caller id with `|`) would shift every field after them: they become spaces."""
    data = list(data)
    while data and not data[-1]:
        data.pop()
    fields = [str(int(at.timestamp())), call_id, queue, agent or "NONE", event, *data]
    clean = [f.replace("|", " ").replace("\n", " ").replace("\r", " ") for f in fields]
    return "|".join(clean[:5]) + "|" + "|".join(clean[5:]) + "\n"
