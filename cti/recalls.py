"""Recall requests from the help desk portal ("Call me now", "Call me back"): the rules.

Pure logic, no aiohttp and no database: which numbers may be called, when a request joins its
topic's queue, the portal clients' keys and the rate limits. centralino/recalls/http.py applies
them to HTTP requests; centralino/recalls/placing.py places the calls with the retry rules below.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

import phonenumbers
from phonenumbers import PhoneNumberType
from pydantic import Field, model_validator

from ivr.clock import aware
from ivr.hours import Schedule, line_status, next_opening
from ivr.schema import Name, Strict

DEV_PORTAL_KEY = "dev-portal"  # the example portal's key: public, so refused in production
DEV_DIAL = "Local/{number}@centralino-citizens"  # asterisk-dev's simulated citizens
STATUSES = ("waiting", "calling", "done", "failed", "cancelled", "expired")
OPEN_STATUSES = ("waiting", "calling")  # at most one open request per number and topic

# phonenumbers' types by the names used in the settings and the API.
NUMBER_TYPES: dict[int, str] = {
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE_OR_MOBILE: "fixed_line_or_mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
    PhoneNumberType.PREMIUM_RATE: "premium_rate",
    PhoneNumberType.SHARED_COST: "shared_cost",
    PhoneNumberType.VOIP: "voip",
    PhoneNumberType.PERSONAL_NUMBER: "personal_number",
    PhoneNumberType.PAGER: "pager",
    PhoneNumberType.UAN: "uan",
    PhoneNumberType.VOICEMAIL: "voicemail",
    PhoneNumberType.UNKNOWN: "unknown",
}
NumberType = Literal["fixed_line", "mobile", "fixed_line_or_mobile", "toll_free", "premium_rate",
                     "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
                     "unknown"]
# Satellite services (Inmarsat +870, Iridium/Thuraya +881...) and other global numbers have
# no country: phonenumbers gives them this region code.
NON_GEOGRAPHIC = "001"

TokenHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the key")]


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


class RecallError(ValueError):
    """A request the rules refuse; `field` names the part of the payload at fault."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# --- settings (the `recalls:` section of centralino.yaml) -------------------------------------

class PortalClient(Strict):
    name: str = ""
    key_sha256: TokenHash


class RecallLimits(Strict):
    # New requests for one number in any 24 hours (cancelled ones count: no create/cancel loop).
    per_number_per_day: int = Field(3, ge=1, le=1000)
    # POSTs from one client address (the portal's server, as seen by us) in any 60 seconds.
    per_address_per_minute: int = Field(60, ge=1, le=100_000)


class RecallSettings(Strict):
    clients: dict[Name, PortalClient] = Field(default_factory=dict)
    default_region: str = Field("IT", pattern=r"^[A-Z]{2}$")  # numbers written without +CC
    # (Field(default=...): pydantic gives each instance a copy of a mutable default.)
    allowed_regions: list[Annotated[str, Field(pattern=r"^([A-Z]{2}|001)$")]] = Field(
        default=["IT"])
    allowed_types: list[NumberType] = Field(default=["fixed_line", "mobile"])
    # Topics the portal may ask for; empty: every queue.
    topics: list[Name] = Field(default_factory=list)
    hours: Name | None = None  # schedule in hours.yaml; None: any time (always open)
    horizon_days: int = Field(14, ge=1, le=90)
    limits: RecallLimits = RecallLimits()
    # Seconds before attempt 2, 3, ...; the last delay repeats. (ge=1: tests use seconds.)
    retry_delays: list[Annotated[int, Field(ge=1, le=86_400)]] = Field(default=[300, 900])
    max_attempts: int = Field(3, ge=1, le=10)
    # How Asterisk reaches a citizen: {number} is the number as dialled from default_region
    # (national digits for domestic numbers, 00<country><digits> for others), {e164} is
    # +<country><digits>. Production: e.g. PJSIP/{number}@trunk.
    dial: str = Field(DEV_DIAL, pattern=r"\{(number|e164)\}")
    caller_id: str = Field("", max_length=32)  # the help desk's number, shown to the citizen
    ring_timeout: float = Field(30, ge=1, le=120)  # seconds the citizen's phone rings
    # When recalls and live callers both wait in a topic, at most this share of the calls
    # agents take go to recalls (queue_manager.queues); 1: plain arrival order.
    share: float = Field(1.0, ge=0, le=1)
    # Seconds a due request may wait for an agent before it is given up as expired (the
    # citizen no longer expects the call).
    expire_after: int = Field(86_400, ge=1, le=90 * 86_400)

    @model_validator(mode="after")
    def _distinct_keys(self) -> RecallSettings:
        seen: dict[str, str] = {}
        for client_id, client in self.clients.items():
            if (twin := seen.get(client.key_sha256)) is not None:
                raise ValueError(f"clients: {client_id} has the same key as {twin}")
            seen[client.key_sha256] = client_id
        return self

    def dial_string(self, e164: str) -> str:
        return dial_string(self.dial, e164, self.default_region)

    def client_for(self, key: str) -> str | None:
        """The portal client whose key this is (compared in constant time)."""
        hashed = key_hash(key).encode()
        found = None
        for client_id, client in self.clients.items():
            if hmac.compare_digest(hashed, client.key_sha256.encode()):
                found = client_id
        return found

    def not_ready_to_call(self) -> list[str]:
        """Why recalls could not reach real citizens (production mode refuses to start with
        recalls in use then): the simulated citizens' dial string, or no caller id (citizens
        do not answer anonymous calls, and many carriers refuse them)."""
        out = []
        if self.dial == DEV_DIAL:
            out.append("recalls.dial still dials the development's simulated citizens: set "
                       "your trunk, e.g. PJSIP/{number}@trunk")
        if not self.caller_id:
            out.append("recalls.caller_id is empty: set the help desk's number, which "
                       "citizens see when called back")
        return out

    def dev_keys_in_use(self) -> list[str]:
        dev = key_hash(DEV_PORTAL_KEY)
        return sorted(cid for cid, c in self.clients.items() if c.key_sha256 == dev)

    def problems(self, schedules: set[str], queues: set[str]) -> list[tuple[str, str]]:
        """(field, message) for names that hours.yaml / queues.yaml do not define."""
        out = []
        if self.hours is not None and self.hours not in schedules:
            known = ", ".join(sorted(schedules)) or "none"
            out.append(("recalls.hours",
                        f"unknown schedule {self.hours!r} (hours.yaml has: {known})"))
        for topic in self.topics:
            if topic not in queues:
                out.append(("recalls.topics", f"unknown queue {topic!r} (see queues.yaml)"))
        return out


# --- numbers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Destination:
    e164: str
    type: str  # a NumberType
    region: str  # ISO country, or NON_GEOGRAPHIC


@dataclass(frozen=True)
class OutsideNumber:
    """A number outside the desk an agent transfers a caller to (issue #13)."""

    e164: str
    dial: str  # as Asterisk dials it (recalls' `dial`)
    caller_id: str  # what its phone shows: the desk's (recalls' `caller_id`)
    ring_timeout: float


def classify(raw: str, settings: RecallSettings, own: Iterable[str] = ()) -> Destination:
    """Parse a number as a citizen types it; RecallError unless config allows calling it.
    `own`: the help desk's numbers (its lines, its caller id), never called back: a recall
    to one of them would ring the help desk itself."""
    try:
        number = phonenumbers.parse(raw, settings.default_region)
    except phonenumbers.NumberParseException:
        raise RecallError("number", "not a phone number") from None
    if number.extension:
        raise RecallError("number", "extensions cannot be dialled: give a direct number")
    if not phonenumbers.is_valid_number(number):
        raise RecallError("number", "not a valid phone number (check the digits and the "
                                    "country code)")
    region = phonenumbers.region_code_for_number(number) or "unknown"
    kind = NUMBER_TYPES.get(phonenumbers.number_type(number), "unknown")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if region not in settings.allowed_regions:
        what = ("satellite and other non-geographic numbers" if region == NON_GEOGRAPHIC
                else f"numbers of {region}")
        raise RecallError("number", f"{what} cannot be called back (allowed: "
                                    f"{', '.join(settings.allowed_regions)})")
    if kind not in settings.allowed_types:
        raise RecallError("number", f"{kind.replace('_', '-')} numbers cannot be called back "
                                    f"(allowed: {', '.join(settings.allowed_types)})")
    if e164 in _e164s([*own, settings.caller_id], settings.default_region):
        raise RecallError("number", "this is the help desk's own number")
    return Destination(e164, kind, region)


def _e164s(numbers: Iterable[str], region: str) -> set[str]:
    out = set()
    for raw in numbers:
        try:
            number = phonenumbers.parse(raw, region)
        except phonenumbers.NumberParseException:
            continue  # not a phone number (an extension, a test line): nobody can ask for it
        out.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return out


# --- when a request joins the queue -----------------------------------------------------------

def due_time(mode: Literal["now", "back"], slot: datetime | None, now: datetime,
             schedule: Schedule | None, horizon_days: int) -> datetime:
    """When the request joins its topic's queue (UTC): now, or the next opening if closed, for
    "now"; the slot for "back", which must be in the future, within the horizon and inside
    opening hours. Overrides (a line forced closed) belong to lines, not to recalls: ignored."""
    now = now.astimezone(UTC)
    horizon = now + timedelta(days=horizon_days)
    if mode == "now":
        if slot is not None:
            raise RecallError("slot", "only for mode \"back\"")
        if schedule is None or line_status(schedule, None, now).open:
            return now
        opening = next_opening(schedule, now, horizon_days)
        if opening is None:
            raise RecallError("mode", f"the help desk does not open in the next {horizon_days} "
                                      "days: try again later")
        return opening.astimezone(UTC)
    if slot is None:
        raise RecallError("slot", "required for mode \"back\"")
    try:
        # A slot without an offset is Italian local time; out-of-range offsets near year 1 or
        # 9999 would overflow here, not later.
        slot = aware(slot).astimezone(UTC)
    except (OverflowError, ValueError):
        raise RecallError("slot", "out of range") from None
    if slot <= now:
        raise RecallError("slot", "must be in the future")
    if slot > horizon:
        raise RecallError("slot", f"must be within {horizon_days} days")
    if schedule is not None:
        status = line_status(schedule, None, slot)
        if not status.open:
            why = {"hours": "outside opening hours", "holiday": f"a holiday ({status.detail})",
                   "closure": f"the help desk is closed ({status.detail})"}.get(status.why,
                                                                                 "closed")
            if (opening := next_opening(schedule, slot, horizon_days)) is not None:
                why += f"; it opens again at {opening.isoformat(timespec='minutes')}"
            raise RecallError("slot", why)
    return slot


# --- rate limits ------------------------------------------------------------------------------

class SlidingWindow:
    """At most `limit` events per key in any `window` seconds, counted in memory.

    In memory on purpose: it guards the per-address minute limit, where losing the counts on a
    restart costs at most a minute's extra requests. (The per-number daily limit is counted in
    the database, which survives restarts.)"""

    def __init__(self, limit: int, window: float):
        self.limit, self.window = limit, window
        self._events: dict[str, deque[datetime]] = {}

    def hit(self, key: str, now: datetime) -> int | None:
        """Count one event; None if allowed, else the seconds until one would be (not counted)."""
        start = now - timedelta(seconds=self.window)
        if len(self._events) > 10_000:  # forget idle keys so memory stays bounded
            self._events = {k: q for k, q in self._events.items() if q and q[-1] > start}
        events = self._events.setdefault(key, deque())
        while events and events[0] <= start:
            events.popleft()
        if len(events) >= self.limit:
            return retry_after(events[0] + timedelta(seconds=self.window), now)
        events.append(now)
        return None


def retry_after(free_at: datetime, now: datetime) -> int:
    """Whole seconds for a Retry-After header (at least 1)."""
    return max(1, math.ceil((free_at - now).total_seconds()))


# --- placing the calls ------------------------------------------------------------------------

CITIZEN_OUTCOMES = ("answered", "no_answer", "busy", "failed")  # attempts that count
# The agent's doing, not counted against the citizen: the agent did not answer (the citizen
# was not dialled), or hung up while the citizen's phone rang.
AGENT_OUTCOMES = ("agent_missed", "agent_left")
BUSY_CAUSES = frozenset({17, 21})  # Q.850 user busy, call rejected
NO_ANSWER_CAUSES = frozenset({0, 16, 18, 19, 31})  # normal clearing, no answer (Local legs: 16)


def dial_string(template: str, e164: str, region: str) -> str:
    """The dial string for a stored E.164 number (see RecallSettings.dial)."""
    number = phonenumbers.parse(e164)
    local = phonenumbers.format_out_of_country_calling_number(number, region)
    digits = "".join(c for c in local if c.isdigit())
    return template.format(number=digits, e164=e164)


def citizen_outcome(cause: int) -> str:
    """How an unanswered dial ended, from the Q.850 cause of the citizen's channel."""
    if cause in BUSY_CAUSES:
        return "busy"
    return "no_answer" if cause in NO_ANSWER_CAUSES else "failed"


@dataclass(frozen=True)
class Next:
    status: str  # done | waiting | failed
    due_at: datetime | None  # the new due time when waiting again


def after_attempt(outcome: str, attempts: int, settings: RecallSettings, now: datetime,
                  schedule: Schedule | None = None) -> Next:
    """What follows a dial of the citizen (`attempts` counts it): done if answered; failed
    after max_attempts; else waiting again, retry_delays[attempts-1] later (the last delay
    repeats), moved to the next opening if the help desk is closed then."""
    if outcome == "answered":
        return Next("done", None)
    if attempts >= settings.max_attempts:
        return Next("failed", None)
    delays = settings.retry_delays
    due = now.astimezone(UTC) + timedelta(seconds=delays[min(attempts, len(delays)) - 1])
    if schedule is not None and not line_status(schedule, None, due).open:
        opening = next_opening(schedule, due, settings.horizon_days)
        if opening is None:
            return Next("failed", None)
        due = opening.astimezone(UTC)
    return Next("waiting", due)


def next_wake(due: list[datetime], now: datetime, longest: float = 60.0) -> float:
    """Seconds until the scheduler should look again: the next due time, at most `longest`
    (a safety net: a poke from the API is what normally wakes it)."""
    future = [(d - now).total_seconds() for d in due]
    return max(0.0, min([longest, *future]))


# --- the agent's verdict ----------------------------------------------------------------------

# What an agent may say of a recall conversation once it is over: it was the citizen and it is
# done; it was an answering machine or somebody else (try again, as after no answer); or the
# number is not the citizen's (give up).
MARKS = ("done", "no_answer", "wrong_number")
# Every outcome an attempt can end with (wrong_number only by an agent's verdict).
ATTEMPT_OUTCOMES = (*CITIZEN_OUTCOMES, *AGENT_OUTCOMES, "wrong_number")


def after_mark(mark: str, status: str, last_outcome: str | None, attempts: int,
               settings: RecallSettings, now: datetime, schedule: Schedule | None = None
               ) -> Next | None:
    """What the agent's verdict on the request's last attempt leads to: the new status (and
    due time), None if it says what is already recorded (nothing to change), or RecallError
    when it cannot be marked. Only an answered call, once over, can be marked; a verdict once
    given stands."""
    if status == "calling":
        raise RecallError("status", "the call is still being placed or going on: mark it "
                                    "after the call")
    if last_outcome is None:
        raise RecallError("outcome", "no call was placed for this request")
    if last_outcome == mark or (mark == "done" and last_outcome == "answered"):
        return None
    if last_outcome != "answered" or status != "done":
        raise RecallError("outcome", f"the last call was already recorded as {last_outcome}")
    if mark == "wrong_number":
        return Next("failed", None)
    return after_attempt("no_answer", attempts, settings, now, schedule)
