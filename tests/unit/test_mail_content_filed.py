"""What a citizen's e-mail carries reaches its ticket (centralino/mail/intake.py, on a real
SQLite store, the real ticket desk and the HTTP API): its attachments kept by the web form's
rules (refused ones listed with why), the quoted part and the sanitised HTML on the message,
a bounce flagging the address until it writes again, the state of the answer's e-mail. The
same through a real Dovecot and PostgreSQL: tests/integration/test_mail_content.py."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from mail.content import Bounced, bounced, parse
from tests.unit.test_mail_intake import arrive, mail
from tests.unit.webparts import SUPERVISOR, web_parts

CORPUS = Path(__file__).with_name("mail_corpus")
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def detail(client: Any, number: str) -> dict[str, Any]:
    resp = await client.get(f"/api/tickets/{number}",
                            headers={"Authorization": f"Bearer {SUPERVISOR}"})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def with_files(message: EmailMessage, *files: tuple[str, str, bytes]) -> EmailMessage:
    for name, kind, data in files:
        main, sub = kind.split("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return message


def test_a_delivery_report_names_the_failed_recipients_and_why():
    def of(name: str) -> list[Bounced]:
        return bounced(parse((CORPUS / name).read_bytes()))
    assert of("dsn_postfix.eml") == [Bounced(
        "giulia.bianki@example.com", "550 5.1.1 <giulia.bianki@example.com>: Recipient "
        "address rejected: User unknown in virtual mailbox table")]
    [full] = of("dsn_exchange.eml")
    assert full.address == "ufficio.tributi@comune.esempio.it"
    assert full.reason.startswith("554 5.2.2 mailbox full")
    assert of("plain_request.eml") == [] and of("ooo_it.eml") == []


async def test_attachments_are_kept_by_the_web_form_s_rules_and_refused_ones_said(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        latin1 = await arrive(parts, (CORPUS / "latin1_rfc2231.eml").read_bytes())
        number = (await parts.store.ticket(latin1.ticket_id)).number
        [first] = (await detail(client, number))["thread"]
        [pdf] = first["attachments"]
        assert (pdf["filename"], pdf["content_type"]) == ("Ricevuta pagamento è.pdf",
                                                          "application/pdf")
        [row] = await parts.store.ticket_attachments(latin1.ticket_id)
        assert parts.tickets.files.path_of(row.sha256).read_bytes().startswith(b"%PDF-1.4")
        resp = await client.get(pdf["url"], headers={"Authorization": f"Bearer {SUPERVISOR}"})
        assert resp.status == 200 and (await resp.read()).startswith(b"%PDF-1.4")

        # A program named as a PDF, an HTML page, six files: the limits of the web form.
        many = with_files(mail("Documenti", "Ecco i documenti."),
                          ("fattura.pdf", "application/pdf", b"MZ\x90\x00" + b"\x00" * 200),
                          ("pagina.html", "text/html", b"<script>alert(1)</script>"),
                          *[(f"foto{i}.png", "image/png", PNG + bytes([i])) for i in range(6)])
        row_many = await arrive(parts, many)
        number = (await parts.store.ticket(row_many.ticket_id)).number
        [message] = (await detail(client, number))["thread"]
        assert [a["filename"] for a in message["attachments"]] == [
            f"foto{i}.png" for i in range(5)]
        assert [r.split(":")[0] for r in message["refused"]] == [
            "fattura.pdf", "pagina.html", "foto5.png"]
        assert "al massimo 5 allegati" in message["refused"][2]
        assert not list((parts.tickets.files.root / "incoming").iterdir())  # none left over


async def test_a_reply_joins_with_its_files_its_quote_folded_and_html_made_safe(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        first = mail("Certificato", "Mi serve un certificato.")
        opened = await arrive(parts, first)
        number = (await parts.store.ticket(opened.ticket_id)).number
        reply = mail("Re: Certificato", "Ecco la ricevuta.\n\nIl giorno 9 marzo 2026 Help "
                     "desk ha scritto:\n> Ci mandi la ricevuta.", In_Reply_To=first["Message-ID"])
        reply.add_alternative('<p>Ecco la ricevuta.</p><script>window.x=1</script>'
                              '<img src="https://tracker.example/p.gif">', subtype="html")
        with_files(reply, ("ricevuta.pdf", "application/pdf", PDF))
        assert (await arrive(parts, reply)).ticket_id == opened.ticket_id
        [_, joined] = (await detail(client, number))["thread"]
        assert joined["body"] == "Ecco la ricevuta."
        assert joined["quoted"].startswith("Il giorno 9 marzo 2026 Help desk ha scritto:")
        assert "Ci mandi la ricevuta." in joined["quoted"]
        assert "Ecco la ricevuta." in joined["html"]
        assert "script" not in joined["html"] and "tracker" not in joined["html"]
        assert [a["filename"] for a in joined["attachments"]] == ["ricevuta.pdf"]

        html_only = parse((CORPUS / "html_only.eml").read_bytes())
        row = await arrive(parts, html_only.as_bytes())
        [message] = (await detail(client, (await parts.store.ticket(row.ticket_id)).number)
                     )["thread"]
        assert message["html"] and "<script" not in message["html"]
        assert "evil.example" not in message["html"] and "<img" not in message["html"]
        # The citizen's page shows neither (it shows the text they wrote).
        assert message["body"] and "<" not in message["body"]


async def test_a_bounce_flags_the_address_until_it_writes_again(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        first = mail("Certificato", "Mi serve un certificato.", sender="giulia.bianki@example.com")
        opened = await arrive(parts, first)
        number = (await parts.store.ticket(opened.ticket_id)).number
        assert (await detail(client, number))["bounced"] is None
        # Postfix's report on the message it returns (its headers name it).
        report = (CORPUS / "dsn_postfix.eml").read_bytes().replace(
            b"<HD-2026-000123.a1b2c3d4e5f6@helpdesk.example.it>", first["Message-ID"].encode())
        note = await arrive(parts, report)
        assert (note.status, note.kind, note.ticket_id) == ("done", "bounce", opened.ticket_id)
        flag = (await detail(client, number))["bounced"]
        assert flag["address"] == "giulia.bianki@example.com"
        assert "User unknown" in flag["reason"] and flag["at"]

        again = mail("Re: Certificato", "Ho corretto la casella.",
                     sender="giulia.bianki@example.com", In_Reply_To=first["Message-ID"])
        await arrive(parts, again)
        assert (await detail(client, number))["bounced"] is None


async def test_an_answer_shows_how_its_mail_stands(tmp_path):
    async with web_parts(tmp_path) as (client, parts):
        opened = await arrive(parts, mail("Certificato", "Mi serve un certificato."))
        ticket = await parts.store.ticket(opened.ticket_id)
        now = parts.clock.now()
        await parts.store.add_ticket_message(ticket.id, now, "out", "public", "agent:1001",
                                             "Eccolo.")
        await parts.store.add_ticket_message(ticket.id, now, "out", "internal", "agent:1001",
                                             "Nota.")
        for kind, status, minutes in (("acknowledgement", "sent", -1), ("reply", "failed", 0)):
            assert await parts.store.queue_mail(
                ticket_id=ticket.id, message_id=f"<{kind}@helpdesk.test>", kind=kind,
                sender="helpdesk@helpdesk.test", recipient="maria@esempio.it", raw=b"x",
                created_at=now + timedelta(minutes=minutes), next_at=now)
            async with parts.store.sessions.begin() as s:
                from sqlalchemy import update

                from centralino.storage.models import MailOut
                await s.execute(update(MailOut).where(MailOut.kind == kind).values(
                    status=status, attempts=1, error="550 mailbox unavailable"
                    if status == "failed" else ""))
        seen = await detail(client, ticket.number)
        answer, note = seen["thread"][1:]
        assert (answer["mail"]["status"], answer["mail"]["error"]) == (
            "failed", "550 mailbox unavailable")
        assert note["mail"] is None and seen["thread"][0]["mail"] is None
        assert [m["kind"] for m in seen["mail"]] == ["acknowledgement", "reply"]
