"""What kind of message arrived: the help desk answers people, never machines.

- auto: an automatic answer (RFC 3834 `Auto-Submitted` other than "no", out-of-office
  headers, `X-Auto-Response-Suppress`), bulk or list mail (`Precedence`, `List-Id`,
  `List-Unsubscribe`): kept on its ticket, never answered.
- bounce: a delivery status notification (multipart/report; report-type=delivery-status) or
  a message from the mailer-daemon / with a null return path (unless `Auto-Submitted` says
  it is an automatic reply: vacation responders send with one too): it concerns one of our
  messages; the address it names is flagged.
- pec_receipt: a PEC acceptance or delivery receipt (`X-Ricevuta`): kept, never answered.
- person: everything else.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from typing import Literal

Kind = Literal["person", "auto", "bounce", "pec_receipt"]

_DAEMON = re.compile(r"^(mailer-daemon|postmaster|noreply|no-reply|bounces?)@", re.IGNORECASE)
# Only these write bounces; a noreply@ courier's "delivery" notice is no bounce.
_BOUNCER = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)
_OOO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?reply|risposta automatica|out of (the )?office|fuori ufficio|"
    r"assente|absence|abwesenheit|r[ée]ponse automatique)\b", re.IGNORECASE)


def kind(message: EmailMessage) -> Kind:
    if header(message, "X-Ricevuta"):
        return "pec_receipt"
    if _is_bounce(message):
        return "bounce"
    if _is_automatic(message):
        return "auto"
    return "person"


def header(message: EmailMessage, name: str) -> str:
    """A header's text, '' if absent. The standard library's header parser raises on some
    malformed values (`From: a@[`, `From: "`, a group in From): the raw value, then.
    Kept on the message once read: `policy.default` parses a header again at each access,
    and the intake asks for the same ones several times (it was half its time)."""
    known: dict[str, str] = message.__dict__.setdefault("_centralino_headers", {})
    key = name.lower()
    if key not in known:
        try:
            known[key] = str(message.get(name, "") or "")
        except Exception:  # noqa: BLE001 (any parser failure: the value as it came)
            raw = next((v for k, v in message.raw_items() if k.lower() == key), "")
            known[key] = str(raw)
    return known[key]


def _address(value: str | None) -> str:
    found = re.search(r"<([^>]*)>", value or "")
    return (found.group(1) if found else (value or "")).strip().lower()


def _is_bounce(message: EmailMessage) -> bool:
    if (message.get_content_type() == "multipart/report"
            and str(message.get_param("report-type", "")).lower() == "delivery-status"):
        return True
    if _BOUNCER.match(_address(header(message, "From"))) and "delivery" in header(
            message, "Subject").lower():
        return True
    # A null return path: a bounce, unless the message says it is an automatic reply. Vacation
    # responders send theirs with one too (Sieve's in Dovecot and Cyrus, Zimbra's), and an
    # out-of-office must not flag the address as bouncing.
    null_path = "Return-Path" in message and _address(header(message, "Return-Path")) == ""
    return null_path and not header(message, "Auto-Submitted").strip().lower().startswith(
        "auto-replied")


def _is_automatic(message: EmailMessage) -> bool:
    auto = (header(message, "Auto-Submitted") or "no").strip().lower()
    if auto and auto != "no":
        return True
    if header(message, "X-Autoreply") or header(message, "X-Autorespond"):
        return True
    suppress = header(message, "X-Auto-Response-Suppress").lower()
    if any(word in suppress for word in ("all", "oof", "autoreply")):
        return True
    if header(message, "Precedence").strip().lower() in ("bulk", "list", "junk", "auto_reply"):
        return True
    if header(message, "List-Id") or header(message, "List-Unsubscribe"):
        return True
    if _DAEMON.match(_address(header(message, "From"))):
        return True
    return bool(_OOO_SUBJECT.match(header(message, "Subject")))


def answerable(message: EmailMessage) -> bool:
    """May the desk send an automatic acknowledgement to this message's sender?"""
    # An address at all: a From the parser could not read ("<", a bare name) gets no answer.
    return kind(message) == "person" and "@" in _address(header(message, "From"))
