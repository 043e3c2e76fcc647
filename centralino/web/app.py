"""HTTP: prompt files for Asterisk, health and metrics, and the admin REST API.

Admin endpoints need `Authorization: Bearer <http.admin_token>`. Errors are JSON
`{"error": "<reason>"}` with a 4xx status that says whose fault it was.
"""

from __future__ import annotations

import asyncio
import hmac
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any, Literal

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, field_validator

from centralino import metrics
from centralino.figures import http as figures_api
from centralino.mail import http as mail_api
from centralino.recalls import http as recalls_api
from centralino.storage.models import Call, LineOverride
from centralino.tickets import http as tickets_api
from centralino.tickets import pages as ticket_pages
from centralino.web import agents, console
from centralino.web.common import (
    ARI,
    CHALLENGE,
    CLOCK,
    MAIL,
    QUEUES,
    REGISTRY,
    RUNNING,
    SETTINGS,
    STORE,
    WRITER,
    WebParts,
    allow,
    authenticate,
    caught_up,
    database_away,
    error,
    install,
    json_body,
    plain_errors,
    presented_token,
    query_int,
)
from cti.recalls import SlidingWindow
from ivr.clock import aware
from ivr.hours import line_status
from ivr.yamlfile import ConfigError


def create_app(parts: WebParts) -> web.Application:
    app = web.Application(middlewares=[plain_errors, database_away, authenticate])
    install(app, parts)
    app[METRICS_PAGE] = MetricsPage(parts.settings.http.metrics_max_age)
    app[SCRAPES] = SlidingWindow(SCRAPES_PER_10S, 10)
    app.router.add_get("/healthz", health)
    app.router.add_get("/metrics", prometheus)
    app.router.add_get(r"/prompts/{lang:[a-z]{2}}/{digest:[0-9a-f]+}/{prompt:[a-z0-9_]+}.wav",
                       prompt_file)
    app.router.add_post("/api/admin/reload", reload_config)
    app.router.add_get("/api/admin/ari-latency", ari_latency)
    app.router.add_get("/api/lines", list_lines)
    app.router.add_put("/api/lines/{number}/override", put_override)
    app.router.add_delete("/api/lines/{number}/override", delete_override)
    app.router.add_get("/api/lines/{number}/overrides", override_history)
    app.router.add_get("/api/calls", list_calls)
    app.router.add_get("/api/calls/{call_id}", get_call)
    app.router.add_get("/api/queues", list_queues)
    agents.add_routes(app)
    console.add_routes(app)
    figures_api.add_routes(app)
    recalls_api.add_routes(app)
    tickets_api.add_routes(app)
    mail_api.add_routes(app)
    ticket_pages.add_routes(app)
    return app


async def health(request: web.Request) -> web.Response:
    writer, mail = request.app[WRITER], request.app[MAIL]
    connected = request.app[ARI].connected.is_set()
    # The database away or refusing writes is not a 503: calls go on and records wait in
    # memory (a restart by a watchdog would lose them).
    fault, since = writer.fault, writer.fault_since
    return web.json_response({
        "status": "ok" if connected else "asterisk unreachable",
        "asterisk_connected": connected,
        "database": "ok" if fault is None else fault.kind,  # unreachable, refusing writes
        "database_problem": None if fault is None else fault.reason,  # read-only, disk full...
        "database_problem_seconds": None if since is None else round(time.time() - since),
        "records_waiting": writer.waiting,
        "config_version": request.app[RUNNING].config.version,
        "calls_in_progress": request.app[REGISTRY].in_progress(),
        # Each mailbox (mail.yaml): a mailbox that cannot be reached is said here, not a 503:
        # calls and the other mailboxes go on.
        "mailboxes": mail.health() if mail else {},
    }, status=200 if connected else 503)


class MetricsPage:
    """The rendered /metrics page, made at most once per `max_age` seconds: concurrent and
    frequent scrapers share one rendering instead of each recomputing the day's figures."""

    def __init__(self, max_age: float):
        self.max_age = max_age
        self._body = b""
        self._made_at = -math.inf
        self._making: asyncio.Future[bytes] | None = None

    async def get(self, render: Callable[[], Awaitable[bytes]]) -> bytes:
        if time.monotonic() - self._made_at < self.max_age:
            return self._body
        if self._making is None:
            self._making = asyncio.ensure_future(render())
            self._making.add_done_callback(self._made)
        return await asyncio.shield(self._making)

    def _made(self, making: asyncio.Future[bytes]) -> None:
        self._making = None
        if not making.cancelled() and making.exception() is None:
            self._body, self._made_at = making.result(), time.monotonic()


METRICS_PAGE = web.AppKey("metrics_page", MetricsPage)
# Prometheus scrapes every 15 s or so: more than this from one address is a loop (429, and the
# address is barred if it goes on: web.site). Its pages are cached, but serving them is not free.
SCRAPES = web.AppKey("scrapes", SlidingWindow)
SCRAPES_PER_10S = 10


async def prometheus(request: web.Request) -> web.Response:
    writer = request.app[WRITER]
    http = request.app[SETTINGS].http
    if http.metrics_token:
        token = presented_token(request)
        if not any(hmac.compare_digest(token.encode(), secret.encode())
                   for secret in (http.metrics_token, http.admin_token)):
            raise error(web.HTTPUnauthorized, "unknown token", headers=CHALLENGE)
    now = request.app[CLOCK].now()
    if (wait := request.app[SCRAPES].hit(request.remote or "", now)) is not None:
        raise error(web.HTTPTooManyRequests, f"at most {SCRAPES_PER_10S} scrapes in 10 s",
                    headers={"Retry-After": str(wait)})

    async def render() -> bytes:
        metrics.ACTIVE_CALLS.set(request.app[REGISTRY].in_progress())
        metrics.DATABASE_UP.set(writer.fault is None)
        metrics.RECORDS_WAITING.set(writer.waiting)
        metrics.WAITING.clear()  # a topic a reload removed goes once nobody waits in it
        for topic in request.app[RUNNING].topics:
            metrics.WAITING.labels(topic).set(len(request.app[QUEUES].waiting(topic)))
        await mail_api.refresh(request.app)
        await figures_api.refresh(request.app)
        return generate_latest()

    body = await request.app[METRICS_PAGE].get(render)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def prompt_file(request: web.Request) -> web.StreamResponse:
    running = request.app[RUNNING]
    lang, prompt = request.match_info["lang"], request.match_info["prompt"]
    path = running.catalog.path(lang, prompt)
    if path is None or not path.exists():
        raise error(web.HTTPNotFound, "no such prompt")
    # The URL carries the content hash: a changed prompt has a new URL, so this one may be
    # cached forever. Another digest (a call that started before a reload changed the
    # recording, or anybody guessing) gets today's file, which must not be cached under it.
    if running.catalog.is_current(lang, prompt, request.match_info["digest"]):
        cache = "public, max-age=31536000, immutable"
    else:
        cache = "no-store"
    return web.FileResponse(path, headers={"Cache-Control": cache, "Content-Type": "audio/wav"})


@allow("admin")
async def reload_config(request: web.Request) -> web.Response:
    try:
        config = await request.app[RUNNING].reload()
    except ConfigError as exc:
        metrics.CONFIG_RELOADS.labels("refused").inc()
        return web.json_response({
            "error": "configuration refused; the running one stays",
            "problems": [str(p) for p in exc.problems],
            "running_version": request.app[RUNNING].config.version,
        }, status=422)
    metrics.CONFIG_RELOADS.labels("ok").inc()
    return web.json_response({"version": config.version,
                              "warnings": [str(w) for w in config.call.warnings]})


@allow("admin")
async def ari_latency(request: web.Request) -> web.Response:
    """Percentiles of the service's reaction time (benchmarks read this): wall clock, and the
    event loop's CPU time over the same interval (what remains if the OS never preempted us).
    `samples=1`: each (wall, cpu) in ms too, for a benchmark that cuts a run into windows."""
    samples = request.app[ARI].reaction_samples
    values = list(samples)
    if request.query.get("reset") in ("1", "true"):
        samples.clear()
    if not values:
        return web.json_response({"count": 0})
    out: dict[str, Any] = {"count": len(values)}
    if request.query.get("samples") in ("1", "true"):
        out["samples_ms"] = [(round(w * 1e3, 3), round(c * 1e3, 3)) for w, c in values]
    for name, series in (("wall", sorted(v[0] for v in values)),
                         ("cpu", sorted(v[1] for v in values))):
        q = statistics.quantiles(series, n=100, method="inclusive") if len(series) > 1 \
            else series * 99
        out[name] = {"p50_ms": q[49] * 1e3, "p90_ms": q[89] * 1e3, "p99_ms": q[98] * 1e3,
                     "max_ms": series[-1] * 1e3}
    return web.json_response(out)


def _line(app: web.Application, number: str) -> Any:
    flow = app[RUNNING].config.call.flows.get(number)
    if flow is None:
        raise error(web.HTTPNotFound, f"no line with number {number}")
    return flow


@allow("admin", "supervisor")
async def list_lines(request: web.Request) -> web.Response:
    running = request.app[RUNNING]
    now = request.app[CLOCK].now()
    out = []
    for number, flow in running.config.call.flows.items():
        schedule = running.config.call.schedules.get(flow.hours) if flow.hours else None
        override = running.overrides.get(number)
        status = line_status(schedule, override, now)
        out.append({
            "number": number, "name": flow.name, "open": status.open, "why": status.why,
            "detail": status.detail,
            "override": _override_json(override) if override and now < override.until else None,
        })
    return web.json_response(out)


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    state: Literal["open", "closed"]
    until: datetime
    reason: str = Field(min_length=3, max_length=255)
    by: str = Field("api", min_length=1, max_length=64)

    @field_validator("until")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return aware(value)


@allow("admin")
async def put_override(request: web.Request) -> web.Response:
    number = request.match_info["number"]
    _line(request.app, number)
    body: OverrideRequest = await json_body(request, OverrideRequest)
    if body.until <= request.app[CLOCK].now():
        raise error(web.HTTPBadRequest, "until: must be in the future")
    override = await request.app[RUNNING].set_override(number, body.state, body.until,
                                                       body.reason, body.by)
    return web.json_response(_override_json(override))


@allow("admin")
async def delete_override(request: web.Request) -> web.Response:
    number = request.match_info["number"]
    _line(request.app, number)
    by = request.query.get("by", "api")[:64]
    return web.json_response({"cleared": await request.app[RUNNING].clear_override(number, by)})


@allow("admin")
async def override_history(request: web.Request) -> web.Response:
    rows = await request.app[STORE].override_history(request.match_info["number"])
    return web.json_response([_override_row(r) for r in rows])


def _override_json(o: Any) -> dict[str, Any]:
    return {"state": o.state, "until": o.until.isoformat(), "reason": o.reason, "by": o.set_by}


def _override_row(r: LineOverride) -> dict[str, Any]:
    return {
        "state": r.state, "until": r.until.isoformat(), "reason": r.reason, "set_by": r.set_by,
        "set_at": r.set_at.isoformat(),
        "cleared_at": r.cleared_at.isoformat() if r.cleared_at else None,
        "cleared_by": r.cleared_by,
    }


def call_json(call: Call) -> dict[str, Any]:
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    return {
        "id": call.id, "channel_id": call.channel_id, "number": call.number, "line": call.line,
        "caller_number": call.caller_number, "caller_name": call.caller_name,
        "config_version": call.config_version, "started_at": iso(call.started_at),
        "answered_at": iso(call.answered_at), "ended_at": iso(call.ended_at),
        "outcome": call.outcome, "topic": call.topic, "detail": call.detail,
        # Who answered and when: what a supervisor looks up after a complaint.
        "queued_at": iso(call.queued_at), "connected_at": iso(call.connected_at),
        "agent_id": call.agent_id, "announced_wait": call.announced_wait,
        "steps": [
            {"at": iso(s.at), "kind": s.kind, "node": s.node, "key": s.key, "prompt": s.prompt,
             "detail": s.detail}
            for s in call.steps
        ],
    }


@allow("admin", "supervisor")
async def list_calls(request: web.Request) -> web.Response:
    limit = query_int(request, "limit", 50, 1, 500)
    headers = await caught_up(request)  # read what was just done
    calls = await request.app[STORE].find_calls(
        channel_id=request.query.get("channel_id"), number=request.query.get("number"),
        caller=request.query.get("caller"), limit=limit,
    )
    return web.json_response([call_json(c) for c in calls], headers=headers)


@allow("admin", "supervisor")
async def get_call(request: web.Request) -> web.Response:
    store = request.app[STORE]
    headers = await caught_up(request)
    call = await store.get_call(request.match_info["call_id"])
    if call is None:
        raise error(web.HTTPNotFound, "no such call")
    iso = lambda t: t.isoformat() if t else None  # noqa: E731
    # Each agent's leg: who was rung, who answered, until when (transfers make several).
    legs = [{"agent_id": o.agent_id, "rang_at": iso(o.offered_at),
             "answered_at": iso(o.answered_at), "ended_at": iso(o.ended_at),
             "outcome": o.outcome} for o in await store.offers_for(call.id)]
    return web.json_response({**call_json(call), "legs": legs}, headers=headers)


@allow("admin", "supervisor")
async def list_queues(request: web.Request) -> web.Response:
    return web.json_response(request.app[QUEUES].snapshot(request.app[CLOCK].now()))
