"""Which ticket a message belongs to, and how our own messages say which ticket they are of.

Our messages' Message-IDs carry their ticket's number (<HD-2026-000123.k3j9x2@desk.example>),
so a reply names its ticket in In-Reply-To or References even when the subject was rewritten.
A message is matched, in this order:
1. by In-Reply-To, then References (newest first), then the message a bounce returns: our
   Message-IDs, or any the thread holds (the shell looks those up);
2. by a ticket number quoted in the subject, but only from an address of that ticket's
   participants (anybody can type a number: nobody else's message joins a stranger's ticket);
3. otherwise it opens a new ticket.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import getaddresses

from mail.kinds import header
from tickets.numbers import TicketNumber, find

_ID = re.compile(r"<([^<>\s]+)>")
_OURS = re.compile(r"^([A-Z]{2,6})-(\d{4})-(\d{6,9})\.[0-9a-z]+@(.+)$")
_RETURNED_ID = re.compile(r"^message-id:\s*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


def message_id(number: str, domain: str) -> str:
    """A new Message-ID for one of our messages about ticket `number`."""
    return f"<{number}.{secrets.token_hex(6)}@{domain}>"


def referenced(message: EmailMessage) -> list[str]:
    """The Message-IDs the message answers: In-Reply-To first, then References newest first
    (each with its angle brackets), then, in a delivery report, the returned message's;
    without repeats."""
    ids: list[str] = []
    for name in ("In-Reply-To", "References"):
        found = [f"<{m}>" for m in _ID.findall(header(message, name))]
        ids += found if name == "In-Reply-To" else list(reversed(found))
    return list(dict.fromkeys(ids + returned(message)))


def returned(message: EmailMessage) -> list[str]:
    """The Message-ID of the message a delivery report (multipart/report) returns: Postfix and
    Exim bounces carry no In-Reply-To, only the returned message or its headers, and a bounce
    must reach the ticket whose message bounced."""
    if message.get_content_type() != "multipart/report":
        return []
    for part in message.iter_parts():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global", "message/global-headers"):
            # the standard library reads these three as messages
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
                return [f"<{m}>" for m in _ID.findall(header(inner[0], "Message-ID"))][:1]
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            found = _RETURNED_ID.search(data.decode("utf-8", errors="replace")
                                        if isinstance(data, bytes) else "")
            return [found.group(1)] if found else []
    return []


def ours(ids: Iterable[str], domain: str) -> str | None:
    """The ticket number in the first of our own Message-IDs among `ids`."""
    for value in ids:
        found = _OURS.match(value.strip("<>"))
        if found and found.group(4).lower() == domain.lower():
            return f"{found.group(1)}-{found.group(2)}-{found.group(3)}"
    return None


def sender(message: EmailMessage) -> str:
    """The sender's address, lower case ('' if none)."""
    addresses = getaddresses([header(message, "Reply-To") or header(message, "From")])
    return addresses[0][1].strip().lower() if addresses else ""


@dataclass(frozen=True)
class Match:
    number: str | None  # the ticket it joins; None: a new one
    how: str  # "in-reply-to", "references", "subject", "new"


def match(message: EmailMessage, domain: str, prefix: str,
          known_ids: Callable[[list[str]], str | None],
          participants: Callable[[str], Iterable[str]]) -> Match:
    """The ticket of `message` (see the module's rules). `known_ids`: the ticket number of the
    first of these Message-IDs some ticket's thread holds; `participants`: the addresses of a
    ticket (its requester, those who wrote in it)."""
    ids = referenced(message)
    in_reply_to = [f"<{m}>" for m in _ID.findall(header(message, "In-Reply-To"))]
    for how, group in (("in-reply-to", in_reply_to), ("references", ids)):
        if number := ours(group, domain) or (known_ids(group) if group else None):
            return Match(number, how)
    quoted: TicketNumber | None = find(header(message, "Subject"), prefix)
    if quoted is not None and sender(message) in {a.lower() for a in participants(str(quoted))}:
        return Match(str(quoted), "subject")
    return Match(None, "new")
