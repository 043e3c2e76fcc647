"""A ticket's life: who may do what in which state, and what each step records.

    nuovo ──take──> preso in carico ──wait──> in attesa del cittadino (SLA paused)
      ^                 │    ^  └──resolve──> risolto ──close──> chiuso
      │              escalate│ (citizen writes: back in charge, SLA running again)
      │                 v    │take (a member of the group)
      └──hand back── escalato

A citizen writing to a resolved ticket reopens it; to a ticket closed longer than
`REOPEN_WITHIN` ago, a new ticket linked to the old one is opened instead (`after_citizen`).
Every accepted step returns the event to append to the ticket's history; a refused one raises
TicketError with a reason an operator can read. Pure: the store makes "take" atomic (a
compare-and-set on the owner), this decides whether it is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

REOPEN_WITHIN = timedelta(days=30)  # a reply later than this after closing opens a new ticket
FIRST_LEVEL = "I"


class State(StrEnum):
    NEW = "nuovo"
    IN_CHARGE = "preso in carico"
    WAITING_CITIZEN = "in attesa del cittadino"
    ESCALATED = "escalato"
    RESOLVED = "risolto"
    CLOSED = "chiuso"


OPEN = frozenset({State.NEW, State.IN_CHARGE, State.WAITING_CITIZEN, State.ESCALATED})


class TicketError(ValueError):
    """A step the ticket's state (or the person) does not allow."""


@dataclass(frozen=True)
class Ticket:
    state: State
    level: str  # FIRST_LEVEL, or the second-level group it was escalated to
    owner: str | None  # the agent who has it in charge
    # The current level's first response: the first level's first public answer; a group's
    # taking it in charge. Cleared when the ticket changes level (the new level's clock runs).
    first_response_at: datetime | None = None
    closed_at: datetime | None = None
    # The SLA deadlines (tickets.sla.follow moves them) and since when they are stopped.
    first_response_due: datetime | None = None
    resolution_due: datetime | None = None
    paused_since: datetime | None = None


@dataclass(frozen=True)
class Event:
    """One line of the ticket's append-only history."""

    at: datetime
    by: str  # "agent:1001", "citizen", "system"
    action: str
    state: State  # after the step
    level: str
    owner: str | None
    note: str = ""


def new(at: datetime, by: str = "citizen", level: str = FIRST_LEVEL) -> tuple[Ticket, Event]:
    """A new ticket, unowned: opened by the citizen (the web form, an e-mail) or by an
    operator for them (`by` "agent:1001", during a call) at the first level; or at a
    second-level group (its own mailbox: work the second level delegates), waiting for it."""
    state = State.NEW if level == FIRST_LEVEL else State.ESCALATED
    ticket = Ticket(state, level, None)
    return ticket, Event(at, by, "opened", ticket.state, ticket.level, None)


def take(ticket: Ticket, agent: str, groups: frozenset[str], at: datetime
         ) -> tuple[Ticket, Event]:
    """`agent` takes it in charge. At the first level anyone of the topic may; an escalated
    ticket only a member of its group (`groups`: the agent's second-level groups)."""
    if ticket.state not in (State.NEW, State.ESCALATED):
        raise TicketError(f"cannot take a ticket that is {ticket.state}"
                          + (f" by {ticket.owner}" if ticket.owner else ""))
    if ticket.level != FIRST_LEVEL and ticket.level not in groups:
        raise TicketError(f"escalated to {ticket.level}: only its members take it")
    responded = ticket.first_response_at
    if ticket.level != FIRST_LEVEL and responded is None:
        responded = at  # a group's first response is taking the ticket in charge
    return _step(ticket, at, f"agent:{agent}", "taken", state=State.IN_CHARGE, owner=agent,
                 first_response_at=responded)


def assign(ticket: Ticket, agent: str, groups: frozenset[str], at: datetime
           ) -> tuple[Ticket, Event]:
    """The desk hands the ticket to `agent` (the distributor chose them): as `take`, by the
    system."""
    after, event = take(ticket, agent, groups, at)
    return after, replace(event, by="system", action=f"assigned to {agent}")


def reassign(ticket: Ticket, agent: str, groups: frozenset[str], by: str, at: datetime
             ) -> tuple[Ticket, Event]:
    """A supervisor (`by`) gives an open ticket to `agent` (who must be able to work it at
    its level): an unowned one is in their charge at once; one waiting for the citizen stays
    waiting, now for them."""
    if ticket.state not in OPEN:
        raise TicketError(f"the ticket is {ticket.state}")
    if ticket.level != FIRST_LEVEL and ticket.level not in groups:
        raise TicketError(f"escalated to {ticket.level}: only its members work it")
    if ticket.owner == agent:
        raise TicketError(f"{agent} has it already")
    state = State.IN_CHARGE if ticket.state in (State.NEW, State.ESCALATED) else ticket.state
    responded = ticket.first_response_at
    if ticket.level != FIRST_LEVEL and responded is None:
        responded = at
    return _step(ticket, at, by, f"reassigned to {agent}", state=state, owner=agent,
                 first_response_at=responded)


def release(ticket: Ticket, agent: str, at: datetime, note: str = "") -> tuple[Ticket, Event]:
    """`agent` gives the ticket back to its line unowned (logging out, say): new again at
    the first level, escalated again at a group; its clocks go on."""
    _owned_by(ticket, agent, "give back")
    state = State.NEW if ticket.level == FIRST_LEVEL else State.ESCALATED
    return _step(ticket, at, f"agent:{agent}", "released", state=state, owner=None,
                 note=note.strip())


def reply(ticket: Ticket, agent: str, at: datetime) -> tuple[Ticket, Event]:
    """A public answer to the citizen (the first one stops the first-response clock)."""
    _owned_by(ticket, agent, "answer")
    first = ticket.first_response_at or at
    return _step(ticket, at, f"agent:{agent}", "replied", first_response_at=first)


def note(ticket: Ticket, agent: str, at: datetime) -> tuple[Ticket, Event]:
    """An internal note: operators see it, the citizen does not. Anyone who may see the
    ticket may add one (a colleague leaving a hint), in any state."""
    return _step(ticket, at, f"agent:{agent}", "internal note")


def wait_for_citizen(ticket: Ticket, agent: str, at: datetime, note: str = ""
                     ) -> tuple[Ticket, Event]:
    _owned_by(ticket, agent, "wait for the citizen on")
    if ticket.state is not State.IN_CHARGE:
        raise TicketError(f"the ticket is {ticket.state}")
    return _step(ticket, at, f"agent:{agent}", "waiting for the citizen",
                 state=State.WAITING_CITIZEN, note=note)


def escalate(ticket: Ticket, agent: str, group: str, note: str, known_groups: frozenset[str],
             at: datetime) -> tuple[Ticket, Event]:
    """To a second-level group, with a note saying why (mandatory): the group takes it."""
    _owned_by(ticket, agent, "escalate")
    if group not in known_groups:
        raise TicketError(f"no second-level group {group!r}")
    if group == ticket.level:
        raise TicketError(f"already at {group}")
    if not note.strip():
        raise TicketError("say why it goes to the second level (a note is required)")
    return _step(ticket, at, f"agent:{agent}", f"escalated to {group}",
                 state=State.ESCALATED, level=group, owner=None, first_response_at=None,
                 note=note.strip())


def hand_back(ticket: Ticket, agent: str, note: str, at: datetime) -> tuple[Ticket, Event]:
    """The second level gives it back to the first (with a note), unowned."""
    if ticket.level == FIRST_LEVEL:
        raise TicketError("the ticket is at the first level already")
    if ticket.owner not in (None, agent) or ticket.state not in OPEN:
        raise TicketError(f"the ticket is {ticket.state}"
                          + (f" by {ticket.owner}" if ticket.owner else ""))
    if not note.strip():
        raise TicketError("say what the first level should do (a note is required)")
    return _step(ticket, at, f"agent:{agent}", f"handed back by {ticket.level}",
                 state=State.NEW, level=FIRST_LEVEL, owner=None, first_response_at=None,
                 note=note.strip())


def resolve(ticket: Ticket, agent: str, at: datetime, note: str = "") -> tuple[Ticket, Event]:
    _owned_by(ticket, agent, "resolve")
    return _step(ticket, at, f"agent:{agent}", "resolved", state=State.RESOLVED, note=note)


def close(ticket: Ticket, by: str, at: datetime) -> tuple[Ticket, Event]:
    """Closed for good (by the system some days after resolution, or a supervisor)."""
    if ticket.state is not State.RESOLVED:
        raise TicketError(f"only a resolved ticket closes (this one is {ticket.state})")
    return _step(ticket, at, by, "closed", state=State.CLOSED, closed_at=at)


def after_citizen(ticket: Ticket, at: datetime) -> Literal["thread", "reopen", "new"]:
    """A citizen wrote about this ticket: add to its thread (open), reopen it (resolved, or
    closed recently), or open a new ticket linked to it (closed long ago)."""
    if ticket.state in OPEN:
        return "thread"
    if ticket.state is State.CLOSED and ticket.closed_at and at - ticket.closed_at > REOPEN_WITHIN:
        return "new"
    return "reopen"


def citizen_wrote(ticket: Ticket, at: datetime) -> tuple[Ticket, Event]:
    """The citizen's message, on an open or reopened ticket (see after_citizen): a ticket
    waiting for them is back in charge; a resolved or closed one is open again, with its
    owner if it had one."""
    if after_citizen(ticket, at) == "new":
        raise TicketError("closed long ago: the message opens a new ticket")
    if ticket.state in (State.WAITING_CITIZEN, State.RESOLVED, State.CLOSED):
        state = State.IN_CHARGE if ticket.owner else State.NEW
        action = "citizen replied" if ticket.state is State.WAITING_CITIZEN else "reopened"
        return _step(ticket, at, "citizen", action, state=state, closed_at=None)
    return _step(ticket, at, "citizen", "citizen wrote")


def _owned_by(ticket: Ticket, agent: str, what: str) -> None:
    if ticket.owner != agent:
        who = f"{ticket.owner} has it" if ticket.owner else "nobody has taken it"
        raise TicketError(f"cannot {what} this ticket: {who}")
    if ticket.state not in (State.IN_CHARGE, State.WAITING_CITIZEN):
        raise TicketError(f"the ticket is {ticket.state}")


def _step(ticket: Ticket, at: datetime, by: str, action: str, note: str = "",
          **changes: object) -> tuple[Ticket, Event]:
    after = replace(ticket, **changes)  # type: ignore[arg-type]
    return after, Event(at, by, action, after.state, after.level, after.owner, note)
