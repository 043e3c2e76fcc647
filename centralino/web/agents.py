"""Agents over HTTP: log in/out, pause/resume, the verdict on a recall call (REST), the
console's screen pops and the supervisors' live stream (WebSockets), whose messages
(cti.messages) are described by the JSON Schema at `GET /api/schema/console.json`.

Browsers cannot put a token in a WebSocket handshake, so a socket's first message must be
`{"token": "..."}`; anything else, or nothing within 10 s, closes it. A console that also
wants its agent's state changes as they happen says `{"token": "...", "states": true}`.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Literal

from aiohttp import WSCloseCode, WSMsgType, web
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from sqlalchemy.exc import IntegrityError

from centralino.calls import CallSession
from centralino.desk import agent_json
from centralino.transfers import CallControlError
from centralino.web.common import (
    CLOCK,
    DESK,
    QUEUES,
    RECALLS,
    REGISTRY,
    RUNNING,
    SETTINGS,
    STORE,
    TICKETS,
    WHO,
    allow,
    caught_up,
    error,
    identify,
    json_body,
)
from cti.agents import AgentState, AgentStateError
from cti.messages import (
    SCHEMA_URL,
    Ack,
    AgentView,
    Auth,
    Error,
    Hello,
    Snapshot,
    WaitingView,
    json_schema,
    wire,
)
from cti.recalls import AGENT_OUTCOMES, RecallError, after_mark

AUTH_TIMEOUT = 10.0
MAX_MESSAGE = 4096  # bytes: consoles send a token or an ack, never more


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/agents", list_agents)
    app.router.add_get("/api/agents/{agent_id}", get_agent)
    app.router.add_get("/api/agents/{agent_id}/events", agent_events)
    app.router.add_post("/api/agents/{agent_id}/{action:login|logout|pause|resume}",
                        change_state)
    app.router.add_post("/api/agents/{agent_id}/recalls/{recall_id}/outcome", mark_recall)
    app.router.add_post("/api/agents/{agent_id}/call/{action:hold|resume}", call_control)
    app.router.add_post("/api/agents/{agent_id}/call/transfer", call_transfer)
    app.router.add_post("/api/agents/{agent_id}/call/consult", call_consult)
    app.router.add_post("/api/agents/{agent_id}/call/consult/{action:complete|cancel|swap}",
                        call_consult_end)
    app.router.add_get("/api/agents/{agent_id}/transfer-targets", transfer_targets)
    app.router.add_get("/ws/agents/{agent_id}", console)
    app.router.add_get("/ws/supervisor", supervisor)
    app.router.add_get(SCHEMA_URL, message_schema)
    app.on_shutdown.append(_close_sockets)


async def _close_sockets(app: web.Application) -> None:
    """A stopping service closes its sockets (consoles then reconnect to the next run) instead
    of letting aiohttp wait its shutdown timeout (60 s) for them."""
    desk = app[DESK]
    sockets = set(desk.supervisors)
    sockets.update(ws for group in desk.consoles.values() for ws in group)
    for ws in sockets:
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"service stopping")


def _agent(request: web.Request) -> Any:
    agent = request.app[DESK].agents.get(request.match_info["agent_id"])
    if agent is None:
        raise error(web.HTTPNotFound, f"no agent {request.match_info['agent_id']!r}")
    return agent


@allow("admin", "supervisor")
async def list_agents(request: web.Request) -> web.Response:
    return web.json_response([agent_json(a) for a in request.app[DESK].agents.values()])


@allow("admin", "supervisor", "self")
async def get_agent(request: web.Request) -> web.Response:
    return web.json_response(agent_json(_agent(request)))


@allow("admin", "supervisor", "self")
async def agent_events(request: web.Request) -> web.Response:
    agent = _agent(request)
    headers = await caught_up(request)  # read what was just done
    rows = await request.app[STORE].agent_events(agent.id)
    return web.json_response([{"at": r.at.isoformat(), "state": r.state, "reason": r.reason,
                               "by": r.by} for r in rows], headers=headers)


class StateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field("", max_length=255)
    # Logging out with tickets in charge: keep them (they wait for the agent's return) or
    # release them to their lines for colleagues. The console asks the agent.
    tickets: Literal["keep", "release"] = "keep"


@allow("admin", "supervisor", "self")
async def change_state(request: web.Request) -> web.Response:
    agent = _agent(request)
    action = request.match_info["action"]
    body: StateRequest = await json_body(request, StateRequest)
    if action == "pause" and len(body.reason.strip()) < 2:
        raise error(web.HTTPBadRequest, "reason: say why (a pause needs a reason)")
    role, person = request[WHO]
    try:
        request.app[DESK].ask(agent.id, action, f"{role}:{person}", body.reason.strip())
    except AgentStateError as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    if action == "logout" and body.tickets == "release" and request.app[TICKETS].enabled:
        await request.app[TICKETS].release_all(agent.id)
    return web.json_response(agent_json(agent))


def _call_of(request: web.Request) -> CallSession:
    """The agent's call in progress (409: none, or a recall: not for these controls yet)."""
    agent = _agent(request)
    session = request.app[REGISTRY].calls.get(agent.call_id or "")
    if agent.state is not AgentState.ON_CALL or session is None:
        raise error(web.HTTPConflict, f"agent {agent.id} has no call in progress")
    if not isinstance(session, CallSession):
        raise error(web.HTTPConflict, "hold and transfer are for calls from citizens, not "
                                      "recalls (yet)")
    return session


@allow("admin", "supervisor", "self")
async def call_control(request: web.Request) -> web.Response:
    """The agent's call in progress: hold (the caller hears the topic's music) and resume."""
    session = _call_of(request)
    try:
        await (session.hold() if request.match_info["action"] == "hold" else session.resume())
    except CallControlError as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    return web.json_response({"call_id": session.info.call_id, "on_hold": session.on_hold})


@allow("admin", "supervisor", "self")
async def transfer_targets(request: web.Request) -> web.Response:
    """Where the agent may send a caller: the topics' lines (their names, how many wait, how
    many agents are free), the colleagues taking calls now (their state), and the second-level
    groups (how many of their other members are logged in, and free)."""
    running = request.app[RUNNING]
    agent = _agent(request)
    desk, queues = request.app[DESK], running.config.call.queues
    topics = []
    for topic_id, topic in sorted(queues.items(), key=lambda item: item[1].name):
        logged_in, _, free = desk.staffing(topic_id)
        topics.append({"id": topic_id, "name": topic.name, "logged_in": logged_in,
                       "free": free, "waiting": len(request.app[QUEUES].waiting(topic_id))})
    taking = (AgentState.AVAILABLE, AgentState.RINGING, AgentState.ON_CALL,
              AgentState.WRAP_UP)
    colleagues = [{"id": a.id, "name": a.name, "state": str(a.state),
                   "topics": sorted(a.topics)}
                  for a in sorted(desk.agents.values(), key=lambda a: a.name)
                  if a.id != agent.id and a.state in taking and a.topics]
    tickets = running.config.tickets
    groups = []
    for group_id, group in sorted(tickets.groups.items() if tickets else (),
                                  key=lambda item: item[1].name):
        members = [desk.agents[m] for m in desk.group_members(group_id) - {agent.id}]
        groups.append({"id": group_id, "name": group.name,
                       "logged_in": sum(m.state is not AgentState.LOGGED_OUT for m in members),
                       "free": sum(m.state is AgentState.AVAILABLE for m in members)})
    return web.json_response({"topics": topics, "agents": colleagues, "groups": groups})


class ConsultRequest(BaseModel):
    """An attended transfer's first step: the colleague to talk to first."""

    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=64)


@allow("admin", "supervisor", "self")
async def call_consult(request: web.Request) -> web.Response:
    """The caller on hold (music), the colleague's phone rung: 202, the rest comes as the
    agent hears it (the colleague answers: they talk; then complete or cancel)."""
    body: ConsultRequest = await json_body(request, ConsultRequest)
    session = _call_of(request)
    try:
        session.consult(body.agent)
    except CallControlError as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    return web.json_response({"call_id": session.info.call_id, "consulting": body.agent},
                             status=202)


@allow("admin", "supervisor", "self")
async def call_consult_end(request: web.Request) -> web.Response:
    """complete: the colleague takes the caller (the agent's phone is hung up); cancel: the
    colleague's phone is hung up and the caller is back with the agent; swap: the agent talks
    to the caller (the colleague on hold), or back to the colleague (the caller on hold).
    The steps come over the console's socket (`consultation` messages)."""
    session = _call_of(request)
    action = request.match_info["action"]
    try:
        session.end_consultation("complete" if action == "complete" else
                                 "swap" if action == "swap" else "cancel")
    except CallControlError as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    return web.json_response({"call_id": session.info.call_id, "asked": action}, status=202)


class TransferRequest(BaseModel):
    """A blind transfer of the call in progress: to another topic's line, to an agent, to a
    second-level group (tickets.yaml), or to a number outside the desk (recalls' rules)."""

    model_config = ConfigDict(extra="forbid")
    topic: str | None = Field(default=None, min_length=1, max_length=64)
    agent: str | None = Field(default=None, min_length=1, max_length=64)
    group: str | None = Field(default=None, min_length=1, max_length=64)
    number: str | None = Field(default=None, min_length=1, max_length=32)
    note: str = Field(default="", max_length=500, description="for the next agent's pop")

    @model_validator(mode="after")
    def _one_target(self) -> TransferRequest:
        if [self.topic, self.agent, self.group, self.number].count(None) != 3:
            raise ValueError("give exactly one of topic, agent, group or number")
        return self


@allow("admin", "supervisor", "self")
async def call_transfer(request: web.Request) -> web.Response:
    """The caller goes to `topic`'s line, keeping their place by arrival time; the agent's
    phone is hung up and they wrap up; the next agent's pop says who and why."""
    body: TransferRequest = await json_body(request, TransferRequest)
    session = _call_of(request)
    try:
        topic = await session.transfer(body.topic, body.note.strip(), agent=body.agent,
                                       group=body.group, number=body.number)
    except CallControlError as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    return web.json_response({"call_id": session.info.call_id, "transferred_to": topic,
                              "agent": body.agent, "group": body.group,
                              "number": body.number})


class RecallMark(BaseModel):
    """The agent's verdict on the recall call they just had (cti.recalls.MARKS)."""

    model_config = ConfigDict(extra="forbid")
    outcome: Literal["done", "no_answer", "wrong_number"]


@allow("admin", "supervisor", "self")
async def mark_recall(request: web.Request) -> web.Response:
    """After a recall conversation: it was the citizen (done), an answering machine or
    somebody else (no_answer: called again as after no answer), or a wrong number (failed)."""
    store = request.app[STORE]
    agent = _agent(request)
    body: RecallMark = await json_body(request, RecallMark)
    recall_id = request.match_info["recall_id"]
    row = await store.get_recall(recall_id) if len(recall_id) <= 32 else None
    if row is None:
        raise error(web.HTTPNotFound, f"no recall request {recall_id!r}")
    calls = [a for a in await store.recall_attempts(row.id) if a.outcome not in AGENT_OUTCOMES]
    last = calls[-1] if calls else None
    if last is not None and last.agent_id != agent.id:
        raise error(web.HTTPForbidden, f"the last call of this request was {last.agent_id}'s")
    settings = request.app[SETTINGS].recalls
    schedules = request.app[RUNNING].config.call.schedules
    schedule = schedules.get(settings.hours) if settings.hours else None
    now = request.app[CLOCK].now()
    try:
        after = after_mark(body.outcome, row.status, last.outcome if last else None,
                           row.attempts, settings, now, schedule)
    except RecallError as exc:
        raise error(web.HTTPConflict, exc.reason) from None
    if after is not None:
        assert last is not None
        role, person = request[WHO]
        try:
            marked = await store.mark_recall(last, body.outcome, f"{role}:{person}",
                                                 after.status, after.due_at, now)
        except IntegrityError:
            raise error(web.HTTPConflict, "the citizen has another open request for this "
                        "topic: this one cannot be reopened") from None
        if not marked:
            raise error(web.HTTPConflict, "the request changed meanwhile: look again")
        if after.status == "waiting":
            request.app[RECALLS].poke()
        row = await store.get_recall(row.id) or row
    return web.json_response({"id": row.id, "outcome": body.outcome, "status": row.status,
                              "attempts": row.attempts, "due_at": row.due_at.isoformat()})


LINES = TypeAdapter(dict[str, list[WaitingView]])


@functools.cache
def _schema_body() -> tuple[bytes, str]:
    body = json.dumps(json_schema(), indent=1).encode()
    return body, f'"{hashlib.sha256(body).hexdigest()[:32]}"'


async def message_schema(request: web.Request) -> web.Response:
    """The JSON Schema of the WebSockets' messages, both ways (cti.messages). Public: it holds
    no data; cacheable: it changes only with the service's version."""
    body, etag = _schema_body()
    headers = {"Cache-Control": "public, max-age=3600", "ETag": etag}
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, content_type="application/schema+json", headers=headers)


message_schema.own_auth = True  # type: ignore[attr-defined]  # public (web.common.authenticate)


async def _refuse(ws: web.WebSocketResponse, code: int, why: str) -> None:
    await ws.send_str(wire(Error(error=why)))
    await ws.close(code=code, message=why.encode()[:120])


async def _open(request: web.Request
                ) -> tuple[web.WebSocketResponse, tuple[str, str], Auth] | None:
    """Accept the socket and read its first message (the token, and what the client asks);
    None (and the socket closed) if it is not a hello with a known token."""
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT)
    except TimeoutError:
        await _refuse(ws, 4001, 'send {"token": ...} first')
        return None
    if msg.type != WSMsgType.TEXT:
        if not ws.closed:
            await _refuse(ws, WSCloseCode.POLICY_VIOLATION, 'send {"token": ...} first')
        return None
    try:
        hello = Auth.model_validate_json(msg.data)
    except ValidationError:  # not JSON, nested too deep, the wrong shape
        await _refuse(ws, WSCloseCode.POLICY_VIOLATION, 'the first message must be '
                      '{"token": "..."}')
        return None
    who = identify(request.app, hello.token)
    if who is None:
        await _refuse(ws, 4001, "unknown token")
        return None
    return ws, who, hello


async def console(request: web.Request) -> web.WebSocketResponse:
    """An agent's console: receives a screen pop when their phone starts ringing and answers
    {"type": "ack", "offer_id": ...} once it is on screen."""
    desk = request.app[DESK]
    opened = await _open(request)
    if opened is None:
        return web.WebSocketResponse()
    ws, (role, person), first = opened
    agent = desk.agents.get(request.match_info["agent_id"])
    if agent is None or (role == "agent" and person != agent.id):
        await _refuse(ws, 4003, "not your console")
        return ws
    desk.consoles.setdefault(agent.id, set()).add(ws)
    if first.states:  # what the system did to them (auto-pause, wrap-up, ...)
        desk.state_watchers.setdefault(agent.id, set()).add(ws)
    # Wrap-up seconds per topic: the console counts down after a call of that topic.
    topics = request.app[RUNNING].config.call.queues
    wrap_up = {t: q.wrap_up for t, q in topics.items() if t in agent.topics}
    # A console reopened during a call shows its pop again.
    hello = Hello(agent=AgentView.of(agent), wrap_up=wrap_up, offer=desk.current_pop(agent))
    await ws.send_str(wire(hello))
    try:
        async for msg in ws:
            try:
                ack = Ack.model_validate_json(msg.data) if msg.type == WSMsgType.TEXT else None
            except ValidationError:
                ack = None
            if ack is None:  # a console only ever sends acks: this one is broken or hostile
                await _refuse(ws, WSCloseCode.POLICY_VIOLATION, 'expected {"type": "ack", '
                              '"offer_id": "..."}')
                break
            desk.acknowledged(agent.id, ack.offer_id)
    finally:
        desk.consoles.get(agent.id, set()).discard(ws)
        desk.state_watchers.get(agent.id, set()).discard(ws)
    return ws


async def supervisor(request: web.Request) -> web.WebSocketResponse:
    """Live agent and queue changes, after a snapshot of both."""
    desk = request.app[DESK]
    opened = await _open(request)
    if opened is None:
        return web.WebSocketResponse()
    ws, (role, _), _ = opened
    if role not in ("admin", "supervisor"):
        await _refuse(ws, 4003, "supervisors only")
        return ws
    lines = LINES.validate_python(request.app[QUEUES].snapshot(request.app[CLOCK].now()))
    await ws.send_str(wire(Snapshot(agents=desk.snapshot(), queues=lines)))
    desk.supervisors.add(ws)
    try:
        async for _ in ws:  # supervisors only listen: what they send is dropped
            pass
    finally:
        desk.supervisors.discard(ws)
    return ws
