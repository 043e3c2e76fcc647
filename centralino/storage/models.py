"""Tables: call records with their steps, the audit trail of line overrides, recall requests,
tickets with their history and thread."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
    text,
)
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
    # The call id its queue_log lines carry: its own, or that of the first record of the same
    # caller when a restarted service adopted the call (None: rows written before 0007).
    queue_log_id: Mapped[str | None] = mapped_column(String(32))
    # Transferred to a named agent or a second-level group: the agents (comma-separated) the
    # caller waits for, so that a restarted service offers them to these again ('' anybody).
    waiting_for: Mapped[str] = mapped_column(String(255), default="", server_default="")
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
    """A call offered to an agent: when the phone rang, when the screen pop was seen, how it
    went."""

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


# Recall requests (issue #4). A partial unique index keeps one open request per number and
# topic even when two POSTs race; SQLite and PostgreSQL both support it.
OPEN_RECALL = text("status IN ('waiting', 'calling')")


class RecallRequest(Base):
    """A citizen asked the portal to be called: now, or back in a slot (cti/recalls.py)."""

    __tablename__ = "recall_requests"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    number: Mapped[str] = mapped_column(String(16))  # E.164
    number_type: Mapped[str] = mapped_column(String(24))  # fixed_line, mobile, ...
    topic: Mapped[str] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))  # now | back
    slot_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # mode back only
    name: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(String(500), default="")
    portal_ref: Mapped[str | None] = mapped_column(String(128))
    client: Mapped[str] = mapped_column(String(64), index=True)  # the portal client's id
    # waiting | calling | done | failed | cancelled | expired
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When it joins the topic's queue: created_at (now), the slot (back), or the next opening.
    due_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Seconds counted as already waited: a caller who asked in the line keeps their priority.
    boost: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))

    __table_args__ = (
        Index("ix_recall_requests_number_topic_status", "number", "topic", "status"),
        Index("ux_recall_requests_open", "number", "topic", unique=True,
              sqlite_where=OPEN_RECALL, postgresql_where=OPEN_RECALL),
        Index("ix_recall_requests_status_due", "status", "due_at"),  # what is due next
    )


class RecallAttempt(Base):
    """One try at a recall: when, and how it went (answered, no_answer, busy, failed...)."""

    __tablename__ = "recall_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("recall_requests.id", ondelete="CASCADE"),
                                            index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # when it ended
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(String(255), default="")
    agent_id: Mapped[str | None] = mapped_column(String(64))  # who took it, if an agent did
    # When the citizen's phone was dialled (after the agent answered); None if it never was.
    dialled_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


# Tickets (issue #11): the rules are tickets/ (states.py decides, this keeps). `state` holds the
# Italian values of tickets.states.State; `level` is tickets.states.FIRST_LEVEL or a group.
TICKET_STATE = String(32)
# The open states (tickets.states.OPEN): partial indexes cover only these rows, a few thousand
# among years of closed tickets, so the board's and the backlog's queries stay quick.
OPEN_TICKET = text("state IN ('nuovo', 'preso in carico', 'in attesa del cittadino', "
                   "'escalato')")
ESCALATED_TICKET = text("state = 'escalato'")  # waiting for a second-level group


class Ticket(Base):
    """A written request: its number, who asked, where it stands, its SLA deadlines."""

    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid4 hex
    number: Mapped[str] = mapped_column(String(32), unique=True)  # HD-2026-000123
    prefix: Mapped[str] = mapped_column(String(6))
    year: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(Integer)
    topic: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(8))  # web | email | phone
    requester_name: Mapped[str] = mapped_column(String(128))
    requester_email: Mapped[str | None] = mapped_column(String(254))
    requester_phone: Mapped[str | None] = mapped_column(String(32))
    requester_tax_code: Mapped[str | None] = mapped_column(String(16))  # codice fiscale
    level: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(16))  # normal | high
    owner: Mapped[str | None] = mapped_column(String(64))  # the agent who has it in charge
    state: Mapped[str] = mapped_column(TICKET_STATE)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    first_response_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)  # None while open
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    # The SLA clocks (tickets.sla.Clock): deadlines, and since when they are paused.
    first_response_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    resolution_due: Mapped[datetime | None] = mapped_column(UtcDateTime)
    sla_paused_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    linked_to: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"))  # an older ticket
    # The private status link's token, hashed: the database never holds a usable link.
    status_token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    call_id: Mapped[str | None] = mapped_column(String(32))  # opened during this call

    __table_args__ = (
        UniqueConstraint("prefix", "year", "seq", name="uq_tickets_prefix_year_seq"),
        # The inbox: unassigned tickets of a level and topic, soonest deadline first; mine.
        Index("ix_tickets_inbox", "state", "level", "topic", "resolution_due"),
        Index("ix_tickets_owner_state", "owner", "state"),
        Index("ix_tickets_created_at", "created_at"),  # figures' periods, the oldest open
        Index("ix_tickets_requester_phone", "requester_phone", "created_at"),  # screen pops
        Index("ix_tickets_requester_email", func.lower(text("requester_email"))),  # search
        Index("ix_tickets_open_due", "resolution_due", "created_at",
              postgresql_where=OPEN_TICKET, sqlite_where=OPEN_TICKET),
        Index("ix_tickets_open_topic", "topic", "level", "resolution_due",
              postgresql_where=OPEN_TICKET, sqlite_where=OPEN_TICKET),
        Index("ix_tickets_open_age", "created_at",
              postgresql_where=OPEN_TICKET, sqlite_where=OPEN_TICKET),
        Index("ix_tickets_open_owner", "owner", "resolution_due", "created_at",
              postgresql_where=OPEN_TICKET, sqlite_where=OPEN_TICKET),  # an agent's own
        Index("ix_tickets_escalated", "level", "resolution_due", "created_at",
              postgresql_where=ESCALATED_TICKET, sqlite_where=ESCALATED_TICKET),
    )


class TicketEvent(Base):
    """One line of a ticket's append-only history (tickets.states.Event)."""

    __tablename__ = "ticket_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    by: Mapped[str] = mapped_column(String(64))  # agent:1001, citizen, system
    action: Mapped[str] = mapped_column(String(128))
    state: Mapped[str] = mapped_column(TICKET_STATE)  # after the step
    level: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_ticket_events_ticket_id", "ticket_id", "id"),)


class TicketMessage(Base):
    """The thread: the citizen's messages, the answers, the operators' internal notes."""

    __tablename__ = "ticket_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    direction: Mapped[str] = mapped_column(String(3))  # in (from the citizen) | out
    visibility: Mapped[str] = mapped_column(String(8))  # public | internal
    author: Mapped[str] = mapped_column(String(128))  # citizen, agent:1001
    body: Mapped[str] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(255))  # e-mail Message-ID
    in_reply_to: Mapped[str | None] = mapped_column(String(255))
    # An e-mail's: the earlier messages it quoted (folded in the console), its HTML made safe
    # (mail.content.sanitise), and its attachments refused, one reason a line.
    quoted: Mapped[str] = mapped_column(Text, default="", server_default="")
    html: Mapped[str | None] = mapped_column(Text)
    refused: Mapped[str] = mapped_column(Text, default="", server_default="")

    __table_args__ = (Index("ix_ticket_messages_ticket_id", "ticket_id", "id"),)


class TicketAttachment(Base):
    """A file sent with a message; its bytes are outside the database, named by sha256 (the
    same file sent twice is kept once)."""

    __tablename__ = "ticket_attachments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id", ondelete="CASCADE"))
    message_id: Mapped[int] = mapped_column(ForeignKey("ticket_messages.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    filename: Mapped[str] = mapped_column(String(128))
    content_type: Mapped[str] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))

    __table_args__ = (Index("ix_ticket_attachments_ticket_id", "ticket_id", "id"),)


class TicketSequence(Base):
    """The last number given for a prefix and year: numbers without gaps, even when many
    tickets are opened at once (the row is locked until the ticket is stored)."""

    __tablename__ = "ticket_sequences"
    prefix: Mapped[str] = mapped_column(String(6), primary_key=True)
    year: Mapped[int] = mapped_column(Integer, primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class MailMessage(Base):
    """A message fetched from one of the desk's mailboxes (issue #12), stored as it came before
    anything is done on the server: the row is the proof it was taken, and the work to do.

    Exactly once: (mailbox, uidvalidity, uid) names it on its server; `dedupe` (its
    Message-ID, or the sha256 of its bytes when it has none) catches the same message fetched
    again under new UIDs (a UIDVALIDITY change, a copy put back)."""

    __tablename__ = "mail_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mailbox: Mapped[str] = mapped_column(String(64))
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    uid: Mapped[int] = mapped_column(BigInteger)
    dedupe: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(255))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    fetched_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # stored (to do) | done (its ticket has it) | ignored (noise kept: a receipt, an
    # auto-reply of no ticket) | quarantined (unreadable: `reason` says why) | reviewed (a
    # quarantined one a supervisor looked at: who and when below)
    status: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str | None] = mapped_column(String(16))  # mail.kinds.Kind, once read
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"))
    reason: Mapped[str] = mapped_column(Text, default="")
    reviewed_by: Mapped[str | None] = mapped_column(String(128))
    reviewed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (
        UniqueConstraint("mailbox", "uidvalidity", "uid", name="uq_mail_messages_uid"),
        UniqueConstraint("mailbox", "dedupe", name="uq_mail_messages_dedupe"),
        Index("ix_mail_messages_status", "status", "id"),
        Index("ix_mail_messages_message_id", "message_id"),
        Index("ix_mail_messages_fetched_at", "mailbox", "fetched_at"),
    )


class MailOut(Base):
    """A message the desk sends (issue #12): written here first, in the same transaction as
    what it answers, then sent. Sent once: a message whose sending was cut without an answer
    from the server (the service stopped) is `uncertain`, shown on its ticket, never resent
    on its own."""

    __tablename__ = "mail_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id"))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # acknowledgement | reply | confirmation
    sender: Mapped[str] = mapped_column(String(254))
    recipient: Mapped[str] = mapped_column(String(254))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # pending -> sending -> sent | failed (refused for good) | uncertain (cut mid-way)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UtcDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_at"),
                      Index("ix_mail_outbox_recipient", "recipient", "kind", "created_at"))


class BouncedAddress(Base):
    """An address our mail did not reach (a delivery report said so), shown on its tickets;
    gone when that address writes to us again (issue #12)."""

    __tablename__ = "bounced_addresses"
    address: Mapped[str] = mapped_column(String(254), primary_key=True)  # lower case
    at: Mapped[datetime] = mapped_column(UtcDateTime)  # the latest report's arrival
    reason: Mapped[str] = mapped_column(Text)  # the server's words
    ticket_id: Mapped[str | None] = mapped_column(ForeignKey("tickets.id", ondelete="SET NULL"))
