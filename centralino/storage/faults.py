"""Why a database operation failed, by cause (the drivers' error codes), not by message text.

Three answers matter to the service:
- the database's state (unreachable, read-only, disk full, no permission, locked, shut down...):
  worth waiting for. The writer keeps records in memory, in order, and tries again; requests
  that need the database answer 503;
- the row's fault (a constraint violated, bad data): it would fail again, drop that row alone;
- a bug (a wrong query, a missing table): it would fail again too, with a traceback to read.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Final

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

UNREACHABLE: Final = "unreachable"  # no connection: down, restarting, network, login refused
REFUSING: Final = "refusing writes"  # connected (or a local file) but writes fail
ROW: Final = "row refused"
BUG: Final = "bug"


@dataclass(frozen=True)
class Fault:
    kind: str  # one of the four above
    reason: str  # short and for people: "read-only", "disk full", "connection refused"...
    detail: str = ""  # the driver's own words and code, for the log

    @property
    def waits(self) -> bool:
        """The database's state, not the row's fault nor a bug: try again later."""
        return self.kind in (UNREACHABLE, REFUSING)

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


# PostgreSQL SQLSTATEs (asyncpg's `sqlstate`): the exact code first, then its class.
_PG_CODES = {
    "25006": (REFUSING, "read-only"),
    "42501": (REFUSING, "permission denied"),
    "53100": (REFUSING, "disk full"),
    "53200": (REFUSING, "out of memory"),
    "53300": (UNREACHABLE, "too many connections"),
    "40001": (REFUSING, "busy (serialization failure)"),
    "40P01": (REFUSING, "busy (deadlock)"),
    "55P03": (REFUSING, "busy (lock not available)"),
    "55006": (REFUSING, "busy (object in use)"),
    "57014": (REFUSING, "statement cancelled"),
    "57P01": (UNREACHABLE, "shut down"),
    "57P02": (UNREACHABLE, "crashed"),
    "57P03": (UNREACHABLE, "starting up"),
    "25P03": (UNREACHABLE, "connection timed out"),
    "3D000": (UNREACHABLE, "no such database"),
}
_PG_CLASSES = {
    "08": (UNREACHABLE, "connection lost"),
    "28": (UNREACHABLE, "login refused"),
    "53": (REFUSING, "out of resources"),
    "57": (UNREACHABLE, "shut down"),
    "58": (REFUSING, "disk I/O error"),
    "XX": (REFUSING, "internal error"),
    "22": (ROW, "bad data"),
    "23": (ROW, "constraint violated"),
}
# SQLite primary result codes (sqlite3's `sqlite_errorcode` & 0xff). SQLite is a local file:
# when it fails, it is reachable but refuses writes.
_SQLITE_CODES = {
    sqlite3.SQLITE_PERM: (REFUSING, "permission denied"),
    sqlite3.SQLITE_AUTH: (REFUSING, "permission denied"),
    sqlite3.SQLITE_BUSY: (REFUSING, "locked by another writer"),
    sqlite3.SQLITE_LOCKED: (REFUSING, "locked by another writer"),
    sqlite3.SQLITE_PROTOCOL: (REFUSING, "locked by another writer"),
    sqlite3.SQLITE_NOMEM: (REFUSING, "out of memory"),
    sqlite3.SQLITE_READONLY: (REFUSING, "read-only"),
    sqlite3.SQLITE_IOERR: (REFUSING, "disk I/O error"),
    sqlite3.SQLITE_CORRUPT: (REFUSING, "corrupt file"),
    sqlite3.SQLITE_NOTADB: (REFUSING, "not a database file"),
    sqlite3.SQLITE_FULL: (REFUSING, "disk full"),
    sqlite3.SQLITE_NOLFS: (REFUSING, "file too large"),
    sqlite3.SQLITE_CANTOPEN: (REFUSING, "cannot open the file or its journal"),
    sqlite3.SQLITE_CONSTRAINT: (ROW, "constraint violated"),
    sqlite3.SQLITE_TOOBIG: (ROW, "bad data"),
    sqlite3.SQLITE_MISMATCH: (ROW, "bad data"),
    sqlite3.SQLITE_RANGE: (ROW, "bad data"),
}


def fault_of(exc: BaseException) -> Fault:
    """What `exc`, raised by a database operation, says about the database (see above).

    Follows SQLAlchemy's wrapping down to the driver's error: asyncpg's `sqlstate`, sqlite3's
    `sqlite_errorcode`, a lost connection (an OSError, a timeout, a connection SQLAlchemy
    invalidated). Anything else is a bug: it is not worth waiting for."""
    seen: BaseException | None = exc
    invalidated = False
    for _ in range(8):  # down the chain of causes (SQLAlchemy wraps the driver's error)
        if seen is None:
            break
        # The driver's code first: SQLAlchemy also drops a connection the database refused
        # writes on (Store), which does not make that database unreachable.
        invalidated |= isinstance(seen, DBAPIError) and seen.connection_invalidated
        if isinstance(code := getattr(seen, "sqlstate", None), str):
            kind, reason = _PG_CODES.get(code) or _PG_CLASSES.get(code[:2], (BUG, "error"))
            return Fault(kind, reason, f"{_words(seen)} ({code})")
        if isinstance(code := getattr(seen, "sqlite_errorcode", None), int):
            kind, reason = _SQLITE_CODES.get(code & 0xFF, (BUG, "error"))
            name = getattr(seen, "sqlite_errorname", code)
            return Fault(kind, reason, f"{_words(seen)} ({name})")
        if isinstance(seen, ConnectionRefusedError):
            return Fault(UNREACHABLE, "connection refused", _words(seen))
        if isinstance(seen, (OSError, TimeoutError)):
            return Fault(UNREACHABLE, "timed out" if isinstance(seen, TimeoutError)
                         else "network error", _words(seen))
        if isinstance(seen, PoolTimeout):  # every connection busy or hanging
            return Fault(UNREACHABLE, "no free connection", _words(seen))
        if isinstance(seen, (sqlite3.IntegrityError, sqlite3.DataError)):
            return Fault(ROW, "bad data", _words(seen))
        seen = getattr(seen, "orig", None) or seen.__cause__
    if invalidated:
        return Fault(UNREACHABLE, "connection lost", _words(exc))
    return Fault(BUG, "error", _words(exc))


def _words(exc: BaseException) -> str:
    """The first line of an error's message (SQLAlchemy appends the statement, and prefixes
    asyncpg's message with its class)."""
    text = str(exc).strip().split("\n", 1)[0]
    if text.startswith("<class '"):
        text = text.partition(">: ")[2]
    return text[:200] or type(exc).__name__
