"""`centralino simulate`: run a flow on the terminal with the same engine real calls use.

Keys are pressed when the engine waits for one; "-" stands for "no key" (a timeout). Prompts
always play to the end. When the keys run out in a menu, the caller hangs up.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from ivr.clock import LOCAL
from ivr.config import CallConfig
from ivr.engine import CallerHungUp, FlowResult, Journal, Played, Step, run_flow
from ivr.hours import Override, line_status

TIMEOUT = "-"


@dataclass
class ScriptedCall:
    """CallPort whose caller presses the given keys in order."""

    keys: list[str]
    say: Callable[[str], None]
    text_of: Callable[[str], str]
    heard: list[str] = field(default_factory=list)

    async def play(self, prompts: Sequence[str], interrupt: str) -> Played:
        for prompt in prompts:
            self.heard.append(prompt)
            self.say(f"  > {prompt}: {self.text_of(prompt)}")
        return Played(None, len(prompts))

    async def wait_key(self, timeout: float) -> str | None:
        if not self.keys:
            self.say("  (no more keys: the caller hangs up)")
            raise CallerHungUp()
        key = self.keys.pop(0)
        if key == TIMEOUT:
            self.say(f"  ... no key for {timeout:g} s")
            return None
        return key


def _show(step: Step, say: Callable[[str], None]) -> None:
    if step.kind == "announcement" and step.detail == "out_of_dates":
        say(f"  (not played: {step.prompt} is outside its validity dates)")
    elif step.kind == "menu":
        say(f"[menu {step.node}]")
    elif step.kind == "key":
        say(f"  key {step.key} -> {step.detail}")
    elif step.kind == "invalid":
        say(f"  key {step.key} -> not an option")
    elif step.kind == "fallback":
        say(f"  too many attempts -> {step.detail}")
    elif step.kind == "closed":
        say(f"  (closed: {step.detail})")


def parse_keys(text: str) -> list[str]:
    """'1,2,#' or '12#' -> ['1', '2', '#']; '-' is a timeout."""
    separated = re.split(r"[,\s]+", text.strip())
    parts = separated if len(separated) > 1 else list(text.strip())
    bad = [p for p in parts if p and p != TIMEOUT and (len(p) != 1 or p not in "0123456789*#")]
    if bad:
        raise ValueError(f"not a key: {', '.join(bad)} (use 0-9, *, # and - for no key)")
    return [p for p in parts if p]


async def simulate(config: CallConfig, number: str, keys: list[str], at: datetime,
                   say: Callable[[str], None], override: Override | None = None
                   ) -> tuple[FlowResult | None, Journal]:
    flow = config.flows[number]
    schedule = config.schedules.get(flow.hours) if flow.hours else None
    status = line_status(schedule, override, at)
    local = at.astimezone(schedule.zone if schedule else LOCAL)
    state = "open" if status.open else "closed"
    say(f"{flow.name} ({number}) at {local:%a %Y-%m-%d %H:%M %Z}: {state} "
        f"({status.why}{': ' + status.detail if status.detail else ''})")
    call = ScriptedCall(list(keys), say, lambda p: config.prompt_text(p, flow.language))
    journal = Journal(lambda: at, listener=lambda step: _show(step, say))
    result: FlowResult | None = None
    try:
        result = await run_flow(flow, call, journal, status=status, today=local.date())
    except CallerHungUp:
        pass
    if result is None:
        say("End: the caller hung up")
    elif result.outcome == "queue":
        assert result.topic is not None
        say(f"End: waits in queue {result.topic} ({config.queues[result.topic].name})")
    else:
        say(f"End: {result.outcome}")
    return result, journal
