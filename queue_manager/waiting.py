"""One caller's stay in one topic's line, as a pure state machine: events in, commands out.

The machine decides; it does not touch Asterisk, the desk or a clock. The service feeds it what
happened (the caller entered, a timer fired, a key, an offer, a ring's result, a message played
to its end) with the time it happened, and carries out the commands it returns (join the line,
play a message, ring an agent, leave the line...). Times are seconds on any monotonic clock;
`WakeAt` says when the next `Tick` is wanted (None: only an event can move the caller on).

The rules of a stay:
- on entry (unless the caller was moved here too often, or is resumed after a restart): nobody
  logged in for the topic -> JOINEMPTY and the `no_agents` destination; a line already holding
  `max_callers` -> FULL and its destination. Either way the caller never joins the line;
- while waiting, at each tick (timers: the next message or announcement, the maximum wait, and
  every EMPTY_CHECK seconds with a `no_agents` rule): the maximum wait reached -> EXITWITHTIMEOUT;
  else nobody logged in any more -> EXITEMPTY; else what is due is played (position and
  estimated wait first, then the next hold message: queue_manager.hold.HoldPlan). A resumed
  caller's maximum wait counts the time they already waited before the restart;
- nothing is checked while a message plays or an agent's phone rings: the rules are applied at
  the next tick after it;
- the leave key -> EXITWITHKEY and its destination; the callback key -> a recall request takes
  the caller's place (EXITWITHKEY, "callback") or, if it cannot be stored, the caller hears why
  and keeps waiting. Either key cuts a message short and is then acted on; so does an offer;
- an offer is taken up only if it is for this stay: this topic, and the agent the desk still has
  the caller offered to (an offer made just before a rule moved the caller is stale);
- a ring: answered -> the caller talks (the stay is over); the leave key pressed meanwhile ->
  EXITWITHKEY; anything else (no answer, refused, failed, unreachable) -> back to waiting in
  their place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Literal

from ivr.schema import Destination, QueueTopic
from queue_manager.hold import Due, HoldPlan, estimate_wait

EMPTY_CHECK = 5.0  # seconds between checks that somebody is still logged in (no_agents rule)


# --- events --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Entered:
    """The caller arrives at the line (before joining it)."""

    logged_in: int  # agents logged in for the topic (paused ones included)
    waiting: int  # callers already in the line
    rules_on_entry: bool = True  # False: moved too often, or resumed (they wait regardless)
    resuming: bool = False  # back in their place after a restart


@dataclass(frozen=True)
class Held:
    """The caller is in the line and hears the music."""

    now: float
    waited: float = 0.0  # seconds since the caller's arrival (counted only when resuming)
    first_message: int = 0  # where this caller starts in a rotating message list


@dataclass(frozen=True)
class Line:
    """The desk and the line as they are now, for the checks and the announcement."""

    logged_in: int
    serving: int = 0  # logged in and not paused
    free: int = 0  # available now
    position: int = 1  # the caller's place in the line (1 = next)
    handle_time: float | None = None  # recent average seconds per call, None: no call yet


@dataclass(frozen=True)
class Tick:
    """A timer fired (the time asked for by WakeAt, or a little later)."""

    now: float
    today: date  # local date: which hold messages are valid
    line: Line


@dataclass(frozen=True)
class Key:
    now: float
    digit: str


@dataclass(frozen=True)
class Offered:
    """The desk offers the caller to an agent."""

    now: float
    agent_id: str
    topic: str
    offered_to: str | None  # whom the desk has the caller offered to now


@dataclass(frozen=True)
class RingResult:
    now: float
    outcome: Literal["answered", "missed", "left"]  # left: the leave key while it rang


@dataclass(frozen=True)
class CallbackResult:
    now: float
    stored: bool  # False: the number cannot be called back, or the request was not stored


@dataclass(frozen=True)
class Played:
    """What was playing finished by itself."""

    now: float


@dataclass(frozen=True)
class Gone:
    """The caller hung up (or the call was lost): nothing more to do."""

    now: float


Event = Entered | Held | Tick | Key | Offered | RingResult | CallbackResult | Played | Gone


# --- commands ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Refuse:
    """Do not let the caller join: log `log_event` and send them to `destination`."""

    log_event: Literal["JOINEMPTY", "FULL"]
    outcome: str
    destination: Destination


@dataclass(frozen=True)
class Join:
    """Put the caller in the line with the topic's music; then tell the machine `Held`."""

    rotate: bool  # draw where the caller starts in the rotating message list


@dataclass(frozen=True)
class Play:
    """Play over the music: the announcement (position and/or estimated wait), then the hold
    message. The announcement says `position` if not None and `wait` (seconds) if not None."""

    position: int | None = None
    wait: float | None = None
    message: str | None = None  # a prompt id


@dataclass(frozen=True)
class Notice:
    """Play one prompt over the music (the callback cannot be taken, say why)."""

    prompt: str


@dataclass(frozen=True)
class Stop:
    """Stop what is playing: a key or an offer cut it short."""


@dataclass(frozen=True)
class Ring:
    """Ring the agent for this caller; then tell the machine `RingResult`."""

    agent_id: str


@dataclass(frozen=True)
class StoreCallback:
    """Store a recall request taking the caller's place; then tell the machine
    `CallbackResult`."""

    key: str


@dataclass(frozen=True)
class Leave:
    """Take the caller out of the line (queue_log `log_event`) and send them to
    `destination`; `key` is the key that did it, if any."""

    log_event: Literal["EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY"]
    outcome: str
    destination: Destination
    key: str = ""


@dataclass(frozen=True)
class Talk:
    """The agent answered and the caller is bridged to them: the stay is over."""


@dataclass(frozen=True)
class WakeAt:
    """Send a Tick at `at` (None: no timer, only events)."""

    at: float | None


Command = Refuse | Join | Play | Notice | Stop | Ring | StoreCallback | Leave | Talk | WakeAt

State = Literal["arriving", "joining", "waiting", "playing", "ringing", "storing", "done"]


class Stay:
    """One stay of one caller in `topic`'s line under `settings` (see the module's rules)."""

    def __init__(self, topic: str, settings: QueueTopic) -> None:
        self.topic, self.settings = topic, settings
        self.state: State = "arriving"
        self.resuming = False
        self.plan: HoldPlan | None = None
        self.deadline = math.inf  # the maximum wait, on the events' clock
        self.next_check = math.inf  # the next no-agents check
        self.playing: Due | None = None  # the hold items playing (None: a notice)
        leave, callback = settings.leave_key, settings.callback_key
        self.leave_key = leave.key if leave else None
        self.callback_key = callback.key if callback else None
        self.keys = (self.leave_key or "") + (self.callback_key or "")  # cut a message short

    @property
    def over(self) -> bool:
        return self.state == "done"

    def handle(self, event: Event) -> list[Command]:
        """The commands that follow `event`, in the order they are to be carried out."""
        if isinstance(event, Gone):
            self.state = "done"
            return []
        if isinstance(event, Entered):
            return self._entered(event) if self.state == "arriving" else []
        if isinstance(event, Held):
            return self._held(event) if self.state == "joining" else []
        if isinstance(event, Tick):
            return self._tick(event) if self.state == "waiting" else []
        if isinstance(event, Played):
            return self._played(event) if self.state == "playing" else []
        if isinstance(event, Key | Offered):
            return self._interrupt(event) if self.state in ("waiting", "playing") else []
        if isinstance(event, RingResult):
            return self._rang(event) if self.state == "ringing" else []
        if isinstance(event, CallbackResult):
            return self._stored(event) if self.state == "storing" else []
        raise TypeError(f"not an event of a stay: {event!r}")  # pragma: no cover

    # --- arriving ---------------------------------------------------------------------------

    def _entered(self, event: Entered) -> list[Command]:
        settings = self.settings
        self.resuming = event.resuming
        if event.rules_on_entry and settings.no_agents and not event.logged_in:
            return self._refuse(Refuse("JOINEMPTY", "no_agents", settings.no_agents))
        if event.rules_on_entry and settings.max_callers and (
                event.waiting >= settings.max_callers.callers):
            return self._refuse(Refuse("FULL", "queue_full", settings.max_callers.then))
        self.state = "joining"
        messages = settings.messages
        return [Join(rotate=bool(messages and messages.order == "rotate"))]

    def _refuse(self, refuse: Refuse) -> list[Command]:
        self.state = "done"
        return [refuse]

    def _held(self, event: Held) -> list[Command]:
        settings = self.settings
        self.plan = HoldPlan(settings.messages, settings.announce, event.now,
                             event.first_message)
        already = event.waited if self.resuming else 0.0
        if settings.max_wait:
            self.deadline = event.now + settings.max_wait.seconds - already
        return self._wait(event.now)

    # --- waiting ----------------------------------------------------------------------------

    def _wait(self, now: float) -> list[Command]:
        """Back to waiting with the music: the next timer."""
        assert self.plan is not None
        self.state, self.playing = "waiting", None
        if self.settings.no_agents:
            self.next_check = now + EMPTY_CHECK
        wake = min(self.plan.due_at, self.deadline, self.next_check)
        return [WakeAt(None if wake == math.inf else wake)]

    def _tick(self, tick: Tick) -> list[Command]:
        settings, plan, now = self.settings, self.plan, tick.now
        assert plan is not None
        if now >= self.deadline:
            assert settings.max_wait is not None
            return self._leave(Leave("EXITWITHTIMEOUT", "max_wait", settings.max_wait.then))
        if settings.no_agents and not tick.line.logged_in:
            return self._leave(Leave("EXITEMPTY", "no_agents", settings.no_agents))
        due = plan.take(now, tick.today)
        if due is None:
            return self._wait(now)
        play = self._what_to_play(due, tick.line)
        if play is None:  # an announcement with nothing worth saying, and no message
            plan.played(due, now)
            return self._wait(now)
        self.state, self.playing = "playing", due
        return [play, WakeAt(None)]

    def _what_to_play(self, due: Due, line: Line) -> Play | None:
        announce = self.settings.announce
        position = wait = None
        if due.announce and announce:
            if announce.position:
                position = line.position
            if announce.wait:
                handle = announce.handle_time if line.handle_time is None else line.handle_time
                estimate = estimate_wait(line.position, line.free, line.serving, handle)
                if estimate is not None and estimate >= 60:  # "less than a minute" is not news
                    wait = estimate
        if position is None and wait is None and due.message is None:
            return None
        return Play(position, wait, due.message)

    def _played(self, event: Played) -> list[Command]:
        if self.playing is not None:
            assert self.plan is not None
            self.plan.played(self.playing, event.now)
        return self._wait(event.now)

    def _interrupt(self, event: Key | Offered) -> list[Command]:
        """A key or an offer: it cuts a message short (keys: only the leave and callback keys),
        then it is acted on."""
        if isinstance(event, Key) and (not event.digit or event.digit not in self.keys):
            return []
        commands: list[Command] = []
        if self.state == "playing":
            commands.append(Stop())
            commands += self._played(Played(event.now))
        if isinstance(event, Offered):
            if event.topic == self.topic and event.offered_to == event.agent_id:
                self.state = "ringing"
                return [*_no_wake(commands), Ring(event.agent_id), WakeAt(None)]
            return commands
        if event.digit == self.callback_key:
            self.state = "storing"
            return [*_no_wake(commands), StoreCallback(event.digit), WakeAt(None)]
        return _no_wake(commands) + self._left_with_key()

    def _left_with_key(self) -> list[Command]:
        leave = self.settings.leave_key
        assert leave is not None
        return self._leave(Leave("EXITWITHKEY", "left_queue", leave.then, key=leave.key))

    def _leave(self, leave: Leave) -> list[Command]:
        self.state = "done"
        return [leave]

    # --- ringing, the callback ---------------------------------------------------------------

    def _rang(self, event: RingResult) -> list[Command]:
        if event.outcome == "answered":
            self.state = "done"
            return [Talk()]
        if event.outcome == "left":
            return self._left_with_key()
        return self._wait(event.now)

    def _stored(self, event: CallbackResult) -> list[Command]:
        callback = self.settings.callback_key
        assert callback is not None
        if event.stored:
            return self._leave(Leave("EXITWITHKEY", "callback", Destination(info=callback.confirm),
                                     key=callback.key))
        self.state, self.playing = "playing", None
        return [Notice(callback.unavailable), WakeAt(None)]


def _no_wake(commands: list[Command]) -> list[Command]:
    """Without the timers of a wait that does not go on."""
    return [c for c in commands if not isinstance(c, WakeAt)]
