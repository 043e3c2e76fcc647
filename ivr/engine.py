"""The call-flow engine: announcements, opening hours, menus, information leaves, queue leaves.

The engine decides; it does not touch Asterisk. It talks to the call through `CallPort` (play
these prompts, wait for a key), which the service implements over ARI, `centralino simulate`
implements on the terminal and unit tests implement with scripted keys. What happened is written
to a `Journal`, which the service stores as the call's record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal, Protocol

from ivr.hours import LineStatus
from ivr.schema import Action, Flow, Menu

ANY_KEY = "any"


class CallerHungUp(Exception):
    """The caller went away. `completed` says how many prompts of the current playback ended."""

    def __init__(self, completed: int = 0):
        super().__init__("caller hung up")
        self.completed = completed


@dataclass(frozen=True)
class Played:
    key: str | None = None  # the key that cut the playback short, if any
    completed: int = 0  # prompts played to their end


class CallPort(Protocol):
    async def play(self, prompts: Sequence[str], interrupt: str) -> Played:
        """Play prompt ids in order. `interrupt` is "" (keys are ignored), "any", or the keys
        that stop the playback; the key that stopped it is returned and consumed.
        Raises CallerHungUp."""
        ...

    async def wait_key(self, timeout: float) -> str | None:
        """The next key within `timeout` seconds, or None. Raises CallerHungUp."""
        ...


@dataclass(frozen=True)
class Step:
    at: datetime
    kind: str  # announcement, closed, menu, key, timeout, invalid, info, fallback, goodbye, queue
    node: str = ""  # menu id, or "" outside menus
    key: str | None = None
    prompt: str | None = None
    detail: str = ""  # heard: full/skipped/...; an action; a reason


@dataclass
class Journal:
    clock: Callable[[], datetime]
    steps: list[Step] = field(default_factory=list)
    listener: Callable[[Step], None] | None = None  # `simulate` prints steps as they happen

    def add(self, kind: str, node: str = "", **details: str | None) -> Step:
        step = Step(self.clock(), kind, node, **details)  # type: ignore[arg-type]
        self.steps.append(step)
        if self.listener:
            self.listener(step)
        return step

    def path(self) -> list[str]:
        """Keys and what they chose, as a caller's journey: ["1 SUAP", "3 Orari"]."""
        return [f"{s.key} {s.detail}" for s in self.steps if s.kind == "key"]


@dataclass(frozen=True)
class FlowResult:
    outcome: Literal["queue", "goodbye", "closed"]
    topic: str | None = None  # for "queue"
    label: str | None = None  # the label of the option that chose the queue


async def run_flow(
    flow: Flow, call: CallPort, journal: Journal, *, status: LineStatus, today: date
) -> FlowResult:
    """Run one call of `flow` from the first announcement to its end. `status` says whether the
    line is open now; `today` (local date) decides which dated messages are valid."""
    if not status.open:
        await _announce(flow, call, journal, today, closed=True)
        journal.add("closed", detail=f"{status.why}: {status.detail}".rstrip(": "))
        forced = status.why == "override" and flow.emergency_prompt
        prompt = flow.emergency_prompt if forced else flow.closed_prompt
        if prompt:
            await call.play([prompt], interrupt="")
        return FlowResult("closed")
    await _announce(flow, call, journal, today, closed=False)
    if flow.queue is not None:
        return _queue(journal, "", flow.queue, None)
    return await _Navigator(flow, call, journal).run()


async def _announce(flow: Flow, call: CallPort, journal: Journal, today: date, *,
                    closed: bool) -> None:
    """Play the announcement chain. Consecutive unskippable messages go out in one playback
    (one request to Asterisk); a skippable one is played alone so a key skips only it."""
    chain = [a for a in flow.announcements if a.when_closed or not closed]
    i = 0
    while i < len(chain):
        if not chain[i].valid_on(today):
            journal.add("announcement", prompt=chain[i].prompt, detail="out_of_dates")
            i += 1
            continue
        group = [chain[i]]
        while (not group[0].skippable and i + len(group) < len(chain)
               and not (nxt := chain[i + len(group)]).skippable and nxt.valid_on(today)):
            group.append(nxt)
        interrupt = flow.skip_key if group[0].skippable else ""
        prompts = [a.prompt for a in group]
        try:
            played = await call.play(prompts, interrupt=interrupt)
        except CallerHungUp as gone:
            _record_heard(journal, prompts, gone.completed, cut="hangup")
            raise
        _record_heard(journal, prompts, played.completed, cut="skipped" if played.key else "")
        i += len(group)


def _record_heard(journal: Journal, prompts: list[str], completed: int, cut: str) -> None:
    for n, prompt in enumerate(prompts):
        if n < completed:
            journal.add("announcement", prompt=prompt, detail="full")
        elif n == completed and cut:
            journal.add("announcement", prompt=prompt, detail=cut)


def _queue(journal: Journal, node: str, topic: str, label: str | None) -> FlowResult:
    journal.add("queue", node, detail=topic)
    return FlowResult("queue", topic, label)


class _Navigator:
    """Walks the menu tree: prompt, key, retries, submenus and the way back."""

    def __init__(self, flow: Flow, call: CallPort, journal: Journal):
        self.flow, self.call, self.journal = flow, call, journal
        self.parents: list[str] = []

    async def run(self) -> FlowResult:
        assert self.flow.menu is not None
        menu_id, failures, typed_ahead = self.flow.menu, 0, None
        while True:
            menu = self.flow.menus[menu_id]
            key = typed_ahead
            typed_ahead = None
            if key is None:
                self.journal.add("menu", menu_id, prompt=menu.prompt)
                played = await self.call.play([menu.prompt], ANY_KEY if menu.barge_in else "")
                key = played.key or await self.call.wait_key(menu.timeout)

            action = menu.options.get(key) if key is not None else None
            if action is None:
                failures += 1
                if key is None:
                    self.journal.add("timeout", menu_id)
                    error_prompt = menu.timeout_prompt or self.flow.timeout_prompt
                else:
                    self.journal.add("invalid", menu_id, key=key)
                    error_prompt = menu.invalid_prompt or self.flow.invalid_prompt
                if failures >= menu.max_retries:
                    if error_prompt:  # say what went wrong before moving the caller on
                        await self.call.play([error_prompt], interrupt="")
                    action = menu.fallback or self.flow.fallback
                    self.journal.add("fallback", menu_id, detail=action.describe())
                else:
                    if error_prompt:
                        # A key pressed during the error message is taken as the next choice.
                        typed_ahead = (await self.call.play([error_prompt], ANY_KEY)).key
                    continue
            else:
                self.journal.add("key", menu_id, key=key, detail=action.label or action.describe())

            result, next_menu, typed_ahead = await self._do(menu_id, menu, action)
            if result is not None:
                return result
            failures = 0
            menu_id = next_menu

    async def _do(self, menu_id: str, menu: Menu, action: Action
                  ) -> tuple[FlowResult | None, str, str | None]:
        """Carry out an action: (the end of the flow, or None; the menu to go on with; a key
        the caller pressed meanwhile, to be taken as the next choice)."""
        if action.menu:
            self.parents.append(menu_id)
            return None, action.menu, None
        if action.queue:
            return _queue(self.journal, menu_id, action.queue, action.label), menu_id, None
        if action.info:
            self.journal.add("info", menu_id, prompt=action.info)
            if action.then == "goodbye":
                await self.call.play([action.info], interrupt="")
                return await self._goodbye(menu_id), menu_id, None
            # Back to this menu: a caller who already knows the answer may press a key of the
            # menu during the message (with barge-in), e.g. * to go back.
            played = await self.call.play([action.info], ANY_KEY if menu.barge_in else "")
            return None, menu_id, played.key
        if action.do == "back":
            return None, self.parents.pop() if self.parents else menu_id, None
        if action.do == "operator":
            assert self.flow.operator is not None  # checked when the config was loaded
            return _queue(self.journal, menu_id, self.flow.operator, action.label), menu_id, None
        if action.do == "hangup":
            return await self._goodbye(menu_id), menu_id, None
        return None, menu_id, None  # repeat

    async def _goodbye(self, menu_id: str) -> FlowResult:
        self.journal.add("goodbye", menu_id)
        if self.flow.goodbye_prompt:
            await self.call.play([self.flow.goodbye_prompt], interrupt="")
        return FlowResult("goodbye")
