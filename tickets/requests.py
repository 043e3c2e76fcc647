"""A citizen's written request (the web form, the portal's API), checked before a ticket is
opened for it. Every problem names its field, so the form shows it next to that field and the
API lists it; nothing is stored until all of them are right.

Pure: the libraries used here (email-validator without its DNS lookup, phonenumbers, stdnum)
only look at the text.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.it import codicefiscale

from tickets.config import TicketsConfig

MAX_BODY = 5000  # characters of the free text ("espone la problematica")
MAX_NAME = 128
FIELDS = ("topic", "subject", "body", "name", "email", "phone", "tax_code")


@dataclass(frozen=True)
class Problem:
    field: str  # one of FIELDS
    reason: str


class InvalidRequest(ValueError):
    def __init__(self, problems: list[Problem]):
        super().__init__("; ".join(f"{p.field}: {p.reason}" for p in problems))
        self.problems = problems


@dataclass(frozen=True)
class Request:
    topic: str
    subject: str  # as the topic's list spells it
    body: str
    name: str
    email: str | None  # normalised (the domain in lower case)
    phone: str | None  # E.164
    tax_code: str | None  # codice fiscale (16 characters) or a company's 11 digits


def check(raw: Mapping[str, str], desk: TicketsConfig, region: str = "IT") -> Request:
    """The request in `raw` (each field as typed; missing ones empty), or InvalidRequest with
    every problem. A citizen gives at least one way to be answered: e-mail or phone."""
    problems: list[Problem] = []

    def field(name: str, multiline: bool = False, limit: int = 255) -> str:
        value = (raw.get(name) or "").strip()
        allowed = "\n\r\t" if multiline else ""
        if any(unicodedata.category(c) in ("Cc", "Cs") and c not in allowed for c in value):
            problems.append(Problem(name, "control characters are not allowed"))
            return ""
        if len(value) > limit:
            problems.append(Problem(name, f"at most {limit} characters ({len(value)} given)"))
            return ""
        return value.replace("\r\n", "\n")

    topic, subject = field("topic", limit=64), field("subject")
    body, name = field("body", multiline=True, limit=MAX_BODY), field("name", limit=MAX_NAME)
    email, phone = field("email", limit=254), field("phone", limit=32)
    tax_code = field("tax_code", limit=32)

    desk_topic = desk.topics.get(topic)
    if desk_topic is None:
        problems.append(Problem("topic", f"choose one of: {', '.join(desk.topics)}"))
    elif (found := _listed(subject, desk_topic.subjects)) is None:
        problems.append(Problem("subject", f"choose one of: {', '.join(desk_topic.subjects)}"))
    else:
        subject = found
    if not body and not _named(problems, "body"):
        problems.append(Problem("body", "say what the request is about"))
    if not name and not _named(problems, "name"):
        problems.append(Problem("name", "give a name"))
    if email:
        try:
            email = validate_email(email, check_deliverability=False).normalized
        except EmailNotValidError as exc:
            problems.append(Problem("email", f"not an e-mail address ({exc})"))
    if phone:
        phone = _phone(phone, region, problems)
    if not email and not phone and not _named(problems, "email", "phone"):
        problems.append(Problem("email", "give an e-mail address or a phone number to be "
                                         "answered at"))
    if tax_code:
        try:
            tax_code = codicefiscale.validate(tax_code)
        except StdnumError:
            problems.append(Problem("tax_code", "not a valid codice fiscale (check the "
                                                "characters: the last one is a check)"))
    if problems:
        raise InvalidRequest(problems)
    return Request(topic, subject, body, name, email or None, phone or None, tax_code or None)


def _listed(subject: str, subjects: list[str]) -> str | None:
    wanted = subject.casefold()
    return next((s for s in subjects if s.casefold() == wanted), None)


def _named(problems: list[Problem], *fields: str) -> bool:
    return any(p.field in fields for p in problems)


def e164(raw: str, region: str = "IT") -> str | None:
    """A phone number as tickets store it (E.164), or None if it is not one: a caller's number
    as Asterisk gives it becomes comparable with the numbers citizens typed."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _phone(raw: str, region: str, problems: list[Problem]) -> str:
    number = e164(raw, region)
    if number is None:
        problems.append(Problem("phone", "not a valid phone number (without +country code "
                                         "it is Italian)"))
        return ""
    return number
