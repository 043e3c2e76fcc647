"""Load and check the whole call-flow configuration: flows, queues, hours and the prompt manifest.

A `CallConfig` is immutable: a reload builds a new one and swaps it in only if it has no errors,
so calls in progress keep the version they started with.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, Field, RootModel

from ivr.hours import Schedule
from ivr.schema import Action, Flow, HoursFile, PromptId, QueuesFile, QueueTopic
from ivr.yamlfile import ConfigError, ConfigProblem, Loc, YamlDoc, display_name, load_yaml

_M = TypeVar("_M", bound=BaseModel)
Texts = dict[Annotated[str, Field(pattern=r"^[a-z]{2}$")], str]


class Manifest(RootModel[dict[PromptId, Texts]]):
    """prompts/manifest.yaml: every prompt id with its text per language."""


@dataclass(frozen=True)
class CallConfig:
    version: str
    flows: dict[str, Flow]  # by number dialled
    flow_files: dict[str, str]  # number -> file, for messages
    queues: dict[str, QueueTopic]
    schedules: dict[str, Schedule]
    prompts: dict[str, dict[str, str]]  # id -> language -> text
    warnings: list[ConfigProblem] = field(default_factory=list)

    def prompt_text(self, prompt_id: str, language: str) -> str:
        return self.prompts.get(prompt_id, {}).get(language, "")


def load_call_config(config_dir: Path, manifest_path: Path) -> CallConfig:
    """Read config_dir/{flows/*.yaml,queues.yaml,hours.yaml} and the manifest; raise ConfigError
    listing every problem found (not just the first)."""
    problems: list[ConfigProblem] = []
    warnings: list[ConfigProblem] = []
    digest = hashlib.sha256()

    def read(path: Path, model: type[_M]) -> tuple[YamlDoc | None, _M | None]:
        display = display_name(path)
        try:
            doc = load_yaml(path, display)
            warnings.extend(doc.warnings)
            digest.update(display.encode() + b"\0" + path.read_bytes())
            return doc, doc.validate(model)
        except ConfigError as exc:
            problems.extend(exc.problems)
            return None, None

    queues_doc, queues_file = read(config_dir / "queues.yaml", QueuesFile)
    hours_path = config_dir / "hours.yaml"
    hours_file = read(hours_path, HoursFile)[1] if hours_path.exists() else HoursFile(schedules={})
    _, manifest = read(manifest_path, Manifest)

    flow_paths = sorted((config_dir / "flows").glob("*.yaml"))
    if not flow_paths:
        problems.append(
            ConfigProblem(display_name(config_dir / "flows"), 1, 1, "", "no flow files (*.yaml)")
        )
    flows: dict[str, tuple[YamlDoc, Flow]] = {}
    for path in flow_paths:
        doc, flow = read(path, Flow)
        if doc is None or flow is None:
            continue
        if flow.number in flows:
            other = flows[flow.number][0].file
            problems.append(doc.problem(("number",), f"{flow.number} is already used by {other}"))
            continue
        flows[flow.number] = (doc, flow)

    if queues_file is not None and hours_file is not None and manifest is not None:
        known = _Known(queues_file.queues, hours_file.schedules, manifest.root)
        for doc, flow in flows.values():
            problems.extend(_check_flow(doc, flow, known, warnings))
        assert queues_doc is not None
        languages = {flow.language for _, flow in flows.values()} or {"it"}
        problems.extend(_check_queues(queues_doc, queues_file, known, languages))

    if problems:
        raise ConfigError(problems)
    assert queues_file is not None and hours_file is not None and manifest is not None
    return CallConfig(
        version=digest.hexdigest()[:12],
        flows={n: f for n, (_, f) in flows.items()},
        flow_files={n: d.file for n, (d, _) in flows.items()},
        queues=dict(queues_file.queues),
        schedules=dict(hours_file.schedules),
        prompts={k: dict(v) for k, v in manifest.root.items()},
        warnings=sorted(warnings),
    )



@dataclass
class _Known:
    queues: dict[str, QueueTopic]
    schedules: dict[str, Schedule]
    prompts: dict[str, dict[str, str]]


def _actions(flow: Flow) -> Iterator[tuple[Loc, Action]]:
    yield ("fallback",), flow.fallback
    for menu_id, menu in flow.menus.items():
        for key, action in menu.options.items():
            yield ("menus", menu_id, "options", key), action
        if menu.fallback:
            yield ("menus", menu_id, "fallback"), menu.fallback


def _prompts(flow: Flow) -> Iterator[tuple[Loc, str]]:
    for i, ann in enumerate(flow.announcements):
        yield ("announcements", i, "prompt"), ann.prompt
    for name in ("closed_prompt", "emergency_prompt", "goodbye_prompt", "invalid_prompt",
                 "timeout_prompt"):
        if value := getattr(flow, name):
            yield (name,), value
    for menu_id, menu in flow.menus.items():
        yield ("menus", menu_id, "prompt"), menu.prompt
        for name in ("invalid_prompt", "timeout_prompt"):
            if value := getattr(menu, name):
                yield ("menus", menu_id, name), value
    for loc, action in _actions(flow):
        if action.info:
            yield (*loc, "info"), action.info


def _check_flow(
    doc: YamlDoc, flow: Flow, known: _Known, warnings: list[ConfigProblem]
) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    if flow.hours and flow.hours not in known.schedules:
        out.append(doc.problem(("hours",), f"unknown schedule {flow.hours!r} (see hours.yaml)"))
    for loc, prompt in _prompts(flow):
        texts = known.prompts.get(prompt)
        if texts is None:
            out.append(doc.problem(loc, f"unknown prompt {prompt!r} (add it to the manifest)"))
        elif flow.language not in texts:
            out.append(doc.problem(loc, f"prompt {prompt!r} has no {flow.language!r} text"))

    def check_queue(loc: Loc, topic: str | None) -> None:
        if topic is not None and topic not in known.queues:
            out.append(doc.problem(loc, f"unknown queue {topic!r} (see queues.yaml)"))

    check_queue(("queue",), flow.queue)
    check_queue(("operator",), flow.operator)
    if flow.menu is not None and flow.menu not in flow.menus:
        out.append(doc.problem(("menu",), f"unknown menu {flow.menu!r}"))
    for loc, action in _actions(flow):
        check_queue((*loc, "queue"), action.queue)
        if action.menu is not None and action.menu not in flow.menus:
            out.append(doc.problem((*loc, "menu"), f"unknown menu {action.menu!r}"))
        if loc[-1] == "fallback" and action.do in ("repeat", "back"):
            out.append(doc.problem((*loc, "do"), f"a fallback cannot be `{action.do}`: callers "
                                   "who keep failing would loop forever"))
        if loc[-1] == "fallback" and action.info and action.then == "menu":
            out.append(doc.problem((*loc, "info"), "a fallback `info` needs `then: goodbye`: "
                                   "callers who keep failing would loop forever"))
        if action.do == "operator" and flow.operator is None:
            out.append(doc.problem((*loc, "do"),
                                   "`do: operator` needs the flow's `operator` topic"))
    if out:
        return out

    # Every menu must offer a way out by keys (a queue, an information-then-goodbye, operator or
    # hangup), directly or through submenus; running out of retries does not count as a way out.
    exits: set[str] = set()
    changed = True
    while changed:
        changed = False
        for menu_id, menu in flow.menus.items():
            if menu_id in exits:
                continue
            for action in menu.options.values():
                terminal = action.queue or action.do in ("operator", "hangup") or (
                    action.info and action.then == "goodbye"
                )
                if terminal or (action.menu in exits):
                    exits.add(menu_id)
                    changed = True
                    break
    for menu_id in flow.menus:
        if menu_id not in exits:
            out.append(doc.problem(
                ("menus", menu_id),
                "no key leads out of this menu (to a queue, operator, hangup or information "
                "then goodbye), not even through its submenus: callers would loop forever",
            ))

    if loop := _fallback_loop(flow):
        first = loop[0]
        where = ("menus", first, "fallback") if flow.menus[first].fallback else ("fallback",)
        out.append(doc.problem(where, f"fallbacks go round in a loop ({' -> '.join(loop)}): a "
                                      "caller who never presses a key would never leave"))

    reachable: set[str] = set()
    todo = [m for m in (flow.menu, flow.fallback.menu) if m]
    while todo:
        menu_id = todo.pop()
        if menu_id in reachable or menu_id not in flow.menus:
            continue
        reachable.add(menu_id)
        menu = flow.menus[menu_id]
        todo += [a.menu for a in menu.options.values() if a.menu]
        if menu.fallback and menu.fallback.menu:
            todo.append(menu.fallback.menu)
    for menu_id in flow.menus:
        if menu_id not in reachable:
            warnings.append(doc.problem(("menus", menu_id), "no key leads to this menu"))
    return out


def _check_queues(doc: YamlDoc, file: QueuesFile, known: _Known,
                  languages: set[str]) -> list[ConfigProblem]:
    out: list[ConfigProblem] = []
    for topic_id, topic in file.queues.items():
        for loc, prompt in topic.prompts():
            texts = known.prompts.get(prompt)
            where = ("queues", topic_id, *loc)
            if texts is None:
                out.append(doc.problem(where,
                                       f"unknown prompt {prompt!r} (add it to the manifest)"))
            elif missing := sorted(languages - set(texts)):
                out.append(doc.problem(where, f"prompt {prompt!r} has no text in "
                                              f"{', '.join(missing)} (a line speaks it)"))
        for rule, dest in topic.destinations():
            where = ("queues", topic_id, *rule.split("."), "queue")
            if dest.queue is not None and dest.queue not in file.queues:
                out.append(doc.problem(where, f"unknown queue {dest.queue!r}"))
            elif dest.queue == topic_id:
                out.append(doc.problem(where, "a rule cannot send callers back to the same queue"))
    # Rules that act on entry (no agents, too many callers) may chain from queue to queue;
    # a ring of them would bounce a caller forever without waiting anywhere.
    for start in file.queues:
        chain, topic_id = [start], start
        while True:
            entry = file.queues.get(topic_id)
            nxt = entry.no_agents.queue if entry and entry.no_agents else None
            if nxt is None or nxt not in file.queues:
                break
            if nxt in chain:
                loop = [*chain[chain.index(nxt):], nxt]
                if loop[0] == start == min(loop[:-1]):  # each loop once
                    out.append(doc.problem(("queues", start, "no_agents", "queue"),
                                           f"no_agents rules go round in a loop "
                                           f"({' -> '.join(loop)}): with nobody logged in a "
                                           "caller would never stop moving"))
                break
            chain.append(nxt)
            topic_id = nxt
    return out


def _fallback_loop(flow: Flow) -> list[str] | None:
    """A caller who never presses a key follows fallbacks from menu to menu: the first loop
    found, as [a, b, ..., a], or None if every chain ends."""
    for start in flow.menus:
        chain, menu_id = [start], start
        while (target := (flow.menus[menu_id].fallback or flow.fallback).menu) is not None:
            if target in chain:
                return [*chain[chain.index(target):], target]
            chain.append(target)
            menu_id = target
    return None
