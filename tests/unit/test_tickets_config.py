"""config/tickets.yaml as ops write it: the example loads, and every mistake is named with
its file, line and field, all of them at once."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.yamlfile import ConfigError
from tickets.config import load_tickets_config

ROOT = Path(__file__).resolve().parents[2]
QUEUES = {"suap", "tributi", "generale"}
AGENTS = {"1001", "1003"}
SCHEDULES = {"ufficio"}


def load(tmp_path: Path, text: str):
    path = tmp_path / "tickets.yaml"
    path.write_text(textwrap.dedent(text))
    return load_tickets_config(path, QUEUES, AGENTS, SCHEDULES)


GOOD = """\
    prefix: SUAP
    hours: ufficio
    topics:
      suap:
        subjects: [Avvio, Altro]
        sla: {first_response_hours: 8, resolution_hours: 40}
    groups:
      back-office:
        name: Back office
        members: ["1003"]
        sla: {first_response_hours: 16, resolution_hours: 80}
    """


def test_the_example_configuration_loads():
    config = load_tickets_config(ROOT / "config" / "tickets.yaml",
                                 {"suap", "tributi", "anagrafe", "generale", "tecnico"},
                                 {"1001", "1002", "1003", "1004", "1005"}, {"ufficio", "esteso"})
    assert config is not None and config.prefix == "HD" and "suap" in config.topics


def test_no_file_means_no_tickets(tmp_path):
    assert load_tickets_config(tmp_path / "tickets.yaml", QUEUES, AGENTS, SCHEDULES) is None


def test_targets_come_from_the_topic_then_from_the_group(tmp_path):
    config = load(tmp_path, GOOD)
    assert config.target("suap", "I", "first_response").seconds == 8 * 3600
    assert config.target("suap", "back-office", "resolution").seconds == 80 * 3600
    assert config.target("suap", "I", "resolution").warn_at == (0.7, 0.8, 0.9)
    assert config.groups_of("1003") == {"back-office"} and config.groups_of("1001") == set()


def test_every_mistake_is_named_with_its_line(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, """\
            hours: serale
            topics:
              suap:
                subjects: [Avvio]
                sla: {first_response_hours: 8, resolution_hours: 40}
              sportello:
                subjects: [Altro]
                sla: {first_response_hours: 8, resolution_hours: 40}
            groups:
              back-office:
                name: Back office
                members: ["1003", "9999"]
                sla: {first_response_hours: 16, resolution_hours: 80}
            """)
    problems = refused.value.problems
    assert {Path(p.file).name for p in problems} == {"tickets.yaml"}
    assert [str(p).split("tickets.yaml:", 1)[1] for p in problems] == [
        "1:1: hours: unknown schedule 'serale' (hours.yaml has: ufficio)",
        "6:3: topics.sportello: unknown queue 'sportello' (see queues.yaml)",
        "12:23: groups.back-office.members.1: unknown agent '9999' (see agents.yaml)",
    ]


@pytest.mark.parametrize(("change", "where", "message"), [
    (("prefix: SUAP", "prefix: suap1"), "prefix",
     "'suap1': 2 to 6 capital letters (HD-2026-000123)"),
    (("resolution_hours: 40", "resolution_hours: 4"), "topics.suap.sla.resolution_hours",
     "`resolution_hours` (4) comes before the first response (8)"),
    (("[Avvio, Altro]", "[Avvio, avvio]"), "topics.suap.subjects",
     "subject 'avvio' is listed twice"),
    (("  back-office:", "  I:"), "groups.I", "'I' is the first level's name"),
    (("prefix: SUAP", "prefix: SUAP\nwarn_at: [90, 70]"), "warn_at",
     "list each percentage once, in ascending order"),
])
def test_a_wrong_field_is_refused_with_why(tmp_path, change, where, message):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, textwrap.dedent(GOOD).replace(*change))
    assert [(p.path, p.message) for p in refused.value.problems] == [(where, message)]
