"""Opening hours: weekly time ranges, Italian national holidays, extra closures, overrides.

Everything here is pure: callers pass the instant to judge, so tests use a virtual clock and
`centralino simulate --at` answers exactly as a real call would at that time.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_Date = date  # in Closure's body, `date` is its field


def _parse_days(spec: str) -> list[int]:
    """'mon' -> [0]; 'mon-fri' -> [0..4]; 'sat,sun' -> [5, 6]."""
    result: list[int] = []
    for raw in spec.split(","):
        part = raw.strip().lower()
        first, _, last = part.partition("-")
        if first not in DAYS or (last and last not in DAYS):
            raise ValueError(f"unknown day {part!r}: use {', '.join(DAYS)} or a range like mon-fri")
        start, end = DAYS.index(first), DAYS.index(last or first)
        if end < start:
            raise ValueError(f"day range {part!r} runs backwards")
        result.extend(range(start, end + 1))
    return result


@dataclass(frozen=True, order=True)
class TimeRange:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        m = _RANGE.match(text)
        if not m:
            raise ValueError(f"{text!r} is not a time range like 08:30-13:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError(f"{text!r} has an impossible time")
        end = time.max if h2 == 24 else time(h2, m2)
        if end <= time(h1, m1):
            raise ValueError(f"{text!r} ends before it starts (ranges cannot cross midnight)")
        return cls(time(h1, m1), end)

    def __contains__(self, t: time) -> bool:
        return self.start <= t < self.end

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else self.end.strftime("%H:%M")
        return f"{self.start:%H:%M}-{end}"


class Closure(BaseModel):
    """A day (or days, with `to`) the line is closed: a patron saint's day, a summer week."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    date: date
    to: _Date | None = None
    reason: str = "closure"

    @model_validator(mode="after")
    def _ordered(self) -> Closure:
        if self.to is not None and self.to < self.date:
            raise ValueError("`to` is before `date`")
        return self

    def covers(self, day: _Date) -> bool:
        return self.date <= day <= (self.to or self.date)


class Schedule(BaseModel):
    """When a line is open. Weekly ranges in local time; national holidays close the line."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str = "Europe/Rome"
    weekly: dict[str, list[str]] = Field(description="day or day range -> time ranges")
    national_holidays: bool = True
    closures: list[Closure] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @field_validator("weekly")
    @classmethod
    def _no_overlaps(cls, weekly: dict[str, list[str]]) -> dict[str, list[str]]:
        per_day: dict[int, list[tuple[TimeRange, str]]] = {}
        for spec, ranges in weekly.items():
            days = _parse_days(spec)
            for text in ranges:
                rng = TimeRange.parse(text)
                for day in days:
                    per_day.setdefault(day, []).append((rng, spec))
        for day, entries in per_day.items():
            entries.sort()
            for (a, spec_a), (b, spec_b) in pairwise(entries):
                if b.start < a.end:
                    where = spec_a if spec_a == spec_b else f"{spec_a} and {spec_b}"
                    raise ValueError(
                        f"opening hours overlap on {DAYS[day]}: {a} and {b} (from {where})"
                    )
        return weekly

    @functools.cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @functools.cached_property
    def ranges_by_day(self) -> dict[int, list[TimeRange]]:
        out: dict[int, list[TimeRange]] = {d: [] for d in range(7)}
        for spec, ranges in self.weekly.items():
            for day in _parse_days(spec):
                out[day].extend(TimeRange.parse(r) for r in ranges)
        return {d: sorted(r) for d, r in out.items()}

    def holiday_name(self, day: date) -> str | None:
        if not self.national_holidays:
            return None
        return _italian_holidays(day.year).get(day)


@functools.lru_cache(maxsize=16)
def _italian_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("IT", years=year, language="it_IT")


@dataclass(frozen=True)
class Override:
    """An operator's forced state for a line (an emergency closure, say), until it expires."""

    state: Literal["open", "closed"]
    until: datetime
    reason: str
    set_by: str = ""


@dataclass(frozen=True)
class LineStatus:
    open: bool
    # why: "open", "hours" (outside weekly hours), "holiday", "closure", "override"
    why: str
    detail: str = ""


ALWAYS_OPEN = LineStatus(True, "open")


def line_status(schedule: Schedule | None, override: Override | None, at: datetime) -> LineStatus:
    """Is the line open at `at` (an aware datetime)? An unexpired override wins."""
    if override is not None and at < override.until:
        return LineStatus(override.state == "open", "override", override.reason)
    if schedule is None:
        return ALWAYS_OPEN
    local = at.astimezone(schedule.zone)
    day = local.date()
    for closure in schedule.closures:
        if closure.covers(day):
            return LineStatus(False, "closure", closure.reason)
    name = schedule.holiday_name(day)
    if name:
        return LineStatus(False, "holiday", name)
    now = local.time()
    for rng in schedule.ranges_by_day[local.weekday()]:
        if now in rng:
            return LineStatus(True, "open", str(rng))
    return LineStatus(False, "hours")


def next_opening(schedule: Schedule, at: datetime, horizon_days: int = 60) -> datetime | None:
    """The first instant at or after `at` when the schedule is open (ignores overrides)."""
    local = at.astimezone(schedule.zone)
    for offset in range(horizon_days + 1):
        day = local.date() + timedelta(days=offset)
        if schedule.holiday_name(day) or any(c.covers(day) for c in schedule.closures):
            continue
        for rng in schedule.ranges_by_day[day.weekday()]:
            start = datetime.combine(day, rng.start, schedule.zone)
            end = datetime.combine(day, rng.end, schedule.zone)
            if offset == 0 and end <= local:
                continue
            return max(start, local) if offset == 0 else start
    return None
