"""Durable records through SQLAlchemy async: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, cast

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    LargeBinary,
    Row,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, CursorResult, Engine, ExceptionContext, Result, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session as OrmSession
from sqlalchemy.orm import selectinload

from centralino.storage import records
from centralino.storage.faults import REFUSING, UNREACHABLE, Fault, fault_of
from centralino.storage.models import (
    ESCALATED_TICKET,
    OPEN_TICKET,
    AgentEvent,
    BouncedAddress,
    Call,
    LineOverride,
    MailMessage,
    MailOut,
    Offer,
    QueueLogEntry,
    RecallAttempt,
    RecallRequest,
    Ticket,
    TicketAttachment,
    TicketEvent,
    TicketMessage,
    TicketSequence,
)
from ivr.clock import LOCAL
from tickets import states
from tickets.numbers import TicketNumber
from tickets.states import State

log = logging.getLogger("centralino.storage")
MIGRATIONS = Path(__file__).parent / "migrations"
AnyRow = Row[*tuple[Any, ...]]  # a row of any columns (Row[Any] is a row of one)


class DatabaseError(Exception):
    """The database could not be opened at start: says which one and why."""


NewCall = records.NewCall  # where earlier versions kept it (spool files name it so)


class Store:
    def __init__(self, url: str):
        if url.startswith("sqlite"):
            Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=not url.startswith("sqlite"))
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        event.listen(self.engine.sync_engine, "handle_error", _drop_read_only)
        # SQLite: the records' batches run whole in one thread of ours on a plain connection.
        # Through aiosqlite every statement is a round trip to its thread and back; that cost
        # a quarter of the service's CPU per call (bench fullflow: 21 -> 14 ms).
        self._records_engine: Engine | None = None
        if url.startswith("sqlite"):
            self._records_engine = create_engine(make_url(url).set(drivername="sqlite"))
            event.listen(self._records_engine, "handle_error", _drop_read_only)

    async def __aenter__(self) -> Self:
        try:
            await self.migrate()
            await self._check_writes()
        except Exception as exc:
            await self.engine.dispose()
            where = self.engine.url.render_as_string(hide_password=True)
            fault = fault_of(exc)
            raise DatabaseError(f"cannot open the database {where} ({_hint(fault)}): "
                                f"{fault}") from exc
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.dispose()
        if self._records_engine is not None:
            self._records_engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the latest migration (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def _check_writes(self) -> None:
        """A write, rolled back: a database that would refuse the records (a read-only file,
        a role without privileges) is said at start, not found out call by call."""
        async with self.engine.connect() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            await conn.rollback()

    # --- records (centralino.storage.records, written by the Writer) -----------------------

    async def write(self, batch: Sequence[records.Record]) -> None:
        """Records in one transaction, in order; consecutive ones of the same shape as one
        statement with many rows (SQLAlchemy Core: no ORM objects to build)."""
        if self._records_engine is not None:
            await asyncio.to_thread(self._write_in_thread, self._records_engine, batch)
            return
        async with self.engine.begin() as conn:
            for run in records.runs(batch):
                await conn.execute(*_statement(run))

    @staticmethod
    def _write_in_thread(engine: Engine, batch: Sequence[records.Record]) -> None:
        with engine.begin() as conn:
            for run in records.runs(batch):
                conn.execute(*_statement(run))

    # --- calls ----------------------------------------------------------------------------

    async def mark_unfinished(self, outcome: str, at: datetime) -> int:
        """Calls left open by a crash: close them so reports do not count them forever."""
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(Call).where(Call.outcome.is_(None)).values(outcome=outcome, ended_at=at)
            )
            return _rowcount(result)

    async def get_call(self, call_id: str) -> Call | None:
        async with self.sessions() as s:
            return await s.get(Call, call_id, options=[selectinload(Call.steps)])

    async def find_calls(self, *, channel_id: str | None = None, number: str | None = None,
                         caller: str | None = None, limit: int = 50) -> list[Call]:
        query = select(Call).options(selectinload(Call.steps)).order_by(Call.started_at.desc())
        if channel_id:
            query = query.where(Call.channel_id == channel_id)
        if number:
            query = query.where(Call.number == number)
        if caller:
            query = query.where(Call.caller_number == caller)
        async with self.sessions() as s:
            return list((await s.scalars(query.limit(limit))).all())

    async def previous_contacts(self, caller: str, before: datetime, limit: int = 5) -> list[Call]:
        """Earlier calls from the same number, newest first (for the agent's screen pop)."""
        if not caller:
            return []
        params = {"caller": caller, "before": before, "limit": limit}
        if self._records_engine is not None:  # SQLite: one trip to a thread (see __init__)
            return await asyncio.to_thread(self._previous_contacts_in_thread,
                                           self._records_engine, params)
        async with self.sessions() as s:
            return list((await s.scalars(_PREVIOUS_CONTACTS, params)).all())

    async def previous_tickets(self, phone: str | None, limit: int = 5,
                               call_id: str | None = None) -> list[Ticket]:
        """The tickets of this phone number (E.164), and those opened during the call
        `call_id`, newest first (for the screen pop)."""
        which = [*([Ticket.requester_phone == phone] if phone else []),
                 *([Ticket.call_id == call_id] if call_id else [])]
        if not which:
            return []
        query = (select(Ticket).where(or_(*which))
                 .order_by(Ticket.created_at.desc()).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    @staticmethod
    def _previous_contacts_in_thread(engine: Engine, params: dict[str, Any]) -> list[Call]:
        with OrmSession(engine, expire_on_commit=False) as s:
            return list(s.scalars(_PREVIOUS_CONTACTS, params).all())

    # --- agents, offers, queue_log --------------------------------------------------------

    async def last_agent_states(self) -> dict[str, AgentEvent]:
        """Each agent's latest state change (to restore logins and pauses after a restart)."""
        latest = (select(AgentEvent.agent_id, func.max(AgentEvent.id).label("id"))
                  .group_by(AgentEvent.agent_id).subquery())
        query = select(AgentEvent).join(latest, AgentEvent.id == latest.c.id)
        async with self.sessions() as s:
            return {e.agent_id: e for e in (await s.scalars(query)).all()}

    async def agent_events(self, agent_id: str, limit: int = 100) -> list[AgentEvent]:
        query = (select(AgentEvent).where(AgentEvent.agent_id == agent_id)
                 .order_by(AgentEvent.id.desc()).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def offers_for(self, call_id: str) -> list[Offer]:
        query = select(Offer).where(Offer.call_id == call_id).order_by(Offer.offered_at)
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def queue_log(self, since: datetime | None = None, until: datetime | None = None,
                        call_id: str | None = None) -> list[QueueLogEntry]:
        query = select(QueueLogEntry).order_by(QueueLogEntry.at, QueueLogEntry.id)
        if since:
            query = query.where(QueueLogEntry.at >= since)
        if until:
            query = query.where(QueueLogEntry.at < until)
        if call_id:
            query = query.where(QueueLogEntry.call_id == call_id)
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def waiting_since(self, channel_id: str) -> tuple[str, datetime, frozenset[str]] | None:
        """(queue_log id, queued_at, the agents they wait for if a transfer named them) of the
        latest record of a channel that was waiting in a queue: a restarted service puts an
        adopted caller back in their place, and goes on writing their queue_log lines under
        the id of the first ones."""
        query = (select(Call.queue_log_id, Call.id, Call.queued_at, Call.waiting_for)
                 .where(Call.channel_id == channel_id, Call.queued_at.is_not(None))
                 .order_by(Call.started_at.desc()).limit(1))
        async with self.sessions() as s:
            row = (await s.execute(query)).first()
        if row is None:
            return None
        log_id, call_id, queued_at, waiting_for = row
        assert queued_at is not None  # the query takes only rows that have it
        return log_id or call_id, queued_at, frozenset(filter(None, waiting_for.split(",")))

    # --- line overrides -------------------------------------------------------------------

    async def set_override(self, number: str, state: str, until: datetime, reason: str,
                           by: str, at: datetime) -> LineOverride:
        async with self.sessions.begin() as s:
            await self._clear(s, number, by, at)
            row = LineOverride(number=number, state=state, until=until, reason=reason,
                               set_by=by, set_at=at)
            s.add(row)
        return row

    async def clear_override(self, number: str, by: str, at: datetime) -> int:
        async with self.sessions.begin() as s:
            return await self._clear(s, number, by, at)

    @staticmethod
    async def _clear(s: AsyncSession, number: str, by: str, at: datetime) -> int:
        result = await s.execute(
            update(LineOverride)
            .where(LineOverride.number == number, LineOverride.cleared_at.is_(None))
            .values(cleared_at=at, cleared_by=by)
        )
        return _rowcount(result)

    async def active_overrides(self, at: datetime) -> list[LineOverride]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(LineOverride).where(LineOverride.cleared_at.is_(None),
                                           LineOverride.until > at)
            )
            return list(rows.all())

    async def override_history(self, number: str, limit: int = 50) -> list[LineOverride]:
        async with self.sessions() as s:
            rows = await s.scalars(
                select(LineOverride).where(LineOverride.number == number)
                .order_by(LineOverride.set_at.desc(), LineOverride.id.desc()).limit(limit)
            )
            return list(rows.all())

    # --- figures and the queue_log export (issue #3) ----------------------------------------

    async def figures_rows(self, since: datetime, until: datetime) -> list[AnyRow]:
        """Every queue_log event of the calls that entered a queue (or were refused one) in
        [since, until), whenever it happened, with the call's line, number and announced
        wait: a call that entered before `until` and was answered after it still counts."""
        entered = (select(QueueLogEntry.call_id)
                   .where(QueueLogEntry.at >= since, QueueLogEntry.at < until,
                          QueueLogEntry.event.in_(("ENTERQUEUE", "FULL", "JOINEMPTY",
                                                    "JOINUNAVAIL"))))
        query = (select(QueueLogEntry.at, QueueLogEntry.call_id, QueueLogEntry.queue,
                        QueueLogEntry.agent, QueueLogEntry.event, Call.line, Call.number,
                        Call.announced_wait, QueueLogEntry.data1, QueueLogEntry.data2)
                 .outerjoin(Call, Call.id == QueueLogEntry.call_id)
                 .where(QueueLogEntry.call_id.in_(entered))
                 .order_by(QueueLogEntry.at, QueueLogEntry.id))
        rows: list[AnyRow] = []
        async with self.sessions() as s:
            # In parts: a day of a busy help desk is thousands of rows, and converting them
            # all at once would hold up the event loop (and the calls) for tens of ms.
            async for part in (await s.stream(query)).partitions(500):
                rows.extend(part)
        return rows

    async def agent_changes(self, since: datetime, until: datetime) -> list[AnyRow]:
        """(agent_id, at, state) in [since, until), in order per agent (wrap-up times)."""
        query = (select(AgentEvent.agent_id, AgentEvent.at, AgentEvent.state)
                 .where(AgentEvent.at >= since, AgentEvent.at < until)
                 .order_by(AgentEvent.agent_id, AgentEvent.at, AgentEvent.id))
        rows: list[AnyRow] = []
        async with self.sessions() as s:
            async for part in (await s.stream(query)).partitions(500):  # as figures_rows
                rows.extend(part)
        return rows

    async def queue_log_batches(self, since: datetime, until: datetime, size: int = 2000
                                ) -> AsyncIterator[list[AnyRow]]:
        """queue_log rows in [since, until), oldest first, `size` at a time. Keyset pages:
        no transaction stays open while the caller sends a page somewhere slow."""
        cols = (QueueLogEntry.id, QueueLogEntry.at, QueueLogEntry.call_id, QueueLogEntry.queue,
                QueueLogEntry.agent, QueueLogEntry.event, QueueLogEntry.data1,
                QueueLogEntry.data2, QueueLogEntry.data3, QueueLogEntry.data4,
                QueueLogEntry.data5)
        after: tuple[datetime, int] | None = None
        while True:
            query = (select(*cols).where(QueueLogEntry.at >= since, QueueLogEntry.at < until)
                     .order_by(QueueLogEntry.at, QueueLogEntry.id).limit(size))
            if after is not None:
                query = query.where(or_(QueueLogEntry.at > after[0],
                                        and_(QueueLogEntry.at == after[0],
                                             QueueLogEntry.id > after[1])))
            async with self.sessions() as s:
                rows = list((await s.execute(query)).all())
            if rows:
                yield rows
            if len(rows) < size:
                return
            after = (rows[-1].at, rows[-1].id)

    # --- recall requests (issue #4) ---------------------------------------------------------

    async def create_recall(self, row: RecallRequest) -> tuple[RecallRequest, bool]:
        """Insert and commit a new request: (row, True). If an open one exists for the same
        number and topic (the partial unique index decides, even between racing inserts):
        (that one, False)."""
        try:
            async with self.sessions.begin() as s:
                s.add(row)
            return row, True
        except IntegrityError:
            existing = await self.open_recall(row.number, row.topic)
            if existing is None:  # not the open-request index: a real problem
                raise
            return existing, False

    async def open_recall(self, number: str, topic: str) -> RecallRequest | None:
        query = select(RecallRequest).where(RecallRequest.number == number,
                                            RecallRequest.topic == topic,
                                            RecallRequest.status.in_(("waiting", "calling")))
        async with self.sessions() as s:
            return (await s.scalars(query.limit(1))).first()

    async def get_recall(self, recall_id: str) -> RecallRequest | None:
        async with self.sessions() as s:
            return await s.get(RecallRequest, recall_id)

    async def recalls_since(self, number: str, since: datetime) -> tuple[int, datetime | None]:
        """How many requests a number made since `since`, and the oldest one's time."""
        query = (select(func.count(), func.min(RecallRequest.created_at))
                 .where(RecallRequest.number == number, RecallRequest.created_at >= since))
        async with self.sessions() as s:
            count, oldest = (await s.execute(query)).one()
        if oldest is not None and oldest.tzinfo is None:  # func.min loses the column's type
            oldest = oldest.replace(tzinfo=UTC)
        return count, oldest

    async def set_recall_status(self, recall_id: str, status: str, at: datetime,
                                only_from: Sequence[str]) -> RecallRequest | None:
        """Move a request to `status` if it is in one of `only_from` (atomic: the dialler and
        a cancelling portal cannot both win); the updated row, or None if it was not."""
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(RecallRequest)
                .where(RecallRequest.id == recall_id, RecallRequest.status.in_(only_from))
                .values(status=status, updated_at=at))
            if not _rowcount(result):
                return None
        return await self.get_recall(recall_id)

    async def find_recalls(self, *, status: str | None = None, topic: str | None = None,
                           client: str | None = None, limit: int = 100) -> list[RecallRequest]:
        query = select(RecallRequest).order_by(RecallRequest.created_at.desc(),
                                               RecallRequest.id)
        if status:
            query = query.where(RecallRequest.status == status)
        if topic:
            query = query.where(RecallRequest.topic == topic)
        if client:
            query = query.where(RecallRequest.client == client)
        async with self.sessions() as s:
            return list((await s.scalars(query.limit(limit))).all())

    async def due_recalls(self, until: datetime) -> list[RecallRequest]:
        """Waiting requests due by `until`, oldest due first (they join their queues)."""
        query = (select(RecallRequest).where(RecallRequest.status == "waiting",
                                             RecallRequest.due_at <= until)
                 .order_by(RecallRequest.due_at, RecallRequest.id))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def next_recall_due(self, after: datetime) -> datetime | None:
        query = select(func.min(RecallRequest.due_at)).where(RecallRequest.status == "waiting",
                                                            RecallRequest.due_at > after)
        async with self.sessions() as s:
            due = (await s.execute(query)).scalar()
        if due is not None and due.tzinfo is None:  # func.min loses the column's type
            due = due.replace(tzinfo=UTC)
        return due

    async def advance_recall(self, recall_id: str, due_at: datetime, at: datetime
                             ) -> RecallRequest | None:
        """A waiting request due later moved up to `due_at`; the row, or None if it was not
        waiting (any more) or already due by then."""
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(RecallRequest)
                .where(RecallRequest.id == recall_id, RecallRequest.status == "waiting",
                       RecallRequest.due_at > due_at)
                .values(due_at=due_at, updated_at=at))
            if not _rowcount(result):
                return None
        return await self.get_recall(recall_id)

    async def expire_recalls(self, due_before: datetime, at: datetime) -> list[str]:
        """Waiting requests due before `due_before` (nobody reached them in time): expired.
        Their ids."""
        async with self.sessions.begin() as s:
            return list((await s.scalars(
                update(RecallRequest)
                .where(RecallRequest.status == "waiting", RecallRequest.due_at < due_before)
                .values(status="expired", updated_at=at)
                .returning(RecallRequest.id))).all())

    async def release_calling(self, at: datetime) -> int:
        """Requests left `calling` by a stopped service: waiting again, at their place (due_at
        unchanged). Run at start, before anything is dialled."""
        async with self.sessions.begin() as s:
            result = await s.execute(update(RecallRequest)
                                     .where(RecallRequest.status == "calling")
                                     .values(status="waiting", updated_at=at))
            return _rowcount(result)

    async def end_recall_attempt(self, attempt: RecallAttempt, status: str,
                                 due_at: datetime | None, counted: bool) -> bool:
        """Store an attempt and move its request (still `calling`) to `status` in one
        transaction; `counted` attempts (the citizen was dialled) add to `attempts`. False if
        the request was not calling any more (nothing changed)."""
        values: dict[str, object] = {"status": status, "updated_at": attempt.at}
        if due_at is not None:
            values["due_at"] = due_at
        if counted:
            values["attempts"] = RecallRequest.attempts + 1
        async with self.sessions.begin() as s:
            result = await s.execute(update(RecallRequest)
                                     .where(RecallRequest.id == attempt.request_id,
                                            RecallRequest.status == "calling").values(**values))
            if not _rowcount(result):
                return False
            s.add(attempt)
        return True

    async def mark_recall(self, attempt: RecallAttempt, mark: str, by: str, status: str,
                          due_at: datetime | None, at: datetime) -> bool:
        """An agent's verdict on an answered attempt, in one transaction: the attempt's outcome
        becomes `mark` (the detail says who said so) and its request moves from done to
        `status`. False if either changed meanwhile. Reopening a request while the citizen
        has another open one for the topic raises IntegrityError (nothing changed)."""
        values: dict[str, object] = {"status": status, "updated_at": at}
        if due_at is not None:
            values["due_at"] = due_at
        detail = f"{attempt.detail} (marked {mark} by {by})".strip()[:255]
        try:
            async with self.sessions.begin() as s:
                moved = await s.execute(update(RecallRequest)
                                        .where(RecallRequest.id == attempt.request_id,
                                               RecallRequest.status == "done").values(**values))
                marked = await s.execute(update(RecallAttempt)
                                         .where(RecallAttempt.id == attempt.id,
                                                RecallAttempt.outcome == "answered")
                                         .values(outcome=mark, detail=detail))
                if not (_rowcount(moved) and _rowcount(marked)):
                    raise _Unchanged  # rolls the transaction back
        except _Unchanged:
            return False
        return True

    async def recall_figures_rows(self, since: datetime, until: datetime, topic: str | None = None
                                  ) -> tuple[list[Any], list[Any]]:
        """Requests created in [since, until) (of `topic`) and all their attempts, as rows of
        the columns centralino.figures.compute needs."""
        requests = (select(RecallRequest.id, RecallRequest.topic, RecallRequest.mode,
                           RecallRequest.status, RecallRequest.created_at,
                           RecallRequest.slot_at, RecallRequest.attempts)
                    .where(RecallRequest.created_at >= since, RecallRequest.created_at < until))
        if topic is not None:
            requests = requests.where(RecallRequest.topic == topic)
        attempts = (select(RecallAttempt.request_id, RecallAttempt.at, RecallAttempt.outcome,
                           RecallAttempt.dialled_at)
                    .where(RecallAttempt.request_id.in_(
                        requests.with_only_columns(RecallRequest.id))))
        async with self.sessions() as s:
            return (list((await s.execute(requests)).all()),
                    list((await s.execute(attempts)).all()))

    async def recall_attempts(self, recall_id: str) -> list[RecallAttempt]:
        query = (select(RecallAttempt).where(RecallAttempt.request_id == recall_id)
                 .order_by(RecallAttempt.at, RecallAttempt.id))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    # --- tickets (issue #11): tickets/ decides, these keep ----------------------------------

    async def create_ticket(self, new: NewTicket) -> Ticket:
        """Number and store a new ticket with its first message and its "opened" event, in
        one transaction. The number is the next of its prefix and of the year of `new.at` at
        the office (Europe/Rome): the sequence's row stays locked until the ticket is stored,
        so numbers neither repeat nor skip however many tickets are opened at once."""
        year = new.at.astimezone(LOCAL).year
        TicketNumber(new.prefix, year, 1)  # a prefix it cannot print: refused before writing
        if new.channel not in CHANNELS:
            raise ValueError(f"ticket channel {new.channel!r}: one of {', '.join(CHANNELS)}")
        rule, opened = states.new(new.at, new.by, new.level)
        ticket_id = uuid.uuid4().hex
        async with self.sessions.begin() as s:
            seq = (await s.execute(self._next_seq,
                                   {"prefix": new.prefix, "year": year})).scalar_one()
            row = Ticket(
                id=ticket_id, number=str(TicketNumber(new.prefix, year, seq)),
                prefix=new.prefix, year=year, seq=seq, topic=new.topic, subject=new.subject,
                channel=new.channel, requester_name=new.requester_name,
                requester_email=new.requester_email, requester_phone=new.requester_phone,
                requester_tax_code=new.requester_tax_code, level=rule.level,
                priority=new.priority, owner=rule.owner,
                state=rule.state.value, created_at=new.at, updated_at=new.at,
                first_response_due=new.first_response_due, resolution_due=new.resolution_due,
                linked_to=new.linked_to, status_token_sha256=status_token_sha256(new.status_token),
                call_id=new.call_id)
            s.add(row)
            await s.flush()  # the ticket before the rows that refer to it
            first = TicketMessage(ticket_id=ticket_id, at=new.at, direction="in",
                                  visibility="public", author=new.by, body=new.body,
                                  message_id=new.message_id, in_reply_to=None,
                                  quoted=new.quoted, html=new.html,
                                  refused="\n".join(new.refused))
            s.add(first)
            s.add(_event_row(ticket_id, opened))
            if new.attachments:
                await s.flush()  # the message's id, for its attachments
                s.add_all(_attachment_rows(ticket_id, first.id, new.at, new.attachments))
            if new.mail_id is not None:  # done with the e-mail in the same transaction
                await s.flush()
                await s.execute(update(MailMessage).where(MailMessage.id == new.mail_id)
                                .values(status="done", kind="person", ticket_id=ticket_id))
        return row

    @functools.cached_property
    def _next_seq(self) -> Any:
        """INSERT ... ON CONFLICT DO UPDATE SET last = last + 1 RETURNING last: the next
        number of a prefix and year in one statement, the row locked until commit (both
        PostgreSQL and SQLite >= 3.35 have it)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(TicketSequence).values(
            prefix=bindparam("prefix"), year=bindparam("year"), last=1)
        return (statement.on_conflict_do_update(index_elements=["prefix", "year"],
                                                set_={"last": TicketSequence.last + 1})
                .returning(TicketSequence.last))

    async def take_ticket(self, ticket_id: str, agent: str, groups: Collection[str],
                          at: datetime) -> Ticket | None:
        """`agent` (member of `groups`, the second-level ones) takes the ticket in charge:
        see apply_step. Of several agents taking it at once exactly one has it; the others
        get None, or TicketError if they read it already taken."""
        return await self.apply_step(
            ticket_id, lambda ticket: states.take(ticket, agent, frozenset(groups), at))

    async def apply_step(self, ticket_id: str, step: TicketStep,
                         message: ThreadMessage | None = None) -> Ticket | None:
        """One of tickets.states' steps on a stored ticket, as a compare-and-set. The step
        decides on the ticket as read (it raises TicketError if it refuses); its change and
        its event are written in one transaction only if the state, level and owner are still
        the ones it saw. None: no such ticket, or another step changed it first (read it
        again). The deadlines are written as the step leaves them (tickets.sla.follow moves
        them). `message` (a reply, a note, the citizen's words) joins the thread in the same
        transaction: stored if and only if the step is."""
        row = await self.ticket(ticket_id)
        if row is None:
            return None
        before = rules_view(row)
        after, event = step(before)
        values: dict[str, object] = {
            "state": after.state.value, "level": after.level, "owner": after.owner,
            "first_response_at": after.first_response_at, "closed_at": after.closed_at,
            "first_response_due": after.first_response_due,
            "resolution_due": after.resolution_due, "sla_paused_since": after.paused_since,
            "updated_at": event.at}
        if after.state is State.RESOLVED and before.state is not State.RESOLVED:
            values["resolved_at"] = event.at
        elif after.state in states.OPEN:
            values["resolved_at"] = None
        still = Ticket.owner.is_(None) if before.owner is None else Ticket.owner == before.owner
        async with self.sessions.begin() as s:
            changed = (await s.scalars(
                update(Ticket)
                .where(Ticket.id == row.id, Ticket.state == before.state.value,
                       Ticket.level == before.level, still)
                .values(values).returning(Ticket),
                execution_options={"synchronize_session": False})).first()
            if changed is None:
                return None
            s.add(_event_row(row.id, event))
            if message is not None:
                added = TicketMessage(ticket_id=row.id, at=event.at,
                                      direction=message.direction,
                                      visibility=message.visibility, author=event.by,
                                      body=message.body, message_id=message.message_id,
                                      in_reply_to=message.in_reply_to, quoted=message.quoted,
                                      html=message.html, refused="\n".join(message.refused))
                s.add(added)
                if message.attachments:
                    await s.flush()
                    s.add_all(_attachment_rows(row.id, added.id, event.at,
                                               message.attachments))
                if message.mail_id is not None:  # done with the e-mail in the same transaction
                    await s.execute(update(MailMessage).where(MailMessage.id == message.mail_id)
                                    .values(status="done", kind=message.mail_kind,
                                            ticket_id=row.id))
        return changed

    async def ticket_attachments(self, ticket_id: str, public_only: bool = False
                                 ) -> list[TicketAttachment]:
        """A ticket's attachments in order; `public_only`: those of public messages (what
        the citizen may see)."""
        query = (select(TicketAttachment).where(TicketAttachment.ticket_id == ticket_id)
                 .order_by(TicketAttachment.id))
        if public_only:
            query = query.join(TicketMessage, TicketMessage.id == TicketAttachment.message_id
                               ).where(TicketMessage.visibility == "public")
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def ticket(self, number_or_id: str) -> Ticket | None:
        """A ticket by its number (HD-2026-000123) or its id."""
        query = select(Ticket).where(or_(Ticket.id == number_or_id,
                                         Ticket.number == number_or_id))
        async with self.sessions() as s:
            return (await s.scalars(query)).first()

    async def ticket_for_status_token(self, token: str) -> Ticket | None:
        """The ticket the citizen's private status link is for (only its hash is stored)."""
        query = select(Ticket).where(Ticket.status_token_sha256 == status_token_sha256(token))
        async with self.sessions() as s:
            return (await s.scalars(query)).first()

    async def ticket_events(self, ticket_id: str) -> list[TicketEvent]:
        """The ticket's history, oldest first."""
        query = select(TicketEvent).where(TicketEvent.ticket_id == ticket_id).order_by(
            TicketEvent.id)
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def ticket_messages(self, ticket_id: str, public_only: bool = False
                              ) -> list[TicketMessage]:
        """The ticket's thread, oldest first; `public_only`: without the internal notes (what
        the citizen sees)."""
        query = select(TicketMessage).where(TicketMessage.ticket_id == ticket_id).order_by(
            TicketMessage.id)
        if public_only:
            query = query.where(TicketMessage.visibility == "public")
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def add_ticket_message(self, ticket_id: str, at: datetime, direction: str,
                                 visibility: str, author: str, body: str,
                                 message_id: str | None = None, in_reply_to: str | None = None
                                 ) -> TicketMessage | None:
        """A message added to the thread (the ticket's updated_at moves with it); None if
        there is no such ticket. The steps it may imply (a reply, the citizen writing) are the
        caller's, through apply_step."""
        if direction not in ("in", "out") or visibility not in ("public", "internal"):
            raise ValueError(f"a message goes in or out, public or internal: not "
                             f"{direction!r}, {visibility!r}")
        async with self.sessions.begin() as s:
            touched = await s.execute(update(Ticket).where(Ticket.id == ticket_id)
                                      .values(updated_at=at))
            if not _rowcount(touched):
                return None
            message = TicketMessage(ticket_id=ticket_id, at=at, direction=direction,
                                    visibility=visibility, author=author, body=body,
                                    message_id=message_id, in_reply_to=in_reply_to)
            s.add(message)
        return message

    async def inbox(self, agent: str, topics: Collection[str], groups: Collection[str],
                    limit: int = 100) -> list[Ticket]:
        """An operator's tickets: first the open ones they have in charge, then those nobody
        has that they may take (new ones of their topics at the first level, escalated ones
        of their groups); each part by resolution deadline (none: last), then age.

        One query per line, each walking its index in deadline order and stopping at
        `limit`, merged here: with tens of thousands waiting, one query over them all would
        sort them all to keep a hundred."""
        order = (Ticket.resolution_due.asc().nulls_last(), Ticket.created_at, Ticket.id)
        mine = (select(Ticket).where(Ticket.owner == agent, OPEN_TICKET)
                .order_by(*order).limit(limit))
        lines = [select(Ticket).where(Ticket.state == State.NEW.value,
                                      Ticket.level == states.FIRST_LEVEL, Ticket.topic == topic)
                 for topic in sorted(topics)]
        lines += [select(Ticket).where(ESCALATED_TICKET, Ticket.level == group)
                  for group in sorted(groups)]
        async with self.sessions() as s:
            own = list((await s.scalars(mine)).all())
            free: list[Ticket] = []
            room = limit - len(own)
            for line in lines if room > 0 else ():
                free += (await s.scalars(line.where(Ticket.owner.is_(None))
                                         .order_by(*order).limit(room))).all()
        far = datetime.max.replace(tzinfo=UTC)
        free.sort(key=lambda t: (t.resolution_due or far, t.created_at, t.id))
        return (own + free)[:limit]

    async def ticket_figures_rows(self, since: datetime, until: datetime) -> list[Any]:
        """The tickets opened in [since, until), with their first public answer and their
        escalations and hand-backs (tickets.figures.TicketRow's fields, in order)."""
        first_answer = (select(func.min(TicketMessage.at))
                        .where(TicketMessage.ticket_id == Ticket.id,
                               TicketMessage.direction == "out",
                               TicketMessage.visibility == "public")
                        .scalar_subquery())

        def steps(prefix: str) -> Any:
            return (select(func.count()).select_from(TicketEvent)
                    .where(TicketEvent.ticket_id == Ticket.id,
                           TicketEvent.action.startswith(prefix)).scalar_subquery())

        query = (select(Ticket.number, Ticket.topic, Ticket.level, Ticket.channel, Ticket.state,
                        Ticket.created_at, first_answer, Ticket.resolved_at,
                        Ticket.first_response_due, Ticket.resolution_due,
                        steps("escalated to "), steps("handed back by "))
                 .where(Ticket.created_at >= since, Ticket.created_at < until))
        async with self.sessions() as s:
            return list((await s.execute(query)).all())

    async def ticket_charge_intervals(self, since: datetime, until: datetime, now: datetime
                                      ) -> list[tuple[str, datetime, datetime]]:
        """(agent, from, to) of every stretch a ticket was in an agent's charge that ended
        in [since, until), and of those going on now (to `now`): from the history, each
        step against the one before it (LAG, in PostgreSQL and SQLite alike)."""
        touched = (select(TicketEvent.ticket_id)
                   .where(TicketEvent.at >= since, TicketEvent.at < until).distinct())
        def before(column: Any) -> Any:
            # (lag is not one of SQLAlchemy's typed functions: the column's type is given, so
            # that SQLite's text comes back as datetimes)
            return func.lag(column, type_=column.type).over(partition_by=TicketEvent.ticket_id,
                                                            order_by=TicketEvent.id)

        steps = (select(TicketEvent.at, before(TicketEvent.at).label("prev_at"),
                        before(TicketEvent.state).label("prev_state"),
                        before(TicketEvent.owner).label("prev_owner"))
                 .where(TicketEvent.ticket_id.in_(touched)).subquery())
        ended = (select(steps.c.prev_owner, steps.c.prev_at, steps.c.at)
                 .where(steps.c.at >= since, steps.c.at < until,
                        steps.c.prev_state == State.IN_CHARGE.value,
                        steps.c.prev_owner.is_not(None)))
        last = (select(TicketEvent.ticket_id,
                       func.max(TicketEvent.at, type_=TicketEvent.at.type).label("at"))
                .group_by(TicketEvent.ticket_id).subquery())
        going_on = (select(Ticket.owner, last.c.at)
                    .join(last, last.c.ticket_id == Ticket.id)
                    .where(Ticket.state == State.IN_CHARGE.value, Ticket.owner.is_not(None)))
        async with self.sessions() as s:
            done = [(o, a, b) for o, a, b in (await s.execute(ended)).all()]
            now_ = [(o, a, now) for o, a in (await s.execute(going_on)).all()]
        return done + now_

    async def ticket_backlog(self, now: datetime) -> dict[str, Any]:
        """The open tickets now: per topic and level, the oldest, and how many are past their
        resolution deadline (aggregated by the database: quick with years of tickets)."""
        open_ = OPEN_TICKET
        per = (select(Ticket.topic, Ticket.level, func.count()).where(open_)
               .group_by(Ticket.topic, Ticket.level).order_by(Ticket.topic, Ticket.level))
        oldest = (select(Ticket.number, Ticket.topic, Ticket.level, Ticket.created_at)
                  .where(open_).order_by(Ticket.created_at, Ticket.id).limit(1))
        late = select(func.count()).where(open_, Ticket.resolution_due < now)
        async with self.sessions() as s:
            groups = (await s.execute(per)).all()
            first = (await s.execute(oldest)).first()
            past = (await s.execute(late)).scalar_one()
        return {
            "open": sum(n for _, _, n in groups),
            "by_topic_level": [{"topic": t, "level": lv, "open": n} for t, lv, n in groups],
            "oldest": None if first is None else {
                "number": first.number, "topic": first.topic, "level": first.level,
                "age_seconds": round((now - first.created_at).total_seconds())},
            "past_deadline": past,
        }

    # --- e-mail (issue #12): stored before anything is done on the server ----------------------

    async def store_mail(self, mailbox: str, uidvalidity: int, uid: int, dedupe: str,
                         message_id: str | None, raw: bytes, at: datetime) -> bool:
        """Keep a fetched message (committed when this returns). False: it was kept already,
        under these UIDs or, fetched again under others, by its Message-ID or bytes."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(MailMessage).values(
            mailbox=mailbox, uidvalidity=uidvalidity, uid=uid, dedupe=dedupe,
            message_id=message_id, raw=raw, fetched_at=at, status="stored", reason=""
        ).on_conflict_do_nothing()
        async with self.sessions.begin() as s:
            return bool(_rowcount(await s.execute(statement)))

    async def stored_uids(self, mailbox: str, uidvalidity: int, uids: Collection[int]
                          ) -> set[int]:
        query = select(MailMessage.uid).where(MailMessage.mailbox == mailbox,
                                              MailMessage.uidvalidity == uidvalidity,
                                              MailMessage.uid.in_(list(uids)))
        async with self.sessions() as s:
            return set((await s.scalars(query)).all())

    async def mail_to_process(self, limit: int = 50) -> list[MailMessage]:
        query = (select(MailMessage).where(MailMessage.status == "stored")
                 .order_by(MailMessage.id).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def mail_done(self, mail_id: int, status: str, kind: str | None,
                        ticket_id: str | None = None, reason: str = "") -> None:
        async with self.sessions.begin() as s:
            await s.execute(update(MailMessage).where(MailMessage.id == mail_id).values(
                status=status, kind=kind, ticket_id=ticket_id, reason=reason))

    async def ticket_of_message_ids(self, ids: Sequence[str]) -> str | None:
        """The number of the ticket whose thread holds the first of these Message-IDs."""
        if not ids:
            return None
        query = (select(TicketMessage.message_id, Ticket.number)
                 .join(Ticket, Ticket.id == TicketMessage.ticket_id)
                 .where(TicketMessage.message_id.in_(list(ids))))
        async with self.sessions() as s:
            found: dict[str | None, str] = dict((await s.execute(query)).all())
        return next((found[i] for i in ids if i in found), None)

    async def queue_mail(self, **values: Any) -> bool:
        """Write a message to send (before it is sent: MailOut's fields). False: one with its
        Message-ID is there already."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(MailOut).values(
            status="pending", attempts=0, error="", **values).on_conflict_do_nothing()
        async with self.sessions.begin() as s:
            return bool(_rowcount(await s.execute(statement)))

    async def mail_sent_to(self, recipient: str, kind: str, since: datetime) -> int:
        query = select(func.count()).where(MailOut.recipient == recipient,
                                           MailOut.kind == kind, MailOut.created_at >= since)
        async with self.sessions() as s:
            return int((await s.execute(query)).scalar_one())

    async def mail_due(self, now: datetime, limit: int = 20) -> list[MailOut]:
        query = (select(MailOut).where(MailOut.status == "pending", MailOut.next_at <= now)
                 .order_by(MailOut.next_at, MailOut.id).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def mail_sending(self, out_id: int, from_status: str, to_status: str,
                           **values: Any) -> bool:
        """Move a message from one status to the next (compare-and-set): the sender claims it
        (pending -> sending) before it talks to the server."""
        async with self.sessions.begin() as s:
            changed = await s.execute(update(MailOut).where(MailOut.id == out_id,
                                                            MailOut.status == from_status)
                                      .values(status=to_status, **values))
            return bool(_rowcount(changed))

    async def mail_cut_short(self) -> int:
        """At start: messages left `sending` by a stopped service may or may not have gone:
        `uncertain`, for a person to look at, never sent again on their own."""
        async with self.sessions.begin() as s:
            changed = await s.execute(update(MailOut).where(MailOut.status == "sending")
                                      .values(status="uncertain",
                                              error="the service stopped while sending"))
            return _rowcount(changed)

    async def outbox_of(self, ticket_id: str) -> list[MailOut]:
        query = select(MailOut).where(MailOut.ticket_id == ticket_id).order_by(MailOut.id)
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def tickets_in_play(self) -> list[Ticket]:
        """What the distributor needs at start: the tickets nobody has that wait for an agent,
        and those agents have in charge (not the closed past: the indexes on state and owner
        keep this quick however many tickets the years piled up)."""
        query = select(Ticket).where(or_(
            and_(Ticket.owner.is_(None),
                 Ticket.state.in_((State.NEW.value, State.ESCALATED.value))),
            and_(Ticket.owner.is_not(None), Ticket.state == State.IN_CHARGE.value)))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def open_tickets(self, limit: int = 100) -> list[Ticket]:
        """Every open ticket, soonest resolution deadline first (the supervisors' view)."""
        query = (select(Ticket).where(OPEN_TICKET)
                 .order_by(Ticket.resolution_due.asc().nulls_last(), Ticket.created_at,
                           Ticket.id).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    async def tickets_of_requester(self, who: str, limit: int = 100) -> list[Ticket]:
        """A citizen's tickets, by e-mail address or phone number (E.164), newest first,
        open or not (a supervisor looking for somebody's requests)."""
        query = (select(Ticket).where(or_(func.lower(Ticket.requester_email) == who.lower(),
                                          Ticket.requester_phone == who))
                 .order_by(Ticket.created_at.desc(), Ticket.id).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    # --- addresses our mail bounced from (issue #12) ----------------------------------------

    async def flag_bounced(self, address: str, at: datetime, reason: str,
                           ticket_id: str | None) -> None:
        """A delivery report said our mail did not reach `address`: flagged (the latest
        report's when and why kept)."""
        dialect = postgresql if self.engine.dialect.name == "postgresql" else sqlite
        values = {"at": at, "reason": reason, "ticket_id": ticket_id}
        statement = dialect.insert(BouncedAddress).values(address=address.lower(), **values)
        async with self.sessions.begin() as s:
            await s.execute(statement.on_conflict_do_update(index_elements=["address"],
                                                            set_=values))

    async def clear_bounced(self, address: str) -> bool:
        """The address wrote to us again: no longer flagged. False: it was not."""
        async with self.sessions.begin() as s:
            gone = await s.execute(delete(BouncedAddress).where(
                BouncedAddress.address == address.lower()))
            return bool(_rowcount(gone))

    async def bounced(self, address: str) -> BouncedAddress | None:
        async with self.sessions() as s:
            return await s.get(BouncedAddress, address.lower())

    # --- the supervisors' view of the mailboxes (centralino/mail/http.py) ---------------------

    async def mailbox_counts(self, since: datetime) -> dict[str, dict[str, Any]]:
        """Per mailbox: messages stored since `since` and in all, and the last one's arrival
        (one grouped query, read by the unique index that starts with the mailbox)."""
        query = (select(MailMessage.mailbox, func.count(),
                        func.count().filter(MailMessage.fetched_at >= since),
                        func.max(MailMessage.fetched_at))
                 .group_by(MailMessage.mailbox))
        async with self.sessions() as s:
            rows = (await s.execute(query)).all()
        return {box: {"total": total, "today": today, "last_at": last}
                for box, total, today, last in rows}

    async def mail_gauges(self) -> dict[str, Any]:
        """What /metrics says of the mail, each by the status index, never over every message
        or every message sent: the quarantined nobody looked at and the oldest waiting to be
        taken in, per mailbox; the outbox by status (but `sent`)."""
        quarantined = (select(MailMessage.mailbox, func.count())
                       .where(MailMessage.status == "quarantined")
                       .group_by(MailMessage.mailbox))
        waiting = (select(MailMessage.mailbox, func.min(MailMessage.fetched_at))
                   .where(MailMessage.status == "stored").group_by(MailMessage.mailbox))
        outbox = (select(MailOut.status, MailOut.sender, func.count())
                  .where(MailOut.status.in_(("pending", "sending", "failed", "uncertain")))
                  .group_by(MailOut.status, MailOut.sender))
        async with self.sessions() as s:
            return {"quarantined": {r[0]: r[1] for r in (await s.execute(quarantined)).all()},
                    "oldest_stored": {r[0]: r[1] for r in (await s.execute(waiting)).all()},
                    "outbox": [tuple(r) for r in (await s.execute(outbox)).all()]}

    async def quarantined_mail(self, mailbox: str | None = None, limit: int = 200
                               ) -> list[AnyRow]:
        """The quarantined messages nobody has looked at yet, newest first: id, mailbox,
        fetched_at, reason and `head` (their first 16 KB, enough for From and Subject)."""
        head = func.substr(MailMessage.raw, 1, 16384, type_=LargeBinary).label("head")
        query = (select(MailMessage.id, MailMessage.mailbox, MailMessage.fetched_at,
                        MailMessage.reason, head)
                 .where(MailMessage.status == "quarantined")
                 .order_by(MailMessage.id.desc()).limit(limit))
        if mailbox is not None:
            query = query.where(MailMessage.mailbox == mailbox)
        async with self.sessions() as s:
            return list((await s.execute(query)).all())

    async def stored_mail(self, mail_id: int) -> MailMessage | None:
        async with self.sessions() as s:
            return await s.get(MailMessage, mail_id)

    async def mail_reviewed(self, mail_id: int, by: str, at: datetime) -> bool:
        """A supervisor looked at a quarantined message: off the list, kept with who and
        when. False: it is not (or no longer) quarantined."""
        async with self.sessions.begin() as s:
            changed = await s.execute(
                update(MailMessage).where(MailMessage.id == mail_id,
                                          MailMessage.status == "quarantined")
                .values(status="reviewed", reviewed_by=by, reviewed_at=at))
            return bool(_rowcount(changed))

    async def mail_not_sent(self, senders: Collection[str] | None = None, limit: int = 200
                            ) -> list[AnyRow]:
        """The messages refused for good or cut mid-way (failed, uncertain), newest first,
        with their ticket's number (no raw bytes)."""
        query = (select(MailOut.id, MailOut.ticket_id, Ticket.number, MailOut.kind,
                        MailOut.sender, MailOut.recipient, MailOut.status, MailOut.attempts,
                        MailOut.error, MailOut.created_at)
                 .outerjoin(Ticket, Ticket.id == MailOut.ticket_id)
                 .where(MailOut.status.in_(("failed", "uncertain")))
                 .order_by(MailOut.id.desc()).limit(limit))
        if senders is not None:
            query = query.where(MailOut.sender.in_(list(senders)))
        async with self.sessions() as s:
            return list((await s.execute(query)).all())

    async def mail_out(self, out_id: int) -> MailOut | None:
        async with self.sessions() as s:
            return await s.get(MailOut, out_id)


def _rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE matched: Session.execute is typed as giving a Result, which for an
    UPDATE is a CursorResult."""
    return cast(CursorResult[Any], result).rowcount or 0


def _hint(fault: Fault) -> str:
    """What to check when the database cannot be opened at start."""
    if fault.kind == REFUSING:
        return "it refuses writes: check free space, the file's permissions or the role's rights"
    if fault.kind == UNREACHABLE and fault.reason not in ("login refused", "no such database"):
        return "is it running and reachable?"
    return "check database.url: user, password, database name"


def _drop_read_only(context: ExceptionContext) -> None:
    """A connection opened while the database was read-only stays so once it is writable
    again (SQLite opened the file read-only; PostgreSQL keeps the role's setting, or was a
    standby): the pool drops its connections, the next try opens new ones."""
    if fault_of(context.original_exception).reason == "read-only":
        context.is_disconnect = True


# --- tickets ------------------------------------------------------------------------------

CHANNELS = ("web", "email", "phone")
TicketStep = Callable[[states.Ticket], tuple[states.Ticket, states.Event]]


@dataclass(frozen=True)
class NewTicket:
    """What a new ticket is opened with (Store.create_ticket gives it its number)."""

    prefix: str  # the desk's, tickets.numbers.PREFIX
    topic: str
    subject: str
    body: str  # the first message of the thread
    channel: str  # web | email | phone
    requester_name: str
    status_token: str  # the private status link's secret (stored hashed)
    at: datetime
    requester_email: str | None = None
    requester_phone: str | None = None
    requester_tax_code: str | None = None
    priority: str = "normal"
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    linked_to: str | None = None  # the older ticket a late reply reopens as this one
    call_id: str | None = None  # opened by an operator during this call
    by: str = "citizen"  # or "agent:1001" (on the phone): the history and the thread say so
    message_id: str | None = None  # the e-mail that opened it
    attachments: tuple[Attachment, ...] = ()  # of the first message, their files stored
    mail_id: int | None = None  # the stored e-mail it comes from: marked done with it
    level: str = states.FIRST_LEVEL  # a second-level group's mailbox opens it there
    quoted: str = ""  # an e-mail's: the earlier messages it quoted
    html: str | None = None  # an e-mail's HTML, made safe (mail.content.sanitise)
    refused: tuple[str, ...] = ()  # the attachments not kept, and why


@dataclass(frozen=True)
class Attachment:
    """A file already kept (centralino.tickets.files), to be listed with its message."""

    filename: str
    content_type: str
    size: int
    sha256: str


def _attachment_rows(ticket_id: str, message_id: int, at: datetime,
                     files: Sequence[Attachment]) -> list[TicketAttachment]:
    return [TicketAttachment(ticket_id=ticket_id, message_id=message_id, at=at,
                             filename=f.filename, content_type=f.content_type, size=f.size,
                             sha256=f.sha256) for f in files]


@dataclass(frozen=True)
class ThreadMessage:
    """A message that comes with a step (Store.apply_step): its author is the step's."""

    body: str
    direction: str = "out"  # in: from the citizen
    visibility: str = "public"  # internal: the operators' notes
    message_id: str | None = None
    in_reply_to: str | None = None
    attachments: tuple[Attachment, ...] = ()
    mail_id: int | None = None  # the stored e-mail it comes from: marked done with it
    mail_kind: str = "person"
    quoted: str = ""  # as NewTicket's
    html: str | None = None
    refused: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.direction not in ("in", "out") or self.visibility not in ("public", "internal"):
            raise ValueError(f"a message goes in or out, public or internal: not "
                             f"{self.direction!r}, {self.visibility!r}")


def status_token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def rules_view(row: Ticket) -> states.Ticket:
    """The stored ticket as tickets.states sees it."""
    return states.Ticket(State(row.state), row.level, row.owner, row.first_response_at,
                         row.closed_at, row.first_response_due, row.resolution_due,
                         row.sla_paused_since)


def _event_row(ticket_id: str, event: states.Event) -> TicketEvent:
    return TicketEvent(ticket_id=ticket_id, at=event.at, by=event.by, action=event.action,
                       state=event.state.value, level=event.level, owner=event.owner,
                       note=event.note)


# Built once (one is run for every agent's phone that rings).
_PREVIOUS_CONTACTS = (select(Call).where(Call.caller_number == bindparam("caller"),
                                         Call.started_at < bindparam("before"))
                      .order_by(Call.started_at.desc()).limit(bindparam("limit")))


class _Unchanged(Exception):
    """Leave a transaction without changing anything."""


def _statement(run: list[records.Record]) -> tuple[Any, list[dict[str, Any]]]:
    """One statement for a run of records of one shape, and its rows' parameters."""
    first = run[0]
    if isinstance(first, records.Insert):
        return _insert(first.table), [r.values for r in run]
    conditions = tuple((col, value is None) for col, value in first.only_if)
    statement = _update(first.table, tuple(first.values), conditions)
    rows = [{**r.values, "_key": r.key,  # type: ignore[union-attr]
             **{f"_if_{c}": v for c, v in r.only_if if v is not None}}  # type: ignore[union-attr]
            for r in run]
    return statement, rows


# A statement per shape, built once: the same object is also what SQLAlchemy's compiled cache
# knows at once (building it again for every batch cost more than running it on SQLite).
@functools.cache
def _insert(table: str) -> Any:
    return insert(records.TABLES[table])


@functools.cache
def _update(table_name: str, columns: tuple[str, ...],
            conditions: tuple[tuple[str, bool], ...]) -> Any:
    table = records.TABLES[table_name]
    (key,) = table.primary_key.columns
    where = [key == bindparam("_key")]
    where += [table.c[col].is_(None) if is_null else table.c[col] == bindparam(f"_if_{col}")
              for col, is_null in conditions]
    return update(table).where(*where).values({col: bindparam(col) for col in columns})


def _upgrade(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
