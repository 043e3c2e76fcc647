"""The messages of the agents' and supervisors' WebSockets, both ways, as models.

Server -> client (`ServerMessage`, discriminated by `type`; queue events again by `event`):

- `hello`: a console's first message (its agent, wrap-up seconds per topic, and the screen pop
  of the call going on, if any: a console reopened during a call shows it again);
- `offer`: the screen pop of a live caller, sent when the agent's phone starts ringing;
- `recall`: the screen pop of a recall request (the agent is rung before the citizen);
- `recall_outcome`: how the recall call went, once it is over (the agent gives a verdict);
- `agent`: an agent's state changed (supervisors; consoles that asked for their own);
- `snapshot`: a supervisor's first message: every agent and every line;
- `queue`: somebody `joined` a line, `left` it, or was `connected` to an agent (supervisors);
- `error`: why the socket is being closed.

Client -> server (`ClientMessage`): the first message of a socket (`Auth`, which carries no
`type`), then, from a console, an `ack` per screen pop shown.

The wire format is older than these models and kept exactly: keys, their order, and times as
`datetime.isoformat()` writes them (`+00:00`, not `Z`). `wire()` is the text a message is sent
as. Optional keys that are absent today (a queue event's `recall`, a hello's `offer`) are left
out when unset, never sent as null. `json_schema()` is what the service serves at
`/api/schema/console.json`.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    TypeAdapter,
)

from cti.agents import Agent, AgentState, Change

SCHEMA_URL = "/api/schema/console.json"

# An aware time, sent as Python's isoformat (pydantic's own JSON would write UTC as "Z").
Time = Annotated[AwareDatetime, PlainSerializer(datetime.isoformat, return_type=str)]


def _absent(value: object) -> bool:
    return value is None


def _discriminators_required(schema: dict[str, Any]) -> None:
    """`type` (and a queue event's `event`) have defaults, for building messages; on the wire
    they are always there."""
    required = schema.setdefault("required", [])
    for key in ("event", "type"):
        if key in schema.get("properties", {}) and key not in required:
            required.insert(0, key)


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True,
                              json_schema_extra=_discriminators_required)


# --- parts -------------------------------------------------------------------------------------

class AgentView(_Message):
    """An agent as consoles, supervisors and `GET /api/agents` see them."""

    id: str
    name: str
    state: AgentState
    reason: str = Field(description="why paused ('' otherwise)")
    since: Time | None = Field(description="when the agent entered this state")
    topics: dict[str, int] = Field(description="topic -> penalty (lower gets calls first)")
    call_id: str | None = Field(description="the call being offered or talked to")
    missed_in_a_row: int
    after_call: AgentState | None = Field(
        description="paused or logged_out: asked during a call, taking effect after it")

    @classmethod
    def of(cls, agent: Agent) -> AgentView:
        return cls(id=agent.id, name=agent.name, state=agent.state, reason=agent.reason,
                   since=agent.since, topics=agent.topics, call_id=agent.call_id,
                   missed_in_a_row=agent.missed,
                   after_call=agent.after_call[0] if agent.after_call else None)


class WaitingView(_Message):
    """Somebody in a line (a live caller or a recall request), in a snapshot."""

    call_id: str
    caller: str = Field(description="the caller's number ('' if withheld)")
    line: str = Field(description="the line's name ('recall' for a recall request)")
    since: Time = Field(description="when they joined (a recall: when it became due)")
    waited: float = Field(description="seconds, to the tenth")
    ringing: str | None = Field(description="the agent whose phone rings for them")
    recall: bool


class MenuStep(_Message):
    """A key the caller pressed in a menu."""

    menu: str
    key: str | None
    label: str


class PreviousContact(_Message):
    """An earlier call from the same number (newest first)."""

    at: Time
    line: str
    topic: str | None
    outcome: str | None = Field(description="None while that call goes on")
    agent: str | None


class PreviousTicket(_Message):
    """A written request of the same phone number, or opened during this call (newest
    first)."""

    number: str
    subject: str
    state: str
    created_at: Time
    this_call: Literal[True] | None = Field(
        default=None, exclude_if=_absent,
        description="true: opened during this call (by an agent before a transfer); absent "
                    "otherwise")


class RecallAttemptView(_Message):
    """An earlier attempt at a recall request."""

    at: Time
    outcome: str = Field(description="answered, no_answer, busy, failed, agent_missed, "
                                     "agent_left, wrong_number")
    detail: str
    agent: str | None


# --- server -> client --------------------------------------------------------------------------

class TransferredBy(_Message):
    """Who passed the caller on to this line, and why (issue #13)."""

    agent: str = Field(description="the agent's id")
    agent_name: str
    from_topic: str = Field(description="the line they talked in")
    note: str = Field(description="the first agent's note ('' if none)")
    group: str = Field(default="", description="the second-level group (tickets.yaml) it was "
                                               "sent to, '' if none")
    at: Time


class CallOffer(_Message):
    """The screen pop of a live caller: sent when the agent's phone starts ringing."""

    type: Literal["offer"] = "offer"
    offer_id: str = Field(description="to acknowledge with {'type': 'ack', 'offer_id': ...}")
    call_id: str
    caller_number: str
    caller_name: str
    number: str = Field(description="the number the caller dialled")
    line: str = Field(description="its line's name")
    topic: str
    topic_name: str
    path: list[MenuStep] = Field(description="the menu keys pressed, in order")
    waited_seconds: float = Field(description="in the line before the phone rang")
    previous_contacts: list[PreviousContact]
    previous_tickets: list[PreviousTicket] = Field(
        default_factory=list, description="the caller's written requests, newest first")
    offered_at: Time
    transferred: TransferredBy | None = Field(
        default=None, exclude_if=_absent,
        description="an agent transferred the caller here; absent otherwise")


class RecallOffer(_Message):
    """The screen pop of a recall request: the agent is rung before the citizen."""

    type: Literal["recall"] = "recall"
    offer_id: str = Field(description="to acknowledge with {'type': 'ack', 'offer_id': ...}")
    call_id: str = Field(description="the recall request's id")
    recall_id: str = Field(description="the same id")
    number: str = Field(description="the citizen's number (E.164)")
    caller_number: str = Field(description="the same number")
    caller_name: str = Field(description="the citizen's name")
    topic: str
    topic_name: str
    name: str = Field(description="the citizen's name (as caller_name)")
    note: str
    portal_ref: str | None
    mode: str = Field(description="now or back (asked on the portal for now or for a slot), "
                                  "queue (asked in the line: the callback key)")
    requested_at: Time
    due_at: Time
    waited_seconds: float = Field(description="since it became due, until the phone rang")
    attempts: list[RecallAttemptView]
    offered_at: Time


class RecallOutcome(_Message):
    """How a recall call went, once it is over: the console asks the agent's verdict."""

    type: Literal["recall_outcome"] = "recall_outcome"
    call_id: str = Field(description="the recall request's id")
    offer_id: str
    outcome: str = Field(description="answered, no_answer, busy or failed")
    number: str
    name: str
    status: str = Field(description="the request's, now: done, waiting or failed")
    attempts: int = Field(description="attempts so far, this one included")
    next_due_at: Time | None = Field(description="when it is tried again, if it is")


ScreenPop = Annotated[CallOffer | RecallOffer | RecallOutcome, Field(discriminator="type")]


class TicketAssigned(_Message):
    """A written request for this agent: handed to them by the desk or a supervisor (it is
    theirs, in charge), or arrived at their second-level group, or handed back to the first
    level of their topic (for them to take)."""

    type: Literal["ticket"] = "ticket"
    why: Literal["assigned", "reassigned", "escalated", "handed_back"] = "assigned"
    number: str = Field(description="HD-2026-000123")
    topic: str
    subject: str
    requester_name: str
    level: str = Field(description="I, or the second-level group")
    due: Time | None = Field(description="its pressing deadline")


ConsultPhase = Literal["ringing", "talking", "with_caller", "over"]
ConsultOutcome = Literal["", "completed", "cancelled", "no_answer", "refused", "hung_up",
                         "unreachable", "not_free"]


class Consultation(_Message):
    """An attended transfer as it goes (issue #13), to the consoles of the agent who asked it,
    at each step."""

    type: Literal["consultation"] = "consultation"
    call_id: str
    agent: str = Field(description="the colleague consulted")
    agent_name: str
    phase: ConsultPhase = Field(
        description="ringing: the colleague's phone rings, the caller on hold; talking: the "
                    "agent and the colleague talk, the caller on hold; with_caller: the agent "
                    "went back to the caller, the colleague on hold; over: see outcome")
    outcome: ConsultOutcome = Field(
        default="", description="once over: the colleague took the caller (completed), or "
                                "the caller is back with the agent, and why")


class Hello(_Message):
    """A console's first message after its token was accepted."""

    type: Literal["hello"] = "hello"
    agent: AgentView
    wrap_up: dict[str, float] = Field(description="wrap-up seconds per topic of the agent")
    offer: ScreenPop | None = Field(
        default=None, exclude_if=_absent,
        description="the last pop of the call going on (absent when there is none)")


class AgentChanged(_Message):
    """An agent's state changed (supervisors; a console that asked with `states: true`)."""

    type: Literal["agent"] = "agent"
    agent: str = Field(description="the agent's id")
    state: AgentState
    reason: str
    by: str = Field(description="who asked: the agent, a supervisor, or 'system'")
    at: Time

    @classmethod
    def of(cls, change: Change) -> AgentChanged:
        return cls(agent=change.agent_id, state=change.state, reason=change.reason,
                   by=change.by, at=change.at)


class Snapshot(_Message):
    """A supervisor's first message: every agent, and who waits in each line."""

    type: Literal["snapshot"] = "snapshot"
    agents: list[AgentView]
    queues: dict[str, list[WaitingView]] = Field(description="topic -> its line, in order")


class QueueJoined(_Message):
    """Somebody joined a line (a caller, a caller back after a restart, a due recall)."""

    type: Literal["queue"] = "queue"
    event: Literal["joined"] = "joined"
    call_id: str
    topic: str
    caller: str
    position: int
    waited: float = Field(description="seconds already waited (a restart, a recall), to the tenth")
    recall: Literal[True] | None = Field(default=None, exclude_if=_absent,
                                         description="true for a recall; absent for a caller")


class QueueLeft(_Message):
    """Somebody left a line without an agent (hung up, a queue rule, a recall withdrawn)."""

    type: Literal["queue"] = "queue"
    event: Literal["left"] = "left"
    call_id: str
    topic: str
    outcome: str = Field(description="the call's outcome (abandoned, ...); 'recall' for recalls")
    recall: Literal[True] | None = Field(default=None, exclude_if=_absent,
                                         description="true for a recall; absent for a caller")


class QueueConnected(_Message):
    """Somebody in a line got an agent (who answered)."""

    type: Literal["queue"] = "queue"
    event: Literal["connected"] = "connected"
    call_id: str
    topic: str
    agent: str
    recall: Literal[True] | None = Field(default=None, exclude_if=_absent,
                                         description="true for a recall; absent for a caller")


QueueEvent = Annotated[QueueJoined | QueueLeft | QueueConnected, Field(discriminator="event")]


class Error(_Message):
    """Why the server closes the socket (then it closes it)."""

    type: Literal["error"] = "error"
    error: str


ServerMessage = Annotated[
    Hello | CallOffer | RecallOffer | RecallOutcome | TicketAssigned | AgentChanged | Snapshot
    | QueueEvent | Error,
    Field(discriminator="type")]


# --- client -> server --------------------------------------------------------------------------

class Auth(BaseModel):
    """A socket's first message (it has no `type`)."""

    model_config = ConfigDict(extra="ignore")
    token: str = Field(max_length=256)
    states: bool = Field(default=False,
                         description="a console that wants its agent's state changes")


class Ack(BaseModel):
    """The console shows a screen pop."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["ack"]
    offer_id: str = Field(max_length=64)


def _client_kind(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "ack" if kind == "ack" else "auth"


ClientMessage = Annotated[Annotated[Auth, Tag("auth")] | Annotated[Ack, Tag("ack")],
                          Discriminator(_client_kind)]

SERVER = TypeAdapter[Any](ServerMessage)
CLIENT = TypeAdapter[Any](ClientMessage)


def wire(message: BaseModel) -> str:
    """The text a message is sent as (as `json.dumps` of the hand-built dicts was)."""
    return json.dumps(message.model_dump(mode="json"))


def json_schema() -> dict[str, Any]:
    """Both directions' JSON Schema (2020-12), generated from the models above."""
    server = SERVER.json_schema(ref_template="#/$defs/{model}")
    client = CLIENT.json_schema(ref_template="#/$defs/{model}")
    defs = {**server.pop("$defs", {}), **client.pop("$defs", {})}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_URL,
        "title": "centralino console and supervisor WebSocket messages",
        "description": (__doc__ or "").strip(),
        "anyOf": [{"$ref": "#/$defs/ServerMessage"}, {"$ref": "#/$defs/ClientMessage"}],
        "$defs": {**defs, "ServerMessage": server, "ClientMessage": client},
    }
