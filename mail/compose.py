"""The messages the desk sends: the acknowledgement of a new request, an operator's answer,
the web form's confirmation. Each names its ticket in its subject and its Message-ID, and
answers the thread (In-Reply-To, References), so the citizen's reply finds its ticket.
Acknowledgements and confirmations say they are automatic (RFC 3834), so that an
out-of-office at the other end does not answer them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr

from mail.threads import message_id


@dataclass(frozen=True)
class Ticketed:
    """What a message needs of its ticket."""

    number: str
    subject: str
    requester_name: str
    requester_email: str
    status_url: str | None  # the private status page (only the confirmation carries it)
    thread: tuple[str, ...] = ()  # Message-IDs of the thread, oldest first


def _base(ticket: Ticketed, sender: str, sender_name: str, domain: str, at: datetime,
          automatic: bool) -> EmailMessage:
    out = EmailMessage()
    out["From"] = formataddr((sender_name, sender))
    out["To"] = formataddr((ticket.requester_name, ticket.requester_email))
    out["Subject"] = f"[{ticket.number}] {ticket.subject}"[:200]
    out["Date"] = format_datetime(at)
    out["Message-ID"] = message_id(ticket.number, domain)
    if ticket.thread:
        out["In-Reply-To"] = ticket.thread[-1]
        out["References"] = " ".join(ticket.thread[-10:])
    if automatic:
        out["Auto-Submitted"] = "auto-replied"
        out["X-Auto-Response-Suppress"] = "All"
    return out


def acknowledgement(ticket: Ticketed, sender: str, sender_name: str, domain: str,
                    at: datetime) -> EmailMessage:
    out = _base(ticket, sender, sender_name, domain, at, automatic=True)
    out.set_content(
        f"Gentile {ticket.requester_name},\n\n"
        f"abbiamo ricevuto la sua richiesta e l'abbiamo registrata con il numero "
        f"{ticket.number}.\nUn operatore le risponderà al più presto. Per aggiungere "
        f"informazioni risponda a questo messaggio lasciando il numero nell'oggetto.\n"
        + (f"\nPuò seguire la richiesta qui: {ticket.status_url}\n" if ticket.status_url
           else "")
        + "\nQuesto messaggio è stato inviato automaticamente.\n")
    return out


def confirmation(ticket: Ticketed, sender: str, sender_name: str, domain: str,
                 at: datetime) -> EmailMessage:
    """The web form's: the number and the private link."""
    return acknowledgement(ticket, sender, sender_name, domain, at)


def reply(ticket: Ticketed, sender: str, sender_name: str, domain: str, at: datetime,
          body: str) -> EmailMessage:
    out = _base(ticket, sender, sender_name, domain, at, automatic=False)
    out.set_content(f"{body.rstrip()}\n\n--\n{sender_name}\nRichiesta {ticket.number}: "
                    "per rispondere, risponda a questo messaggio.\n")
    return out
