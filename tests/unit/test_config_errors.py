"""What ops see when the call-flow configuration is wrong: each broken config is the example one
(config/ and prompts/manifest.yaml) with one file changed, and the error must name the file, the
line and column, the field, and say what is wrong."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr.config import load_call_config
from ivr.yamlfile import ConfigError, ConfigProblem

ROOT = Path(__file__).resolve().parents[2]

ASSOC = "config/flows/associazioni.yaml"
CITT = "config/flows/cittadini.yaml"
REF = "config/flows/referenti.yaml"
QUEUES = "config/queues.yaml"
HOURS = "config/hours.yaml"
MANIFEST = "prompts/manifest.yaml"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example configuration; the current directory, so that messages name files
    the way ops see them (config/flows/associazioni.yaml)."""
    shutil.copytree(ROOT / "config" / "flows", tmp_path / "config" / "flows")
    for name in ("queues.yaml", "hours.yaml"):
        shutil.copy(ROOT / "config" / name, tmp_path / "config" / name)
    (tmp_path / "prompts").mkdir()
    shutil.copy(ROOT / MANIFEST, tmp_path / MANIFEST)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load():
    return load_call_config(Path("config"), Path(MANIFEST))


def edit(file: str, old: str, new: str) -> None:
    path = Path(file)
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, f"{old!r} should occur once in {file}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def position(file: str, at: tuple[str, ...]) -> tuple[int, int]:
    """Line and column (1-based) of the last string of `at`, each searched from where the previous
    one starts, in `file` as it is now."""
    text, index = Path(file).read_text(encoding="utf-8"), 0
    for part in at:
        index = text.index(part, index)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


@dataclass
class Expect:
    at: tuple[str, ...]  # where the problem must be reported (see `position`)
    path: str  # the field, as ops read it: menus.main.options.2.queue
    phrase: str  # what the message must say
    file: str | None = None  # default: the file that was changed


@dataclass
class Broken:
    file: str
    old: str
    new: str
    expect: list[Expect] = field(default_factory=list)


CYCLE = '''\
number: "0612345001"
name: Associazioni di categoria
hours: ufficio
closed_prompt: closed_hours
menu: main
menus:
  main:
    prompt: menu_associazioni
    options:
      "1": {menu: suap}
      "3": {info: info_orari}
      "9": {do: repeat}
  suap:
    prompt: menu_suap
    options:
      "1": {menu: main}
      "*": {do: back}
'''

CASES = {
    "yaml syntax": Broken(
        ASSOC, "name: Associazioni di categoria", "name: Associazioni: di categoria",
        [Expect(("name: Associazioni", ": di"), "", "YAML syntax: mapping values are not allowed")],
    ),
    "unknown key (typo)": Broken(
        ASSOC, "    prompt: menu_suap", "    promt: menu_suap",
        [Expect(("  suap:", "suap"), "menus.suap.prompt", "required field is missing"),
         Expect(("promt:",), "menus.suap.promt",
                "unknown field (check its spelling and indentation)")],
    ),
    "duplicate key": Broken(
        ASSOC, '"9": {do: repeat}', '"9": {do: repeat}\n      "1": {do: hangup}',
        [Expect(('"9": {do: repeat}', '"1"'), "", "duplicate key '1'")],
    ),
    "duplicate key, quoted and unquoted": Broken(
        ASSOC, '"9": {do: repeat}', '"9": {do: repeat}\n      1: {do: hangup}',
        [Expect(('"9": {do: repeat}', "1:"), "menus.main.options.1",
                "duplicate key '1' (quoted or not, it is the same key)")],
    ),
    "unknown prompt": Broken(
        ASSOC, "prompt: menu_info", "prompt: menu_infos",
        [Expect(("prompt: menu_infos",), "menus.info.prompt",
                "unknown prompt 'menu_infos' (add it to the manifest)")],
    ),
    "prompt without the flow's language": Broken(
        MANIFEST,
        '  it: "L\'indirizzo di posta elettronica certificata è protocollo chiocciola pec punto '
        'comune punto it."\n', "",
        [Expect(("info: info_pec",), "menus.info.options.2.info",
                "prompt 'info_pec' has no 'it' text", file=ASSOC)],
    ),
    "unknown queue in an option": Broken(
        ASSOC, "{queue: tributi, label: Tributi}", "{queue: tributo, label: Tributi}",
        [Expect(("queue: tributo",), "menus.main.options.2.queue",
                "unknown queue 'tributo' (see queues.yaml)")],
    ),
    "unknown queue of a line without menu": Broken(
        REF, "queue: tecnico", "queue: tecnici",
        [Expect(("queue: tecnici",), "queue", "unknown queue 'tecnici' (see queues.yaml)")],
    ),
    "queue removed from queues.yaml": Broken(
        QUEUES, "  tecnico:\n    name: Referenti tecnici\n"
        "    transfer_failed: {prompt: transfer_not_reached}\n", "",
        [Expect(("queue: tecnico",), "queue", "unknown queue 'tecnico'", file=REF)],
    ),
    "queue rule to an unknown queue": Broken(
        QUEUES, "then: {queue: generale}", "then: {queue: generali}",
        [Expect(("max_wait", "queue: generali"), "queues.suap.max_wait.then.queue",
                "unknown queue 'generali'")],
    ),
    "queue rule back to the same queue": Broken(
        QUEUES, "then: {queue: generale}", "then: {queue: suap}",
        [Expect(("max_wait", "queue: suap"), "queues.suap.max_wait.then.queue",
                "cannot send callers back to the same queue")],
    ),
    "queue rule with two destinations": Broken(
        QUEUES, "no_agents: {info: hold_nobody}", "no_agents: {info: hold_nobody, queue: generale}",
        [Expect(("no_agents: {info: hold_nobody, ", "queue"), "queues.suap.no_agents.queue",
                "give exactly one of `queue` (another topic) or `info`")],
    ),
    "hold message with an unknown prompt": Broken(
        QUEUES, "        - prompt: hold_leave_key", "        - prompt: hold_leave_keys",
        [Expect(("prompt: hold_leave_keys",), "queues.suap.messages.items.1.prompt",
                "unknown prompt 'hold_leave_keys' (add it to the manifest)")],
    ),
    "hold message dates reversed": Broken(
        QUEUES, "          valid_from: 2026-09-01\n          valid_until: 2027-03-31",
        "          valid_from: 2027-09-01\n          valid_until: 2027-03-31",
        [Expect(("suap:", "prompt: promo"), "queues.suap.messages.items.0",
                "valid_until is before valid_from")],
    ),
    "wait bands out of order": Broken(
        QUEUES, "announce: {every: 60}", "announce: {every: 60, wait_bands: [5, 2]}",
        [Expect(("announce: {every: 60",), "queues.suap.announce",
                "wait_bands must be ascending")],
    ),
    "leave key that is not a key": Broken(
        QUEUES, 'leave_key: {key: "0", then: {info', 'leave_key: {key: "10", then: {info',
        [Expect(('key: "10"',), "queues.suap.leave_key.key", "")],
    ),
    "callback key that is also the leave key": Broken(
        QUEUES, 'callback_key: {key: "2", confirm', 'callback_key: {key: "0", confirm',
        [Expect(("suap:",), "queues.suap", "leave_key and callback_key are both '0'")],
    ),
    "callback key with an unknown prompt": Broken(
        QUEUES, "confirm: hold_callback_confirm", "confirm: hold_callback_confirmed",
        [Expect(("confirm: hold_callback_confirmed",), "queues.suap.callback_key.confirm",
                "unknown prompt 'hold_callback_confirmed' (add it to the manifest)")],
    ),
    "transfer_failed with an unknown prompt": Broken(
        QUEUES, "transfer_failed: {prompt: transfer_not_reached, consultation: queue}",
        "transfer_failed: {prompt: transfer_not_reachd, consultation: queue}",
        [Expect(("prompt: transfer_not_reachd",), "queues.suap.transfer_failed.prompt",
                "unknown prompt 'transfer_not_reachd' (add it to the manifest)")],
    ),
    "transfer_failed sending a consultation nowhere": Broken(
        QUEUES, "transfer_failed: {prompt: transfer_not_reached, consultation: queue}",
        "transfer_failed: {prompt: transfer_not_reached, consultation: line}",
        [Expect(("consultation: line",), "queues.suap.transfer_failed.consultation",
                "Input should be 'agent' or 'queue'")],
    ),
    "no_agents rules in a loop": Broken(
        QUEUES, "    music_class: calm\n    transfer_failed: {prompt: transfer_not_reached}\n"
        "  generale:\n    name: Informazioni generali\n",
        "    music_class: calm\n    no_agents: {queue: generale}\n  generale:\n"
        "    name: Informazioni generali\n    no_agents: {queue: anagrafe}\n",
        [Expect(("no_agents: {queue: generale}", "queue"), "queues.anagrafe.no_agents.queue",
                "no_agents rules go round in a loop (anagrafe -> generale -> anagrafe)")],
    ),
    "unknown operator queue": Broken(
        ASSOC, "operator: generale", "operator: generali",
        [Expect(("operator: generali",), "operator", "unknown queue 'generali'")],
    ),
    "unknown queue in a fallback": Broken(
        ASSOC, "fallback: {do: operator}", "fallback: {queue: generali}",
        [Expect(("fallback: {", "queue"), "fallback.queue", "unknown queue 'generali'")],
    ),
    "unknown submenu": Broken(
        ASSOC, "{menu: suap, label: SUAP}", "{menu: sua, label: SUAP}",
        [Expect(("menu: sua,",), "menus.main.options.1.menu", "unknown menu 'sua'")],
    ),
    "unknown first menu": Broken(
        ASSOC, "menu: main\n", "menu: principale\n",
        [Expect(("menu: principale",), "menu", "unknown menu 'principale'")],
    ),
    "unknown schedule": Broken(
        ASSOC, "hours: ufficio", "hours: uffici",
        [Expect(("hours: uffici",), "hours", "unknown schedule 'uffici' (see hours.yaml)")],
    ),
    "menus with no way out": Broken(
        ASSOC, ASSOC, CYCLE,  # the whole file replaced
        [Expect(("  main:", "main"), "menus.main", "no key leads out of this menu"),
         Expect(("  suap:", "suap"), "menus.suap", "no key leads out of this menu")],
    ),
    "flow fallback repeat": Broken(
        ASSOC, "fallback: {do: operator}", "fallback: {do: repeat}",
        [Expect(("fallback: {", "do"), "fallback.do",
                "a fallback cannot be `repeat`: callers who keep failing would loop forever")],
    ),
    "menu fallback back": Broken(
        ASSOC, "    label: SUAP\n", "    label: SUAP\n    fallback: {do: back}\n",
        [Expect(("    fallback: {", "do"), "menus.suap.fallback.do",
                "a fallback cannot be `back`")],
    ),
    "fallback information then back to the menu": Broken(
        ASSOC, "fallback: {do: operator}", "fallback: {info: info_orari}",
        [Expect(("fallback: {", "info"), "fallback.info",
                "a fallback `info` needs `then: goodbye`")],
    ),
    "do: operator without operator": Broken(
        ASSOC, "operator: generale\nfallback: {do: operator}\n", "",
        [Expect(('"0": {', "do"), "menus.main.options.0.do",
                "`do: operator` needs the flow's `operator` topic")],
    ),
    # Rules about several fields point at the first field they name that is there...
    "both menu and queue": Broken(
        REF, "queue: tecnico\n", "queue: tecnico\nmenu: main\n",
        [Expect(("queue: tecnico", "menu:"), "menu",
                "give exactly one of `menu` (the first menu) or `queue` (no menu)")],
    ),
    # ...or, when none of them is there, at the top of the file.
    "neither menu nor queue": Broken(
        REF, "queue: tecnico\n", "",
        [Expect((), "", "give exactly one of `menu` (the first menu) or `queue` (no menu)")],
    ),
    "hours without closed_prompt": Broken(
        REF, "closed_prompt: closed_hours_referenti\n", "",
        [Expect(("hours: esteso",), "hours", "`closed_prompt` is required when `hours` is set")],
    ),
    "overlapping hours, same day": Broken(
        HOURS, '"14:00-17:00"]\n      sat', '"12:30-17:00"]\n      sat',
        [Expect(("schedules:", "ufficio:", "weekly"), "schedules.ufficio.weekly",
                "opening hours overlap on mon: 08:30-13:00 and 12:30-17:00 (from mon-fri)")],
    ),
    "overlapping hours, day range and day": Broken(
        HOURS, 'sat: ["09:00-12:00"]', 'sat: ["09:00-12:00"]\n      wed: ["16:30-18:00"]',
        [Expect(("schedules:", "ufficio:", "weekly"), "schedules.ufficio.weekly",
                "opening hours overlap on wed: 14:00-17:00 and 16:30-18:00 "
                "(from mon-fri and wed)")],
    ),
    "unknown time zone": Broken(
        HOURS, "  esteso:\n", "  esteso:\n    timezone: Europe/Milano\n",
        [Expect(("timezone: Europe/Milano",), "schedules.esteso.timezone",
                "unknown time zone 'Europe/Milano'")],
    ),
    "two flows with the same number": Broken(
        REF, '"0612345003"', '"0612345001"',
        [Expect(("number:",), "number",
                "0612345001 is already used by config/flows/associazioni.yaml")],
    ),
    "option with two actions": Broken(
        ASSOC, "{queue: tributi, label: Tributi}", "{queue: tributi, menu: info}",
        [Expect(('"2": {queue: tributi, menu',), "menus.main.options.2",
                "give exactly one of menu, info, queue, do (found: menu, queue)")],
    ),
    "then on a queue": Broken(
        ASSOC, "{queue: tributi, label: Tributi}", "{queue: tributi, then: goodbye}",
        [Expect(('"2": {queue', "then:"), "menus.main.options.2.then",
                "`then` applies only to an `info`")],
    ),
    "fallbacks in a loop": Broken(
        ASSOC, "fallback: {do: operator}", "fallback: {menu: suap}",
        [Expect(("fallback: {menu: suap}",), "fallback",
                "fallbacks go round in a loop (suap -> suap)")],
    ),
    'key "10"': Broken(
        ASSOC, '"9": {do: repeat}', '"10": {do: repeat}',
        [Expect(('"10":',), "menus.main.options.10",
                "'10' is not a key: use one of 0-9, * or #")],
    ),
    "key 10 unquoted": Broken(
        ASSOC, '"9": {do: repeat}', '10: {do: repeat}',
        [Expect(("10:",), "menus.main.options.10", "'10' is not a key: use one of 0-9, * or #")],
    ),
    "key a": Broken(
        ASSOC, '"9": {do: repeat}', 'a: {do: repeat}',
        [Expect(("a: {do: repeat}",), "menus.main.options.a",
                "'a' is not a key: use one of 0-9, * or #")],
    ),
    "dates of an announcement in the wrong order": Broken(
        ASSOC, "valid_until: 2027-03-31", "valid_until: 2026-03-31",
        [Expect(("prompt: promo_fascicolo_digitale",), "announcements.2",
                "valid_until is before valid_from")],
    ),
    "unknown field in queues.yaml": Broken(
        QUEUES, "    music_class: calm", "    music: calm",
        [Expect(("music: calm",), "queues.anagrafe.music", "unknown field")],
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_broken_config_is_refused_with_a_precise_message(workdir, case):
    if case.old == case.file:
        Path(case.file).write_text(case.new, encoding="utf-8")
    else:
        edit(case.file, case.old, case.new)
    with pytest.raises(ConfigError) as caught:
        load()
    lines = str(caught.value).splitlines()
    expected = []
    for e in case.expect:
        file = e.file or case.file
        line, column = position(file, e.at) if e.at else (1, 1)
        expected.append((f"{file}:{line}:{column}: " + (f"{e.path}: " if e.path else ""), e.phrase))
    assert len(lines) == len(expected), "\n".join(lines)
    for got, (where, phrase) in zip(lines, expected, strict=True):
        assert got.startswith(where), f"{got!r} should start with {where!r}"
        assert phrase in got


# --- whole loads ------------------------------------------------------------------------------

def test_example_config_loads_without_errors_or_warnings():
    config = load_call_config(ROOT / "config", ROOT / MANIFEST)
    assert config.warnings == []
    assert sorted(config.flows) == ["0612345001", "0612345002", "0612345003"]
    assert config.flows["0612345003"].queue == "tecnico"


def test_the_copy_of_the_example_loads_too(workdir):
    config = load()
    assert config.flow_files["0612345001"] == ASSOC
    assert config.warnings == []


def test_unreachable_menu_is_a_warning_not_an_error(workdir):
    edit(ASSOC, '"3": {menu: info, label: Informazioni}', '"3": {info: info_orari, label: Orari}')
    config = load()
    line, column = position(ASSOC, ("menus:", "  info:", "info"))
    assert config.warnings == [
        ConfigProblem(ASSOC, line, column, "menus.info", "no key leads to this menu")]
    assert "0612345001" in config.flows


def test_every_problem_of_a_load_is_reported(workdir):
    edit(ASSOC, "{queue: tributi, label: Tributi}", "{queue: tributo, label: Tributi}")
    edit(ASSOC, "prompt: menu_suap", "prompt: menu_suapp")
    edit(CITT, "prompt: menu_anagrafe", "prompt: menu_anagrafi")
    edit(REF, "name: Referenti tecnici", "name: [Referenti")
    with pytest.raises(ConfigError) as caught:
        load()
    assert [(p.file, p.path, p.message) for p in caught.value.problems] == [
        (ASSOC, "menus.main.options.2.queue", "unknown queue 'tributo' (see queues.yaml)"),
        (ASSOC, "menus.suap.prompt", "unknown prompt 'menu_suapp' (add it to the manifest)"),
        (CITT, "menus.anagrafe.prompt", "unknown prompt 'menu_anagrafi' (add it to the manifest)"),
        (REF, "", "YAML syntax: while parsing a flow sequence expected ',' or ']', but got ':'"),
    ]


def test_a_broken_hours_file_does_not_hide_problems_of_flow_files(workdir):
    edit(HOURS, '"08:00-18:00"', '"18:00-08:00"')
    edit(REF, "number:", "numbre:")
    with pytest.raises(ConfigError) as caught:
        load()
    assert [(p.file, p.path) for p in caught.value.problems] == [
        (REF, "number"), (REF, "numbre"), (HOURS, "schedules.esteso.weekly")]


def test_no_flow_files(workdir):
    for path in Path("config/flows").glob("*.yaml"):
        path.unlink()
    with pytest.raises(ConfigError, match=r"^config/flows:1:1: no flow files \(\*\.yaml\)$"):
        load()


def test_missing_queues_file(workdir):
    Path(QUEUES).unlink()
    with pytest.raises(ConfigError, match=r"^config/queues.yaml:1:1: cannot read: No such file"):
        load()


def test_without_hours_file_a_flow_naming_a_schedule_is_refused(workdir):
    Path(HOURS).unlink()  # allowed: lines with no `hours` are always open
    with pytest.raises(ConfigError) as caught:
        load()
    assert [(p.file, p.path, p.message) for p in caught.value.problems] == [
        (ASSOC, "hours", "unknown schedule 'ufficio' (see hours.yaml)"),
        (CITT, "hours", "unknown schedule 'ufficio' (see hours.yaml)"),
        (REF, "hours", "unknown schedule 'esteso' (see hours.yaml)"),
    ]


def test_an_unquoted_hash_key_is_flagged_as_a_swallowed_option(workdir):
    # YAML reads `#: ...` as a comment: the option would silently not exist.
    edit(ASSOC, '      "9": {do: repeat}\n', '      "9": {do: repeat}\n      #: {do: hangup}\n')
    config = load()
    assert "#" not in config.flows["0612345001"].menus["main"].options
    line, column = position(ASSOC, ("      #: {do: hangup}",))
    assert [str(w) for w in config.warnings] == [
        (f'{ASSOC}:{line}:{column + 6}: this line is a comment: to use the # key, quote it '
         '("#": ...)')]
