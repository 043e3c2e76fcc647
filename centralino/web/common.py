"""What every HTTP handler shares: the service, JSON errors, who is calling and what they may do.

Tokens: the admin token (settings http.admin_token) may do everything; a supervisor's token
(agents.yaml) may see and change every agent; an agent's token only their own state.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from centralino.storage.faults import UNREACHABLE, fault_of

if TYPE_CHECKING:
    from centralino.service import Service

SERVICE = web.AppKey("service", "Service")
WHO = web.RequestKey("who", tuple)  # (role, id): role is admin, supervisor or agent
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
log = logging.getLogger("centralino.web")


def error(status: type[web.HTTPException], reason: str) -> web.HTTPException:
    return status(text=json.dumps({"error": reason}), content_type="application/json")


def identify(service: Service, token: str) -> tuple[str, str] | None:
    admin = service.settings.http.admin_token
    if hmac.compare_digest(token.encode(), admin.encode()):
        return "admin", "admin"
    return service.config.agents.who(token)


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    # A handler marked `own_auth = True` checks its own credentials (the portals' API keys of
    # web/recalls.py are not tokens known here).
    if request.path.startswith("/api/") and not getattr(request.match_info.handler, "own_auth",
                                                        False):
        given = request.headers.get("Authorization", "")
        if not given.startswith("Bearer "):
            raise error(web.HTTPUnauthorized, "missing `Authorization: Bearer <token>`")
        who = identify(request.app[SERVICE], given.removeprefix("Bearer "))
        if who is None:
            raise error(web.HTTPForbidden, "this token is not allowed here")
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
        raise web.HTTPServiceUnavailable(
            text=json.dumps({"error": f"the database {state} now: nothing was stored, "
                                      "try again shortly", "database": fault.kind}),
            content_type="application/json", headers={"Retry-After": "30"}) from None


async def caught_up(request: web.Request) -> dict[str, str]:
    """Before a handler reads what the service just did: wait until the records are written,
    but not while the database takes no writes (the writer tries again for as long as it
    takes): then what is stored is served, and the headers say how much is missing."""
    missing = await request.app[SERVICE].writer.caught_up()
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
            raise error(web.HTTPForbidden, f"a {role} token cannot do this")

        return checked

    return decorate


async def json_body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        return model.model_validate_json(await request.read() or b"{}")
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise error(web.HTTPBadRequest, "; ".join(problems)) from None
