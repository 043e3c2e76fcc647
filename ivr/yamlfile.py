"""Read YAML keeping where each value came from, so errors say `file:line:col: field: problem`."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.composer import Composer, MaxDepthExceededError
from ruamel.yaml.constructor import DuplicateKeyError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, ScalarEvent
from ruamel.yaml.nodes import MappingNode, ScalarNode
from ruamel.yaml.reader import ReaderError

# Limits on what one file may cost to read, so that a reload can never hurt the running
# service (the files are parsed in a thread, but a thread still holds the GIL and the memory).
# The largest example file is under 10 KiB and 200 values: 100 times that is plenty. Bytes
# bound reading; values bound parsing, which costs about 0.2 ms a value here (a 1 MiB list of
# numbers alone would take 90 s and 500 MB).
MAX_FILE_BYTES = 1024 * 1024
MAX_VALUES = 20_000  # every key, item and scalar counts
# Menus, options and their actions nest about 6 levels; deeper is a mistake or an attack (and
# thousands of levels would exhaust Python's recursion).
MAX_DEPTH = 50
# Aliases (`*name`, and `<<:` merge keys) are refused rather than expanded: a few bytes of
# aliases can expand to gigabytes ("billion laughs"), and without them what runs at a line is
# what is written there, so every error's file:line points at the text to fix.
_NO_ALIASES = "not accepted in configuration files: write the value out in full"
_MERGE_TAG = "tag:yaml.org,2002:merge"

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
    def where(find: Any, k: Any) -> tuple[int, int]:
        # ruamel records no position for some tagged values (`!!omap`): use the container's.
        try:
            line, col = find(k)
        except (KeyError, TypeError):
            return positions.get(loc, (1, 1))
        return line + 1, col + 1

    if isinstance(node, CommentedMap):
        out = {}
        for k, v in node.items():
            child = (*loc, str(k))
            at = where(node.lc.key, k)
            if child in positions:  # `1:` and `"1":` differ for YAML, not for us
                dupes.append((child, *at))
            positions[child] = at
            out[k] = _plain(v, child, positions, dupes)
        return out
    if isinstance(node, CommentedSeq):
        out_list = []
        for i, v in enumerate(node):
            positions[(*loc, str(i))] = where(node.lc.item, i)
            out_list.append(_plain(v, (*loc, str(i)), positions, dupes))
        return out_list
    if isinstance(node, str):
        return str(node)  # ruamel's scalar string subclasses
    return node


class _Refused(Exception):
    """A limit hit while parsing, at a position in the text (0-based, as ruamel's marks)."""

    def __init__(self, line: int, column: int, message: str):
        super().__init__(message)
        self.line, self.column, self.message = line, column, message


class _NoAliasComposer(Composer):
    """ruamel's composer, refusing aliases, merge keys and too many values where they are
    written."""

    values = 0

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # harmless without aliases

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        self.values += 1
        if self.values > MAX_VALUES:
            raise _Refused(event.start_mark.line, event.start_mark.column,
                           f"more than {MAX_VALUES} values, the limit for a configuration "
                           "file (is it the right file?)")
        if isinstance(event, AliasEvent):
            raise _Refused(event.start_mark.line, event.start_mark.column,
                           f"YAML alias *{event.anchor}: {_NO_ALIASES}")
        # A mapping's keys are composed with index None (values with their key node).
        if isinstance(event, ScalarEvent) and (event.tag == _MERGE_TAG or (
                event.value == "<<" and event.style is None and event.tag is None
                and isinstance(parent, MappingNode) and index is None)):
            raise _Refused(event.start_mark.line, event.start_mark.column,
                           f"YAML merge key <<: {_NO_ALIASES}")
        return super().compose_node(parent, index)


class _Constructor(RoundTripConstructor):
    """ruamel's constructor, saying which value it could not build (`2026-02-30`, say)."""

    def construct_non_recursive_object(self, node: Any, tag: str | None = None) -> Any:
        try:
            return super().construct_non_recursive_object(node, tag)
        except (YAMLError, _Refused):
            raise
        except Exception as exc:  # noqa: BLE001 - a value the text cannot make
            what = f"{node.value!r}" if isinstance(node, ScalarNode) else "this value"
            raise _Refused(node.start_mark.line, node.start_mark.column,
                           f"{what} is not valid: {_one_line(exc)}") from None


def _read_text(path: Path, name: str) -> str:
    """The file's text, refused with a reason if it is too big, binary or not UTF-8."""
    def refuse(line: int, column: int, message: str) -> ConfigError:
        return ConfigError([ConfigProblem(name, line, column, "", message)])

    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO would block the read for ever
            raise refuse(1, 1, "not a regular file")
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise refuse(1, 1, f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise refuse(1, 1, f"file too big: over {MAX_FILE_BYTES // 2**20} MiB, the limit for a "
                           "configuration file (is it the right file?)")

    def where(offset: int) -> tuple[int, int]:  # line and column (in characters) of a byte
        start = raw.rfind(b"\n", 0, offset) + 1
        return raw.count(b"\n", 0, offset) + 1, len(raw[start:offset].decode(errors="replace")) + 1

    if (nul := raw.find(b"\0")) >= 0:
        raise refuse(*where(nul), "a NUL byte: this is a binary file (or UTF-16 text), not "
                                  "YAML text in UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise refuse(*where(exc.start), f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot "
                                        "be decoded (save the file as UTF-8)") from None


def _parse(text: str, name: str) -> Any:
    """ruamel's round-trip tree of `text`; every way it can fail becomes one ConfigProblem."""
    yaml = YAML(typ="rt")
    yaml.Composer, yaml.Constructor = _NoAliasComposer, _Constructor
    yaml.max_depth = MAX_DEPTH

    def refuse(line: int, column: int, message: str) -> ConfigError:  # 0-based position
        return ConfigError([ConfigProblem(name, line + 1, column + 1, "", message)])

    try:
        return yaml.load(text)
    except _Refused as exc:
        raise refuse(exc.line, exc.column, exc.message) from None
    except MaxDepthExceededError as exc:
        mark = exc.problem_mark
        raise refuse(mark.line, mark.column, f"nested more than {MAX_DEPTH} levels deep "
                                             "(check the indentation and the brackets)") from None
    except DuplicateKeyError as exc:
        mark = exc.problem_mark
        key = str(exc.problem).split('"')[1] if '"' in str(exc.problem) else "?"
        raise refuse(mark.line, mark.column, f"duplicate key {key!r}") from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark else (0, 0)
        what = " ".join(filter(None, [exc.context, exc.problem]))
        raise refuse(line, col, f"YAML syntax: {_one_line(what)}") from None
    except ReaderError as exc:  # control characters (the text is already decoded)
        line = text.count("\n", 0, exc.position)
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        raise refuse(line, col, f"character U+{exc.character:04X} is not allowed in YAML "
                                "(a control character: delete it)") from None
    except Exception as exc:  # noqa: BLE001 - the parser on hostile text: a refusal, not a bug
        raise refuse(0, 0, f"cannot be read as YAML: {_one_line(exc)}") from None


def _one_line(what: object) -> str:
    return " ".join(str(what).split())


def display_name(path: Path) -> str:
    """How errors name a configuration file: relative to where ops run the command."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_yaml(path: Path, display: str | None = None) -> YamlDoc:
    """Parse one YAML file; every problem (size, encoding, syntax, aliases, nesting, duplicate
    keys) becomes a ConfigError naming file and line, with a bounded cost."""
    name = display or str(path)
    text = _read_text(path, name)
    node = _parse(text, name)
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
