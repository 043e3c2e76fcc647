"""PEC (posta elettronica certificata): the certified mail Italian administrations receive.

A PEC message arrives wrapped by the sender's provider: a signed envelope ("POSTA CERTIFICATA:
<subject>", `X-Trasporto: posta-certificata`) holding the provider's notice, daticert.xml and
the original message as postacert.eml. The original is what the citizen wrote: it becomes the
ticket's message; the envelope is kept as it came (it is the legal proof).

Receipts (`X-Ricevuta`: accettazione, avvenuta-consegna, non-accettazione, errore-consegna,
preavviso-errore-consegna, presa-in-carico) concern one of our messages, named by
`X-Riferimento-Message-ID`: kept on its ticket, never answered.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

FAILED = frozenset({"non-accettazione", "errore-consegna", "preavviso-errore-consegna"})


@dataclass(frozen=True)
class Receipt:
    kind: str  # the X-Ricevuta value
    refers_to: str | None  # the Message-ID of our message it is about
    failed: bool


def is_envelope(message: EmailMessage) -> bool:
    return str(message.get("X-Trasporto", "")).strip().lower() in ("posta-certificata",
                                                                     "errore")


def unwrap(message: EmailMessage) -> EmailMessage:
    """The original message inside a PEC envelope (the message itself if it is none)."""
    if not is_envelope(message):
        return message
    for part in message.walk():
        if (isinstance(part, EmailMessage) and part.get_content_type() == "message/rfc822"
                and (part.get_filename() or "").lower() == "postacert.eml"):
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], EmailMessage):
                return inner[0]
    return message


def receipt(message: EmailMessage) -> Receipt | None:
    kind = str(message.get("X-Ricevuta", "")).strip().lower()
    if not kind:
        return None
    refers = str(message.get("X-Riferimento-Message-ID", "")).strip() or None
    return Receipt(kind, refers, kind in FAILED)
