"""config/mail.yaml: the help desk's mailboxes and how it sends mail (see the example file for
every field). No file: no e-mail. Checked like the rest of the configuration, every problem
with its file and line: a mailbox's topic must take written requests (tickets.yaml), its
group must be one of tickets.yaml's groups, addresses must be addresses.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from email_validator import EmailNotValidError, validate_email
from pydantic import Field, field_validator, model_validator

from ivr.schema import Name, Strict
from ivr.yamlfile import ConfigError, ConfigProblem, YamlDoc, display_name, load_yaml

Tls = Literal["tls", "starttls", "none"]  # none: only for a server on this machine


def _address(value: str) -> str:
    # An internal domain (comune.local, a test's helpdesk.test) is fine for the desk's own.
    try:
        return validate_email(value, check_deliverability=False, globally_deliverable=False,
                              test_environment=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{value!r} is not an e-mail address ({exc})") from None


class Secret(Strict):
    """A password or token, never written in the file itself in production: the name of an
    environment variable, or a command that prints it (an OAuth2 helper for XOAUTH2)."""

    password: str | None = None  # development only: production refuses it
    password_env: Annotated[str, Field(pattern=r"^[A-Z_][A-Z0-9_]*$")] | None = None
    oauth2_token_command: list[str] | None = None  # XOAUTH2: prints a fresh access token

    @model_validator(mode="after")
    def _one(self) -> Secret:
        given = [n for n in ("password", "password_env", "oauth2_token_command")
                 if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of password, password_env, "
                             f"oauth2_token_command (given: {', '.join(given) or 'none'})")
        return self


class Server(Strict):
    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: int = Field(ge=1, le=65535)
    tls: Tls = "tls"
    # A private CA's certificates (PEM) trusted for this server besides the system's: an
    # office mail server signed by the administration's own CA. Never "trust anything".
    ca_file: Path | None = None
    user: Annotated[str, Field(min_length=1, max_length=254)]
    auth: Secret

    @field_validator("ca_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_absolute() and value.is_file()):
            raise ValueError(f"{value} is not a file given by its absolute path")
        return value

    @model_validator(mode="after")
    def _tls_for_ca(self) -> Server:
        if self.ca_file is not None and self.tls == "none":
            raise ValueError("ca_file is for tls or starttls (tls is none)")
        return self


class Rule(Strict):
    """Mail matching this goes to `topic` (or `group`) instead of the mailbox's own."""

    to_address: str | None = None  # one of the recipients
    subject_words: list[Annotated[str, Field(min_length=2)]] | None = None  # any of them
    topic: Name | None = None
    group: Name | None = None

    @field_validator("to_address")
    @classmethod
    def _to(cls, value: str | None) -> str | None:
        return None if value is None else _address(value)

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        if (self.to_address is None) == (self.subject_words is None):
            raise ValueError("a rule matches on to_address or on subject_words (one of them)")
        if (self.topic is None) == (self.group is None):
            raise ValueError("a rule sends to a topic or to a group (one of them)")
        return self


class Mailbox(Strict):
    imap: Server
    folder: str = "INBOX"
    # Where a message goes once stored (it stays, flagged, if this is null).
    done_folder: str | None = "Elaborati"
    topic: Name | None = None  # where its mail goes: a topic (first level) ...
    group: Name | None = None  # ... or a second-level group (the delegation mailbox)
    rules: list[Rule] = Field(default_factory=list)
    address: str  # what citizens write to; replies go out from it
    pec: bool = False  # a PEC mailbox: envelopes unwrapped, receipts kept
    acknowledge: bool = True  # answer a new request with its ticket number

    @field_validator("address")
    @classmethod
    def _valid(cls, value: str) -> str:
        return _address(value)

    @model_validator(mode="after")
    def _destination(self) -> Mailbox:
        if (self.topic is None) == (self.group is None):
            raise ValueError("a mailbox's mail goes to a topic or to a group (one of them)")
        return self


class MailFile(Strict):
    domain: Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")]  # our Message-IDs
    sweep_seconds: int = Field(60, ge=5, le=3600)  # a full look at each mailbox, IDLE or not
    acknowledgements_per_sender_per_hour: int = Field(3, ge=0, le=100)
    smtp: Server
    mailboxes: dict[Name, Mailbox] = Field(min_length=1)


@dataclass(frozen=True)
class MailConfig:
    domain: str
    sweep_seconds: int
    acknowledgements_per_sender_per_hour: int
    smtp: Server
    mailboxes: dict[str, Mailbox]
    digest: str


def load_mail_config(path: Path, topics: Collection[str], groups: Collection[str]
                     ) -> MailConfig | None:
    if not path.exists():
        return None
    doc: YamlDoc = load_yaml(path, display_name(path))
    parsed = doc.validate(MailFile)
    problems: list[ConfigProblem] = []

    def check(where: tuple[str | int, ...], topic: str | None, group: str | None) -> None:
        if topic is not None and topic not in topics:
            known = ", ".join(sorted(topics)) or "none: no tickets.yaml"
            problems.append(doc.problem((*where, "topic"), f"topic {topic!r} takes no written "
                                                           f"requests (tickets.yaml has: {known})"))
        if group is not None and group not in groups:
            known = ", ".join(sorted(groups)) or "none"
            problems.append(doc.problem((*where, "group"), f"unknown group {group!r} "
                                                           f"(tickets.yaml has: {known})"))

    addresses: dict[str, str] = {}
    for name, box in parsed.mailboxes.items():
        check(("mailboxes", name), box.topic, box.group)
        for n, rule in enumerate(box.rules):
            check(("mailboxes", name, "rules", n), rule.topic, rule.group)
        if box.address in addresses:
            problems.append(doc.problem(("mailboxes", name, "address"),
                                        f"{box.address} is also {addresses[box.address]}'s"))
        addresses[box.address] = name
    if problems:
        raise ConfigError(problems)
    return MailConfig(parsed.domain, parsed.sweep_seconds,
                      parsed.acknowledgements_per_sender_per_hour, parsed.smtp,
                      dict(parsed.mailboxes), hashlib.sha256(path.read_bytes()).hexdigest()[:12])
