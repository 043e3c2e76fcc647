"""The mailboxes as a supervisor sees them (issue #12), through the real Dovecot, the tests'
SMTP relay and PostgreSQL: a mailbox whose password is wrong and one whose server does not
answer show as down with their reason (API and /metrics) while the others keep taking mail;
an unreadable message ends quarantined, listed, downloadable, then looked at; a message the
SMTP server refuses for good (550) is listed as failed, and sent again once it accepts: the
citizen gets it exactly once, however many times the supervisor clicks."""

from __future__ import annotations

import asyncio
import imaplib
import shutil
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import TEST_SETTINGS, settings_for
from tests.integration.test_mail_intake import (
    IMAP,
    MAIL_YAML,
    citizen_mail,
    deliver,
    mail,
    mail_about,
    tickets_from,
)

pytestmark = pytest.mark.asterisk  # the service under test connects to the real Asterisk

SUPERVISOR = "dev-sup"
# Two more mailboxes: the right server with a wrong password, and a port nobody listens on.
BROKEN = """
  password-sbagliata:
    imap: {host: 127.0.0.1, port: 10143, tls: none, user: cittadino,
           auth: {password: non-questa}}
    topic: alpha
    address: sbagliata@helpdesk.test
  server-spento:
    imap: {host: 127.0.0.1, port: 1, tls: none, user: helpdesk, auth: {password: test}}
    topic: alpha
    address: spento@helpdesk.test
"""


def broken_mail_settings(tmp_path: Path) -> Any:
    """The tests' configuration with mail.yaml's mailboxes and the two broken ones (only these
    tests' services read them)."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    (config / "mail.yaml").write_text(MAIL_YAML.read_text(encoding="utf-8") + BROKEN,
                                      encoding="utf-8")
    return settings_for(CENTRALINO_CONFIG_DIR=str(config))


@pytest.fixture
def board_settings(tmp_path: Path) -> Any:
    return broken_mail_settings(tmp_path)


async def until(check: Callable[[], Awaitable[Any]], timeout: float = 30, every: float = 0.3
                ) -> Any:
    """`check()`'s first true answer (the last answer if none came in time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await check()
        if found or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(every)


async def boxes(desk: Any) -> dict[str, dict[str, Any]]:
    answer = await desk.request("GET", "/api/mail/mailboxes", token=SUPERVISOR)
    return {b["name"]: b for b in answer["mailboxes"]}


async def gauges(desk: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = await desk.request("GET", "/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def append(user: str, raw: bytes) -> None:
    """Put `raw` in `user`'s INBOX as it is (IMAP APPEND: no server adds headers to it)."""
    host, port = IMAP.split(":")
    client = imaplib.IMAP4(host, int(port))
    try:
        client.login(user, "test")
        typ, said = client.append("INBOX", "", imaplib.Time2Internaldate(0), raw)
        assert typ == "OK", said
    finally:
        client.logout()


async def test_broken_mailboxes_show_down_while_the_others_keep_taking_mail(start_service, desk,
                                                                            board_settings):
    await start_service(settings=board_settings)

    async def settled() -> dict[str, dict[str, Any]] | None:
        found = await boxes(desk)
        return found if (found["cittadini"]["connected"]
                         and found["password-sbagliata"]["problem"]
                         and found["server-spento"]["problem"]) else None
    found = await until(settled)
    assert found, await boxes(desk)
    wrong, off = found["password-sbagliata"], found["server-spento"]
    assert not wrong["connected"] and "login: NO" in wrong["problem"]
    assert "AUTHENTICATIONFAILED" in wrong["problem"] or "failed" in wrong["problem"].lower()
    assert not off["connected"] and off["problem"]
    for box in (wrong, off):
        assert box["problem_since"] is not None
    assert found["secondo-livello"]["connected"]

    # A citizen's mail still becomes a ticket, and is counted.
    before = found["cittadini"]["stored_total"]
    address = f"g{uuid.uuid4().hex[:8]}@esempio.it"
    await asyncio.to_thread(deliver, "helpdesk", mail(address, "Orari", "Quando aprite?"))
    assert await tickets_from(desk, address)
    now = await boxes(desk)
    assert now["cittadini"]["stored_total"] == before + 1
    assert now["cittadini"]["last_message_at"] is not None

    # Prometheus says the same.
    up = await gauges(desk)
    assert up[("centralino_mailbox_up", (("mailbox", "cittadini"),))] == 1
    assert up[("centralino_mailbox_up", (("mailbox", "password-sbagliata"),))] == 0
    assert up[("centralino_mailbox_up", (("mailbox", "server-spento"),))] == 0
    assert up[("centralino_mail_stored_total", (("mailbox", "cittadini"),))] >= 1
    health = await desk.request("GET", "/healthz")
    assert health["mailboxes"]["password-sbagliata"]["problem"] == wrong["problem"]


async def test_an_unreadable_message_is_quarantined_listed_downloaded_then_looked_at(
        start_service, desk, board_settings):
    await start_service(settings=board_settings)
    raw = f"garbage {uuid.uuid4().hex} with no header at all\r\n".encode()
    await asyncio.to_thread(append, "helpdesk", raw)

    async def listed() -> list[dict[str, Any]]:
        found = await desk.request("GET", "/api/mail/quarantine?mailbox=cittadini",
                                   token=SUPERVISOR)
        return [m for m in found if m["reason"] == "no headers"]

    async def ours() -> dict[str, Any] | None:
        for m in await listed():
            got = await desk.request("GET", f"/api/mail/quarantine/{m['id']}/raw",
                                     token=SUPERVISOR)
            if got.encode() == raw:
                return m
        return None
    message = await until(ours)
    assert message, await desk.request("GET", "/api/mail/quarantine", token=SUPERVISOR)
    assert (message["mailbox"], message["sender"], message["subject"]) == (
        "cittadini", None, None)
    counted = (await boxes(desk))["cittadini"]["quarantined"]
    assert counted >= 1
    quarantined = ("centralino_mail_quarantined", (("mailbox", "cittadini"),))
    assert (await gauges(desk))[quarantined] == counted

    # Downloadable as a message file.
    async with desk.http.get(f"{desk.base}/api/mail/quarantine/{message['id']}/raw",
                             headers={"Authorization": f"Bearer {SUPERVISOR}"}) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "message/rfc822"
        assert resp.headers["Content-Disposition"].startswith("attachment;")
        assert await resp.read() == raw

    # Looked at: off the list and the counts, kept with who and when; not twice.
    done = await desk.request("POST", f"/api/mail/quarantine/{message['id']}/done",
                              token=SUPERVISOR)
    assert done["by"] == "supervisor:sup"
    assert message["id"] not in [m["id"] for m in await listed()]
    assert (await boxes(desk))["cittadini"]["quarantined"] == counted - 1
    assert (await gauges(desk))[quarantined] == counted - 1
    await desk.request("POST", f"/api/mail/quarantine/{message['id']}/done", token=SUPERVISOR,
                       expect=(409,))
    # An agent may not.
    await desk.request("GET", "/api/mail/quarantine", token="dev-1001", expect=(403,))


async def test_a_refused_acknowledgement_is_failed_and_sent_once_after_a_retry(
        start_service, desk, smtp_server, board_settings):
    await start_service(settings=board_settings)
    smtp_server.refuse = "550 5.1.1 mailbox unavailable"
    address = f"f{uuid.uuid4().hex[:8]}@esempio.it"
    await asyncio.to_thread(deliver, "helpdesk", mail(address, "Tassa rifiuti", "Ho pagato."))
    [ticket] = await tickets_from(desk, address)
    number = ticket["number"]

    async def failed() -> dict[str, Any] | None:
        found = await desk.request("GET", "/api/mail/outbox?mailbox=cittadini",
                                   token=SUPERVISOR)
        return next((m for m in found if m["recipient"] == address), None)
    row = await until(failed)
    assert row, "the refused acknowledgement is not listed"
    assert (row["ticket"], row["kind"], row["status"], row["attempts"]) == (
        number, "acknowledgement", "failed", 1)
    assert row["error"].startswith("550")
    assert (await boxes(desk))["cittadini"]["not_sent"] >= 1
    outbox = await gauges(desk)
    assert outbox[("centralino_mail_outbox", (("mailbox", "cittadini"), ("status", "failed")))
                  ] >= 1
    assert await asyncio.to_thread(citizen_mail, number, address) == []

    # The server accepts again; the supervisor clicks twice, quickly: one more send.
    smtp_server.refuse = None
    answers = await asyncio.gather(*(desk.http.post(
        f"{desk.base}/api/mail/outbox/{row['id']}/retry",
        headers={"Authorization": f"Bearer {SUPERVISOR}"}) for _ in range(2)))
    assert sorted(a.status for a in answers) == [202, 409]
    for a in answers:
        a.release()
    [ack] = await mail_about(number, address, 1)
    assert number in ack["Subject"]
    await desk.request("POST", f"/api/mail/outbox/{row['id']}/retry", token=SUPERVISOR,
                       expect=(409,))  # sent now: never again
    assert not await failed()
    assert len(await asyncio.to_thread(citizen_mail, number, address)) == 1
