"""Tickets over HTTP: the portal's API, the citizen's status, the operators' console.

    POST /api/tickets                      open one: a portal's key (channel web), or an
                                           agent for the caller on the line (channel phone)
    GET  /api/tickets                      agent: their inbox; supervisor, admin: open tickets
    GET  /api/tickets/{number}             the ticket, its thread and its history
    GET  /api/tickets/{number}/attachments/{id}   a file sent with it (a download)
    POST /api/tickets/{number}/actions     agent: take, reply, note, wait, escalate,
                                           hand_back, resolve, release (back to its line)
    POST /api/tickets/next                 agent: take the next one the desk would give them
    POST /api/tickets/{number}/assign      supervisor: give it to an agent {agent}
    GET  /api/tickets/board                supervisor: the backlog per topic and level, the
                                           oldest, the tickets near or past their deadline
    GET  /api/tickets/topics               what tickets may be about: topics and their
                                           subjects, second-level groups (any token)
    GET  /api/tickets/status/{token}       the citizen's view (the token is the secret)
    POST /api/tickets/status/{token}       the citizen writes
    GET  /api/tickets/openapi.json         this API in OpenAPI 3 (no key needed)

Portals use their recall key (settings recalls.clients), as `Authorization: Bearer <key>` or
`X-API-Key`. Errors are `{"error": reason, "problems": [...]}`: 400 malformed, 404 no such
ticket (or not yours to see), 409 the ticket's state does not allow it, or it changed
meanwhile, 422 invalid content, 429 too many requests, 503 no tickets.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from centralino.storage.models import (
    MailOut,
    Ticket,
    TicketAttachment,
    TicketEvent,
    TicketMessage,
)
from centralino.tickets.desk import ACTIONS, STATUS_TOKEN, Action, Busy, TicketDesk
from centralino.web.common import (
    CLOCK,
    RUNNING,
    SETTINGS,
    TICKETS,
    ErrorOut,
    error,
    json_body,
    json_content,
    openapi_schemas,
    own_auth,
    portal_or_token,
    query_int,
)
from cti.recalls import SlidingWindow
from tickets.requests import InvalidRequest, Request, check
from tickets.states import TicketError

BASE = "/api/tickets"
NUMBER = re.compile(r"^[A-Z]{2,6}-\d{4}-\d{6,}$")
STATUS_WRITES = web.AppKey("ticket_status_writes", SlidingWindow)


def add_routes(app: web.Application) -> None:
    app[STATUS_WRITES] = SlidingWindow(app[SETTINGS].tickets.per_address_per_hour, 3600)
    app.router.add_get(f"{BASE}/openapi.json", openapi)
    app.router.add_get(BASE + "/status/{token}", citizen_status)
    app.router.add_post(BASE + "/status/{token}", citizen_writes)
    app.router.add_get(BASE + "/topics", topics)
    app.router.add_post(BASE + "/next", take_next)
    app.router.add_get(BASE + "/board", board)
    app.router.add_post(BASE, create)
    app.router.add_get(BASE, list_tickets)
    app.router.add_get(BASE + "/{number}", get_ticket)
    app.router.add_post(BASE + "/{number}/actions", act)
    app.router.add_post(BASE + "/{number}/assign", assign)
    app.router.add_get(BASE + "/{number}/attachments/{id:[0-9]{1,12}}", get_attachment)


# --- payloads ---------------------------------------------------------------------------------

class TicketCreate(BaseModel):
    """A request: what the web form asks (the portal already asked the citizen's consent)."""

    model_config = ConfigDict(extra="forbid")
    topic: str = Field(max_length=64, description="a topic of tickets.yaml")
    subject: str = Field(max_length=255, description="one of the topic's subjects")
    body: str = Field(max_length=5000, description="the request, in the citizen's words")
    name: str = Field(max_length=128)
    email: str = Field("", max_length=254, description="e-mail or phone (or both) is required")
    phone: str = Field("", max_length=32, description="without +country code it is Italian")
    tax_code: str = Field("", max_length=32, description="codice fiscale (optional, checked)")
    call_id: str | None = Field(None, max_length=32, description="agents: the call this "
                                "ticket comes from (the console fills it in)")


class TicketPosted(BaseModel):
    number: str = Field(examples=["HD-2026-000123"])
    status_url: str = Field(description="the citizen's private page: give it to them")
    state: str


class Clock(BaseModel):
    due: datetime
    standing: Literal["ok", "warning", "breached", "met", "missed", "paused"]
    used: float = Field(description="fraction of the target used (above 1: breached)")
    remaining_seconds: int | None = Field(description="working seconds left to the deadline "
                                          "on the SLA calendar (negative: past it); None once "
                                          "met or missed")


class TicketOut(BaseModel):
    number: str
    topic: str
    subject: str
    channel: str
    state: str
    level: str = Field(description="I (first level) or a second-level group")
    owner: str | None
    owner_name: str | None = Field(description="as agents.yaml names them")
    priority: str
    requester_name: str
    requester_email: str | None
    requester_phone: str | None
    requester_tax_code: str | None
    created_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    clocks: dict[str, Clock] = Field(description="first_response, resolution")
    call_id: str | None


class AttachmentOut(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int = Field(description="bytes")
    url: str


class MailState(BaseModel):
    """An e-mail the desk sends, as its outbox row stands."""

    kind: str = Field(description="acknowledgement, reply, confirmation")
    recipient: str
    status: Literal["pending", "sending", "sent", "failed", "uncertain"] = Field(
        description="pending (to send, or to try again at next_at), sending, sent, failed "
                    "(refused for good), uncertain (cut mid-way: not sent again on its own)")
    attempts: int
    error: str = Field(description="the last refusal or failure, if any")
    created_at: datetime
    next_at: datetime | None = Field(description="pending: the next try")
    sent_at: datetime | None


class MessageOut(BaseModel):
    at: datetime
    direction: Literal["in", "out"]
    visibility: Literal["public", "internal"]
    author: str
    body: str
    attachments: list[AttachmentOut] = Field(default_factory=list)
    quoted: str = Field("", description="an e-mail's quoted earlier messages (agents only)")
    html: str | None = Field(None, description="an e-mail's HTML, sanitised (no script, no "
                             "remote image): to show only in a sandboxed frame (agents only)")
    refused: list[str] = Field(default_factory=list, description="attachments not kept, "
                               "each with why")
    mail: MailState | None = Field(None, description="an answer's e-mail to the citizen, "
                                   "as it stands (agents only)")


class BouncedOut(BaseModel):
    address: str
    at: datetime = Field(description="when the delivery report arrived")
    reason: str


class EventOut(BaseModel):
    at: datetime
    by: str
    action: str
    state: str
    level: str
    owner: str | None
    note: str


class TicketDetail(TicketOut):
    linked_to: str | None = Field(description="the older ticket this one continues")
    thread: list[MessageOut]
    history: list[EventOut]
    bounced: BouncedOut | None = Field(None, description="our mail did not reach the "
                                       "requester's address (until it writes again)")
    mail: list[MailState] = Field(default_factory=list, description="every e-mail sent "
                                  "about this ticket")


class CitizenView(BaseModel):
    """What the citizen sees: no internal note, no operator's name."""

    number: str
    topic: str
    subject: str
    state: str
    created_at: datetime
    thread: list[MessageOut]


class ActionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["take", "reply", "note", "wait", "escalate", "hand_back", "resolve",
                    "release"]
    text: str = Field("", max_length=20_000, description="the answer, the note, or why")
    group: str | None = Field(None, max_length=64, description="escalate: the group")


class AssignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: str = Field(min_length=1, max_length=64)


class CitizenMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: str = Field(min_length=1, max_length=5000)


# --- who asks ---------------------------------------------------------------------------------

def _desk(request: web.Request) -> TicketDesk:
    desk = request.app[TICKETS]
    if not desk.enabled:
        raise error(web.HTTPServiceUnavailable, "this desk takes no written requests "
                    "(no tickets.yaml)")
    return desk


async def _visible(request: web.Request, desk: TicketDesk) -> tuple[Ticket, str, str]:
    """The ticket in the URL, if this caller may see it (404 otherwise: a ticket you may not
    see does not exist for you)."""
    role, person = portal_or_token(request)
    if role == "portal":
        raise error(web.HTTPForbidden, "a portal reads a ticket through its status link")
    number = request.match_info["number"]
    row = await desk.store.ticket(number) if NUMBER.match(number) else None
    if row is None or (role == "agent" and not desk.may_see(person, row)):
        raise error(web.HTTPNotFound, f"no ticket {number!r}")
    return row, role, person


def _invalid(exc: InvalidRequest) -> web.HTTPException:
    problems = [f"{p.field}: {p.reason}" for p in exc.problems]
    return error(web.HTTPUnprocessableEntity, problems[0], problems)


def status_path(token: str) -> str:
    """The citizen's page (HTML: centralino/tickets/pages.py)."""
    return f"/richieste/stato/{token}"


def attachment_path(token: str, attachment_id: int) -> str:
    return f"{status_path(token)}/allegati/{attachment_id}"


def download(attachment: TicketAttachment, path: Path) -> web.FileResponse:
    """An attachment as a download: never shown inline, never sniffed, never scripted."""
    quoted = quote(attachment.filename, safe="")
    return web.FileResponse(path, headers={
        "Content-Type": attachment.content_type,
        "Content-Disposition": f"attachment; filename*=UTF-8''{quoted}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
        "Cache-Control": "private, no-store",
        "Referrer-Policy": "no-referrer"})


# --- output -----------------------------------------------------------------------------------

def ticket_out(desk: TicketDesk, row: Ticket) -> dict[str, Any]:
    clocks = {name: Clock(due=c.due, standing=c.standing, used=round(c.used, 3),
                          remaining_seconds=None if c.remaining is None else int(c.remaining))
              for name, c in desk.clocks(row).items()}
    return TicketOut(
        number=row.number, topic=row.topic, subject=row.subject, channel=row.channel,
        state=row.state, level=row.level, owner=row.owner, owner_name=desk.name_of(row.owner),
        priority=row.priority,
        requester_name=row.requester_name, requester_email=row.requester_email,
        requester_phone=row.requester_phone, requester_tax_code=row.requester_tax_code,
        created_at=row.created_at, updated_at=row.updated_at,
        first_response_at=row.first_response_at, resolved_at=row.resolved_at,
        clocks=clocks, call_id=row.call_id).model_dump(mode="json")


def _message(m: TicketMessage, files: list[AttachmentOut], citizen: bool = False,
             mail: MailState | None = None) -> dict[str, Any]:
    author = m.author if not citizen else ("cittadino" if m.direction == "in" else "operatore")
    extras: dict[str, Any] = {} if citizen else {"quoted": m.quoted, "html": m.html,
                                                 "mail": mail}
    return MessageOut(at=m.at, direction=m.direction,  # type: ignore[arg-type]
                      visibility=m.visibility,  # type: ignore[arg-type]
                      author=author, body=m.body, attachments=files,
                      refused=[r for r in m.refused.split("\n") if r],
                      **extras).model_dump(mode="json")


def _mail_state(o: MailOut) -> MailState:
    return MailState(kind=o.kind, recipient=o.recipient,
                     status=o.status,  # type: ignore[arg-type]
                     attempts=o.attempts, error=o.error, created_at=o.created_at,
                     next_at=o.next_at if o.status == "pending" else None, sent_at=o.sent_at)


def _answers(messages: list[TicketMessage], outbox: list[MailOut]) -> dict[int, MailState]:
    """Each operator's answer with the e-mail that carried it: the desk queues a reply just
    after storing the answer (TicketDesk.on_answer), so it is the latest public answer
    stored at or before the reply was queued."""
    answers = [m for m in messages if m.direction == "out" and m.visibility == "public"]
    out: dict[int, MailState] = {}
    for o in outbox:
        if o.kind != "reply":
            continue
        before = [m for m in answers if m.at <= o.created_at and m.id not in out]
        if before:
            out[before[-1].id] = _mail_state(o)
    return out


def _files_by_message(rows: list[TicketAttachment], url: Callable[[int], str]
                      ) -> dict[int, list[AttachmentOut]]:
    out: dict[int, list[AttachmentOut]] = {}
    for a in rows:
        out.setdefault(a.message_id, []).append(AttachmentOut(
            id=a.id, filename=a.filename, content_type=a.content_type, size=a.size,
            url=url(a.id)))
    return out


def _event(e: TicketEvent) -> dict[str, Any]:
    return EventOut(at=e.at, by=e.by, action=e.action, state=e.state, level=e.level,
                    owner=e.owner, note=e.note).model_dump(mode="json")


async def ticket_detail(desk: TicketDesk, row: Ticket) -> dict[str, Any]:
    linked = await desk.store.ticket(row.linked_to) if row.linked_to else None
    files = _files_by_message(await desk.store.ticket_attachments(row.id),
                              lambda a: f"{BASE}/{row.number}/attachments/{a}")
    messages = await desk.store.ticket_messages(row.id)
    outbox = await desk.store.outbox_of(row.id)
    answers = _answers(messages, outbox)
    flag = await desk.store.bounced(row.requester_email) if row.requester_email else None
    bounced = BouncedOut(address=flag.address, at=flag.at, reason=flag.reason
                         ).model_dump(mode="json") if flag else None
    return {**ticket_out(desk, row), "linked_to": linked.number if linked else None,
            "thread": [_message(m, files.get(m.id, []), mail=answers.get(m.id))
                       for m in messages],
            "history": [_event(e) for e in await desk.store.ticket_events(row.id)],
            "bounced": bounced,
            "mail": [_mail_state(o).model_dump(mode="json") for o in outbox]}


async def citizen_view(desk: TicketDesk, row: Ticket, token: str) -> dict[str, Any]:
    thread = await desk.store.ticket_messages(row.id, public_only=True)
    files = _files_by_message(await desk.store.ticket_attachments(row.id, public_only=True),
                              lambda a: attachment_path(token, a))
    return CitizenView(number=row.number, topic=row.topic, subject=row.subject,
                       state=row.state, created_at=row.created_at,
                       thread=[MessageOut.model_validate(_message(m, files.get(m.id, []),
                                                                  citizen=True))
                               for m in thread]).model_dump(mode="json")


# --- handlers ---------------------------------------------------------------------------------

@own_auth
async def create(request: web.Request) -> web.Response:
    desk = _desk(request)
    role, person = portal_or_token(request)
    if role not in ("portal", "agent"):
        raise error(web.HTTPForbidden, f"a {role} key cannot open tickets")
    body = await json_body(request, TicketCreate, empty=None)
    if role == "portal" and body.call_id:
        raise error(web.HTTPUnprocessableEntity, "call_id: only an agent links a call")
    try:
        ask: Request = check(body.model_dump(exclude={"call_id"}), desk.config,
                             request.app[SETTINGS].recalls.default_region)
    except InvalidRequest as exc:
        raise _invalid(exc) from None
    if role == "portal":
        row, token = await desk.open(ask, "web")
    else:
        row, token = await desk.open(ask, "phone", by=f"agent:{person}", call_id=body.call_id)
    out = TicketPosted(number=row.number, status_url=status_path(token), state=row.state)
    return web.json_response(out.model_dump(mode="json"), status=201,
                             headers={"Location": f"{BASE}/{row.number}"})


@own_auth
async def list_tickets(request: web.Request) -> web.Response:
    desk = _desk(request)
    role, person = portal_or_token(request)
    limit = query_int(request, "limit", 100, 1, 500)
    if role == "agent":
        rows = await desk.store.inbox(person, desk.topics_of(person), desk.groups_of(person),
                                      limit)
    elif role in ("supervisor", "admin") and (who := request.query.get("requester")):
        if len(who) > 254:
            raise error(web.HTTPBadRequest, "requester: an e-mail address or a phone number")
        rows = await desk.store.tickets_of_requester(who.strip(), limit)
    elif role in ("supervisor", "admin"):
        rows = await desk.store.open_tickets(limit)
    else:
        raise error(web.HTTPForbidden, f"a {role} key cannot list tickets")
    return web.json_response([ticket_out(desk, r) for r in rows])


@own_auth
async def get_ticket(request: web.Request) -> web.Response:
    desk = _desk(request)
    row, _, _ = await _visible(request, desk)
    return web.json_response(await ticket_detail(desk, row))


@own_auth
async def act(request: web.Request) -> web.Response:
    desk = _desk(request)
    row, role, person = await _visible(request, desk)
    if role != "agent":
        raise error(web.HTTPForbidden, "only an agent works on tickets")
    body = await json_body(request, ActionIn, empty=None)
    action: Action = body.action
    assert action in ACTIONS
    try:
        row = await desk.act(row, person, action, body.text, body.group)
    except TicketError as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    except Busy as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    return web.json_response(await ticket_detail(desk, row))


async def _by_token(request: web.Request, desk: TicketDesk) -> Ticket:
    token = request.match_info["token"]
    row = await desk.by_token(token)
    if row is None:
        raise error(web.HTTPNotFound, "no ticket for this link")
    return row


@own_auth
async def citizen_status(request: web.Request) -> web.Response:
    desk = _desk(request)
    return web.json_response(await citizen_view(desk, await _by_token(request, desk),
                                                request.match_info["token"]))


@own_auth
async def citizen_writes(request: web.Request) -> web.Response:
    desk = _desk(request)
    wait = request.app[STATUS_WRITES].hit(request.remote or "unknown", request.app[CLOCK].now())
    if wait is not None:
        raise error(web.HTTPTooManyRequests, "too many messages from this address",
                    headers={"Retry-After": str(wait)})
    row = await _by_token(request, desk)
    body = await json_body(request, CitizenMessage, empty=None)
    text = body.body.strip()
    if not text:
        raise error(web.HTTPUnprocessableEntity, "body: write the message")
    try:
        after = await desk.citizen_wrote(row, text)
    except Busy:  # an operator's step at the same instant: once more on the fresh ticket
        after = await desk.citizen_wrote(await _by_token(request, desk), text)
    view = await citizen_view(desk, after, request.match_info["token"])
    if after.id != row.id:
        view["continues"] = row.number  # closed long ago: a new ticket carries it on
    return web.json_response(view)


class TopicOut(BaseModel):
    id: str
    name: str
    subjects: list[str]


class GroupOut(BaseModel):
    id: str
    name: str
    members: list[str]


class DeskTopics(BaseModel):
    topics: list[TopicOut]
    groups: list[GroupOut]


@own_auth
async def topics(request: web.Request) -> web.Response:
    desk = _desk(request)
    portal_or_token(request)  # any known key or token
    queues = request.app[RUNNING].config.call.queues
    config = desk.config
    out = DeskTopics(
        topics=[TopicOut(id=t, name=queues[t].name if t in queues else t,
                         subjects=list(d.subjects)) for t, d in config.topics.items()],
        groups=[GroupOut(id=g, name=group.name, members=list(group.members))
                for g, group in config.groups.items()])
    return web.json_response(out.model_dump(mode="json"))


def _supervising(request: web.Request) -> str:
    role, person = portal_or_token(request)
    if role not in ("supervisor", "admin"):
        raise error(web.HTTPForbidden, f"a {role} key cannot do this")
    return f"{role}:{person}"


@own_auth
async def board(request: web.Request) -> web.Response:
    """What the supervisor board shows of the written requests."""
    desk = _desk(request)
    _supervising(request)
    now = desk.clock.now()
    backlog = await desk.store.ticket_backlog(now)
    soonest = await desk.store.open_tickets(query_int(request, "limit", 200, 1, 1000))
    attention = [out for out in (ticket_out(desk, r) for r in soonest)
                 if any(c["standing"] in ("warning", "breached")
                        for c in out["clocks"].values())]
    return web.json_response({"backlog": backlog, "attention": attention})


@own_auth
async def assign(request: web.Request) -> web.Response:
    desk = _desk(request)
    by = _supervising(request)
    number = request.match_info["number"]
    row = await desk.store.ticket(number) if NUMBER.match(number) else None
    if row is None:
        raise error(web.HTTPNotFound, f"no ticket {number!r}")
    body = await json_body(request, AssignIn, empty=None)
    try:
        row = await desk.reassign(row, body.agent, by)
    except (TicketError, Busy) as exc:
        raise error(web.HTTPConflict, str(exc)) from None
    return web.json_response(await ticket_detail(desk, row))


@own_auth
async def get_attachment(request: web.Request) -> web.StreamResponse:
    desk = _desk(request)
    row, _, _ = await _visible(request, desk)
    wanted = int(request.match_info["id"])
    if (found := await desk.attachment(row, wanted, public_only=False)) is None:
        raise error(web.HTTPNotFound, f"no attachment {wanted} on {row.number}")
    return download(*found)


@own_auth
async def take_next(request: web.Request) -> web.Response:
    desk = _desk(request)
    role, person = portal_or_token(request)
    if role != "agent":
        raise error(web.HTTPForbidden, "only an agent takes tickets")
    row = await desk.next_for(person)
    if row is None:
        raise error(web.HTTPNotFound, "no ticket waits for you")
    return web.json_response(await ticket_detail(desk, row))


@own_auth
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1, the schemas generated from the models above (so they cannot drift)."""
    schemas = openapi_schemas([
        (TicketCreate, "validation"), (TicketPosted, "serialization"),
        (TicketOut, "serialization"), (TicketDetail, "serialization"),
        (CitizenView, "serialization"), (ActionIn, "validation"),
        (DeskTopics, "serialization"), (AssignIn, "validation"),
        (CitizenMessage, "validation"), (ErrorOut, "serialization")])
    def answer(text: str, name: str = "ErrorOut") -> dict[str, Any]:
        return {"description": text, **json_content(name)}

    keyed = {"401": answer("no key, or an unknown one"),
             "403": answer("a known key without the right")}
    number = {"name": "number", "in": "path", "required": True,
              "schema": {"type": "string", "pattern": NUMBER.pattern}}
    token = {"name": "token", "in": "path", "required": True,
             "schema": {"type": "string", "pattern": STATUS_TOKEN.pattern}}
    security: list[dict[str, list[str]]] = [{"bearer": []}, {"apiKey": []}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "centralino tickets", "version": "1",
                 "description": __doc__},
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "paths": {
            BASE: {
                "post": {"summary": "open a ticket", "security": security,
                         "requestBody": {"required": True, **json_content("TicketCreate")},
                         "responses": {"201": answer("opened", "TicketPosted"), **keyed,
                                       "422": answer("invalid content, every problem listed"),
                                       "503": answer("no tickets.yaml")}},
                "get": {"summary": "an agent's inbox; open tickets for supervisors",
                        "security": security,
                        "responses": {"200": {"description": "tickets", "content": {
                            "application/json": {"schema": {"type": "array", "items": {
                                "$ref": "#/components/schemas/TicketOut"}}}}}, **keyed}}},
            BASE + "/topics": {"get": {
                "summary": "topics and their subjects, second-level groups",
                "security": security,
                "responses": {"200": answer("the desk's topics", "DeskTopics"), **keyed}}},
            BASE + "/next": {"post": {
                "summary": "an agent takes the next ticket the desk would give them",
                "security": security,
                "responses": {"200": answer("now theirs", "TicketDetail"), **keyed,
                              "404": answer("no ticket waits for this agent")}}},
            BASE + "/{number}/attachments/{id}": {"get": {
                "summary": "an attachment, as a download", "parameters": [number, {
                    "name": "id", "in": "path", "required": True,
                    "schema": {"type": "integer"}}],
                "security": security,
                "responses": {"200": {"description": "the file"}, **keyed,
                              "404": answer("no such ticket or attachment")}}},
            BASE + "/board": {"get": {
                "summary": "supervisors: the backlog, the oldest, tickets near or past their "
                           "deadline", "security": security,
                "responses": {"200": {"description": "the board"}, **keyed}}},
            BASE + "/{number}/assign": {"post": {
                "summary": "supervisors: give the ticket to an agent", "parameters": [number],
                "security": security,
                "requestBody": {"required": True, **json_content("AssignIn")},
                "responses": {"200": answer("reassigned", "TicketDetail"), **keyed,
                              "404": answer("no such ticket"),
                              "409": answer("that agent cannot work it, or it is closed")}}},
            BASE + "/{number}": {"get": {
                "summary": "a ticket, its thread and history", "parameters": [number],
                "security": security,
                "responses": {"200": answer("the ticket", "TicketDetail"), **keyed,
                              "404": answer("no such ticket, or not yours to see")}}},
            BASE + "/{number}/actions": {"post": {
                "summary": "an agent's step", "parameters": [number], "security": security,
                "requestBody": {"required": True, **json_content("ActionIn")},
                "responses": {"200": answer("done", "TicketDetail"), **keyed,
                              "404": answer("no such ticket, or not yours to see"),
                              "409": answer("the ticket's state does not allow it, or it "
                                            "changed meanwhile")}}},
            BASE + "/status/{token}": {
                "get": {"summary": "what the citizen sees", "parameters": [token],
                        "responses": {"200": answer("the ticket", "CitizenView"),
                                      "404": answer("no ticket for this link")}},
                "post": {"summary": "the citizen writes", "parameters": [token],
                         "requestBody": {"required": True, **json_content("CitizenMessage")},
                         "responses": {"200": answer("added", "CitizenView"),
                                       "404": answer("no ticket for this link"),
                                       "429": answer("too many messages")}}},
        },
    }

