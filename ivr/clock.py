"""Clocks: the real one, and a shifted one for rehearsals (`clock_start`, `simulate --at`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("Europe/Rome")


def aware(at: datetime) -> datetime:
    """A time without an offset is Italian local time (what ops type)."""
    return at if at.tzinfo else at.replace(tzinfo=LOCAL)


class Clock(Protocol):
    def now(self) -> datetime:
        """An aware datetime (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """Starts at `start` and runs at real speed: rehearse a holiday on a real phone."""

    def __init__(self, start: datetime):
        self._offset = aware(start) - datetime.now(UTC)

    def now(self) -> datetime:
        return datetime.now(UTC) + self._offset


class FixedClock:
    """Stands still until moved: for unit tests."""

    def __init__(self, at: datetime):
        self.at = at

    def now(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)
