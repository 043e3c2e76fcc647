"""A hostile or unlucky file in the configuration: refused before it costs anything, with one
line naming file, line and column and saying what is wrong in words ops understand.

Each case is the example configuration (config/ and prompts/manifest.yaml) with one bad file
added to config/flows/; the load must report exactly that file's problem, and nothing may escape
as another exception (a RecursionError, a UnicodeDecodeError, a MemoryError).
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ivr.config import load_call_config
from ivr.yamlfile import MAX_DEPTH, MAX_FILE_BYTES, MAX_VALUES, ConfigError, load_yaml

ROOT = Path(__file__).resolve().parents[2]
BAD = "config/flows/bad.yaml"
MANIFEST = "prompts/manifest.yaml"

# "Billion laughs": 342 bytes whose aliases expand to 9**9 (387 million) strings.
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example configuration, the current directory (messages name
    config/flows/bad.yaml the way ops see it)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "prompts").mkdir()
    shutil.copy(ROOT / MANIFEST, tmp_path / MANIFEST)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(content: bytes) -> str:
    """Load the configuration with `content` as config/flows/bad.yaml: its one problem."""
    Path(BAD).write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_call_config(Path("config"), Path(MANIFEST))
    assert len(caught.value.problems) == 1, str(caught.value)
    return str(caught.value)


@dataclass
class Case:
    content: bytes
    where: str  # line:column
    phrase: str


FLOW = b'number: "0612345009"\nname: Prova\n'
CASES = {
    "billion laughs": Case(BOMB.encode(), "2:8", "YAML alias *a: not accepted in configuration "
                                                 "files: write the value out in full"),
    "merge key": Case(FLOW + b"menus:\n  main:\n    <<: {prompt: x}\n", "5:5",
                      "YAML merge key <<: not accepted"),
    "merge tag": Case(FLOW + b"menus:\n  main:\n    !!merge x: {prompt: x}\n", "5:5",
                      "YAML merge key <<: not accepted"),
    "too big": Case(b"# a comment\n" * (MAX_FILE_BYTES // 12 + 1), "1:1",
                    "file too big: over 1 MiB, the limit for a configuration file"),
    # The mapping, `ids` and the list count too: the item on line MAX_VALUES - 1 is one too many.
    "too many values": Case(b"ids:\n" + b"  - 1\n" * MAX_VALUES, f"{MAX_VALUES - 1}:5",
                            f"more than {MAX_VALUES} values, the limit for a configuration file"),
    # `a` and its `[` count as level 2: the 50th bracket is level 51.
    "deep flow nesting": Case(b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", f"1:{3 + MAX_DEPTH}",
                              f"nested more than {MAX_DEPTH} levels deep"),
    # The mapping that starts on line n is level n, its key level n + 1.
    "deep block nesting": Case(b"".join(b" " * i + b"a:\n" for i in range(1000)) + b" " * 1000
                               + b"b: 1\n", f"{MAX_DEPTH}:{MAX_DEPTH}",
                               f"nested more than {MAX_DEPTH} levels deep"),
    "binary": Case(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "3:1",
                   "a NUL byte: this is a binary file (or UTF-16 text), not YAML text in UTF-8"),
    "utf-16": Case('number: "1"\n'.encode("utf-16-le"), "1:2", "binary file (or UTF-16 text)"),
    "latin-1": Case(FLOW + "hours: ufficio\n# Città\n".encode("latin-1"), "4:7",
                    "not UTF-8 text: byte 0xe0 cannot be decoded (save the file as UTF-8)"),
    "control character": Case(FLOW + b"hours: uff\x07icio\n", "3:11",
                              "character U+0007 is not allowed in YAML (a control character"),
    "impossible date": Case(FLOW + b"announcements:\n  - prompt: welcome\n"
                                   b"    valid_until: 2027-02-30\n", "5:18",
                            "'2027-02-30' is not valid: day is out of range for month"),
    "two documents": Case(FLOW + b"---\nname: Altro\n", "3:1",
                          "YAML syntax: expected a single document in the stream"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_hostile_file_is_refused_with_one_line_naming_file_and_line(workdir, case):
    message = refused(case.content)
    assert "\n" not in message
    assert message.startswith(f"{BAD}:{case.where}: "), message
    assert case.phrase in message, message


def test_a_fifo_is_refused_rather_than_read_for_ever(workdir):
    os.mkfifo(BAD)
    with pytest.raises(ConfigError) as caught:
        load_call_config(Path("config"), Path(MANIFEST))
    assert str(caught.value) == f"{BAD}:1:1: not a regular file"


def test_just_under_the_limits_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    depth = MAX_DEPTH - 1  # the root mapping and `a` add one level each, the scalar one more
    path.write_text("a: " + "[" * (depth - 2) + "1" + "]" * (depth - 2) + "\n"
                    + "# padding\n" * ((MAX_FILE_BYTES - 2 * depth) // 10 - 1))
    assert os.path.getsize(path) <= MAX_FILE_BYTES
    load_yaml(path)
    path.write_text("ids:\n" + "  - 1\n" * (MAX_VALUES - 3))
    assert len(load_yaml(path).data["ids"]) == MAX_VALUES - 3


def test_a_tagged_value_without_positions_gets_its_containers(tmp_path):
    path = tmp_path / "omap.yaml"
    path.write_text("menus:\n  main: !!omap [prompt: x, options: {}]\n")
    doc = load_yaml(path)
    assert doc.data == {"menus": {"main": {"prompt": "x", "options": {}}}}
    assert doc.where(("menus", "main", "options")) == (2, 3)


def test_an_anchor_nobody_refers_to_is_harmless(workdir):
    before = load_call_config(Path("config"), Path(MANIFEST))
    flow = Path("config/flows/associazioni.yaml")
    text = flow.read_text(encoding="utf-8")
    assert text.count("\n  main:\n") == 1
    flow.write_text(text.replace("\n  main:\n", "\n  main: &main\n"), encoding="utf-8")
    after = load_call_config(Path("config"), Path(MANIFEST))
    assert after.flows == before.flows


def test_the_other_files_are_still_checked(workdir):
    Path(BAD).write_text(BOMB)
    flow = Path("config/flows/cittadini.yaml")
    flow.write_text(flow.read_text().replace("queue: tributi,", "queue: tributo,"))
    with pytest.raises(ConfigError) as caught:
        load_call_config(Path("config"), Path(MANIFEST))
    assert [p.file for p in caught.value.problems] == [BAD, flow.as_posix()]


YAMLISH = st.lists(st.sampled_from([
    "a", "1", ":", " ", "- ", "\n", "  ", "\t", "[", "]", "{", "}", ",", "'", '"', "#", "? ",
    "&a ", "*a", "<<", "!!omap ", "!!set ", "!!merge ", "!!binary ", "!!int ", "!x ", "|", ">",
    "---", "...", "2026-02-30", "0x", "\x07", "é", "\\",
]), max_size=60).map("".join)


@hsettings(max_examples=300, deadline=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.one_of(st.binary(max_size=200), YAMLISH))
def test_any_content_is_either_loaded_or_refused_with_a_config_error(tmp_path, content):
    path = tmp_path / "any.yaml"
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    try:
        load_yaml(path)
    except ConfigError as exc:
        assert len(exc.problems) == 1 and "\n" not in str(exc)


def test_check_refuses_the_bomb_within_a_gigabyte_of_memory(tmp_path):
    """On a copy of the example configuration, as ops run it: exit 1 with the file and line,
    not a MemoryError or a kill (it used to take 36 s and 3.9 GB)."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "prompts").mkdir()
    shutil.copy(ROOT / MANIFEST, tmp_path / MANIFEST)
    (tmp_path / "config" / "flows" / "bomb.yaml").write_text(BOMB)

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (2**30, 2**30))

    result = subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", "config/centralino.yaml", "check"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit_memory,
        capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1, result.stderr
    assert result.stderr.splitlines() == [
        ("config/flows/bomb.yaml:2:8: YAML alias *a: not accepted in configuration files: write "
         "the value out in full"),
        "1 problem(s): configuration refused",
    ]
