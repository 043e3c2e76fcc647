"""Tables: call records with their steps, and the audit trail of line overrides."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no zone: we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: centralino stores aware UTC times only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    pass


class Call(Base):
    """One inbound call: who called which line, and how it ended."""

    __tablename__ = "calls"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(128), index=True)
    number: Mapped[str] = mapped_column(String(32))  # the number dialled
    line: Mapped[str] = mapped_column(String(128))  # its flow's name
    caller_number: Mapped[str] = mapped_column(String(64), index=True)
    caller_name: Mapped[str] = mapped_column(String(128), default="")
    config_version: Mapped[str] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # None while in progress; then queued/abandoned/caller_hangup/goodbye/closed/lost/failed/...
    outcome: Mapped[str | None] = mapped_column(String(24))
    topic: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(255), default="")
    queued_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # joined the topic's queue
    connected_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # an agent answered
    agent_id: Mapped[str | None] = mapped_column(String(64), index=True)
    # The first estimated wait announced to the caller (seconds), to measure the estimate's error.
    announced_wait: Mapped[int | None] = mapped_column(Integer)
    steps: Mapped[list[CallStep]] = relationship(
        back_populates="call", order_by="CallStep.seq", cascade="all, delete-orphan"
    )

    __table_args__ = (Index("ix_calls_number_started", "number", "started_at"),)


class CallStep(Base):
    """What the caller heard and pressed, in order (see ivr.engine.Step)."""

    __tablename__ = "call_steps"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    kind: Mapped[str] = mapped_column(String(16))
    node: Mapped[str] = mapped_column(String(64), default="")
    key: Mapped[str | None] = mapped_column(String(1))
    prompt: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(String(255), default="")
    call: Mapped[Call] = relationship(back_populates="steps")


class LineOverride(Base):
    """An operator forced a line open or closed until `until`. Rows are never deleted: clearing
    one sets cleared_at, so the table is also the log of who did what."""

    __tablename__ = "line_overrides"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    number: Mapped[str] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(8))  # open | closed
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(255))
    set_by: Mapped[str] = mapped_column(String(64))
    set_at: Mapped[datetime] = mapped_column(UtcDateTime)
    cleared_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    cleared_by: Mapped[str | None] = mapped_column(String(64))


class AgentEvent(Base):
    """Every change of an agent's state: who, when, why, asked by whom."""

    __tablename__ = "agent_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    state: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(255), default="")
    by: Mapped[str] = mapped_column(String(64), default="")


class Offer(Base):
    """A call offered to an agent: when the phone rang, when the screen pop was seen, how it went."""

    __tablename__ = "offers"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # also the agent leg's tag
    call_id: Mapped[str] = mapped_column(String(32), index=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    offered_at: Mapped[datetime] = mapped_column(UtcDateTime)
    acked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # the console showed the pop
    answered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # answered | no_answer | refused | failed | cancelled (the caller left)
    outcome: Mapped[str | None] = mapped_column(String(16))


class QueueLogEntry(Base):
    """Asterisk queue_log lines (ENTERQUEUE, CONNECT, ABANDON, ...) for existing report tools."""

    __tablename__ = "queue_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    call_id: Mapped[str] = mapped_column(String(32), index=True)
    queue: Mapped[str] = mapped_column(String(64))
    agent: Mapped[str] = mapped_column(String(64), default="NONE")
    event: Mapped[str] = mapped_column(String(32))
    data1: Mapped[str] = mapped_column(String(255), default="")
    data2: Mapped[str] = mapped_column(String(255), default="")
    data3: Mapped[str] = mapped_column(String(255), default="")
    data4: Mapped[str] = mapped_column(String(255), default="")
    data5: Mapped[str] = mapped_column(String(255), default="")
