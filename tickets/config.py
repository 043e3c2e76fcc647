"""config/tickets.yaml: the written requests' desk: subjects per topic, second-level groups
and SLA targets (see the example file for every field). No file: no tickets.

Checked like the rest of the configuration, every problem with its file and line: topics
must be lines of queues.yaml, group members agents of agents.yaml, the calendar a schedule of
hours.yaml.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from ivr.schema import Name, Strict
from ivr.yamlfile import ConfigError, ConfigProblem, YamlDoc, display_name, load_yaml
from tickets.numbers import PREFIX
from tickets.sla import Target
from tickets.states import FIRST_LEVEL

Hours = Annotated[float, Field(gt=0, le=2000)]  # working hours


class Sla(Strict):
    first_response_hours: Hours
    resolution_hours: Hours

    @model_validator(mode="after")
    def _after_first_response(self) -> Sla:
        if self.resolution_hours < self.first_response_hours:
            raise ValueError(f"`resolution_hours` ({self.resolution_hours:g}) comes before "
                             f"the first response ({self.first_response_hours:g})")
        return self


class TopicDesk(Strict):
    subjects: Annotated[list[Annotated[str, Field(min_length=1, max_length=120)]],
                        Field(min_length=1)]
    sla: Sla

    @field_validator("subjects")
    @classmethod
    def _distinct(cls, subjects: list[str]) -> list[str]:
        seen: set[str] = set()
        for subject in subjects:
            if subject.casefold() in seen:
                raise ValueError(f"subject {subject!r} is listed twice")
            seen.add(subject.casefold())
        return subjects


class Group(Strict):
    """A second-level group ("II livello"): who is in it and its own targets."""

    name: str
    members: Annotated[list[Name], Field(min_length=1)]
    sla: Sla


class TicketsFile(Strict):
    prefix: str = "HD"
    hours: Name | None = None  # the SLA calendar: a schedule of hours.yaml; none: every hour
    # percent of a target
    warn_at: list[Annotated[int, Field(gt=0, lt=100)]] = Field(default_factory=lambda: [70, 80, 90])
    topics: dict[Name, TopicDesk]
    groups: dict[Name, Group] = Field(default_factory=dict)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not PREFIX.match(value):
            raise ValueError(f"{value!r}: 2 to 6 capital letters (HD-2026-000123)")
        return value

    @field_validator("warn_at")
    @classmethod
    def _ascending(cls, value: list[int]) -> list[int]:
        if value != sorted(set(value)):
            raise ValueError("list each percentage once, in ascending order")
        return value


@dataclass(frozen=True)
class TicketsConfig:
    prefix: str
    hours: str | None
    topics: dict[str, TopicDesk]
    groups: dict[str, Group]
    warn_at: tuple[float, ...]
    digest: str

    def target(self, topic: str, level: str, which: str) -> Target:
        """The SLA target of a ticket of `topic` at `level` ("I" or a group): its group's
        once escalated, its topic's before."""
        sla = self.topics[topic].sla if level == FIRST_LEVEL else self.groups[level].sla
        hours = sla.first_response_hours if which == "first_response" else sla.resolution_hours
        return Target(hours * 3600, self.warn_at)

    def groups_of(self, agent: str) -> frozenset[str]:
        return frozenset(g for g, group in self.groups.items() if agent in group.members)


def load_tickets_config(path: Path, queues: Collection[str], agents: Collection[str],
                        schedules: Collection[str]) -> TicketsConfig | None:
    if not path.exists():
        return None
    doc: YamlDoc = load_yaml(path, display_name(path))
    parsed = doc.validate(TicketsFile)
    problems: list[ConfigProblem] = []
    if parsed.hours is not None and parsed.hours not in schedules:
        known = ", ".join(sorted(schedules)) or "none"
        problems.append(doc.problem(("hours",), f"unknown schedule {parsed.hours!r} "
                                                f"(hours.yaml has: {known})"))
    problems += [doc.problem(("topics", topic), f"unknown queue {topic!r} (see queues.yaml)")
                 for topic in parsed.topics if topic not in queues]
    for group_id, group in parsed.groups.items():
        if group_id == FIRST_LEVEL:
            problems.append(doc.problem(("groups", group_id),
                                        f"{FIRST_LEVEL!r} is the first level's name"))
        problems += [doc.problem(("groups", group_id, "members", n),
                                 f"unknown agent {member!r} (see agents.yaml)")
                     for n, member in enumerate(group.members) if member not in agents]
    if problems:
        raise ConfigError(problems)
    return TicketsConfig(parsed.prefix, parsed.hours, dict(parsed.topics), dict(parsed.groups),
                         tuple(p / 100 for p in parsed.warn_at),
                         hashlib.sha256(path.read_bytes()).hexdigest()[:12])
