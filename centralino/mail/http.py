"""The mailboxes for the supervisors (issue #12): how each stands, the messages quarantined
(unreadable: kept raw for a person) and the mail not sent (refused for good, or cut mid-way),
with what a supervisor does about them; and the mail's Prometheus gauges.

    GET  /api/mail/mailboxes                     each mailbox: state, counts
    GET  /api/mail/quarantine?mailbox=           the quarantined nobody looked at yet
    GET  /api/mail/quarantine/{id}/raw           the message as it came (message/rfc822)
    POST /api/mail/quarantine/{id}/done          looked at: off the list (kept, who and when)
    GET  /api/mail/outbox?mailbox=               failed and uncertain messages
    POST /api/mail/outbox/{id}/retry             sent once more (failed or uncertain only)

Supervisors and the admin only (401 without a known token, 403 for an agent's); 503 where the
service has no mail.yaml.
"""

from __future__ import annotations

import logging
import weakref
from datetime import datetime, time
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser

from aiohttp import web

from centralino import metrics
from centralino.mail.desk import MailDesk
from centralino.storage.faults import fault_of
from centralino.web.common import CLOCK, MAIL, STORE, WHO, allow, error, query_int
from ivr.clock import LOCAL
from mail import kinds

log = logging.getLogger("centralino.mail")
BASE = "/api/mail"
NOT_SENT = ("failed", "uncertain")
OUTBOX_STATUSES = ("pending", "sending", "failed", "uncertain")


def add_routes(app: web.Application) -> None:
    app.router.add_get(BASE + "/mailboxes", mailboxes)
    app.router.add_get(BASE + "/quarantine", quarantine)
    app.router.add_get(BASE + "/quarantine/{id:[0-9]{1,12}}/raw", raw_message)
    app.router.add_post(BASE + "/quarantine/{id:[0-9]{1,12}}/done", looked_at)
    app.router.add_get(BASE + "/outbox", not_sent)
    app.router.add_post(BASE + "/outbox/{id:[0-9]{1,12}}/retry", retry)


def _mail(request: web.Request) -> MailDesk:
    desk = request.app[MAIL]
    if desk is None:
        raise error(web.HTTPServiceUnavailable, "this desk reads no mailboxes (no mail.yaml)")
    return desk


def _box(request: web.Request, desk: MailDesk) -> str | None:
    name = request.query.get("mailbox") or None
    if name is not None and name not in desk.config.mailboxes:
        raise error(web.HTTPNotFound, f"no mailbox {name[:64]!r} (see mail.yaml)")
    return name


def _by(request: web.Request) -> str:
    role, person = request[WHO]
    return f"{role}:{person}"


def box_of_sender(desk: MailDesk) -> dict[str, str]:
    """Sending address -> the mailbox it belongs to (the first, if two share it)."""
    out: dict[str, str] = {}
    for name, box in desk.config.mailboxes.items():
        out.setdefault(box.address.lower(), name)
    return out


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


@allow("admin", "supervisor")
async def mailboxes(request: web.Request) -> web.Response:
    desk = _mail(request)
    now = desk.clock.now()
    midnight = datetime.combine(now.astimezone(LOCAL).date(), time(), tzinfo=LOCAL)
    counts = await desk.store.mailbox_counts(midnight)
    gauges = await desk.store.mail_gauges()
    senders = box_of_sender(desk)
    failing: dict[str, int] = {}
    for status, sender, n in gauges["outbox"]:
        if status in NOT_SENT:
            name = senders.get(sender.lower(), "")
            failing[name] = failing.get(name, 0) + n
    health = desk.health()
    out = []
    for name, box in desk.config.mailboxes.items():
        h, c = health[name], counts.get(name, {})
        out.append({
            "name": name, "address": box.address, "connected": h["connected"],
            "problem": h["problem"], "problem_since": h["problem_since"],
            "stored_today": c.get("today", 0), "stored_total": c.get("total", 0),
            "last_message_at": _iso(c.get("last_at")),
            "quarantined": gauges["quarantined"].get(name, 0),
            "not_sent": failing.get(name, 0)})
    return web.json_response({"mailboxes": out, "at": now.isoformat()})


def _headers(head: bytes) -> tuple[str | None, str | None]:
    """From and Subject, if the message's start reads as headers at all."""
    try:
        message = BytesHeaderParser(policy=policy.default).parsebytes(head)
    except Exception:  # noqa: BLE001 (unreadable is why it is here)
        return None, None
    if not isinstance(message, EmailMessage):
        return None, None
    found = (kinds.header(message, "From").strip(), kinds.header(message, "Subject").strip())
    return found[0][:255] or None, found[1][:255] or None


@allow("admin", "supervisor")
async def quarantine(request: web.Request) -> web.Response:
    desk = _mail(request)
    rows = await desk.store.quarantined_mail(_box(request, desk),
                                             query_int(request, "limit", 200, 1, 1000))
    out = []
    for r in rows:
        sender, subject = _headers(bytes(r.head or b""))
        out.append({"id": r.id, "mailbox": r.mailbox, "received_at": r.fetched_at.isoformat(),
                    "reason": r.reason, "sender": sender, "subject": subject})
    return web.json_response(out)


@allow("admin", "supervisor")
async def raw_message(request: web.Request) -> web.Response:
    desk = _mail(request)
    row = await desk.store.stored_mail(int(request.match_info["id"]))
    if row is None:
        raise error(web.HTTPNotFound, "no such message")
    return web.Response(body=row.raw, headers={
        "Content-Type": "message/rfc822",
        "Content-Disposition": f'attachment; filename="messaggio-{row.id}.eml"',
        "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})


@allow("admin", "supervisor")
async def looked_at(request: web.Request) -> web.Response:
    desk = _mail(request)
    mail_id, by, now = int(request.match_info["id"]), _by(request), desk.clock.now()
    if not await desk.store.mail_reviewed(mail_id, by, now):
        row = await desk.store.stored_mail(mail_id)
        if row is None:
            raise error(web.HTTPNotFound, "no such message")
        raise error(web.HTTPConflict, f"the message is not in quarantine (it is {row.status})")
    log.info("quarantined message %d looked at by %s", mail_id, by)
    return web.json_response({"id": mail_id, "status": "reviewed", "by": by,
                              "at": now.isoformat()})


@allow("admin", "supervisor")
async def not_sent(request: web.Request) -> web.Response:
    desk = _mail(request)
    name = _box(request, desk)
    senders = box_of_sender(desk)
    mine = None if name is None else [a for a, n in senders.items() if n == name]
    rows = await desk.store.mail_not_sent(mine, query_int(request, "limit", 200, 1, 1000))
    return web.json_response([{
        "id": r.id, "ticket": r.number, "mailbox": senders.get(r.sender.lower()),
        "recipient": r.recipient, "kind": r.kind, "status": r.status, "attempts": r.attempts,
        "error": r.error, "created_at": r.created_at.isoformat()} for r in rows])


@allow("admin", "supervisor")
async def retry(request: web.Request) -> web.Response:
    """Once more through the outbox (it claims the message before sending, so a second
    click, or two supervisors at once, never sends it twice: the second finds it pending)."""
    desk = _mail(request)
    out_id, by = int(request.match_info["id"]), _by(request)
    row = await desk.store.mail_out(out_id)
    if row is None:
        raise error(web.HTTPNotFound, "no such message")
    if row.status not in NOT_SENT or not await desk.store.mail_sending(
            out_id, row.status, "pending", next_at=desk.clock.now()):
        now = await desk.store.mail_out(out_id)
        raise error(web.HTTPConflict, "only a failed or uncertain message is sent again "
                    f"(this one is {now.status if now else row.status})")
    desk.outbox.kick.set()
    log.info("mail %s to %s (%s) sent again at the request of %s", row.message_id,
             row.recipient, row.status, by)
    return web.json_response({"id": out_id, "status": "pending", "by": by}, status=202)


# --- Prometheus ---------------------------------------------------------------------------------

# What each running MailDesk's stored count had reached at the last scrape: the counter grows by
# the difference (the count is the inboxes', this run's).
_COUNTED: weakref.WeakKeyDictionary[MailDesk, dict[str, int]] = weakref.WeakKeyDictionary()


async def refresh(app: web.Application) -> None:
    """The mail's gauges, when /metrics is rendered (at most once per metrics_max_age): the
    mailboxes' state from memory, the rest from one small query by status (mail_gauges)."""
    for gauge in (metrics.MAILBOX_UP, metrics.MAIL_QUARANTINED, metrics.MAIL_OLDEST_STORED,
                  metrics.MAIL_OUTBOX):
        gauge.clear()  # a mailbox a reload removed disappears
    desk = app[MAIL]
    if desk is None:
        return
    counted = _COUNTED.setdefault(desk, {})
    for name, h in desk.health().items():
        metrics.MAILBOX_UP.labels(name).set(1 if h["connected"] else 0)
        metrics.MAIL_STORED.labels(name).inc(max(0, h["stored"] - counted.get(name, 0)))
        counted[name] = max(h["stored"], counted.get(name, 0))
    try:
        gauges = await app[STORE].mail_gauges()
    except Exception as exc:  # the mailboxes' state is still worth serving
        if (fault := fault_of(exc)).waits:
            log.error("mail figures for /metrics: database %s (%s)", fault.kind, fault)
        else:
            log.exception("mail figures for /metrics")
        return
    now = app[CLOCK].now()
    for name in desk.config.mailboxes:
        metrics.MAIL_QUARANTINED.labels(name).set(gauges["quarantined"].get(name, 0))
        if (oldest := gauges["oldest_stored"].get(name)) is not None:
            metrics.MAIL_OLDEST_STORED.labels(name).set(
                max(0.0, (now - oldest).total_seconds()))
        for status in OUTBOX_STATUSES:  # zeros too: a dashboard's sum needs the series
            metrics.MAIL_OUTBOX.labels(name, status).set(0)
    senders = box_of_sender(desk)
    for status, sender, n in gauges["outbox"]:
        name = senders.get(sender.lower(), "")
        metrics.MAIL_OUTBOX.labels(name, status).inc(n)
