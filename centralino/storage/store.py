"""Durable records through SQLAlchemy async: SQLite by default, PostgreSQL in production."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload

from centralino.storage.models import (
    AgentEvent,
    Call,
    CallStep,
    LineOverride,
    Offer,
    QueueLogEntry,
)
from ivr.engine import Step

log = logging.getLogger("centralino.storage")
MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class NewCall:
    id: str
    channel_id: str
    number: str
    line: str
    caller_number: str
    caller_name: str
    config_version: str
    started_at: datetime


class Store:
    def __init__(self, url: str):
        if url.startswith("sqlite"):
            Path(url.split(":///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    async def __aenter__(self) -> Store:
        await self.migrate()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.engine.dispose()

    async def migrate(self) -> None:
        """Bring the schema to the latest migration (idempotent)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    # --- calls ----------------------------------------------------------------------------

    async def start_call(self, new: NewCall) -> None:
        async with self.sessions.begin() as s:
            s.add(Call(**new.__dict__))

    async def answered(self, call_id: str, at: datetime) -> None:
        async with self.sessions.begin() as s:
            await s.execute(update(Call).where(Call.id == call_id).values(answered_at=at))

    async def finish_call(self, call_id: str, steps: Sequence[Step],
                          values: dict[str, object]) -> None:
        """Close a call record: `values` are Call columns (ended_at, outcome, topic, ...)."""
        if isinstance(detail := values.get("detail"), str):
            values = {**values, "detail": detail[:255]}
        async with self.sessions.begin() as s:
            await s.execute(update(Call).where(Call.id == call_id).values(**values))
            s.add_all(
                CallStep(call_id=call_id, seq=i, at=st.at, kind=st.kind, node=st.node,
                         key=st.key, prompt=st.prompt, detail=st.detail[:255])
                for i, st in enumerate(steps)
            )

    async def update_call(self, call_id: str, values: dict[str, object]) -> None:
        async with self.sessions.begin() as s:
            await s.execute(update(Call).where(Call.id == call_id).values(**values))

    async def mark_unfinished(self, outcome: str, at: datetime) -> int:
        """Calls left open by a crash: close them so reports do not count them forever."""
        async with self.sessions.begin() as s:
            result = await s.execute(
                update(Call).where(Call.outcome.is_(None)).values(outcome=outcome, ended_at=at)
            )
            return result.rowcount or 0

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
        query = (select(Call).where(Call.caller_number == caller, Call.started_at < before)
                 .order_by(Call.started_at.desc()).limit(limit))
        async with self.sessions() as s:
            return list((await s.scalars(query)).all())

    # --- agents, offers, queue_log --------------------------------------------------------

    async def add(self, *rows: object) -> None:
        async with self.sessions.begin() as s:
            s.add_all(rows)

    async def update_offer(self, offer_id: str, values: dict[str, object]) -> None:
        async with self.sessions.begin() as s:
            await s.execute(update(Offer).where(Offer.id == offer_id).values(**values))

    async def ack_offer(self, offer_id: str, agent_id: str, at: datetime) -> None:
        """Only the agent the call was offered to can acknowledge it, once."""
        async with self.sessions.begin() as s:
            await s.execute(update(Offer).where(Offer.id == offer_id, Offer.agent_id == agent_id,
                                                Offer.acked_at.is_(None)).values(acked_at=at))

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

    async def waiting_since(self, channel_id: str) -> tuple[str, datetime] | None:
        """(call id, queued_at) of the latest record of a channel that was waiting in a queue:
        a restarted service puts an adopted caller back in their place."""
        query = (select(Call.id, Call.queued_at).where(Call.channel_id == channel_id,
                                                       Call.queued_at.is_not(None))
                 .order_by(Call.started_at.desc()).limit(1))
        async with self.sessions() as s:
            row = (await s.execute(query)).first()
        return (row[0], row[1]) if row else None

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
    async def _clear(s, number: str, by: str, at: datetime) -> int:  # type: ignore[no-untyped-def]
        result = await s.execute(
            update(LineOverride)
            .where(LineOverride.number == number, LineOverride.cleared_at.is_(None))
            .values(cleared_at=at, cleared_by=by)
        )
        return result.rowcount or 0

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


def _upgrade(connection: Connection) -> None:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")
