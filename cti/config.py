"""config/agents.yaml: operators, supervisors and the rules of offering calls."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field

from ivr.schema import Name, Strict
from ivr.yamlfile import ConfigError, ConfigProblem, YamlDoc, display_name, load_yaml

TokenHash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the token")]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def dev_token(person_id: str) -> str:
    """The token the example configuration gives each person: public, so refused in production."""
    return f"dev-{person_id}"


def _id(value: object) -> object:
    # `1001:` in YAML is the integer 1001: an agent id is text (an extension number, say).
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


PersonId = Annotated[Name, BeforeValidator(_id)]


class Capacity(Strict):
    """What an agent handles at once, per channel."""

    calls: int = Field(1, ge=0, le=1)  # 0: written requests only (no call is offered)
    tickets: int = Field(2, ge=0, le=50)  # in charge at once (0: none is handed to them)


class AgentEntry(Strict):
    name: str
    device: Annotated[str, Field(pattern=r"^[A-Za-z]+/\S+$")]  # PJSIP/1001, Local/1001@ctx
    topics: dict[Name, Annotated[int, Field(ge=0, le=100)]]  # topic -> penalty
    token_sha256: TokenHash
    capacity: Capacity = Capacity()


class SupervisorEntry(Strict):
    name: str
    token_sha256: TokenHash


class AgentsFile(Strict):
    # After this many offers in a row not answered, the agent is paused.
    max_missed: int = Field(3, ge=1, le=20)
    # An agent working on tickets may be offered a call (it interrupts the written work);
    # false: only agents with no ticket in charge get calls. On a call nothing is offered.
    calls_during_tickets: bool = True
    agents: dict[PersonId, AgentEntry] = Field(default_factory=dict)
    supervisors: dict[PersonId, SupervisorEntry] = Field(default_factory=dict)


@dataclass(frozen=True)
class AgentsConfig:
    max_missed: int
    agents: dict[str, AgentEntry]
    supervisors: dict[str, SupervisorEntry]
    digest: str
    calls_during_tickets: bool = True

    def who(self, token: str) -> tuple[str, str] | None:
        """("agent", id) or ("supervisor", id) for a valid token."""
        hashed = token_hash(token)
        for kind, people in (("agent", self.agents), ("supervisor", self.supervisors)):
            for person_id, person in people.items():
                if person.token_sha256 == hashed:
                    return kind, person_id
        return None

    def dev_tokens_in_use(self) -> list[str]:
        people: list[tuple[str, AgentEntry | SupervisorEntry]] = [
            *self.agents.items(), *self.supervisors.items()]  # one id may be in both
        return sorted(pid for pid, p in people if p.token_sha256 == token_hash(dev_token(pid)))


EMPTY = AgentsConfig(3, {}, {}, "")


def load_agents_config(path: Path, queues: set[str]) -> AgentsConfig:
    if not path.exists():
        return EMPTY
    doc: YamlDoc = load_yaml(path, display_name(path))
    parsed = doc.validate(AgentsFile)
    problems: list[ConfigProblem] = []
    for agent_id, agent in parsed.agents.items():
        for topic in agent.topics:
            if topic not in queues:
                problems.append(doc.problem(("agents", agent_id, "topics", topic),
                                            f"unknown queue {topic!r} (see queues.yaml)"))
    hashes: dict[str, str] = {}
    for kind in ("agents", "supervisors"):
        for person_id, person in getattr(parsed, kind).items():
            if person.token_sha256 in hashes:
                problems.append(doc.problem((kind, person_id, "token_sha256"),
                                            f"same token as {hashes[person.token_sha256]}"))
            hashes[person.token_sha256] = person_id
    if problems:
        raise ConfigError(problems)
    return AgentsConfig(parsed.max_missed, dict(parsed.agents), dict(parsed.supervisors),
                        hashlib.sha256(path.read_bytes()).hexdigest()[:12],
                        parsed.calls_during_tickets)
