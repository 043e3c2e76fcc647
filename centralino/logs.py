"""The service's log: one format, and repeated lines folded.

Whatever a client can make repeat (asyncio's accept errors, aiohttp's errors per request,
refused connections, a database away for every request) would otherwise fill the disk in
minutes. So a warning or error is logged once per interval: those with the same logger, level
and message template within `interval` seconds of the one logged are counted instead, and the
next one logged after that says how many were left out. Lines below WARNING (each call's own
lines) pass untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# `log.error(..., extra=NEVER_FOLDED)`: lines only an administrator's action causes (a reload's
# problems), each of which must be read.
NEVER_FOLDED = {"fold": False}


class RepeatFilter(logging.Filter):
    """Lets a repeated warning or error through once per `interval` seconds."""

    MAX_KINDS = 1000  # kinds of line remembered at once (each is a few hundred bytes)

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.interval = interval
        self._clock = clock
        # (logger, level, template) -> [when last let through, how many left out since]
        self._seen: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or self.interval <= 0 or not getattr(
                record, "fold", True):
            return True
        # The template, not the formatted message: the same error about another address or
        # request is the same line. Preformatted messages (asyncio's) vary after line one.
        key = (record.name, record.levelno, str(record.msg).split("\n", 1)[0])
        now = self._clock()
        if key not in self._seen and len(self._seen) >= self.MAX_KINDS:
            self._forget(now)
            if len(self._seen) >= self.MAX_KINDS:  # that many kinds at once: fold by logger
                key = (record.name, record.levelno, "")
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        if seen is not None and seen[1]:
            record.msg = (f"{record.getMessage()} [{seen[1]:.0f} more like this not logged "
                          f"since the last one, {now - seen[0]:.0f} s ago]")
            record.args = None
        self._seen[key] = [now, 0]
        return True

    def _forget(self, now: float) -> None:
        """Drop kinds not seen for an interval (their counts, if any, are lost)."""
        for key in [k for k, (at, _) in self._seen.items() if now - at >= self.interval]:
            del self._seen[key]


def configure(level: str, repeat_interval: float) -> logging.Handler:
    """Log to stderr (journald keeps it under systemd), repeats folded. The handler, to remove
    when the service stops (a test runs the command in-process)."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(RepeatFilter(repeat_interval))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    return handler
