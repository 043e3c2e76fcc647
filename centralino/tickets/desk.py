"""The written requests' desk in the shell: opens tickets and takes them through their steps.
tickets/ decides (states, SLA, what a request must hold); the store keeps, atomically; this
only joins them with the configuration of the moment and the clock.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from centralino.clock import Timers
from centralino.config import Config
from centralino.desk import Desk
from centralino.storage.models import Ticket, TicketAttachment
from centralino.storage.store import (
    Attachment,
    NewTicket,
    Store,
    ThreadMessage,
    TicketStep,
    rules_view,
)
from centralino.tickets.files import Files
from cti.distributor import Pending, TicketOffer
from cti.messages import TicketAssigned
from ivr.hours import Schedule
from tickets import sla, states
from tickets.config import TicketsConfig
from tickets.requests import Request
from tickets.states import FIRST_LEVEL, State, TicketError

Action = Literal["take", "reply", "note", "wait", "escalate", "hand_back", "resolve",
                 "release"]
ACTIONS: tuple[Action, ...] = ("take", "reply", "note", "wait", "escalate", "hand_back",
                               "resolve", "release")


STATUS_TOKEN = re.compile(r"^[A-Za-z0-9_-]{20,64}$")  # what token_urlsafe(24) gives, and more
Why = Literal["assigned", "reassigned", "escalated", "handed_back"]  # TicketAssigned.why


class NoTickets(LookupError):
    """tickets.yaml is missing: this desk takes no written requests."""


class Busy(RuntimeError):
    """Someone else changed the ticket between reading and writing it: read it again."""


@dataclass(frozen=True)
class Standing:
    """One SLA clock as the console and the board show it."""

    due: datetime
    standing: sla.Standing | Literal["met", "missed", "paused"]
    used: float  # fraction of the target (above 1: breached)
    # Working seconds left to the deadline on the SLA calendar (negative: past it, by that
    # much); None once met or missed.
    remaining: float | None = None


class TicketDesk:
    """Keeps the desk's view of the tickets (which wait for an agent, which each agent has in
    charge: the distributor's backlog and counts) in step with every change it stores."""

    def __init__(self, store: Store, clock: Timers, config: Callable[[], Config], desk: Desk,
                 spawn: Callable[[Coroutine[Any, Any, None]], object], files: Files):
        self.store = store
        self.files = files  # the attachments' bytes
        self.clock = clock
        self._config = config
        self.desk = desk
        self._spawn = spawn
        # An operator's public answer, for the citizen's mailbox (centralino.mail: set when
        # mail.yaml is there).
        self.on_answer: Callable[[Ticket, str], Coroutine[Any, Any, None]] | None = None

    async def load(self) -> None:
        """At start: the tickets waiting for an agent and those each agent has in charge,
        then the distributor hands out what it can."""
        if not self.enabled:
            return
        self.desk.hand_over = self.hand_over
        for row in await self.store.tickets_in_play():
            self._track(row, distribute=False)
        self.desk.distribute()

    # --- what the configuration says ------------------------------------------------------

    @property
    def config(self) -> TicketsConfig:
        tickets = self._config().tickets
        if tickets is None:
            raise NoTickets("this desk takes no written requests (no tickets.yaml)")
        return tickets

    @property
    def enabled(self) -> bool:
        return self._config().tickets is not None

    def _schedule(self) -> Schedule | None:
        name = self.config.hours
        return self._config().call.schedules.get(name) if name else None

    def _targets(self, topic: str) -> sla.Targets:
        config = self.config

        def targets(level: str) -> tuple[sla.Target, sla.Target]:
            if level == FIRST_LEVEL and topic not in config.topics:
                # a topic taken out of tickets.yaml: its tickets keep the first topic's pace
                # rather than lose their deadlines (the reload is not refused for them)
                topic_ = next(iter(config.topics))
            else:
                topic_ = topic
            return (config.target(topic_, level, "first_response"),
                    config.target(topic_, level, "resolution"))
        return targets

    def topics_of(self, agent: str) -> frozenset[str]:
        """The topics whose first-level tickets `agent` works: their lines of agents.yaml
        that take written requests."""
        entry = self._config().agents.agents.get(agent)
        if entry is None:
            return frozenset()
        return frozenset(t for t in entry.topics if t in self.config.topics)

    def groups_of(self, agent: str) -> frozenset[str]:
        return self.config.groups_of(agent)

    def name_of(self, agent: str | None) -> str | None:
        entry = self._config().agents.agents.get(agent) if agent else None
        return entry.name if entry else agent

    def may_see(self, agent: str, ticket: Ticket) -> bool:
        """An agent sees the tickets they have, those of their topics (escalated ones too:
        the first level follows what it handed over), and those of their groups."""
        return (ticket.owner == agent or ticket.topic in self.topics_of(agent)
                or ticket.level in self.groups_of(agent))

    # --- opening ----------------------------------------------------------------------------

    async def open(self, request: Request, channel: str, by: str = "citizen",
                   call_id: str | None = None, message_id: str | None = None,
                   linked_to: str | None = None, attachments: tuple[Attachment, ...] = (),
                   mail_id: int | None = None, level: str = FIRST_LEVEL,
                   mail: ThreadMessage | None = None) -> tuple[Ticket, str]:
        """A new ticket for `request` at `level` (a second-level group's own mailbox opens
        it there), with its deadlines; and the secret of its private status link (shown once
        to the citizen, only its hash is stored). `mail`: what an e-mail carries besides its
        text (the quoted part, the HTML, the attachments refused)."""
        now = self.clock.now()
        opened, _ = states.new(now, by, level)
        timed = sla.start(opened, self._schedule(), now, self._targets(request.topic))
        token = secrets.token_urlsafe(24)
        row = await self.store.create_ticket(NewTicket(
            prefix=self.config.prefix, topic=request.topic, subject=request.subject,
            body=request.body, channel=channel, requester_name=request.name,
            requester_email=request.email, requester_phone=request.phone,
            requester_tax_code=request.tax_code, status_token=token, at=now,
            first_response_due=timed.first_response_due, resolution_due=timed.resolution_due,
            linked_to=linked_to, call_id=call_id, by=by, message_id=message_id,
            attachments=attachments, mail_id=mail_id, level=level,
            quoted=mail.quoted if mail else "", html=mail.html if mail else None,
            refused=mail.refused if mail else ()))
        self._track(row)
        return row, token

    async def by_token(self, token: str) -> Ticket | None:
        """The ticket of a private status link (a token not of their shape: none)."""
        if not STATUS_TOKEN.match(token):
            return None
        return await self.store.ticket_for_status_token(token)

    async def attachment(self, ticket: Ticket, attachment_id: int, public_only: bool
                         ) -> tuple[TicketAttachment, Path] | None:
        """One of the ticket's attachments and its file, if both are there."""
        found = next((a for a in await self.store.ticket_attachments(ticket.id, public_only)
                      if a.id == attachment_id), None)
        if found is None or not (path := self.files.path_of(found.sha256)).exists():
            return None
        return found, path

    # --- an operator's steps ----------------------------------------------------------------

    async def act(self, ticket: Ticket, agent: str, action: Action, text: str = "",
                  group: str | None = None) -> Ticket:
        """`agent` does `action` on `ticket` (read just before). TicketError if the rules
        refuse it (with their reason); Busy if someone else changed it meanwhile."""
        now = self.clock.now()
        config = self.config
        text = text.strip()
        message: ThreadMessage | None = None
        step: TicketStep
        if action == "take":
            groups = self.groups_of(agent)
            if ticket.level == FIRST_LEVEL and ticket.topic not in self.topics_of(agent):
                raise TicketError(f"{ticket.topic} is not one of your topics")
            step = partial(states.take, agent=agent, groups=groups, at=now)
        elif action == "reply":
            _required(text, "write the answer")
            message = ThreadMessage(text)
            step = partial(states.reply, agent=agent, at=now)
        elif action == "note":
            _required(text, "write the note")
            message = ThreadMessage(text, visibility="internal")
            step = partial(states.note, agent=agent, at=now)
        elif action == "wait":
            # usually with the question the citizen is to answer: it goes to them
            message = ThreadMessage(text) if text else None
            step = partial(_replied_then, agent=agent, at=now, text=text,
                           then=states.wait_for_citizen)
        elif action == "escalate":
            step = partial(states.escalate, agent=agent, group=group or "", note=text,
                           known_groups=frozenset(config.groups), at=now)
            message = ThreadMessage(text, visibility="internal") if text else None
        elif action == "hand_back":
            if ticket.level not in self.groups_of(agent) and ticket.owner != agent:
                raise TicketError(f"only a member of {ticket.level} hands it back")
            step = partial(states.hand_back, agent=agent, note=text, at=now)
            message = ThreadMessage(text, visibility="internal") if text else None
        elif action == "release":
            step = partial(states.release, agent=agent, at=now, note=text)
            return await self._apply(ticket, step, None, released_by=agent)
        elif action == "resolve":
            message = ThreadMessage(text) if text else None
            step = partial(_replied_then, agent=agent, at=now, text=text, then=states.resolve)
        else:
            raise TicketError(f"no action {action!r} (one of {', '.join(ACTIONS)})")
        changed = await self._apply(ticket, step, message)
        if self.on_answer is not None and message is not None and (
                message.visibility == "public" and message.direction == "out"):
            await self.on_answer(changed, message.body)
        return changed

    async def citizen_wrote(self, ticket: Ticket, body: str, message_id: str | None = None,
                            mail: ThreadMessage | None = None) -> Ticket:
        """The citizen's message on their ticket: in its thread (reopening it if resolved or
        closed lately), or, to a ticket closed long ago, a new ticket linked to it (returned:
        its status link is the old one's, the citizen already has it)."""
        now = self.clock.now()
        rules = rules_view(ticket)
        if states.after_citizen(rules, now) == "new":
            request = Request(ticket.topic, ticket.subject, body, ticket.requester_name,
                              ticket.requester_email, ticket.requester_phone,
                              ticket.requester_tax_code)
            row, _ = await self.open(request, ticket.channel,
                                     message_id=message_id or (mail.message_id if mail else None),
                                     linked_to=ticket.id,
                                     mail_id=mail.mail_id if mail else None,
                                     attachments=mail.attachments if mail else (), mail=mail)
            return row
        message = mail or ThreadMessage(body, direction="in", message_id=message_id)
        return await self._apply(ticket, lambda t: states.citizen_wrote(t, now), message)

    async def _apply(self, ticket: Ticket, step: TicketStep, message: ThreadMessage | None,
                     released_by: str | None = None) -> Ticket:
        schedule, targets = self._schedule(), self._targets(ticket.topic)

        def timed(before: states.Ticket) -> tuple[states.Ticket, states.Event]:
            after, event = step(before)
            return sla.follow(before, after, event.at, schedule, targets), event

        changed = await self.store.apply_step(ticket.id, timed, message)
        if changed is None:
            raise Busy("the ticket changed meanwhile: look at it again")
        self._track(changed, released_by=released_by)
        self._notify(ticket, changed)
        return changed

    # --- the distributor's view ---------------------------------------------------------------

    def _track(self, row: Ticket, distribute: bool = True, released_by: str | None = None
               ) -> None:
        """The backlog and the agents' counts after `row` changed (or was read at start)."""
        backlog = self.desk.distributor.backlog
        if row.owner is None and row.state in (State.NEW, State.ESCALATED):
            due = (row.first_response_due if row.first_response_at is None
                   else row.resolution_due) or row.created_at
            backlog.put(Pending(due, row.created_at, row.number, row.id, row.topic, row.level,
                                released_by))
        else:
            backlog.drop(row.id)
        in_hand = row.owner if row.state == State.IN_CHARGE else None
        for agent in self.desk.agents.values():
            if agent.id == in_hand:
                agent.tickets.add(row.id)
            elif backlog.reserved.get(row.id) != agent.id:
                agent.tickets.discard(row.id)
        if distribute:
            self.desk.distribute()  # a new ticket to hand out, or an agent with room again

    def hand_over(self, offer: TicketOffer) -> None:
        """The distributor chose an agent for a ticket: store it as theirs, then tell them."""
        self._spawn(self._assign(offer))

    async def _assign(self, offer: TicketOffer) -> None:
        distributor = self.desk.distributor
        row = await self.store.ticket(offer.ticket_id)
        agent = offer.agent_id
        changed = None
        if row is not None:
            now = self.clock.now()
            step = partial(states.assign, agent=agent, groups=self.groups_of(agent), at=now)
            try:
                changed = await self._apply(row, step, None)
            except (TicketError, Busy):  # taken by hand, or moved, meanwhile
                changed = None
        distributor.ticket_done(offer, stored=changed is not None)
        if changed is None:
            if row is not None and (fresh := await self.store.ticket(row.id)) is not None:
                self._track(fresh)
            return
        self._tell([agent], changed, "assigned")

    def _tell(self, agents: Iterable[str], row: Ticket, why: Why) -> None:
        notice = TicketAssigned(
            why=why, number=row.number, topic=row.topic, subject=row.subject,
            requester_name=row.requester_name, level=row.level,
            due=row.first_response_due if row.first_response_at is None
            else row.resolution_due)
        for agent in agents:
            self.desk.tell(agent, notice)

    def _notify(self, before: Ticket | None, after: Ticket) -> None:
        """Who hears of a step: a group of a ticket escalated to it, the first level of a
        ticket handed back, the agent a supervisor gave one to."""
        if before is None or after.level == before.level:
            return
        if after.level == FIRST_LEVEL:
            self._tell([a for a, e in self._config().agents.agents.items()
                        if after.topic in e.topics and a != after.owner], after, "handed_back")
        elif (group := self.config.groups.get(after.level)) is not None:
            self._tell(group.members, after, "escalated")

    async def reassign(self, ticket: Ticket, agent: str, by: str) -> Ticket:
        """A supervisor gives the ticket to `agent` (TicketError if they cannot work it)."""
        if agent not in self._config().agents.agents:
            raise TicketError(f"no agent {agent!r}")
        if ticket.level == FIRST_LEVEL and ticket.topic not in self.topics_of(agent):
            raise TicketError(f"{ticket.topic} is not one of {agent}'s topics")
        step = partial(states.reassign, agent=agent, groups=self.groups_of(agent), by=by,
                       at=self.clock.now())
        changed = await self._apply(ticket, step, None)
        self._tell([agent], changed, "reassigned")
        return changed

    async def release_all(self, agent: str) -> list[str]:
        """Logging out: the agent's tickets in charge go back to their lines (the numbers)."""
        released = []
        for ticket_id in list(self.desk.agents[agent].tickets if agent in self.desk.agents
                              else ()):
            row = await self.store.ticket(ticket_id)
            if row is None or row.owner != agent or row.state != State.IN_CHARGE:
                continue
            try:
                await self.act(row, agent, "release", "uscita dal servizio")
                released.append(row.number)
            except (TicketError, Busy):
                continue  # changed meanwhile: whoever changed it has it
        return released

    async def next_for(self, agent: str) -> Ticket | None:
        """The operator picks the next ticket themselves: the one the distributor would give
        them (their lines', soonest deadline first), taken in charge; None if none waits."""
        agent_ = self.desk.agents.get(agent)
        if agent_ is None:
            return None
        for _ in range(5):  # another agent may take the same one first: then the next
            pending = self.desk.distributor.backlog.first(
                [*self.topics_of(agent), *(f"group:{g}" for g in self.groups_of(agent))])
            if pending is None:
                return None
            row = await self.store.ticket(pending.ticket_id)
            if row is None:
                self.desk.distributor.backlog.drop(pending.ticket_id)
                continue
            try:
                return await self.act(row, agent, "take")
            except (TicketError, Busy):
                if (fresh := await self.store.ticket(row.id)) is not None:
                    self._track(fresh, distribute=False)
        return None

    # --- how it stands ----------------------------------------------------------------------

    def clocks(self, ticket: Ticket) -> dict[str, Standing]:
        """The first-response and resolution clocks of a ticket now."""
        now = self.clock.now()
        schedule = self._schedule()
        first, resolution = self._targets(ticket.topic)(ticket.level)
        out: dict[str, Standing] = {}
        for name, due, target, done in (
                ("first_response", ticket.first_response_due, first, ticket.first_response_at),
                ("resolution", ticket.resolution_due, resolution, ticket.resolved_at)):
            if due is None:
                continue
            clock = sla.Clock(ticket.created_at, due, ticket.sla_paused_since)
            if done is not None:
                used = clock.used(schedule, done, target)
                out[name] = Standing(due, "met" if done <= due else "missed", used)
                continue
            left = clock.left(schedule, now)  # the one count of working time per clock
            used = sla.used_of(left, target)
            standing = ("paused" if ticket.sla_paused_since is not None
                        else sla.judge(used, target)[0])
            out[name] = Standing(due, standing, used, round(left))
        return out


def _required(text: str, what: str) -> None:
    if not text:
        raise TicketError(what)


def _replied_then(ticket: states.Ticket, agent: str, at: datetime, text: str,
                  then: Callable[..., tuple[states.Ticket, states.Event]]
                  ) -> tuple[states.Ticket, states.Event]:
    """A step that may carry a public message: the message counts as an answer (it stops the
    first-response clock) before the step itself."""
    if text:
        ticket, _ = states.reply(ticket, agent, at)
    return then(ticket, agent, at)
