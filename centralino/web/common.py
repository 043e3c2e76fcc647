"""What every HTTP handler shares: the service's parts, JSON errors, who is calling and what
they may do.

Tokens: the admin token (settings http.admin_token) may do everything; a supervisor's token
(agents.yaml) may see and change every agent; an agent's token only their own state. No token,
or one nobody has: 401; a known token without the right: 403.

Errors are `{"error": reason, "problems": [...]}` with a 4xx that says whose fault it was. They
never echo the request back, and list at most MAX_PROBLEMS problems: a 770 KB body with 50,000
unknown keys gets a few hundred bytes, not megabytes.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from centralino.storage.faults import UNREACHABLE, fault_of
from centralino.tokens import weakness

if TYPE_CHECKING:  # types only: the web layer never imports the service that runs it
    from collections import deque
    from collections.abc import Mapping
    from datetime import datetime

    from centralino.clock import Timers
    from centralino.config import Config
    from centralino.desk import Desk
    from centralino.mail.desk import MailDesk
    from centralino.media import PromptCatalog
    from centralino.registry import Registry
    from centralino.settings import Settings
    from centralino.storage.store import Store
    from centralino.storage.writer import Writer
    from centralino.tickets.desk import TicketDesk
    from ivr.hours import Override
    from queue_manager.queues import QueueManager


class AriHealth(Protocol):
    @property
    def connected(self) -> asyncio.Event: ...
    @property
    def reaction_samples(self) -> deque[tuple[float, float]]: ...


class RecallPlacing(Protocol):
    def poke(self) -> None: ...
    def cancelled(self, recall_id: str) -> None: ...


class Running(Protocol):
    """The configuration running now (centralino.running.RunningConfig): read it at each
    request, a reload swaps it."""

    @property
    def config(self) -> Config: ...
    @property
    def catalog(self) -> PromptCatalog: ...
    @property
    def topics(self) -> list[str]: ...
    @property
    def overrides(self) -> Mapping[str, Override]: ...
    async def reload(self) -> Config: ...
    async def set_override(self, number: str, state: str, until: datetime, reason: str,
                           by: str) -> Override: ...
    async def clear_override(self, number: str, by: str) -> bool: ...


@dataclass(frozen=True)
class WebParts:
    """What the HTTP API reaches of the running service; create_app puts each part under its
    own key below, and each handler takes only the parts it uses."""

    settings: Settings
    clock: Timers
    running: Running
    desk: Desk
    store: Store
    writer: Writer
    queues: QueueManager
    registry: Registry
    ari: AriHealth
    recalls: RecallPlacing
    tickets: TicketDesk
    mail: MailDesk | None


SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
CLOCK: web.AppKey[Timers] = web.AppKey("clock")
RUNNING: web.AppKey[Running] = web.AppKey("running")
DESK: web.AppKey[Desk] = web.AppKey("desk")
STORE: web.AppKey[Store] = web.AppKey("store")
WRITER: web.AppKey[Writer] = web.AppKey("writer")
QUEUES: web.AppKey[QueueManager] = web.AppKey("queues")
REGISTRY: web.AppKey[Registry] = web.AppKey("registry")
ARI: web.AppKey[AriHealth] = web.AppKey("ari")
RECALLS: web.AppKey[RecallPlacing] = web.AppKey("recalls")
TICKETS: web.AppKey[TicketDesk] = web.AppKey("tickets")
MAIL: web.AppKey[MailDesk | None] = web.AppKey("mail")


def install(app: web.Application, parts: WebParts) -> None:
    """Each part under its key."""
    app[SETTINGS], app[CLOCK], app[RUNNING] = parts.settings, parts.clock, parts.running
    app[DESK], app[STORE], app[WRITER] = parts.desk, parts.store, parts.writer
    app[QUEUES], app[REGISTRY], app[ARI] = parts.queues, parts.registry, parts.ari
    app[RECALLS], app[TICKETS], app[MAIL] = parts.recalls, parts.tickets, parts.mail


WHO = web.RequestKey("who", tuple)  # (role, id): role is admin, supervisor or agent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Told the address of each request refused as abuse; True if that address is barred now
# (centralino.web.site bars repeat offenders): its keep-alive connection closes too.
ABUSE: web.AppKey[Callable[[str], bool]] = web.AppKey("abuse")
ABUSIVE = frozenset({400, 401, 408, 413, 429})  # not 403/404/409/422: a client's honest mistakes
M = TypeVar("M", bound=BaseModel)
log = logging.getLogger("centralino.web")

MAX_PROBLEMS = 5  # field problems listed in an error; the rest are counted
MAX_PROBLEM_CHARS = 160  # a field's name comes from the client: never echo much of it
BODY_LIMIT = 16 * 1024  # bytes of a JSON body; every payload of this API is far smaller
BODY_TIMEOUT = 10.0  # seconds to receive a body: a client dripping one byte at a time is cut
MAX_TOKEN = 256  # characters; tokens we hand out are 43
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="centralino"'}


class ErrorOut(BaseModel):
    """Every error this API answers."""

    error: str
    problems: list[str] = Field([], description="the invalid fields (at most a few), for 422")


def error(status: type[web.HTTPException], reason: str, problems: list[str] | None = None,
          headers: dict[str, str] | None = None, **details: Any) -> web.HTTPException:
    """The exception to raise; `details` are what some statuses require (413's sizes)."""
    body = ErrorOut(error=reason, problems=problems or []).model_dump_json()
    return status(text=body, content_type="application/json", headers=headers, **details)


def problems_of(exc: ValidationError) -> list[str]:
    """A validation error's problems, bounded in number and size (never the input)."""
    errors = exc.errors(include_url=False, include_input=False, include_context=False)
    out = []
    for e in errors[:MAX_PROBLEMS]:
        where = ".".join(map(str, e["loc"])) or "body"
        if len(where) > 40:
            where = where[:37] + "..."
        out.append(f"{where}: {e['msg']}"[:MAX_PROBLEM_CHARS])
    if len(errors) > MAX_PROBLEMS:
        out.append(f"... and {len(errors) - MAX_PROBLEMS} more problems")
    return out


async def read_body(request: web.Request, limit: int = BODY_LIMIT) -> bytes:
    """The request's body: 413 beyond `limit` bytes, 408 if it does not arrive in time."""
    def too_large(size: int) -> web.HTTPException:
        return error(web.HTTPRequestEntityTooLarge, f"the body is larger than {limit} bytes",
                     max_size=limit, actual_size=size)

    if request.content_length is not None and request.content_length > limit:
        raise too_large(request.content_length)
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise too_large(len(body))
    except TimeoutError:
        raise error(web.HTTPRequestTimeout, f"the body did not arrive within "
                    f"{BODY_TIMEOUT:g} s") from None
    return bytes(body)


async def json_body(request: web.Request, model: type[M], limit: int = BODY_LIMIT,
                    empty: bytes | None = b"{}") -> M:
    """The body as `model`: 400 if it is not JSON, 422 listing what is invalid. An empty body
    reads as `empty` (None: it is not JSON either)."""
    data = await read_body(request, limit)
    try:
        return model.model_validate_json(data or empty or b"")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors()):
            raise error(web.HTTPBadRequest, "the body is not valid JSON (UTF-8)") from None
        found = problems_of(exc)
        raise error(web.HTTPUnprocessableEntity, "; ".join(found), found) from None


def query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query parameter within [low, high]; 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise error(web.HTTPBadRequest, f"{name}: a whole number from {low} to {high}")
    return value


def presented_token(request: web.Request, api_key_header: bool = False) -> str:
    """The token in `Authorization: Bearer` (or `X-API-Key`); 401 if there is none or it
    cannot be a token (too long, spaces, bytes that are not printable ASCII)."""
    given = request.headers.get("Authorization", "")
    token = given[7:].strip() if given[:7].lower() == "bearer " else ""
    if not token and api_key_header:
        token = request.headers.get("X-API-Key", "").strip()
    if not token:
        what, how = ("API key", "`Authorization: Bearer <key>` or `X-API-Key: <key>`"
                     ) if api_key_header else ("token", "`Authorization: Bearer <token>`")
        raise error(web.HTTPUnauthorized, f"missing {what}: send {how}", headers=CHALLENGE)
    if not well_formed(token):
        raise error(web.HTTPUnauthorized, "malformed token", headers=CHALLENGE)
    return token


def well_formed(token: str) -> bool:
    """Printable ASCII without spaces, of a sensible length: anything else is no token of
    ours (and non-ASCII bytes would not even hash)."""
    return 0 < len(token) <= MAX_TOKEN and token.isascii() and token.isprintable() \
        and " " not in token


def identify(app: web.Application, token: str) -> tuple[str, str] | None:
    """(role, id) of whoever holds `token`, or None."""
    if not well_formed(token):
        return None
    settings = app[SETTINGS]
    if hmac.compare_digest(token.encode(), settings.http.admin_token.encode()):
        return "admin", "admin"
    who = app[RUNNING].config.agents.who(token)
    return who if who and strong_enough(settings, token, f"{who[0]} {who[1]}") else None


def strong_enough(settings: Settings, token: str, whose: str) -> bool:
    """Production refuses a weak token even when it matches: only its hash is configured, so
    this is the first moment its strength can be judged. Development takes any."""
    if settings.mode != "production" or (why := weakness(token)) is None:
        return True
    log.error("refused the token of %s: too weak for production (%s); give them a new one "
              "(`centralino token`)", whose, why)
    return False


@web.middleware
async def plain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The outermost middleware: an error raised as an HTTPException is answered with a plain
    response. aiohttp keeps a raised one as the response, and its traceback then holds the
    frame that holds it: a reference cycle per refused request, which under a flood of bad
    requests made the garbage collector stop the calls for tens of ms."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:  # redirects are rare here and carry their own semantics
            raise
        answer = web.Response(status=exc.status, body=exc.body, headers=exc.headers)
        exc.__traceback__ = exc.__context__ = None
        if (exc.status in ABUSIVE and request.remote and (report := request.app.get(ABUSE))
                and report(request.remote)):
            answer.force_close()
        return answer


def own_auth(handler: Handler) -> Handler:
    """Tell `authenticate` that this handler checks the caller itself (portals' API keys are
    not tokens known here)."""
    handler.own_auth = True  # type: ignore[attr-defined]
    return handler


def portal_or_token(request: web.Request) -> tuple[str, str]:
    """("portal", client id) for a portal's key (settings recalls.clients), else
    ("admin"|"supervisor"|"agent", id) from `identify`; 401 for neither."""
    key = presented_token(request, api_key_header=True)
    settings = request.app[SETTINGS]
    if (client := settings.recalls.client_for(key)) and strong_enough(settings, key, client):
        return "portal", client
    who = identify(request.app, key)
    if who is None:
        raise error(web.HTTPUnauthorized, "unknown API key", headers=CHALLENGE)
    return who


def openapi_schemas(models: list[tuple[type[BaseModel], str]]) -> dict[str, Any]:
    """The components/schemas of an OpenAPI document, generated from the models (each with
    its mode: validation for what comes in, serialization for what goes out)."""
    schemas: dict[str, Any] = {}
    for model, mode in models:
        schema = model.model_json_schema(mode=mode,  # type: ignore[arg-type]
                                         ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    return schemas


def json_content(name: str) -> dict[str, Any]:
    """An OpenAPI body or answer of the JSON schema `name`."""
    return {"content": {"application/json": {"schema": {
        "$ref": f"#/components/schemas/{name}"}}}}


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A handler marked `own_auth = True` checks its own credentials (the portals' API keys of
    # recalls/http.py are not tokens known here).
    if request.path.startswith("/api/") and not getattr(request.match_info.handler, "own_auth",
                                                        False):
        who = identify(request.app, presented_token(request))
        if who is None:
            raise error(web.HTTPUnauthorized, "unknown token", headers=CHALLENGE)
        request[WHO] = who
    return await handler(request)


@web.middleware
async def database_away(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A request that needs the database while it is unreachable or refuses writes: 503 and
    when to try again, not a 500 (nothing was stored: the client may simply retry)."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        fault = fault_of(exc)
        if not fault.waits:
            raise
        log.error("%s %s: database %s (%s)", request.method, request.path, fault.kind, fault)
        state = "cannot be reached" if fault.kind == UNREACHABLE else "refuses writes"
        raise error(web.HTTPServiceUnavailable, f"the database {state} now: nothing was stored, "
                    "try again shortly", headers={"Retry-After": "30"}) from None


async def caught_up(request: web.Request) -> dict[str, str]:
    """Before a handler reads what the service just did: wait until the records are written,
    but not while the database takes no writes (the writer tries again for as long as it
    takes): then what is stored is served, and the headers say how much is missing."""
    missing = await request.app[WRITER].caught_up()
    return {"X-Records-Waiting": str(missing)} if missing else {}


def allow(*roles: str) -> Callable[[Handler], Handler]:
    """Only these roles; `self` lets an agent act on the agent in the URL ({agent_id})."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def checked(request: web.Request) -> web.StreamResponse:
            role, person = request[WHO]
            if role in roles or ("self" in roles and role == "agent"
                                 and person == request.match_info.get("agent_id")):
                return await handler(request)
            article = "an" if role[0] in "aeiou" else "a"
            raise error(web.HTTPForbidden, f"{article} {role} token cannot do this")

        return checked

    return decorate
