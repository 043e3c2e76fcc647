"""Agents and their states.

    logged_out -> available <-> paused
    available -> ringing -> on_call -> wrap_up -> available
                 ringing -> available (missed; paused after `max_missed` in a row)

A pause or logout asked for while ringing, on a call or in wrap-up waits for the call to end:
the agent finishes the call, then is paused (or logged out) instead of getting the next one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class AgentState(StrEnum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


BUSY = (AgentState.RINGING, AgentState.ON_CALL, AgentState.WRAP_UP)


class AgentStateError(ValueError):
    """A change that makes no sense now (resume when not paused, say)."""


@dataclass(frozen=True)
class Change:
    """One state change, as stored and streamed to supervisors."""

    agent_id: str
    at: datetime
    state: AgentState
    reason: str = ""
    by: str = ""  # the agent, a supervisor, or "system"


@dataclass(eq=False)
class Agent:
    id: str
    name: str
    device: str  # what Asterisk dials: PJSIP/1001, Local/1001@centralino-agents
    topics: dict[str, int]  # topic -> penalty: lower penalties get calls first
    state: AgentState = AgentState.LOGGED_OUT
    since: datetime | None = None
    idle_since: datetime | None = None  # when they became available: longest idle goes first
    reason: str = ""  # why paused
    missed: int = 0  # offers missed in a row
    call_id: str | None = None  # the call being offered or talked to
    after_call: tuple[AgentState, str, str] | None = None  # pause/logout asked during a call
    takes_calls: bool = True  # capacity.calls of agents.yaml
    ticket_capacity: int = 0  # capacity.tickets: how many in charge at once
    groups: frozenset[str] = frozenset()  # the second-level groups they belong to
    # The tickets they have in charge (and those being handed to them): the distributor's count.
    tickets: set[str] = field(default_factory=set)

    def _set(self, state: AgentState, at: datetime, reason: str = "", by: str = "") -> Change:
        self.state, self.since, self.reason = state, at, reason
        if state is AgentState.AVAILABLE:
            self.idle_since = at
        return Change(self.id, at, state, reason, by)

    # --- what agents and supervisors ask ---------------------------------------------------

    def login(self, at: datetime, by: str) -> Change | None:
        if self.state is not AgentState.LOGGED_OUT:
            return None  # already in: nothing to change
        self.missed = 0  # "in a row" does not reach across a logout
        return self._set(AgentState.AVAILABLE, at, by=by)

    def logout(self, at: datetime, by: str) -> Change | None:
        if self.state in BUSY:
            self.after_call = (AgentState.LOGGED_OUT, "", by)
            return None
        if self.state is AgentState.LOGGED_OUT:
            return None
        return self._set(AgentState.LOGGED_OUT, at, by=by)

    def pause(self, at: datetime, reason: str, by: str) -> Change | None:
        if self.state is AgentState.LOGGED_OUT:
            raise AgentStateError("log in first")
        if self.state in BUSY:
            self.after_call = (AgentState.PAUSED, reason, by)
            return None
        return self._set(AgentState.PAUSED, at, reason, by)

    def resume(self, at: datetime, by: str) -> Change | None:
        if self.state in BUSY and self.after_call and self.after_call[0] is AgentState.PAUSED:
            self.after_call = None  # changed their mind before the call ended
            return None
        if self.state is not AgentState.PAUSED:
            raise AgentStateError(f"not paused (now {self.state})")
        self.missed = 0
        return self._set(AgentState.AVAILABLE, at, by=by)

    # --- what calls do ---------------------------------------------------------------------

    def offer(self, call_id: str, at: datetime) -> Change:
        if self.state is not AgentState.AVAILABLE:  # never two calls at once, even with -O
            raise AgentStateError(f"{self.id} offered a call while {self.state}")
        self.call_id = call_id
        return self._set(AgentState.RINGING, at, by="system")

    def resume_call(self, call_id: str, at: datetime) -> Change:
        """The service restarted while this agent talked: they still do, whatever we thought."""
        self.call_id = call_id
        return self._set(AgentState.ON_CALL, at, by="system")

    def answered(self, at: datetime) -> Change:
        self.missed = 0
        return self._set(AgentState.ON_CALL, at, by="system")

    def missed_offer(self, at: datetime, max_missed: int) -> Change:
        """Ring-no-answer or refused. Back to available (as the most recently idle), or paused
        after `max_missed` in a row so that callers stop ringing an empty desk."""
        self.call_id = None
        self.missed += 1
        if self.after_call:  # a pause or logout asked while it rang: what they asked, not stale
            return self._after_call(at)
        if self.missed >= max_missed:
            return self._set(AgentState.PAUSED, at, f"{self.missed} calls not answered", "system")
        return self._set(AgentState.AVAILABLE, at, by="system")

    def unreachable(self, at: datetime, why: str) -> Change:
        """The phone could not be rung at all (not registered, say): paused until the agent
        fixes it and resumes; a pause or logout they asked for still wins."""
        self.call_id = None
        if self.after_call:
            return self._after_call(at)
        reason = f"phone unreachable: {why}"[:255]
        return self._set(AgentState.PAUSED, at, reason, "system")

    def cancelled(self, at: datetime) -> Change:
        """The caller went away while the agent's phone rang: not the agent's fault."""
        self.call_id = None
        if self.after_call:
            return self._after_call(at)
        idle_since = self.idle_since
        change = self._set(AgentState.AVAILABLE, at, by="system")
        self.idle_since = idle_since  # keeps their place among the longest idle
        return change

    def call_ended(self, at: datetime, wrap_up: float) -> Change:
        self.call_id = None
        if wrap_up > 0:
            return self._set(AgentState.WRAP_UP, at, by="system")
        return self.wrap_up_done(at)

    def wrap_up_done(self, at: datetime) -> Change:
        if self.after_call:
            return self._after_call(at)
        return self._set(AgentState.AVAILABLE, at, by="system")

    def _after_call(self, at: datetime) -> Change:
        assert self.after_call is not None
        state, reason, by = self.after_call
        self.after_call = None
        return self._set(state, at, reason, by)

    def serves(self, topic: str) -> bool:
        return topic in self.topics
