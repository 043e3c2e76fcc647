"""A message's content as the desk keeps it: the text to show (from text/plain, or the HTML
made safe), the HTML made safe for the console (nh3: no script, no style, no remote image),
the quoted part of a reply set apart, and the attachments with their names decoded (RFC 2231,
any charset the standard library knows).

`read` never raises on a message the standard library could parse: a part it cannot decode
is skipped and said in `problems`; bytes that are no message at all raise Unreadable, and
the shell quarantines them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parsedate_to_datetime
from html import unescape

import nh3

MAX_TEXT = 100_000  # characters kept of a body (a 5 MB log pasted in a mail is cut)
# Quoted reply text begins at a line like these (Italian and English clients, Outlook).
# Gmail wraps its attribution line at the address ("... Help desk <\nhelpdesk@...> ha
# scritto:"), so it may go on to a second line that holds an address; Outlook on the web and
# on phones puts a line of underscores above its "Da:" block.
_QUOTE_START = re.compile(
    r"^(>|-{2,}\s*(original message|messaggio originale)|"
    r"(il|on)\s.{4,200}(\n.{0,200}@.{0,200})?\s(ha scritto|wrote):\s*$|"
    r"_{8,}\s+(da|from):\s.+$|"
    r"(da|from):\s.+$)", re.IGNORECASE | re.MULTILINE)
_SAFE_TAGS = {"a", "abbr", "b", "blockquote", "br", "code", "div", "em", "h1", "h2", "h3",
              "h4", "hr", "i", "li", "ol", "p", "pre", "s", "span", "strong", "sub", "sup",
              "table", "tbody", "td", "th", "thead", "tr", "u", "ul"}
# Tags dropped with what they hold: the page's <title> ("Newsletter di marzo") is no text of
# the message.
_DROPPED = {"script", "style", "title"}
# Writing a message out again with its headers as they came (not refolded).
_AS_IT_CAME = policy.default.clone(refold_source="none")


class Unreadable(ValueError):
    """Bytes the standard library cannot read as a message."""


@dataclass(frozen=True)
class Part:
    filename: str
    content_type: str
    data: bytes


@dataclass
class Content:
    subject: str
    sender: str  # the From header as written
    date: datetime | None
    text: str  # the new part of the message, plain text
    quoted: str  # the quoted earlier messages (folded away in the console)
    html: str | None  # sanitised, if the message had HTML
    attachments: list[Part] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def parse(raw: bytes) -> EmailMessage:
    if not raw.strip():
        raise Unreadable("empty message")
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception as exc:  # noqa: BLE001 (any failure of the parser is this message's)
        raise Unreadable(f"not a message: {exc}") from None
    if not isinstance(message, EmailMessage) or not message.keys():
        raise Unreadable("no headers")
    return message


def read(message: EmailMessage) -> Content:
    problems: list[str] = []

    def header(name: str) -> str:
        try:
            return str(message.get(name, "") or "")
        except Exception as exc:  # noqa: BLE001 (a malformed encoded word, say)
            problems.append(f"{name}: {exc}")
            # The value as it came (the parser fails on `From: a@[`, a group in From).
            return next((str(v) for k, v in message.raw_items() if k.lower() == name.lower()),
                        "")

    try:
        text, html = _bodies(message, problems)
    except Exception as exc:  # noqa: BLE001 (the parser fails on a NUL in a header parameter)
        problems.append(f"body: {exc}")
        text, html = "", None
    if not text and html:
        text = html_to_text(html)
    new, quoted = split_quoted(text[:MAX_TEXT])
    try:
        date = parsedate_to_datetime(header("Date")) if header("Date") else None
    except (TypeError, ValueError):
        date = None
    return Content(subject=header("Subject").strip(), sender=header("From"), date=date,
                   text=new, quoted=quoted, html=sanitise(html) if html else None,
                   attachments=_attachments(message, problems), problems=problems)


def _decoded(part: EmailMessage, problems: list[str]) -> str:
    try:
        content = part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError) as exc:
        payload = part.get_payload(decode=True) or b""
        problems.append(f"{part.get_content_type()}: {exc}; read as UTF-8 with replacements")
        return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _bodies(message: EmailMessage, problems: list[str]) -> tuple[str, str | None]:
    plain = message.get_body(preferencelist=("plain",))
    rich = message.get_body(preferencelist=("html",))
    text = _decoded(plain, problems) if isinstance(plain, EmailMessage) else ""
    html = _decoded(rich, problems) if isinstance(rich, EmailMessage) else None
    return text.replace("\r\n", "\n").strip(), html


def _attached(message: EmailMessage) -> Iterator[EmailMessage]:
    """The message's attachments, also those inside nested multiparts, which
    `iter_attachments` yields whole or not at all: an S/MIME-signed message (multipart/signed,
    common among officials signing with their smart card; a PEC receipt) holds its files in
    a multipart/mixed inside; the images pasted into an HTML text (a screenshot of the
    error) sit in a multipart/related, skipped when it is the body."""
    if message.get_content_maintype() != "multipart":
        return
    attached = {id(part) for part in message.iter_attachments()}
    for part in message.iter_parts():
        if not isinstance(part, EmailMessage):
            continue
        if part.get_content_maintype() == "multipart":
            if id(part) in attached or part.get_content_subtype() == "related":
                yield from _attached(part)
        elif id(part) in attached:
            yield part


def _attachments(message: EmailMessage, problems: list[str]) -> list[Part]:
    out: list[Part] = []
    try:
        parts = list(_attached(message))
    except Exception as exc:  # noqa: BLE001 (as in read: a header the parser fails on)
        problems.append(f"attachments: {exc}")
        parts = []
    for part in parts:
        try:
            name = part.get_filename() or (
                "messaggio.eml" if part.get_content_type() == "message/rfc822" else "allegato")
            data = part.get_payload(decode=True)
            if part.get_content_type() == "message/rfc822":  # a forwarded message, kept whole
                inner = part.get_payload()
                first = inner[0] if isinstance(inner, list) and inner else None
                # Its headers as they came: refolding them is what the standard library's
                # generator fails on for some malformed ones (a group in From, `<a@[`).
                data = first.as_bytes(policy=_AS_IT_CAME) if isinstance(
                    first, EmailMessage) else data
        except Exception as exc:  # noqa: BLE001 (a broken part must not lose the rest)
            problems.append(f"attachment: {exc}")
            continue
        if not isinstance(data, bytes):
            continue
        # Base64 with stray characters or cut short decodes to something: keep it, and say so.
        damaged = list(dict.fromkeys(  # (each decoding adds them again: read twice, once)
            type(d).__name__ for d in part.defects if "Base64" in type(d).__name__))
        if damaged:
            problems.append(f"{name}: damaged base64 ({', '.join(damaged)})")
        out.append(Part(name, part.get_content_type(), data))
    return out


def sanitise(html: str) -> str:
    """HTML safe to show: no script, style, form, event handler or remote resource (images
    from elsewhere would tell the sender when the operator read it)."""
    return nh3.clean(html, tags=_SAFE_TAGS, clean_content_tags=_DROPPED,
                     attributes={"a": {"href", "title"}, "td": {"colspan"}, "th": {"colspan"}},
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer")


def html_to_text(html: str) -> str:
    """The words of an HTML-only message, one block per line."""
    blocks = re.sub(r"(?i)<\s*(br|/p|/div|/tr|/li|/h\d)\s*/?>", "\n", html)
    text = unescape(nh3.clean(blocks, tags=set(), clean_content_tags=_DROPPED)).replace(
        "\xa0", " ")
    return re.sub(r"\n\s*\n+", "\n\n", text).strip()


def split_quoted(text: str) -> tuple[str, str]:
    """(what the sender wrote now, the earlier messages they quoted)."""
    found = _QUOTE_START.search(text)
    if found is None or not text[:found.start()].strip():
        return text, ""
    return text[:found.start()].rstrip(), text[found.start():].strip()


@dataclass(frozen=True)
class Bounced:
    """An address a delivery report says our message did not reach, and why."""

    address: str
    reason: str


def bounced(message: EmailMessage) -> list[Bounced]:
    """The recipients a delivery report (RFC 3464, message/delivery-status) says failed, with
    the server's words (Diagnostic-Code, else Status); delayed ones are not failures yet."""
    out: list[Bounced] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        for block in blocks if isinstance(blocks, list) else ():
            if isinstance(block, str):
                continue
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient")
                            or "")
            action = str(block.get("Action") or "failed").strip().lower()
            if not recipient or action != "failed":
                continue
            address = recipient.partition(";")[2].strip().strip("<>").lower() or (
                recipient.strip().strip("<>").lower())
            why = str(block.get("Diagnostic-Code") or "").partition(";")[2] or str(
                block.get("Status") or "")
            out.append(Bounced(address[:254], " ".join(why.split())[:500]))
    return out
