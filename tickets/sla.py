"""SLA deadlines on the business calendar: the same opening hours (ivr.hours.Schedule: weekly
ranges, Italian national holidays, closures) that decide whether a line answers.

A target ("first response within 8 working hours") becomes a deadline stored on the ticket.
While the ticket waits for the citizen the clock stops: when it starts again the deadline moves
on by the working time the pause took. Everything here is pure: callers pass the instants.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from typing import Literal

from ivr.hours import Schedule
from tickets.states import State, Ticket

HORIZON_DAYS = 400  # a target that does not fit in this many days of the calendar is refused


class NoWorkingTime(ValueError):
    """The calendar has no working time within the horizon (a schedule with no hours)."""


def working_intervals(schedule: Schedule, start: datetime, end: datetime
                      ) -> Iterator[tuple[datetime, datetime]]:
    """The calendar's open intervals within [start, end), in order, clipped to it."""
    local = start.astimezone(schedule.zone)
    last = end.astimezone(schedule.zone).date()
    day = local.date()
    days = _totals(schedule)
    while day <= last:
        for opens, closes in days.ranges(day):
            lo, hi = max(opens, start), min(closes, end)
            if lo < hi:
                yield lo, hi
        day += timedelta(days=1)


def working_seconds(schedule: Schedule | None, start: datetime, end: datetime) -> float:
    """Working time between two instants (none if `end` is not after `start`). Without a
    schedule every second counts (a desk open round the clock). Quick over long spans too
    (a ticket months past its deadline): whole days come from running totals."""
    if end <= start:
        return 0.0
    if schedule is None:
        return (end - start).total_seconds()
    first = start.astimezone(schedule.zone).date()
    last = end.astimezone(schedule.zone).date()
    if (last - first).days < 3 or first < _ORIGIN:
        return _summed(working_intervals(schedule, start, end))
    next_midnight = datetime.combine(first + timedelta(days=1), time(), schedule.zone)
    last_midnight = datetime.combine(last, time(), schedule.zone)
    return (_summed(working_intervals(schedule, start, next_midnight))
            + _totals(schedule).between(first + timedelta(days=1), last)
            + _summed(working_intervals(schedule, last_midnight, end)))


def _summed(intervals: Iterator[tuple[datetime, datetime]]) -> float:
    return sum((hi - lo).total_seconds() for lo, hi in intervals)


_ORIGIN = date(2020, 1, 1)  # running totals start here (earlier spans are summed day by day)


class _DayTotals:
    """A schedule's working seconds of whole days from _ORIGIN, as running totals, extended
    as far as asked."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.sums = [0.0]  # sums[i]: the days _ORIGIN ... _ORIGIN + i - 1
        self._ranges: dict[date, list[tuple[datetime, datetime]]] = {}

    def ranges(self, day: date) -> list[tuple[datetime, datetime]]:
        """_open_ranges, remembered (the holiday calendar is asked once per day)."""
        found = self._ranges.get(day)
        if found is None:
            if len(self._ranges) > 20_000:
                self._ranges.clear()
            found = self._ranges[day] = _open_ranges(self.schedule, day)
        return found

    def _upto(self, day: date) -> float:
        index = (day - _ORIGIN).days
        while len(self.sums) <= index:
            d = _ORIGIN + timedelta(days=len(self.sums) - 1)
            self.sums.append(self.sums[-1] + sum(
                (c - o).total_seconds() for o, c in self.ranges(d)))
        return self.sums[index]

    def between(self, first: date, last: date) -> float:
        """The days first ... last - 1, whole."""
        return self._upto(last) - self._upto(first) if last > first else 0.0


# Per schedule object (kept referenced here, so its id stays its own); a reload brings new
# ones, the oldest are dropped.
_TOTALS: dict[int, _DayTotals] = {}


def _totals(schedule: Schedule) -> _DayTotals:
    found = _TOTALS.get(id(schedule))
    if found is None or found.schedule is not schedule:
        if len(_TOTALS) >= 16:
            del _TOTALS[next(iter(_TOTALS))]
        found = _TOTALS[id(schedule)] = _DayTotals(schedule)
    return found


def add_working(schedule: Schedule | None, start: datetime, seconds: float) -> datetime:
    """The instant when `seconds` of working time after `start` have passed (at the end of
    the working interval that completes them; never inside a closed period)."""
    if schedule is None:
        return start + timedelta(seconds=seconds)
    left = seconds
    day = start.astimezone(schedule.zone).date()
    for _ in range(HORIZON_DAYS):
        for opens, closes in _open_ranges(schedule, day):
            lo = max(opens, start)
            if lo >= closes:
                continue
            available = (closes - lo).total_seconds()
            if left <= available:
                return lo + timedelta(seconds=left)
            left -= available
        day += timedelta(days=1)
    raise NoWorkingTime(f"no room for {seconds:g} s of working time within {HORIZON_DAYS} days "
                        "of the calendar")


def _open_ranges(schedule: Schedule, day: date) -> list[tuple[datetime, datetime]]:
    if schedule.holiday_name(day) or any(c.covers(day) for c in schedule.closures):
        return []
    midnight = datetime.combine(day + timedelta(days=1), time(), schedule.zone)
    return [(datetime.combine(day, r.start, schedule.zone),
             # "24:00" is kept as time.max: the next midnight, not a microsecond before it
             midnight if r.end == time.max else datetime.combine(day, r.end, schedule.zone))
            for r in schedule.ranges_by_day[day.weekday()]]


@dataclass(frozen=True)
class Target:
    """One SLA target of a topic and level: working seconds, and when to warn (fractions of
    it used, ascending: the console shows each as it is reached)."""

    seconds: float
    warn_at: tuple[float, ...] = (0.7, 0.8, 0.9)


Standing = Literal["ok", "warning", "breached"]


@dataclass(frozen=True)
class Clock:
    """A target's clock on one ticket: started at `started`, due at `due`; `paused_since`
    while the ticket waits for the citizen."""

    started: datetime
    due: datetime
    paused_since: datetime | None = None

    @classmethod
    def start(cls, schedule: Schedule | None, at: datetime, target: Target) -> Clock:
        return cls(at, add_working(schedule, at, target.seconds))

    def pause(self, at: datetime) -> Clock:
        return self if self.paused_since is not None else Clock(self.started, self.due, at)

    def resume(self, schedule: Schedule | None, at: datetime) -> Clock:
        """The deadline moves on by the working time the pause took."""
        if self.paused_since is None:
            return self
        paused = working_seconds(schedule, self.paused_since, at)
        return Clock(self.started, add_working(schedule, self.due, paused) if paused else
                     self.due)

    def used(self, schedule: Schedule | None, at: datetime, target: Target) -> float:
        """The fraction of the target used at `at` (above 1: breached). A paused clock
        counts up to its pause."""
        now = min(at, self.paused_since) if self.paused_since is not None else at
        left = working_seconds(schedule, now, self.due)
        if now >= self.due:
            return 1.0 + working_seconds(schedule, self.due, now) / target.seconds
        return 1.0 - left / target.seconds

    def left(self, schedule: Schedule | None, at: datetime) -> float:
        """Working seconds from `at` (or the pause) to the deadline; negative past it."""
        now = min(at, self.paused_since) if self.paused_since is not None else at
        if now <= self.due:
            return working_seconds(schedule, now, self.due)
        return -working_seconds(schedule, self.due, now)

    def standing(self, schedule: Schedule | None, at: datetime, target: Target
                 ) -> tuple[Standing, float | None]:
        """("breached" past the deadline; "warning" and the highest threshold reached; or
        "ok"), as the console and the supervisor board show it."""
        return judge(self.used(schedule, at, target), target)


def used_of(left: float, target: Target) -> float:
    """The fraction of a target used when `left` working seconds remain (see Clock.left)."""
    return 1.0 - left / target.seconds


def judge(used: float, target: Target) -> tuple[Standing, float | None]:
    if used >= 1.0:
        return "breached", None
    reached = [w for w in target.warn_at if used >= w]
    return ("warning", reached[-1]) if reached else ("ok", None)


# While a ticket is in one of these its clocks stand still: waiting for the citizen, or
# resolved (if the citizen writes again the clocks go on from where they stopped).
STOPPED = frozenset({State.WAITING_CITIZEN, State.RESOLVED, State.CLOSED})
Targets = Callable[[str], tuple[Target, Target]]  # a level's (first response, resolution)


def start(ticket: Ticket, schedule: Schedule | None, at: datetime, targets: Targets) -> Ticket:
    """The deadlines of a ticket arriving (or changing level) at `at`: its level's targets."""
    first, resolution = targets(ticket.level)
    return replace(ticket, first_response_due=add_working(schedule, at, first.seconds),
                   resolution_due=add_working(schedule, at, resolution.seconds),
                   paused_since=None)


def follow(before: Ticket, after: Ticket, at: datetime, schedule: Schedule | None,
           targets: Targets) -> Ticket:
    """The deadlines after a step of tickets.states (`before` -> `after` at `at`):
    - escalated, or handed back: the new level's targets, counted from now;
    - waiting for the citizen, resolved: stopped;
    - going on again (the citizen answered, or reopened it): the deadlines move on by the
      working time they stood still."""
    if after.level != before.level:
        return start(after, schedule, at, targets)
    stops = after.state in STOPPED
    if stops and before.state not in STOPPED:
        return replace(after, paused_since=at)
    if not stops and before.state in STOPPED and before.paused_since is not None:
        paused = working_seconds(schedule, before.paused_since, at)

        def moved(due: datetime | None) -> datetime | None:
            return add_working(schedule, due, paused) if due is not None and paused else due

        return replace(after, first_response_due=moved(before.first_response_due),
                       resolution_due=moved(before.resolution_due), paused_since=None)
    return after
