"""The agents' side of the service: their states, who gets which caller, consoles and supervisors.

Calls drive themselves (centralino.calls); the desk tells a waiting call which agent to ring
(an `OfferMade` event in the call's own queue, so it is handled in order with the channel's
events) and keeps every agent's state, stored and streamed to supervisors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from aiohttp import web

from centralino.ari.models import Event
from centralino.clock import Timer, Timers
from centralino.registry import Registry
from centralino.storage.models import AgentEvent
from centralino.storage.records import Records
from cti.agents import Agent, AgentState, Change
from cti.config import AgentsConfig
from cti.distributor import Distributor, Offer, TicketOffer
from cti.messages import (
    AgentChanged,
    AgentView,
    Consultation,
    QueueEvent,
    ScreenPop,
    TicketAssigned,
    wire,
)
from queue_manager.queues import QueueManager

log = logging.getLogger("centralino.desk")


class OfferMade(Event):
    """Ours, not Asterisk's: ring this agent for this caller."""

    type: str = "OfferMade"
    offer: Offer


class Desk:
    def __init__(self, clock: Timers, records: Records, queues: QueueManager,
                 registry: Registry):
        self.clock, self.records, self.registry = clock, records, registry
        self.config: AgentsConfig | None = None
        self.agents: dict[str, Agent] = {}
        self.distributor = Distributor(queues)
        self.consoles: dict[str, set[web.WebSocketResponse]] = {}
        self.supervisors: set[web.WebSocketResponse] = set()
        # Consoles that asked for their own agent's state changes, by agent id.
        self.state_watchers: dict[str, set[web.WebSocketResponse]] = {}
        self.last_pop: dict[str, ScreenPop] = {}  # by agent id
        self._wrap_ups: dict[str, Timer] = {}
        self.retiring: set[str] = set()  # topics a reload removed (see configure)
        # Hands a ticket the distributor chose over to its agent (centralino.tickets.desk);
        # None: this desk takes no written requests, and none is matched.
        self.hand_over: Callable[[TicketOffer], None] | None = None

    def current_pop(self, agent: Agent) -> ScreenPop | None:
        """The pop of the call the agent is ringing for or talking to, if any."""
        pop = self.last_pop.get(agent.id)
        return pop if pop and agent.call_id and pop.call_id == agent.call_id else None

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def configure(self, config: AgentsConfig, restored: dict[str, AgentEvent] | None = None,
                  topics: Collection[str] | None = None,
                  groups: Callable[[str], frozenset[str]] | None = None) -> None:
        """Take a (re)loaded agents.yaml. Agents keep their state across reloads; at start-up
        they get back the login or pause they had before the restart.

        `topics`: the reloaded queues.yaml's. A topic that a reload removes (or renames) may
        still have callers: waiting in its line, or in a menu on the configuration their call
        started with, about to join it. So it retires rather than vanishes: the agents who
        served it keep serving it, as before, until a later reload finds its line empty.

        `groups`: an agent's second-level groups (tickets.yaml), for the tickets they get."""
        before = {a.id: a.topics for a in self.agents.values()}
        if topics is not None:
            queues = self.distributor.queues
            self.retiring = {t for served in before.values() for t in served
                             if t not in topics and (t not in self.retiring or queues.waiting(t))}
        self.config = config
        for agent_id, entry in config.agents.items():
            serves = dict(entry.topics) | {t: penalty for t, penalty in
                                           before.get(agent_id, {}).items() if t in self.retiring}
            agent = self.agents.get(agent_id)
            if agent is None:
                agent = self.agents[agent_id] = Agent(agent_id, entry.name, entry.device, serves)
                last = (restored or {}).get(agent_id)
                if last and last.state != AgentState.LOGGED_OUT:
                    # Busy states end with the service; the agent is free again.
                    state = AgentState(last.state)
                    agent.state = state if state is AgentState.PAUSED else AgentState.AVAILABLE
                    agent.since = agent.idle_since = last.at
                    agent.reason = last.reason if state is AgentState.PAUSED else ""
            else:
                agent.name, agent.device, agent.topics = entry.name, entry.device, serves
            agent.takes_calls = entry.capacity.calls > 0
            agent.ticket_capacity = entry.capacity.tickets
            agent.groups = groups(agent_id) if groups else frozenset()
        for agent_id in list(self.agents):
            if agent_id not in config.agents and self.agents[agent_id].state not in (
                    AgentState.RINGING, AgentState.ON_CALL):
                del self.agents[agent_id]
        self.distributor.agents = self.agents
        self.distributor.calls_during_tickets = config.calls_during_tickets
        self.distribute()

    # --- state changes --------------------------------------------------------------------

    def record(self, change: Change | None) -> None:
        """Store, stream and act on a change (an agent who became available may take a call)."""
        if change is None:
            return
        self.records.agent_changed(change.agent_id, change.at, str(change.state), change.reason,
                                  change.by)
        watchers = self.state_watchers.get(change.agent_id)
        if self.supervisors or watchers:  # serialized once, for both
            text = wire(AgentChanged.of(change))
            self._send(self.supervisors, text)
            self._send(watchers or set(), text)
        if change.state is AgentState.AVAILABLE:
            self.distribute()

    def distribute(self) -> None:
        for offer, change in self.distributor.match(self.now):
            agent = self.agents[offer.agent_id]
            self.record(change)
            session = self.registry.calls.get(offer.call_id)
            if session is None:  # the caller left in the same instant
                self.record(agent.cancelled(self.now))
                continue
            session.deliver(OfferMade(type="OfferMade", offer=offer))
        if self.hand_over is not None:
            for ticket in self.distributor.match_tickets():
                self.hand_over(ticket)

    def ask(self, agent_id: str, action: str, by: str, reason: str = "") -> Agent:
        """login/logout/pause/resume on behalf of `by`; raises AgentStateError."""
        agent = self.agents[agent_id]
        now = self.now
        if action == "login":
            self.distributor.backlog.forget_passes(agent_id)  # back: what they gave back too
            change = agent.login(now, by)
        elif action == "logout":
            change = agent.logout(now, by)
            # Callers transferred to them (or to their group, if nobody else of it is in): anybody.
            self.distributor.queues.release_for(agent_id, self.logged_in())
            self.distribute()
        elif action == "pause":
            change = agent.pause(now, reason, by)
        else:
            change = agent.resume(now, by)
        self.record(change)
        return agent

    def staffing(self, topic: str) -> tuple[int, int, int]:
        """(logged in, serving, free) agents of `topic`: logged in includes paused agents;
        serving are those taking calls (not paused); free are available now."""
        logged = serving = free = 0
        for agent in self.agents.values():
            if topic not in agent.topics or agent.state is AgentState.LOGGED_OUT:
                continue
            logged += 1
            if agent.state is not AgentState.PAUSED:
                serving += 1
                free += agent.state is AgentState.AVAILABLE
        return logged, serving, free

    def logged_in(self) -> set[str]:
        """The agents logged in now (paused ones too)."""
        return {a.id for a in self.agents.values() if a.state is not AgentState.LOGGED_OUT}

    def group_members(self, group: str) -> set[str]:
        """The agents of a second-level group (tickets.yaml) who take calls."""
        return {a.id for a in self.agents.values() if group in a.groups and a.takes_calls}

    def resume_call(self, agent_id: str, call_id: str) -> Agent:
        """After a restart: the agent is still talking to this call."""
        agent = self.agents[agent_id]
        self.record(agent.resume_call(call_id, self.now))
        return agent

    def missed(self, agent: Agent) -> None:
        assert self.config is not None
        self.record(agent.missed_offer(self.now, self.config.max_missed))

    def call_ended(self, agent: Agent, wrap_up: float) -> None:
        self.record(agent.call_ended(self.now, wrap_up))
        if agent.state is AgentState.WRAP_UP:
            self._wrap_ups[agent.id] = self.clock.call_later(
                wrap_up, lambda: self._wrap_up_done(agent))

    def _wrap_up_done(self, agent: Agent) -> None:
        self._wrap_ups.pop(agent.id, None)
        if agent.state is AgentState.WRAP_UP:
            self.record(agent.wrap_up_done(self.now))

    # --- consoles and supervisors ---------------------------------------------------------

    def acknowledged(self, agent_id: str, offer_id: str) -> None:
        """The console showed the screen pop: store when."""
        self.records.offer_seen(offer_id, agent_id, self.now)

    async def pop(self, agent_id: str, payload: ScreenPop) -> int:
        """Send a screen pop to the agent's open consoles; how many got it."""
        self.last_pop[agent_id] = payload  # for a console that (re)connects during the call
        sent = 0
        text = wire(payload)
        for ws in list(self.consoles.get(agent_id, ())):
            try:
                await ws.send_str(text)
                sent += 1
            except (ConnectionError, RuntimeError):
                self.consoles[agent_id].discard(ws)
        return sent

    def tell(self, agent_id: str, message: TicketAssigned | Consultation) -> None:
        """A message to the agent's open consoles (nobody listening: nothing is sent)."""
        if sockets := self.consoles.get(agent_id):
            self._send(sockets, wire(message))

    def broadcast(self, event: QueueEvent) -> None:
        """A queue event to the supervisors (serialized only if somebody listens)."""
        if self.supervisors:
            self._send(self.supervisors, wire(event))

    @staticmethod
    def _send(sockets: set[web.WebSocketResponse], text: str) -> None:
        for ws in list(sockets):
            if ws.closed:
                sockets.discard(ws)
            else:  # a socket closing meanwhile fails the send: it is dropped at the next one
                sending = asyncio.ensure_future(ws.send_str(text))
                sending.add_done_callback(lambda t: t.cancelled() or t.exception())

    def snapshot(self) -> list[AgentView]:
        return [AgentView.of(a) for a in self.agents.values()]


def agent_json(agent: Agent) -> dict[str, Any]:
    """An agent as the REST API answers (the same as in the WebSockets' messages)."""
    return AgentView.of(agent).model_dump(mode="json")
