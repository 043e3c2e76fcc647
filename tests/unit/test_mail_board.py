"""The mailboxes for the supervisors (centralino/mail/http.py) on a real SQLite store and the
real HTTP app: who may see them, each mailbox's state and counts, the quarantine (listed,
downloaded, looked at), the mail not sent (listed, sent once more, once) and the Prometheus
gauges. The same with a real Dovecot, SMTP and PostgreSQL: tests/integration/test_mail_board.py.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from centralino.mail.desk import MailDesk
from tests.unit.test_mail_intake import CONFIG
from tests.unit.webparts import ADMIN, SUPERVISOR, bearer, scrape, token, web_parts

SUP = bearer(SUPERVISOR)
GARBAGE = b"\x00\x01 not a message at all"


def with_mail(parts: Any) -> MailDesk:
    """The mail desk over the parts' store and tickets, its loops not started."""
    desk = MailDesk(parts.store, parts.tickets, parts.clock, CONFIG, parts.spawn)
    parts.replace(mail=desk)
    return desk


async def get(client: Any, path: str, status: int = 200) -> Any:
    resp = await client.get(path, headers=SUP)
    assert resp.status == status, await resp.text()
    return await resp.json()


async def test_only_supervisors_and_the_admin_see_the_mailboxes(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        resp = await client.get("/api/mail/mailboxes", headers=SUP)
        assert resp.status == 503  # no mail.yaml here
        with_mail(parts)
        assert (await client.get("/api/mail/mailboxes")).status == 401
        agent = bearer(token("1001"))
        for method, path in (("GET", "/api/mail/mailboxes"), ("GET", "/api/mail/quarantine"),
                             ("GET", "/api/mail/quarantine/1/raw"),
                             ("POST", "/api/mail/quarantine/1/done"),
                             ("GET", "/api/mail/outbox"), ("POST", "/api/mail/outbox/1/retry")):
            resp = await client.request(method, path, headers=agent)
            assert resp.status == 403, (path, await resp.text())
            resp = await client.request(method, path, headers=bearer("nobody-has-this"))
            assert resp.status == 401, path
        assert (await client.get("/api/mail/mailboxes", headers=bearer(ADMIN))).status == 200
        assert (await client.get("/api/mail/quarantine?mailbox=nope", headers=SUP)).status == 404


async def test_each_mailbox_says_its_state_and_counts(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        desk = with_mail(parts)
        now = parts.clock.now()
        desk.inboxes["cittadini"].health.connected = True
        pec = desk.inboxes["pec"].health
        pec.problem, pec.since = "login: NO [AUTHENTICATIONFAILED]", parts.clock.monotonic() - 600
        store = parts.store
        assert await store.store_mail("cittadini", 1, 1, "a", None, b"x", now - timedelta(days=1))
        assert await store.store_mail("cittadini", 1, 2, "b", None, b"x", now)
        assert await store.store_mail("cittadini", 1, 3, "c", None, GARBAGE, now)
        await store.mail_done(3, "quarantined", None, reason="no headers")
        boxes = {b["name"]: b for b in (await get(client, "/api/mail/mailboxes"))["mailboxes"]}
        assert list(boxes) == ["cittadini", "pec", "delega"]
        c = boxes["cittadini"]
        assert (c["connected"], c["problem"], c["stored_today"], c["stored_total"],
                c["quarantined"], c["not_sent"]) == (True, None, 2, 3, 1, 0)
        assert c["last_message_at"] == now.isoformat()
        p = boxes["pec"]
        assert (p["connected"], p["problem"], p["stored_total"], p["last_message_at"]) == (
            False, "login: NO [AUTHENTICATIONFAILED]", 0, None)
        assert abs((now - timedelta(minutes=10)).timestamp()
                   - _at(p["problem_since"]).timestamp()) < 5


def _at(iso: str) -> Any:
    from datetime import datetime
    return datetime.fromisoformat(iso)


async def test_a_quarantined_message_is_listed_downloaded_and_once_looked_at_leaves_the_list(
        tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        with_mail(parts)
        store, now = parts.store, parts.clock.now()
        readable_head = b"From: Maria <maria@esempio.it>\r\nSubject: Aiuto\r\n\r\n\xff\xfe"
        assert await store.store_mail("cittadini", 1, 1, "a", None, GARBAGE, now)
        assert await store.store_mail("pec", 1, 1, "b", None, readable_head, now)
        await store.mail_done(1, "quarantined", None, reason="no headers")
        await store.mail_done(2, "quarantined", None, reason="a broken MIME shape")
        listed = await get(client, "/api/mail/quarantine")
        assert [(m["id"], m["mailbox"], m["reason"], m["sender"], m["subject"])
                for m in listed] == [
            (2, "pec", "a broken MIME shape", "Maria <maria@esempio.it>", "Aiuto"),
            (1, "cittadini", "no headers", None, None)]
        assert [m["id"] for m in await get(client, "/api/mail/quarantine?mailbox=pec")] == [2]

        resp = await client.get("/api/mail/quarantine/1/raw", headers=SUP)
        assert resp.status == 200 and await resp.read() == GARBAGE
        assert resp.headers["Content-Type"] == "message/rfc822"
        assert resp.headers["Content-Disposition"] == 'attachment; filename="messaggio-1.eml"'
        assert (await client.get("/api/mail/quarantine/99/raw", headers=SUP)).status == 404

        resp = await client.post("/api/mail/quarantine/1/done", headers=SUP)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["by"] == "supervisor:supervisore"
        assert [m["id"] for m in await get(client, "/api/mail/quarantine")] == [2]
        again = await client.post("/api/mail/quarantine/1/done", headers=SUP)
        assert again.status == 409
        assert (await client.post("/api/mail/quarantine/99/done", headers=SUP)).status == 404
        kept = await store.stored_mail(1)  # kept, with who and when
        assert kept is not None and kept.raw == GARBAGE and kept.status == "reviewed"
        assert (kept.reason, kept.reviewed_by, kept.reviewed_at) == (
            "no headers", "supervisor:supervisore", now)
        assert (await get(client, "/api/mail/mailboxes"))["mailboxes"][0]["quarantined"] == 0


async def queued(parts: Any, status: str, recipient: str = "maria@esempio.it",
                 sender: str = "helpdesk@helpdesk.test") -> int:
    store, now = parts.store, parts.clock.now()
    message_id = f"<{status}.{recipient}@helpdesk.test>"
    assert await store.queue_mail(ticket_id=None, message_id=message_id, kind="reply",
                                  sender=sender, recipient=recipient, raw=b"x", created_at=now,
                                  next_at=now)
    [row] = [r for r in await store.mail_due(now, 100) if r.message_id == message_id]
    if status != "pending":
        assert await store.mail_sending(row.id, "pending", status, attempts=3,
                                        error="550 no such user")
    return row.id


async def test_mail_not_sent_is_listed_and_sent_once_more_at_most_once(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        desk = with_mail(parts)
        failed = await queued(parts, "failed")
        uncertain = await queued(parts, "uncertain", "luca@esempio.it",
                                 sender="protocollo@pec.helpdesk.test")
        sent = await queued(parts, "sent", "anna@esempio.it")
        listed = await get(client, "/api/mail/outbox")
        assert [(m["id"], m["mailbox"], m["recipient"], m["status"], m["attempts"], m["error"],
                 m["kind"], m["ticket"]) for m in listed] == [
            (uncertain, "pec", "luca@esempio.it", "uncertain", 3, "550 no such user", "reply",
             None),
            (failed, "cittadini", "maria@esempio.it", "failed", 3, "550 no such user", "reply",
             None)]
        assert [m["id"] for m in await get(client, "/api/mail/outbox?mailbox=pec")] == [
            uncertain]
        boxes = {b["name"]: b for b in (await get(client, "/api/mail/mailboxes"))["mailboxes"]}
        assert (boxes["cittadini"]["not_sent"], boxes["pec"]["not_sent"]) == (1, 1)

        # Two clicks at once: one puts it back in the outbox, the other is refused.
        answers = await asyncio.gather(*(client.post(f"/api/mail/outbox/{failed}/retry",
                                                     headers=SUP) for _ in range(2)))
        assert sorted(a.status for a in answers) == [202, 409]
        assert desk.outbox.kick.is_set()
        row = await parts.store.mail_out(failed)
        assert row is not None and (row.status, row.next_at) == ("pending", parts.clock.now())
        assert [m["id"] for m in await get(client, "/api/mail/outbox")] == [uncertain]
        assert (await client.post(f"/api/mail/outbox/{sent}/retry", headers=SUP)).status == 409
        assert (await client.post("/api/mail/outbox/999/retry", headers=SUP)).status == 404


async def test_prometheus_says_each_mailbox_s_state_quarantine_outbox_and_backlog(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        desk = with_mail(parts)
        desk.inboxes["cittadini"].health.connected = True
        desk.inboxes["cittadini"].health.stored = 3
        store, now = parts.store, parts.clock.now()
        assert await store.store_mail("cittadini", 1, 1, "a", None, GARBAGE, now)
        await store.mail_done(1, "quarantined", None, reason="no headers")
        assert await store.store_mail("cittadini", 1, 2, "b", None, b"x",
                                      now - timedelta(minutes=5))
        await queued(parts, "failed")
        await queued(parts, "pending", "luca@esempio.it")
        found = await scrape(client, Authorization=f"Bearer {ADMIN}")

        def value(name: str, **labels: str) -> float | None:
            return found.get((name, tuple(sorted(labels.items()))))

        assert value("centralino_mailbox_up", mailbox="cittadini") == 1
        assert value("centralino_mailbox_up", mailbox="pec") == 0
        assert value("centralino_mail_quarantined", mailbox="cittadini") == 1
        assert value("centralino_mail_quarantined", mailbox="pec") == 0
        assert value("centralino_mail_oldest_stored_seconds", mailbox="cittadini") == 300
        assert value("centralino_mail_oldest_stored_seconds", mailbox="pec") is None
        assert value("centralino_mail_outbox", mailbox="cittadini", status="failed") == 1
        assert value("centralino_mail_outbox", mailbox="cittadini", status="pending") == 1
        assert value("centralino_mail_outbox", mailbox="pec", status="failed") == 0
        before = value("centralino_mail_stored_total", mailbox="cittadini")
        assert before is not None and before >= 3
        desk.inboxes["cittadini"].health.stored = 5  # two more fetched
        found = await scrape(client, Authorization=f"Bearer {ADMIN}")
        assert value("centralino_mail_stored_total", mailbox="cittadini") == before + 2
