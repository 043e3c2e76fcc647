"""Recall requests over HTTP: the help desk portal asks to have a citizen called (issue #4).

    POST   /api/recalls               a request (portal key)     202 new, 200 duplicate
    GET    /api/recalls/{id}          its status (its portal, supervisors, admin)
    DELETE /api/recalls/{id}          cancel it while waiting     200, 409 once being called
    GET    /api/recalls?status=...    list (supervisors, admin)
    GET    /api/recalls/openapi.json  this API in OpenAPI 3 (no key needed)

Portals authenticate with their key (settings recalls.clients) as `Authorization: Bearer <key>`
or `X-API-Key: <key>`; supervisors and the admin with their usual tokens. No or unknown key:
401; a known caller without the right: 403. A request is committed to the database before the
202 goes out. One open (waiting or calling) request per number and topic: asking again answers
200 with the open one and `"duplicate": true`. Errors are `{"error": reason, "problems": [...]}`:
400 malformed JSON, 422 invalid content (the problems listed), 429 rate limits (Retry-After).
"""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from centralino.storage.models import RecallAttempt, RecallRequest
from centralino.web.common import (
    CLOCK,
    QUEUES,
    RECALLS,
    RUNNING,
    SETTINGS,
    STORE,
    ErrorOut,
    error,
    json_body,
    json_content,
    openapi_schemas,
    own_auth,
    portal_or_token,
    query_int,
)
from cti.recalls import STATUSES, RecallError, SlidingWindow, classify, due_time, retry_after

BASE = "/api/recalls"
ID_CHARS = frozenset("0123456789abcdef")
ADDRESS_LIMIT = web.AppKey("recall_address_limit", SlidingWindow)


def add_routes(app: web.Application) -> None:
    limits = app[SETTINGS].recalls.limits
    app[ADDRESS_LIMIT] = SlidingWindow(limits.per_address_per_minute, 60)
    app.router.add_get(f"{BASE}/openapi.json", openapi)
    app.router.add_post(BASE, create)
    app.router.add_get(BASE, list_recalls)
    app.router.add_get(BASE + "/{id}", get_recall)
    app.router.add_delete(BASE + "/{id}", cancel)


# --- payloads ---------------------------------------------------------------------------------

def _clean(value: str, multiline: bool = False) -> str:
    # Control characters (NUL above all: PostgreSQL refuses it in text) have no business in a
    # name or a number; a note may have line breaks.
    allowed = "\n\t" if multiline else ""
    if any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in value):
        raise ValueError("control characters are not allowed")
    return value


class RecallCreate(BaseModel):
    """What a portal sends."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    number: str = Field(min_length=1, max_length=32, description="as the citizen typed it; "
                        "without +country code it is Italian", examples=["347 123 4567"])
    topic: str = Field(min_length=1, max_length=64, description="a queue of queues.yaml")
    mode: Literal["now", "back"] = Field(description="now: as soon as an operator is free "
                                         "(from the next opening if closed); back: at `slot`")
    slot: datetime | None = Field(None, description="ISO date-time, required iff mode is back; "
                                  "Italian local time unless it has an offset")
    name: str = Field(min_length=1, max_length=128, description="the citizen's name")
    note: str = Field("", max_length=500, description="what it is about")
    portal_ref: str | None = Field(None, min_length=1, max_length=128,
                                   description="the portal's own reference")

    @field_validator("number", "topic", "name", "portal_ref")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        return None if value is None else _clean(value)

    @field_validator("note")
    @classmethod
    def _text(cls, value: str) -> str:
        return _clean(value, multiline=True)


Status = Literal["waiting", "calling", "done", "failed", "cancelled", "expired"]


class RecallPosted(BaseModel):
    """The answer to a POST: 202 for a new request, 200 for the open one it duplicates."""

    id: str
    status: Status
    status_url: str
    due_at: datetime = Field(description="when it joins the topic's queue (UTC)")
    duplicate: bool = Field(description="true: an open request for this number and topic "
                            "existed already, and this is it (nothing new was stored)")


class RecallAttemptOut(BaseModel):
    at: datetime
    outcome: str
    detail: str


class RecallOut(BaseModel):
    """A stored request."""

    id: str
    status: Status
    status_url: str
    number: str = Field(description="E.164")
    number_type: str = Field(description="fixed_line, mobile, ... (phonenumbers)")
    topic: str
    mode: Literal["now", "back", "queue"] = Field(description="queue: asked by a caller "
                                                   "waiting on the line (the callback key)")
    slot: datetime | None
    name: str
    note: str
    portal_ref: str | None
    client: str = Field(description="the portal client that asked")
    created_at: datetime
    updated_at: datetime
    due_at: datetime
    attempts: int = Field(description="calls placed so far")


class RecallDetail(RecallOut):
    attempt_log: list[RecallAttemptOut] = Field(description="each call placed, oldest first")
    position: int | None = Field(None, description="its place in its topic's line now (1: the "
                                 "next an operator takes), while it waits there")


def _url(recall_id: str) -> str:
    return f"{BASE}/{recall_id}"


def _out(row: RecallRequest) -> dict[str, Any]:
    return RecallOut.model_validate({
        "id": row.id, "status": row.status, "status_url": _url(row.id), "number": row.number,
        "number_type": row.number_type, "topic": row.topic, "mode": row.mode,
        "slot": row.slot_at, "name": row.name, "note": row.note, "portal_ref": row.portal_ref,
        "client": row.client, "created_at": row.created_at, "updated_at": row.updated_at,
        "due_at": row.due_at, "attempts": row.attempts,
    }).model_dump(mode="json")


def _detail(row: RecallRequest, attempts: list[RecallAttempt], position: int | None = None
            ) -> dict[str, Any]:
    log = [RecallAttemptOut(at=a.at, outcome=a.outcome, detail=a.detail).model_dump(mode="json")
           for a in attempts]
    return {**_out(row), "attempt_log": log, "position": position}


# --- errors and who is asking -----------------------------------------------------------------

async def _visible(request: web.Request) -> RecallRequest:
    """The request in the URL if this caller may see it; 404 otherwise (another portal's
    request does not exist for you)."""
    role, person = portal_or_token(request)
    if role == "agent":
        raise error(web.HTTPForbidden, "an agent token cannot do this")
    recall_id = request.match_info["id"]
    row = None
    if len(recall_id) == 32 and set(recall_id) <= ID_CHARS:
        row = await request.app[STORE].get_recall(recall_id)
    if row is None or (role == "portal" and row.client != person):
        raise error(web.HTTPNotFound, f"no recall request {recall_id!r}")
    return row


def _invalid(field: str, reason: str) -> web.HTTPException:
    problem = f"{field}: {reason}"
    return error(web.HTTPUnprocessableEntity, problem, [problem])


# --- handlers ---------------------------------------------------------------------------------

@own_auth
async def create(request: web.Request) -> web.Response:
    running = request.app[RUNNING]
    store = request.app[STORE]
    settings = request.app[SETTINGS].recalls
    role, client = portal_or_token(request)
    if role != "portal":
        raise error(web.HTTPForbidden, "only a portal's key can ask for a recall")
    now = request.app[CLOCK].now().astimezone(UTC)
    # Every POST counts, valid or not: the limit is there for floods.
    if (wait := request.app[ADDRESS_LIMIT].hit(request.remote or "unknown", now)) is not None:
        raise error(web.HTTPTooManyRequests, "too many requests from this address",
                    headers={"Retry-After": str(wait)})
    body = await json_body(request, RecallCreate, empty=None)
    topics = settings.topics or list(running.config.call.queues)
    if body.topic not in topics or body.topic not in running.config.call.queues:
        raise _invalid("topic", f"unknown topic {body.topic!r} (known: {', '.join(topics)})")
    schedule = running.config.call.schedules.get(settings.hours) if settings.hours else None
    try:
        number = classify(body.number, settings, running.config.call.flows)
        due = due_time(body.mode, body.slot, now, schedule, settings.horizon_days)
    except RecallError as exc:
        raise _invalid(exc.field, exc.reason) from None

    existing = await store.open_recall(number.e164, body.topic)
    if existing is not None:
        return _posted(existing, duplicate=True)
    # Per number in the database (cheap: an indexed count), so it survives restarts. Two
    # concurrent requests for different topics may both pass: the limit is soft by one.
    day = timedelta(days=1)
    count, oldest = await store.recalls_since(number.e164, now - day)
    if count >= settings.limits.per_number_per_day and oldest is not None:
        raise error(web.HTTPTooManyRequests, f"this number asked for {count} recalls in the "
                    "last 24 hours", headers={"Retry-After": str(retry_after(oldest + day, now))})
    row = RecallRequest(
        id=uuid.uuid4().hex, number=number.e164, number_type=number.type, topic=body.topic,
        mode=body.mode, slot_at=due if body.mode == "back" else None, name=body.name,
        note=body.note, portal_ref=body.portal_ref, client=client, status="waiting",
        created_at=now, updated_at=now, due_at=due, attempts=0,
    )
    row, created = await store.create_recall(row)  # committed before we answer
    request.app[RECALLS].poke()  # the scheduler puts it in its line when due
    return _posted(row, duplicate=not created)


def _posted(row: RecallRequest, duplicate: bool) -> web.Response:
    out = RecallPosted.model_validate({"id": row.id, "status": row.status,
                                       "status_url": _url(row.id), "due_at": row.due_at,
                                       "duplicate": duplicate})
    return web.json_response(out.model_dump(mode="json"), status=200 if duplicate else 202,
                             headers={"Location": out.status_url})


@own_auth
async def get_recall(request: web.Request) -> web.Response:
    row = await _visible(request)
    attempts = await request.app[STORE].recall_attempts(row.id)
    position = request.app[QUEUES].position(row.id) if row.status == "waiting" else None
    return web.json_response(_detail(row, attempts, position))


@own_auth
async def cancel(request: web.Request) -> web.Response:
    """Waiting: cancelled (200). Cancelled already: the same answer. Otherwise 409: once the
    call is being placed, or over, there is nothing left to cancel."""
    store = request.app[STORE]
    row = await _visible(request)
    if row.status != "cancelled":
        updated = await store.set_recall_status(row.id, "cancelled", request.app[CLOCK].now(),
                                                    only_from=("waiting",))
        if updated is None:
            current = await store.get_recall(row.id) or row
            raise error(web.HTTPConflict, f"the request is {current.status}: only a waiting "
                        "request can be cancelled")
        row = updated
        request.app[RECALLS].cancelled(row.id)  # out of its line, if it was in one
    return web.json_response(_detail(row, await store.recall_attempts(row.id)))


@own_auth
async def list_recalls(request: web.Request) -> web.Response:
    role, _ = portal_or_token(request)
    if role not in ("admin", "supervisor"):
        raise error(web.HTTPForbidden, f"a {role} key cannot list recall requests")
    query = request.query
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise error(web.HTTPBadRequest, f"status: one of {', '.join(STATUSES)}")
    limit = query_int(request, "limit", 100, 1, 1000)
    rows = await request.app[STORE].find_recalls(
        status=status, topic=query.get("topic") or None, client=query.get("client") or None,
        limit=limit)
    return web.json_response([_out(r) for r in rows])


@own_auth
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


# --- OpenAPI ----------------------------------------------------------------------------------

def openapi_document() -> dict[str, Any]:
    """OpenAPI 3.1, with the schemas generated from the models above (so they cannot drift)."""
    schemas = openapi_schemas([
        (RecallCreate, "validation"), (RecallPosted, "serialization"),
        (RecallOut, "serialization"), (RecallDetail, "serialization"),
        (ErrorOut, "serialization")])
    def answer(text: str, name: str = "ErrorOut") -> dict[str, Any]:
        return {"description": text, **json_content(name)}

    auth = {"401": answer("no key, or an unknown one"),
            "403": answer("a known key without the right"),
            "503": {**answer("the database cannot be reached now: nothing was stored or "
                             "changed, try again"),
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}}}}
    path_id = [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "centralino recall requests", "version": "1",
                 "description": (__doc__ or "").strip()},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": {
            BASE: {
                "post": {
                    "summary": "Ask for a citizen to be called (now, or back in a slot)",
                    "operationId": "createRecall",
                    "requestBody": {"required": True, **json_content("RecallCreate")},
                    "responses": {
                        "202": {**answer("stored; it will be called", "RecallPosted"),
                                "headers": {"Location": {"schema": {"type": "string"}}}},
                        "200": answer("an open request for this number and topic exists: "
                                      "this is it (duplicate: true)", "RecallPosted"),
                        "400": answer("the body is not JSON"),
                        "422": answer("invalid content: number refused, unknown topic, slot "
                                      "outside hours or the horizon..."),
                        "429": {**answer("rate limit: per number per day, per address per "
                                         "minute"),
                                "headers": {"Retry-After": {"schema": {"type": "integer"}}}},
                        **auth,
                    },
                },
                "get": {
                    "summary": "List requests, newest first (supervisors and admin)",
                    "operationId": "listRecalls",
                    "parameters": [
                        {"name": "status", "in": "query",
                         "schema": {"type": "string", "enum": list(STATUSES)}},
                        {"name": "topic", "in": "query", "schema": {"type": "string"}},
                        {"name": "client", "in": "query", "schema": {"type": "string"}},
                        {"name": "limit", "in": "query",
                         "schema": {"type": "integer", "minimum": 1, "maximum": 1000,
                                    "default": 100}},
                    ],
                    "responses": {
                        "200": {"description": "the requests", "content": {"application/json": {
                            "schema": {"type": "array", "items": {
                                "$ref": "#/components/schemas/RecallOut"}}}}},
                        "400": answer("a bad query parameter"), **auth,
                    },
                },
            },
            BASE + "/{id}": {
                "get": {
                    "summary": "A request's status (its portal, supervisors, admin)",
                    "operationId": "getRecall", "parameters": path_id,
                    "responses": {"200": answer("the request", "RecallDetail"),
                                  "404": answer("no such request (or another portal's)"),
                                  **auth},
                },
                "delete": {
                    "summary": "Cancel a waiting request",
                    "operationId": "cancelRecall", "parameters": path_id,
                    "responses": {"200": answer("cancelled (or already was)", "RecallDetail"),
                                  "404": answer("no such request (or another portal's)"),
                                  "409": answer("being called or over: nothing to cancel"),
                                  **auth},
                },
            },
            BASE + "/openapi.json": {
                "get": {"summary": "This document", "operationId": "openapi", "security": [],
                        "responses": {"200": {"description": "OpenAPI 3.1",
                                              "content": {"application/json": {}}}}},
            },
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "a portal's key, or a supervisor's/the admin token"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }
