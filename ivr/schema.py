"""The shape of a flow file: what ops write in `config/flows/*.yaml`.

Validation here is per file (types, unknown keys, one action per key). Checks that need the
whole configuration (does this queue exist? is this prompt in the manifest?) live in
`ivr.config`, which knows every file.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ivr.hours import Schedule
from ivr.yamlfile import KEY_PATTERN


def _key(value: object) -> object:
    # `1:` in YAML is the integer 1; accept it as the key "1" (but `#` and `*` must be quoted).
    # Any other integer (`10:`) becomes text too, so it fails the key pattern like "10" does.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Key = Annotated[str, BeforeValidator(_key), Field(pattern=KEY_PATTERN)]
PromptId = Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dated(Strict):
    """A promotional or informative message: played only between these dates (inclusive)."""

    valid_from: date | None = None
    valid_until: date | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Dated:
        if self.valid_from and self.valid_until and self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self

    def valid_on(self, day: date) -> bool:
        return (self.valid_from is None or self.valid_from <= day) and (
            self.valid_until is None or day <= self.valid_until
        )


class Announcement(Dated):
    """One message of the chain played before the menu."""

    prompt: PromptId
    skippable: bool = False
    # Played even when the line is closed (the carrier's cost notice, typically).
    when_closed: bool = False


class Action(Strict):
    """What a key (or a menu's fallback) does. Exactly one of menu/info/queue/do."""

    menu: Name | None = None  # go to a submenu
    info: PromptId | None = None  # play an information message...
    then: Literal["menu", "goodbye"] = "menu"  # ...then back to this menu, or goodbye
    queue: Name | None = None  # wait for an operator of this topic
    do: Literal["repeat", "back", "operator", "hangup"] | None = None
    label: str | None = None  # shown in records and screen pops ("SUAP", "Tributi")

    @model_validator(mode="after")
    def _exactly_one(self) -> Action:
        chosen = [k for k in ("menu", "info", "queue", "do") if getattr(self, k) is not None]
        if len(chosen) != 1:
            found = ", ".join(chosen) or "none"
            raise ValueError(f"give exactly one of menu, info, queue, do (found: {found})")
        if "then" in self.model_fields_set and self.info is None:
            raise ValueError("`then` applies only to an `info` action")
        return self

    @property
    def kind(self) -> str:
        for k in ("menu", "info", "queue", "do"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated Action has no kind")

    def describe(self) -> str:
        if self.do:
            return self.do
        target = self.menu or self.info or self.queue
        return f"{self.kind}:{target}"


HANGUP = Action(do="hangup")


class Menu(Strict):
    prompt: PromptId
    label: str | None = None
    options: dict[Key, Action]
    timeout: float = Field(5.0, gt=0, le=60, description="seconds to wait for a key")
    max_retries: int = Field(3, ge=1, le=10, description="timeouts + invalid keys before fallback")
    barge_in: bool = True  # a key cuts the prompt short
    invalid_prompt: PromptId | None = None  # default: the flow's
    timeout_prompt: PromptId | None = None  # default: the flow's (or just the reprompt)
    fallback: Action | None = None  # default: the flow's

    @model_validator(mode="after")
    def _has_options(self) -> Menu:
        if not self.options:
            raise ValueError("a menu needs at least one option")
        return self


class Flow(Strict):
    """Everything a caller of one number hears and can do."""

    number: Annotated[str, Field(pattern=r"^\+?[0-9]{3,20}$")]
    name: str
    language: Annotated[str, Field(pattern=r"^[a-z]{2}$")] = "it"
    hours: Name | None = None  # a schedule from hours.yaml; none: always open
    skip_key: Key | Literal["any"] = "#"  # the key that skips a skippable announcement
    announcements: list[Announcement] = []
    closed_prompt: PromptId | None = None  # outside hours; required when `hours` is set
    emergency_prompt: PromptId | None = None  # forced closure; default: closed_prompt
    goodbye_prompt: PromptId | None = None
    invalid_prompt: PromptId | None = None
    timeout_prompt: PromptId | None = None
    fallback: Action = HANGUP  # when a menu runs out of retries
    operator: Name | None = None  # the topic `do: operator` leads to
    # Callers of this line count as having waited this many seconds more (a priority line).
    priority_boost: float = Field(0, ge=0, le=3600)
    menu: Name | None = None  # the first menu...
    queue: Name | None = None  # ...or, for a line with no menu, the topic to wait in
    menus: dict[Name, Menu] = {}

    @model_validator(mode="after")
    def _entry(self) -> Flow:
        if (self.menu is None) == (self.queue is None):
            raise ValueError("give exactly one of `menu` (the first menu) or `queue` (no menu)")
        if self.hours and not self.closed_prompt:
            raise ValueError("`closed_prompt` is required when `hours` is set")
        return self


class Destination(Strict):
    """Where a queue rule sends a caller: exactly one of `queue` or `info`."""

    queue: Name | None = None  # wait in another topic, keeping their arrival time
    info: PromptId | None = None  # play this message, then goodbye

    @model_validator(mode="after")
    def _exactly_one(self) -> Destination:
        if (self.queue is None) == (self.info is None):
            raise ValueError("give exactly one of `queue` (another topic) or `info` (a message, "
                             "then goodbye)")
        return self

    def describe(self) -> str:
        return f"queue:{self.queue}" if self.queue else f"info:{self.info}"


class HoldMessage(Dated):
    """An informative or promotional message played to callers while they wait."""

    prompt: PromptId


class HoldMessages(Strict):
    every: float = Field(45, ge=2, le=3600)  # seconds from the end of one message to the next
    first_after: float = Field(10, ge=0, le=3600)  # seconds of music before the first
    # sequence: each caller hears them in the listed order; rotate: each new caller starts
    # with the next message, so every message reaches as many callers.
    order: Literal["sequence", "rotate"] = "sequence"
    items: list[HoldMessage] = Field(min_length=1)


class Announce(Strict):
    """Position and estimated wait, told to each caller on entry and then every `every` s."""

    position: bool = True  # "there are 3 calls waiting" / "you are next"
    wait: bool = True  # "the estimated wait is less than 5 minutes"
    every: float = Field(60, ge=2, le=3600)
    first_after: float = Field(0, ge=0, le=3600)
    # Estimated waits are rounded up to the first of these (minutes): "less than 5 minutes".
    # Beyond the last band the estimate is said in those units ("about 40 minutes").
    wait_bands: list[Annotated[int, Field(ge=1, le=240)]] = Field(
        [2, 5, 10, 15, 20, 30], min_length=1)
    # Seconds an agent spends per call (talk + wrap-up) until real calls give their average.
    handle_time: float = Field(180, ge=10, le=7200)

    @model_validator(mode="after")
    def _bands_ascending(self) -> Announce:
        if self.wait_bands != sorted(set(self.wait_bands)):
            raise ValueError("wait_bands must be ascending, without repeats")
        return self


class MaxWait(Strict):
    seconds: float = Field(gt=0, le=86400)
    then: Destination


class MaxCallers(Strict):
    callers: int = Field(ge=1, le=100000)  # a caller who would be one more goes to `then`
    then: Destination


class LeaveKey(Strict):
    key: Key
    then: Destination


class CallbackKey(Strict):
    """A key to be called back instead of waiting: the caller's number becomes a recall request
    that keeps their place in the line (issue #4)."""

    key: Key
    confirm: PromptId  # "we will call you back on this number": then the call ends
    # The caller's number cannot be called back (withheld, foreign, premium...): they hear
    # this and keep waiting in their place.
    unavailable: PromptId


class TransferFailed(Strict):
    """A transfer that does not reach its target: a consultation's colleague not answering,
    refusing or hanging up, a number outside not answering, busy or unreachable."""

    prompt: PromptId | None = None  # told to the caller first ("the transfer did not work")
    # A failed consultation: the caller goes back to the agent who consulted, or back to the
    # line in their place (the agent then wraps up, as after a blind transfer).
    consultation: Literal["agent", "queue"] = "agent"


class QueueTopic(Strict):
    """A waiting line for one topic (see config/queues.yaml for what each field means)."""

    name: str
    music_class: Name = "default"
    ring_timeout: float = Field(15, ge=3, le=120)  # seconds an agent's phone rings
    wrap_up: float = Field(5, ge=0, le=600)  # seconds after a call before the next one
    priority_boost: float = Field(0, ge=0, le=3600)  # seconds counted as already waited
    # Figures: answered within `service_level` seconds counts for the service level; callers who
    # hang up within `short_abandon` seconds are short abandons (reported apart).
    service_level: float = Field(20, gt=0, le=3600)
    short_abandon: float = Field(5, ge=0, le=600)
    messages: HoldMessages | None = None
    announce: Announce | None = None
    max_wait: MaxWait | None = None
    max_callers: MaxCallers | None = None
    no_agents: Destination | None = None  # nobody logged in for the topic (paused counts as in)
    leave_key: LeaveKey | None = None
    callback_key: CallbackKey | None = None
    transfer_failed: TransferFailed = TransferFailed()

    @model_validator(mode="after")
    def _distinct_keys(self) -> QueueTopic:
        if self.leave_key and self.callback_key and self.leave_key.key == self.callback_key.key:
            raise ValueError(f"leave_key and callback_key are both {self.leave_key.key!r}")
        return self

    def destinations(self) -> list[tuple[str, Destination]]:
        rules = [("max_wait", self.max_wait), ("max_callers", self.max_callers),
                 ("leave_key", self.leave_key)]
        found = [(f"{name}.then", rule.then) for name, rule in rules if rule is not None]
        return found + ([("no_agents", self.no_agents)] if self.no_agents else [])

    def prompts(self) -> list[tuple[tuple[str | int, ...], str]]:
        found: list[tuple[tuple[str | int, ...], str]] = []
        if self.messages:
            found += [(("messages", "items", i, "prompt"), m.prompt)
                      for i, m in enumerate(self.messages.items)]
        for where, dest in self.destinations():
            if dest.info:
                found.append(((*where.split("."), "info"), dest.info))
        if self.callback_key:
            found += [(("callback_key", "confirm"), self.callback_key.confirm),
                      (("callback_key", "unavailable"), self.callback_key.unavailable)]
        if self.transfer_failed.prompt:
            found.append((("transfer_failed", "prompt"), self.transfer_failed.prompt))
        return found


class QueuesFile(Strict):
    queues: dict[Name, QueueTopic]


class HoursFile(Strict):
    schedules: dict[Name, Schedule]
