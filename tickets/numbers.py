"""Ticket numbers citizens can read, say on the phone and quote in a subject: HD-2026-000123.

The prefix names the desk (a supplier runs several), the year restarts the sequence, the six
digits are the year's sequence. `find` reads a number quoted anywhere in a text (a subject
line, "rif. hd 2026/123"), tolerating the case and separators people type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = re.compile(r"^[A-Z]{2,6}$")
_QUOTED = re.compile(r"(?<![A-Za-z0-9])([A-Za-z]{2,6})[\s\-_/.#]*(\d{4})[\s\-_/.#]*(\d{1,9})"
                     r"(?![0-9])")


@dataclass(frozen=True, order=True)
class TicketNumber:
    prefix: str
    year: int
    seq: int

    def __post_init__(self) -> None:
        if not PREFIX.match(self.prefix):
            raise ValueError(f"ticket prefix {self.prefix!r}: 2 to 6 capital letters")
        if not 2000 <= self.year <= 9999 or not 1 <= self.seq <= 999_999_999:
            raise ValueError(f"no ticket {self.prefix}-{self.year}-{self.seq}")

    def __str__(self) -> str:
        return f"{self.prefix}-{self.year}-{self.seq:06d}"


def find(text: str, prefix: str) -> TicketNumber | None:
    """The first number of this desk's (`prefix`) quoted in `text`, however it was typed."""
    for match in _QUOTED.finditer(text):
        if match.group(1).upper() == prefix:
            try:
                return TicketNumber(prefix, int(match.group(2)), int(match.group(3)))
            except ValueError:
                continue
    return None
