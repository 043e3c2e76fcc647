"""Figures over HTTP: `GET /api/figures` (a period's figures and the live state), `GET
/api/queue_log` (the history in Asterisk's queue_log file format) and the figures' Prometheus
gauges, refreshed when `/metrics` is scraped. Definitions: centralino.figures.compute.

Periods: `from` and `to` are ISO dates or date-times; without an offset they are Italian local
time (the service clock's zone). A date as `to` means the end of that day. Default: today,
from local midnight.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Any

from aiohttp import web

from centralino import metrics
from centralino.figures import compute as figures
from centralino.storage.faults import fault_of
from centralino.web.common import (
    CLOCK,
    DESK,
    QUEUES,
    RUNNING,
    STORE,
    TICKETS,
    allow,
    caught_up,
    error,
)
from cti.recalls import ATTEMPT_OUTCOMES
from ivr.clock import LOCAL, aware
from tickets import figures as ticket_figures

log = logging.getLogger("centralino.figures")
# A wrap-up lasts at most 600 s (ivr.schema.QueueTopic.wrap_up): the change that ends it is
# within this much of the call's end.
WRAP_UP_WINDOW = timedelta(minutes=15)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/figures", get_figures)
    app.router.add_get("/api/queue_log", get_queue_log)


# --- periods ----------------------------------------------------------------------------------

def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=LOCAL)


# Periods are bounded: far dates are no figures anybody has, and at the very ends of the
# calendar adding a day or changing zone overflows.
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)


def _instant(name: str, value: str, end: bool) -> datetime:
    """An ISO date or date-time; a date as an end means the end of that day."""
    value = value.strip()
    out_of_range = error(web.HTTPBadRequest, f"{name}: a date from {EARLIEST} to {LATEST}")
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise error(web.HTTPBadRequest, f"{name}: not a date (YYYY-MM-DD)") from None
        if not EARLIEST <= day <= LATEST:
            raise out_of_range
        return _midnight(day + timedelta(days=1) if end else day)
    # An unencoded "+01:00" arrives as " 01:00": put the plus back.
    value = re.sub(r" (\d{2}:?\d{2})$", r"+\1", value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise error(web.HTTPBadRequest, f"{name}: expected an ISO date (2026-12-01) or date-time "
                                        "(2026-12-01T09:30)") from None
    if not EARLIEST <= moment.date() <= LATEST:
        raise out_of_range
    return aware(moment)


def period(params: Mapping[str, str], now: datetime) -> tuple[datetime, datetime]:
    since = (_instant("from", params["from"], end=False) if params.get("from")
             else _midnight(now.astimezone(LOCAL).date()))
    until = (_instant("to", params["to"], end=True) if params.get("to")
             else _midnight(now.astimezone(LOCAL).date() + timedelta(days=1)))
    if since >= until:
        raise error(web.HTTPBadRequest, f"from ({since.isoformat()}) must be before to "
                                        f"({until.isoformat()})")
    return since, until


# --- figures ----------------------------------------------------------------------------------

def thresholds(app: web.Application) -> dict[str, figures.Thresholds]:
    return {name: figures.Thresholds(q.service_level, q.short_abandon)
            for name, q in app[RUNNING].config.call.queues.items()}


def _log_rows(rows: list[Any]) -> list[figures.LogRow]:
    return [figures.LogRow(r.at, r.call_id, r.queue, r.agent, r.event, r.line or "",
                           r.number or "", r.announced_wait, r.data1 or "", r.data2 or "")
            for r in rows]


async def period_report(app: web.Application, since: datetime, until: datetime,
                        topic: str | None = None, line: str | None = None) -> figures.Report:
    store = app[STORE]
    rows = await store.figures_rows(since, until)
    # Wrap-ups: the agents' changes from the first answer to just after the last call ended.
    connected = [r.at for r in rows if r.event == "CONNECT"]
    completed = [r.at for r in rows if r.event in figures.COMPLETE]
    changes = (await store.agent_changes(min(connected), max(completed) + WRAP_UP_WINDOW)
               if connected and completed else [])
    # The arithmetic takes ~50 ms per 2,000 calls: in a thread, so that calls in progress
    # keep getting their events handled meanwhile (the GIL changes hands every 5 ms).
    limits = thresholds(app)
    return await asyncio.to_thread(lambda: figures.report(
        _log_rows(rows), limits, since, until,
        agent_changes=[(c.agent_id, c.at, c.state) for c in changes], topic=topic, line=line))


async def recall_report(app: web.Application, since: datetime, until: datetime,
                        topic: str | None = None) -> dict[str, Any]:
    requests, attempts = await app[STORE].recall_figures_rows(since, until, topic)
    return figures.recall_report(
        [figures.RecallRow(*r) for r in requests], [figures.AttemptRow(*a) for a in attempts])


async def ticket_report(app: web.Application, since: datetime, until: datetime
                        ) -> dict[str, Any] | None:
    """The written requests opened in the period, and the backlog now (None: no tickets)."""
    store = app[STORE]
    tickets = app[TICKETS]
    if not tickets.enabled:
        return None
    rows = await store.ticket_figures_rows(since, until)
    hours = tickets.config.hours
    schedule = app[RUNNING].config.call.schedules.get(hours) if hours else None
    found = await asyncio.to_thread(ticket_figures.report,
                                    [ticket_figures.TicketRow(*r) for r in rows], schedule)
    now = app[CLOCK].now()
    charge = await store.ticket_charge_intervals(since, until, now)
    return {**found, "backlog": await store.ticket_backlog(now),
            "agents_in_charge_seconds": ticket_figures.time_in_charge(charge, since,
                                                                      min(until, now))}


def live(app: web.Application, topics: list[str]) -> dict[str, Any]:
    return figures.live({t: app[QUEUES].waiting(t) for t in topics}, app[DESK].agents.values(),
                        app[CLOCK].now())


@allow("admin", "supervisor")
async def get_figures(request: web.Request) -> web.Response:
    """?from=&to=&topic=&line= (line: its name or number). JSON: the period's figures (total,
    topics, lines, topic_lines), each topic's thresholds, and the live state."""
    running = request.app[RUNNING]
    since, until = period(request.query, request.app[CLOCK].now())
    queues = running.config.call.queues
    topic = request.query.get("topic") or None
    if topic is not None and topic not in running.topics:
        raise error(web.HTTPNotFound, f"no topic {topic[:64]!r} (see queues.yaml)")
    line = request.query.get("line") or None
    if line is not None and not any(line in (f.name, n)
                                    for n, f in running.config.call.flows.items()):
        raise error(web.HTTPNotFound, f"no line named or numbered {line[:64]!r}")
    headers = await caught_up(request)  # read what was just done
    found = await period_report(request.app, since, until, topic, line)
    shown = [topic] if topic else running.topics
    return web.json_response({
        **found.as_dict(),
        # Recalls have no line: `line` does not select them.
        "recalls": await recall_report(request.app, since, until, topic),
        "settings": {t: {"name": queues[t].name, "service_level": queues[t].service_level,
                         "short_abandon": queues[t].short_abandon}
                     for t in shown if t in queues},  # not those a reload removed
        "live": live(request.app, shown),
        "tickets": await ticket_report(request.app, since, until),
    }, headers=headers)


@allow("admin", "supervisor")
async def get_queue_log(request: web.Request) -> web.StreamResponse:
    """?from=&to=: the history as Asterisk's queue_log file, oldest first, streamed."""
    since, until = period(request.query, request.app[CLOCK].now())
    headers = await caught_up(request)
    batches = request.app[STORE].queue_log_batches(since, until)
    # The first part before the answer starts: a database away is a 503, not a cut stream.
    first: list[Any] = await anext(batches, [])
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8",
                                           **headers})
    response.enable_chunked_encoding()
    await response.prepare(request)
    async for batch in _chain(first, batches):
        await response.write("".join(
            figures.queue_log_line(r.at, r.call_id, r.queue, r.agent, r.event,
                                   (r.data1, r.data2, r.data3, r.data4, r.data5))
            for r in batch).encode())
    await response.write_eof()
    return response


async def _chain(first: list[Any], rest: Any) -> Any:
    yield first
    async for batch in rest:
        yield batch


# --- Prometheus -------------------------------------------------------------------------------

async def refresh(app: web.Application) -> None:
    """Set the live gauges, then today's figures per topic (one database query). /metrics
    (app.py) calls this just before it renders them."""
    topics = app[RUNNING].topics
    now = app[CLOCK].now()
    state = live(app, topics)
    for gauge in (metrics.LONGEST_WAIT, metrics.AGENTS, metrics.QUEUE_AGENTS):
        gauge.clear()  # a topic removed by a reload disappears
    for topic, t in state["topics"].items():
        metrics.LONGEST_WAIT.labels(topic).set(t["longest_wait"])
        for s, n in t["agents"].items():
            metrics.QUEUE_AGENTS.labels(topic, s).set(n)
    for s, n in state["agents"].items():
        metrics.AGENTS.labels(s).set(n)
    since, until = period({}, now)
    try:
        rows = await app[STORE].figures_rows(since, until)
    except Exception as exc:  # the live gauges are still worth serving
        if (fault := fault_of(exc)).waits:  # health says so too: one line, no traceback
            log.error("today's figures for /metrics: database %s (%s)", fault.kind, fault)
        else:
            log.exception("today's figures for /metrics")
        return
    limits = thresholds(app)
    today = await asyncio.to_thread(
        lambda: figures.topic_figures(_log_rows(rows), limits, since, until))
    per_topic = {
        metrics.TODAY_OFFERED: lambda f: f.offered,
        metrics.TODAY_ANSWERED: lambda f: f.answered,
        metrics.TODAY_ABANDONED: lambda f: f.abandoned,
        metrics.TODAY_SHORT_ABANDONED: lambda f: f.short_abandoned,
        metrics.TODAY_SERVICE_LEVEL: lambda f: (None if f.service_level_pct is None
                                                else f.service_level_pct / 100),
        metrics.TODAY_ASA: lambda f: f.asa_avg,
        metrics.TODAY_AHT: lambda f: f.aht_avg,
    }
    for gauge, value in per_topic.items():
        gauge.clear()
        for topic in topics:
            v = value(today.get(topic) or figures.Figures())
            if v is not None:  # undefined (no calls yet): absent rather than a fake 0
                gauge.labels(topic).set(v)
    try:
        recalls = (await recall_report(app, since, until))["topics"]
    except Exception:
        log.exception("today's recall figures for /metrics")
        return
    for gauge in (metrics.TODAY_RECALLS, metrics.TODAY_RECALL_ATTEMPTS,
                  metrics.TODAY_RECALL_FIRST_ATTEMPT, metrics.TODAY_RECALL_ATTEMPTS_PER_SUCCESS):
        gauge.clear()
    empty = figures.RecallFigures().as_dict()
    for topic in topics:
        r = recalls.get(topic, empty)
        for status, n in r["by_status"].items():
            metrics.TODAY_RECALLS.labels(topic, status).set(n)
        # Every outcome, zeros too: a dashboard's sum or ratio needs the series to exist.
        for outcome in dict.fromkeys((*ATTEMPT_OUTCOMES, *r["attempts"])):
            metrics.TODAY_RECALL_ATTEMPTS.labels(topic, outcome).set(r["attempts"].get(outcome, 0))
        if r["first_attempt_avg"] is not None:
            metrics.TODAY_RECALL_FIRST_ATTEMPT.labels(topic).set(r["first_attempt_avg"])
        if r["attempts_per_success"] is not None:
            metrics.TODAY_RECALL_ATTEMPTS_PER_SUCCESS.labels(topic).set(r["attempts_per_success"])
    try:
        tickets = await ticket_report(app, since, until)
    except Exception:
        log.exception("today's ticket figures for /metrics")
        return
    for gauge in (metrics.TICKETS_OPEN, metrics.TICKETS_PAST_DEADLINE, metrics.TICKETS_OLDEST,
                  metrics.TODAY_TICKETS, metrics.TODAY_TICKETS_CHANNEL, metrics.TODAY_TICKET_SLA):
        gauge.clear()
    if tickets is None:
        return
    backlog = tickets["backlog"]
    for row in backlog["by_topic_level"]:
        metrics.TICKETS_OPEN.labels(row["topic"], row["level"]).set(row["open"])
    metrics.TICKETS_PAST_DEADLINE.set(backlog["past_deadline"])
    if backlog["oldest"] is not None:
        metrics.TICKETS_OLDEST.set(backlog["oldest"]["age_seconds"])
    for state, n in tickets["by_state"].items():
        metrics.TODAY_TICKETS.labels(state).set(n)
    for channel, n in tickets["by_channel"].items():
        metrics.TODAY_TICKETS_CHANNEL.labels(channel).set(n)
    for target in ("first_response", "resolution"):
        if (pct := tickets[f"{target}_met_pct"]) is not None:
            metrics.TODAY_TICKET_SLA.labels(target).set(pct / 100)
