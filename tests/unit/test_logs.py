"""Repeated warnings and errors are logged once per interval, with a count of those left out."""

from __future__ import annotations

import logging

from centralino.logs import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(msg: str, *args: object, level: int = logging.ERROR,
           name: str = "aiohttp.server") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_a_repeated_error_is_logged_once_per_interval_then_with_the_count():
    clock = Clock()
    repeats = RepeatFilter(60, clock)
    passed = []
    for second in range(150):
        clock.now = second
        r = record("refused a connection from %s", f"10.0.0.{second % 7}")
        if repeats.filter(r):
            passed.append(r.getMessage())
    assert passed == [
        "refused a connection from 10.0.0.0",
        ("refused a connection from 10.0.0.4 [59 more like this not logged since the last one, "
         "60 s ago]"),
        ("refused a connection from 10.0.0.1 [59 more like this not logged since the last one, "
         "60 s ago]"),
    ]


def test_different_lines_and_levels_are_separate():
    repeats = RepeatFilter(60, Clock())
    assert repeats.filter(record("database away"))
    assert repeats.filter(record("database away", level=logging.WARNING))
    assert repeats.filter(record("database away", name="centralino"))
    assert repeats.filter(record("something else"))
    assert not repeats.filter(record("database away"))


def test_info_lines_and_a_zero_interval_pass_untouched():
    repeats = RepeatFilter(60, Clock())
    assert all(repeats.filter(record("call %s ended", n, level=logging.INFO)) for n in range(5))
    off = RepeatFilter(0, Clock())
    assert all(off.filter(record("refused")) for _ in range(5))


def test_preformatted_messages_are_grouped_by_their_first_line():
    repeats = RepeatFilter(60, Clock())
    assert repeats.filter(record("socket.accept() out of system resource\nsocket: <fd=6>"))
    assert not repeats.filter(record("socket.accept() out of system resource\nsocket: <fd=7>"))


def test_memory_is_bounded_however_many_kinds_of_line():
    clock = Clock()
    repeats = RepeatFilter(60, clock)
    passed = sum(repeats.filter(record(f"kind {n}")) for n in range(3 * RepeatFilter.MAX_KINDS))
    assert len(repeats._seen) <= RepeatFilter.MAX_KINDS + 1
    assert passed == RepeatFilter.MAX_KINDS + 1  # the rest folded into one line per logger
    clock.now = 61  # an interval later the old kinds are forgotten
    assert repeats.filter(record("a new kind"))
    assert len(repeats._seen) <= 2


def test_lines_an_administrator_caused_are_never_folded():
    from centralino.logs import NEVER_FOLDED

    repeats = RepeatFilter(60, Clock())
    problems = [record("reload refused: %s", f"flows/{n}.yaml:1:1: bad") for n in range(3)]
    for r in problems:
        r.__dict__.update(NEVER_FOLDED)  # what `extra=` does
    assert all(repeats.filter(r) for r in problems)
