"""config/agents.yaml: a valid file, the mistakes ops can make (each named by file, line and
field), a missing file, who a token belongs to, and the public development tokens."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cti.config import EMPTY, dev_token, load_agents_config, token_hash
from ivr.yamlfile import ConfigError, ConfigProblem

QUEUES = {"alpha", "beta", "operator"}
UNO, DUE, SUP = "token-of-uno", "token-of-due", "token-of-the-supervisor"

VALID = f"""\
max_missed: 2
agents:
  "1001":
    name: Agente Uno
    device: PJSIP/1001
    topics: {{alpha: 0, beta: 1}}
    token_sha256: {token_hash(UNO)}
  "1002":
    name: Agente Due
    device: Local/1002@centralino-agents
    topics: {{beta: 0}}
    token_sha256: {token_hash(DUE)}
supervisors:
  sup:
    name: Supervisore
    token_sha256: {token_hash(SUP)}
"""


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Files are named as ops see them: relative to the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def write(text: str, name: str = "agents.yaml") -> Path:
    path = Path(name)
    path.write_text(text, encoding="utf-8")
    return path


def load(text: str):
    return load_agents_config(write(text), QUEUES)


def problems(text: str) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as exc:
        load(text)
    return exc.value.problems


def line_of(text: str, fragment: str) -> int:
    assert text.count(fragment) == 1, fragment
    return text[: text.index(fragment)].count("\n") + 1


def replaced(old: str, new: str, text: str = VALID) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


# --- a valid file -----------------------------------------------------------------------------

def test_a_valid_file():
    config = load(VALID)
    assert config.max_missed == 2
    assert sorted(config.agents) == ["1001", "1002"]
    uno = config.agents["1001"]
    assert (uno.name, uno.device) == ("Agente Uno", "PJSIP/1001")
    assert uno.topics == {"alpha": 0, "beta": 1}
    assert config.agents["1002"].device == "Local/1002@centralino-agents"
    assert config.supervisors["sup"].name == "Supervisore"
    assert config.digest == hashlib.sha256(VALID.encode()).hexdigest()[:12]


def test_defaults():
    config = load(f"""\
agents:
  a1: {{name: A, device: PJSIP/a1, topics: {{}}, token_sha256: {token_hash("x")}}}
""")
    assert (config.max_missed, config.supervisors, config.agents["a1"].topics) == (3, {}, {})


def test_an_empty_file_has_nobody():
    config = load("# nobody yet\n")
    assert (config.max_missed, config.agents, config.supervisors) == (3, {}, {})
    assert config.digest  # but it is a file, with its own digest


def test_the_digest_changes_with_the_file():
    assert load(VALID).digest != load(VALID + "# changed\n").digest


def test_a_missing_file_is_the_empty_config(tmp_path: Path):
    config = load_agents_config(tmp_path / "nowhere" / "agents.yaml", QUEUES)
    assert config is EMPTY
    assert (config.agents, config.supervisors, config.max_missed, config.digest) == ({}, {}, 3, "")


# --- mistakes ---------------------------------------------------------------------------------

def test_an_unknown_topic_names_file_line_and_path():
    text = replaced("topics: {beta: 0}", "topics: {beta: 0, gamma: 1}")
    [problem] = problems(text)
    assert (problem.file, problem.line, problem.path) == (
        "agents.yaml", line_of(text, "gamma"), "agents.1002.topics.gamma")
    assert problem.message == "unknown queue 'gamma' (see queues.yaml)"
    assert str(problem).startswith(f"agents.yaml:{line_of(text, 'gamma')}:")


def test_every_unknown_topic_is_reported():
    text = replaced("topics: {beta: 0}", "topics: {betta: 0}",
                    replaced("topics: {alpha: 0, beta: 1}", "topics: {alfa: 0, beta: 1}"))
    assert [p.path for p in problems(text)] == ["agents.1001.topics.alfa",
                                                "agents.1002.topics.betta"]


def test_a_duplicate_token_between_agents():
    text = replaced(token_hash(DUE), token_hash(UNO))
    [problem] = problems(text)
    assert (problem.path, problem.message) == ("agents.1002.token_sha256", "same token as 1001")
    assert problem.line == line_of(text, "Agente Due") + 3


def test_a_duplicate_token_between_an_agent_and_a_supervisor():
    [problem] = problems(replaced(token_hash(SUP), token_hash(DUE)))
    assert (problem.path, problem.message) == ("supervisors.sup.token_sha256", "same token as 1002")


def test_all_the_problems_at_once():
    text = replaced(token_hash(DUE), token_hash(UNO),
                    replaced("topics: {beta: 0}", "topics: {gamma: 0}"))
    assert [p.path for p in problems(text)] == ["agents.1002.topics.gamma",
                                                "agents.1002.token_sha256"]


@pytest.mark.parametrize("device", ["1001", "PJSIP/", "PJSIP/10 01", "/1001", "SIP-1/1001"])
def test_a_bad_device(device):
    text = replaced("device: PJSIP/1001", f'device: "{device}"')
    [problem] = problems(text)
    assert (problem.path, problem.line) == ("agents.1001.device", line_of(text, "device: \""))
    assert "pattern" in problem.message


@pytest.mark.parametrize("bad", [
    token_hash(UNO)[:-1],  # too short
    token_hash(UNO).upper(),  # not lower case
    "z" * 64,  # not hex
    UNO,  # the token itself, not its hash
])
def test_a_bad_token_hash(bad):
    text = replaced(f"token_sha256: {token_hash(UNO)}", f'token_sha256: "{bad}"')
    [problem] = problems(text)
    assert (problem.path, problem.line) == ("agents.1001.token_sha256", line_of(text, bad))


def test_a_missing_token():
    text = replaced(f"    token_sha256: {token_hash(DUE)}\n", "")
    [problem] = problems(text)
    assert (problem.path, problem.message) == ("agents.1002.token_sha256",
                                               "required field is missing")
    assert problem.line == line_of(text, '"1002"')


def test_an_unknown_field():
    text = replaced("    name: Agente Due\n", "    name: Agente Due\n    penalty: 1\n")
    [problem] = problems(text)
    assert (problem.path, problem.line) == ("agents.1002.penalty", line_of(text, "penalty"))
    assert problem.message.startswith("unknown field")


@pytest.mark.parametrize("old, new, path", [
    ("max_missed: 2", "max_missed: 0", "max_missed"),
    ("max_missed: 2", "max_missed: 21", "max_missed"),
    ("topics: {beta: 0}", "topics: {beta: -1}", "agents.1002.topics.beta"),
    ("topics: {beta: 0}", "topics: {beta: 101}", "agents.1002.topics.beta"),
    ("topics: {beta: 0}", "topics: [beta]", "agents.1002.topics"),
    ('"1002":', '"10 02":', "agents.10 02"),
    ("  sup:", "  sup.visor:", "supervisors.sup.visor"),
])
def test_values_out_of_range(old, new, path):
    assert [p.path for p in problems(replaced(old, new))] == [path]


def test_yaml_syntax_errors_say_where():
    [problem] = problems(replaced("name: Agente Uno", "name: Agente: Uno"))
    assert problem.line == 4 and "YAML syntax" in problem.message


def test_the_same_agent_twice_quoted_and_not():
    text = replaced('  "1002":', "  1001:")
    first = problems(text)[0]  # (each field under it is reported as a duplicate too)
    assert (first.path, first.line) == ("agents.1001", line_of(text, "1001:"))
    assert first.message == "duplicate key '1001' (quoted or not, it is the same key)"


# --- tokens -----------------------------------------------------------------------------------

def test_who_owns_a_token():
    config = load(VALID)
    assert config.who(UNO) == ("agent", "1001")
    assert config.who(DUE) == ("agent", "1002")
    assert config.who(SUP) == ("supervisor", "sup")


@pytest.mark.parametrize("token", ["wrong", "", token_hash(UNO), UNO.upper(), UNO + " "])
def test_a_wrong_token_is_nobody(token):
    assert load(VALID).who(token) is None


def test_nobody_in_the_empty_config():
    assert EMPTY.who(UNO) is None and EMPTY.dev_tokens_in_use() == []


def test_no_dev_tokens_in_a_real_file():
    assert load(VALID).dev_tokens_in_use() == []


def test_dev_tokens_in_use_are_listed():
    text = replaced(token_hash(SUP), token_hash(dev_token("sup")),
                    replaced(token_hash(DUE), token_hash(dev_token("1002"))))
    config = load(text)
    assert config.dev_tokens_in_use() == ["1002", "sup"]
    assert config.who("dev-1002") == ("agent", "1002")


def test_a_dev_token_is_only_dev_for_its_own_id():
    # 1001 uses "dev-1002": a public token all the same, but not the one the example gives
    # 1001, so it is not reported.
    config = load(replaced(token_hash(UNO), token_hash(dev_token("1002"))))
    assert config.dev_tokens_in_use() == []


def test_a_dev_token_is_found_even_when_a_supervisor_has_the_same_id():
    text = VALID.replace('"1001":', "sup:").replace(token_hash(UNO), token_hash(dev_token("sup")))
    config = load(text)
    assert config.who("dev-sup") == ("agent", "sup")
    assert config.dev_tokens_in_use() == ["sup"]


def test_unquoted_numeric_ids_are_the_same_ids():
    """Ops write `1001:` (a YAML integer) as readily as `"1001":`; both mean agent "1001"."""
    config = load(replaced('  "1001":', "  1001:"))
    assert sorted(config.agents) == ["1001", "1002"]
