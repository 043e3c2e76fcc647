"""What the service records as calls go, as typed writes: the only way records reach the
database (centralino.storage.writer writes them in order, in batches, off the calls' path).

A record is an Insert or an Update of one table's row, plain data (it may wait in memory, or
in the spool file, while the database is away). `Records` is the front the service uses: one
method per thing that happens, so that a call site says what happened, not which columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol

from centralino.storage.models import Base

TABLES = Base.metadata.tables
MAX_TEXT = 255  # the String(255) columns: details, reasons


@dataclass(frozen=True, slots=True)
class Insert:
    table: str
    values: dict[str, Any]

    @property
    def shape(self) -> tuple[Any, ...]:
        return ("insert", self.table, tuple(self.values))


@dataclass(frozen=True, slots=True)
class Update:
    """Set `values` on the row whose primary key is `key`, if its columns `only_if` hold
    (column, value) pairs: None means IS NULL."""

    table: str
    key: Any
    values: dict[str, Any]
    only_if: tuple[tuple[str, Any], ...] = ()

    @property
    def shape(self) -> tuple[Any, ...]:
        conditions = tuple((c, v is None) for c, v in self.only_if)
        return ("update", self.table, tuple(self.values), conditions)


Record = Insert | Update


def runs(records: Iterable[Record]) -> Iterator[list[Record]]:
    """Consecutive records of the same shape (one statement, many rows), in order."""
    run: list[Record] = []
    for record in records:
        if run and record.shape != run[0].shape:
            yield run
            run = []
        run.append(record)
    if run:
        yield run


class Sink(Protocol):
    def put(self, record: Record) -> None: ...


@dataclass(frozen=True)  # no slots: a stop during an outage pickles it in the spool
class NewCall:
    id: str
    channel_id: str
    number: str
    line: str
    caller_number: str
    caller_name: str
    config_version: str
    started_at: datetime
    queue_log_id: str | None = None


class Records:
    """What happened, recorded. Nothing here waits for the database."""

    def __init__(self, sink: Sink):
        self.sink = sink

    # --- calls --------------------------------------------------------------------------------

    def call_started(self, call: NewCall) -> None:
        self.sink.put(Insert("calls", asdict(call)))

    def call_step(self, call_id: str, seq: int, at: datetime, kind: str, node: str,
                  key: str | None, prompt: str | None, detail: str) -> None:
        """What the caller heard or pressed, as it happens: a crash keeps the menu path."""
        self.sink.put(Insert("call_steps", {
            "call_id": call_id, "seq": seq, "at": at, "kind": kind, "node": node, "key": key,
            "prompt": prompt, "detail": detail[:MAX_TEXT]}))

    def call_changed(self, call_id: str, **values: Any) -> None:
        """Columns of the call's record (topic, queued_at, connected_at, outcome, ...)."""
        if isinstance(detail := values.get("detail"), str):
            values["detail"] = detail[:MAX_TEXT]
        self.sink.put(Update("calls", call_id, values))

    # --- queues, offers, agents ---------------------------------------------------------------

    def queue_log(self, at: datetime, call_id: str, queue: str, agent: str, event: str,
                  *data: object) -> None:
        """A line of Asterisk's queue_log (up to five data fields)."""
        fields = {f"data{i}": str(d)[:MAX_TEXT] for i, d in enumerate(data[:5], start=1)}
        self.sink.put(Insert("queue_log", {"at": at, "call_id": call_id, "queue": queue,
                                           "agent": agent, "event": event, **fields}))

    def offer_made(self, offer_id: str, call_id: str, agent_id: str, at: datetime) -> None:
        self.sink.put(Insert("offers", {"id": offer_id, "call_id": call_id,
                                        "agent_id": agent_id, "offered_at": at}))

    def offer_changed(self, offer_id: str, **values: Any) -> None:
        self.sink.put(Update("offers", offer_id, values))

    def offer_seen(self, offer_id: str, agent_id: str, at: datetime) -> None:
        """The console showed the pop: only the agent it was for, and only the first time."""
        self.sink.put(Update("offers", offer_id, {"acked_at": at},
                             only_if=(("agent_id", agent_id), ("acked_at", None))))

    def agent_changed(self, agent_id: str, at: datetime, state: str, reason: str,
                      by: str) -> None:
        self.sink.put(Insert("agent_events", {"agent_id": agent_id, "at": at, "state": state,
                                              "reason": reason[:MAX_TEXT], "by": by}))
