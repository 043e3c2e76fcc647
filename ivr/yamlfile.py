"""Read YAML keeping where each value came from, so errors say `file:line:col: field: problem`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError

_COMMENTED_KEY = re.compile(r"^\s*#\s*:\s*\{")
KEY_PATTERN = r"^[0-9*#]$"  # a DTMF key; here so that its error message can be friendly
Loc = tuple[str | int, ...]  # stored with every part as str
M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, order=True)
class ConfigProblem:
    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(Exception):
    """One or more problems; the message lists them all, one per line."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = sorted(problems)
        super().__init__("\n".join(map(str, self.problems)))

    @classmethod
    def single(cls, file: str, message: str) -> ConfigError:
        return cls([ConfigProblem(file, 1, 1, "", message)])


@dataclass
class YamlDoc:
    """Plain Python data plus the position of every key/item, by path."""

    file: str
    data: Any
    positions: dict[Loc, tuple[int, int]] = field(default_factory=dict)
    warnings: list[ConfigProblem] = field(default_factory=list)

    def where(self, loc: Loc) -> tuple[int, int]:
        """Position of the longest prefix of `loc` we know (1-based line and column)."""
        key = tuple(map(str, loc))  # YAML `1:` is an int key, pydantic may report "1"
        while key and key not in self.positions:
            key = key[:-1]
        return self.positions.get(key, (1, 1))

    def problem(self, loc: Loc, message: str) -> ConfigProblem:
        line, col = self.where(loc)
        return ConfigProblem(self.file, line, col, ".".join(map(str, loc)), message)

    def validate(self, model: type[M]) -> M:
        try:
            return model.model_validate(self.data)
        except ValidationError as exc:
            raise ConfigError([self._from_pydantic(e) for e in exc.errors()]) from None

    def _from_pydantic(self, err: Any) -> ConfigProblem:
        # Pydantic adds the failing validator's name to some locations (e.g. "function-after");
        # keep only the parts that name real keys.
        loc = tuple(p for p in err["loc"] if isinstance(p, int) or "[" not in str(p))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check its spelling and indentation)"
        elif err["type"] == "missing":
            msg = "required field is missing"
        elif err["type"] == "string_pattern_mismatch" and err["ctx"]["pattern"] == KEY_PATTERN:
            msg = f"{err['input']!r} is not a key: use one of 0-9, * or # (quoted: \"#\")"
        # A rule about several fields (`menu` or `queue`) fails on the whole mapping: point at
        # the first field it names that is present, rather than at the mapping's first line.
        for name in re.findall(r"`(\w+)`", msg):
            if tuple(map(str, (*loc, name))) in self.positions:
                loc = (*loc, name)
                break
        return self.problem(loc, msg)


def _plain(node: Any, loc: Loc, positions: dict[Loc, tuple[int, int]],
           dupes: list[tuple[Loc, int, int]]) -> Any:
    if isinstance(node, CommentedMap):
        out = {}
        for k, v in node.items():
            child = (*loc, str(k))
            line, col = node.lc.key(k)
            if child in positions:  # `1:` and `"1":` differ for YAML, not for us
                dupes.append((child, line + 1, col + 1))
            positions[child] = (line + 1, col + 1)
            out[k] = _plain(v, child, positions, dupes)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for i, v in enumerate(node):
            line, col = node.lc.item(i)
            positions[(*loc, str(i))] = (line + 1, col + 1)
            out_list.append(_plain(v, (*loc, str(i)), positions, dupes))
        return out_list
    if isinstance(node, str):
        return str(node)  # ruamel's scalar string subclasses
    return node


def load_yaml(path: Path, display: str | None = None) -> YamlDoc:
    """Parse one YAML file; syntax errors and duplicate keys become a ConfigError."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([ConfigProblem(name, 1, 1, "", f"cannot read: {exc.strerror}")]) from None
    yaml = YAML(typ="rt")
    try:
        node = yaml.load(text)
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = str(exc.problem).split('"')[1] if '"' in str(exc.problem) else "?"
        problem = ConfigProblem(name, mark.line + 1, mark.column + 1, "", f"duplicate key {key!r}")
        raise ConfigError([problem]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise ConfigError([ConfigProblem(name, line, col, "", f"YAML syntax: {what}")]) from None
    positions: dict[Loc, tuple[int, int]] = {}
    dupes: list[tuple[Loc, int, int]] = []
    data = _plain(node, (), positions, dupes)
    if dupes:
        raise ConfigError([
            ConfigProblem(name, line, col, ".".join(map(str, loc)),
                          f"duplicate key {loc[-1]!r} (quoted or not, it is the same key)")
            for loc, line, col in dupes
        ])
    if data is None:
        data = {}
    # An unquoted `#` key starts a comment: the option silently vanishes. Say so.
    warnings = [
        ConfigProblem(name, n, len(line) - len(line.lstrip()) + 1, "",
                      'this line is a comment: to use the # key, quote it ("#": ...)')
        for n, line in enumerate(text.splitlines(), start=1)
        if _COMMENTED_KEY.match(line)
    ]
    return YamlDoc(name, data, positions, warnings)
