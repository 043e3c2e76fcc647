"""What a waiting caller hears besides the music: periodic messages, position and estimated wait.

Pure logic on explicit times (seconds on any monotonic clock): the service asks a `HoldPlan`
when the next thing is due and what to play, plays it, then tells the plan when it finished.
Media are ("prompt", id) for the help desk's own prompts, ("sound", name) for Asterisk's
standard sounds in the caller's language, ("number", n) for a number said by Asterisk.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from datetime import date

from ivr.schema import Announce, HoldMessages

Media = tuple[str, str]
# Asterisk's own queue sounds (asterisk-core-sounds-it: "ci sono", "chiamate in attesa", ...).
YOU_ARE_NEXT = ("sound", "queue-youarenext")
THERE_ARE = ("sound", "queue-thereare")
CALLS_WAITING = ("sound", "queue-callswaiting")
HOLD_TIME = ("sound", "queue-holdtime")
LESS_THAN = ("sound", "queue-less-than")
MINUTE, MINUTES = ("sound", "queue-minute"), ("sound", "queue-minutes")


def position_phrase(position: int) -> list[Media]:
    """As app_queue says it: "you are next", or "there are <position> calls waiting"."""
    if position <= 1:
        return [YOU_ARE_NEXT]
    return [THERE_ARE, ("number", str(position)), CALLS_WAITING]


def wait_band(seconds: float, bands: list[int]) -> tuple[bool, int]:
    """(less_than, minutes): the first band the estimate fits under, or beyond the last band
    the estimate rounded up to a multiple of the last band's step."""
    minutes = seconds / 60
    for band in bands:
        if minutes <= band:
            return True, band
    step = bands[-1] - bands[-2] if len(bands) > 1 else bands[-1]
    return False, math.ceil(minutes / step) * step


def wait_phrase(seconds: float, bands: list[int]) -> list[Media]:
    less_than, minutes = wait_band(seconds, bands)
    unit = MINUTE if minutes == 1 else MINUTES
    return [HOLD_TIME, *([LESS_THAN] if less_than else []), ("number", str(minutes)), unit]


def estimate_wait(position: int, free_agents: int, serving_agents: int,
                  handle_time: float) -> float | None:
    """Seconds until the caller at `position` reaches an agent: the callers ahead not covered
    by agents free now, each taking one handle time shared among the agents serving the topic.
    None when nobody serves the topic (no estimate can be honest)."""
    if serving_agents <= 0:
        return None
    ahead = max(0, position - free_agents)
    return ahead * handle_time / serving_agents


class HandleTimes:
    """Recent handle times (talk + wrap-up) per topic: the estimate follows the desk's pace."""

    def __init__(self, keep: int = 50):
        self._seen: dict[str, deque[float]] = {}
        self.keep = keep

    def add(self, topic: str, seconds: float) -> None:
        self._seen.setdefault(topic, deque(maxlen=self.keep)).append(seconds)

    def average(self, topic: str, default: float) -> float:
        seen = self._seen.get(topic)
        return sum(seen) / len(seen) if seen else default

    def recent(self, topic: str) -> float | None:
        """The average of the recent handle times, None before the first call."""
        seen = self._seen.get(topic)
        return sum(seen) / len(seen) if seen else None


@dataclass
class Due:
    """What to play now: an announcement, a message, or both (announcement first)."""

    announce: bool
    message: str | None  # a prompt id


@dataclass
class HoldPlan:
    """The schedule of one caller's wait. Times are seconds on the caller's monotonic clock."""

    messages: HoldMessages | None
    announce: Announce | None
    joined: float
    first_message: int = 0  # where this caller starts in the message list (rotation)
    next_message: float = field(init=False)
    next_announce: float = field(init=False)
    _index: int = field(init=False)

    def __post_init__(self) -> None:
        self.next_message = (self.joined + self.messages.first_after
                             if self.messages else math.inf)
        self.next_announce = (self.joined + self.announce.first_after
                              if self.announce and (self.announce.position or self.announce.wait)
                              else math.inf)
        self._index = self.first_message

    @property
    def due_at(self) -> float:
        return min(self.next_message, self.next_announce)

    def take(self, now: float, today: date) -> Due | None:
        """What is due at `now` (None if nothing is). Messages out of their dates are skipped;
        if none is valid today, no message is due until tomorrow's check."""
        announce = self.next_announce <= now
        message = None
        if self.next_message <= now and self.messages:
            message = self._next_valid(today)
            if message is None:
                self.next_message = now + self.messages.every  # look again later (dates)
        if not announce and message is None:
            return None
        return Due(announce, message)

    def _next_valid(self, today: date) -> str | None:
        assert self.messages is not None
        items = self.messages.items
        for step in range(len(items)):
            item = items[(self._index + step) % len(items)]
            if item.valid_on(today):
                self._index = (self._index + step + 1) % len(items)
                return item.prompt
        return None

    def played(self, due: Due, finished: float) -> None:
        """The due items finished playing (or were cut short) at `finished`."""
        if due.announce and self.announce:
            self.next_announce = finished + self.announce.every
        if due.message and self.messages:
            self.next_message = finished + self.messages.every
