"""`centralino check`, `simulate` and `dialplan` as ops run them (no Asterisk needed)."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner

from centralino.cli import main

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = str(ROOT / "config" / "centralino.yaml")


def run(*args: str, settings: str = SETTINGS):
    return CliRunner().invoke(main, ["--settings", settings, *args])


def test_check_accepts_the_example_config():
    result = run("check")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: 3 numbers, 5 queues")


def test_check_refuses_a_broken_config_with_file_and_line(tmp_path):
    shutil.copytree(ROOT / "config", tmp_path / "config")
    shutil.copytree(ROOT / "prompts", tmp_path / "prompts", ignore=shutil.ignore_patterns("*.wav"))
    flow = tmp_path / "config" / "flows" / "cittadini.yaml"
    text = flow.read_text()
    flow.write_text(text.replace("{queue: tributi, label: Tributi}", "{queue: tributo}"))
    line = next(n for n, ln in enumerate(text.splitlines(), 1) if "queue: tributi" in ln)
    result = run("check", settings=str(tmp_path / "config" / "centralino.yaml"))
    assert result.exit_code == 1
    assert f"flows/cittadini.yaml:{line}:" in result.output
    assert "menus.main.options.2.queue: unknown queue 'tributo' (see queues.yaml)" in result.output
    assert "1 problem(s): configuration refused" in result.output


def test_simulate_prints_what_the_caller_hears_and_where_it_ends():
    result = run("simulate", "--number", "0612345002", "--keys", "1,2", "--at", "2026-12-01T10:00")
    assert result.exit_code == 0, result.output
    assert "Cittadini e imprese (0612345002) at Tue 2026-12-01 10:00 CET: open" in result.output
    assert "  key 1 -> Anagrafe" in result.output
    assert result.output.rstrip().endswith("End: waits in queue anagrafe (Anagrafe e stato civile)")


def test_simulate_explains_bad_arguments():
    assert "no flow for 0000" in run("simulate", "--number", "0000").output
    assert "not a key: x" in run("simulate", "--number", "0612345001", "--keys", "x").output


def test_the_committed_dialplan_matches_the_example_config():
    result = run("dialplan", "--check", str(ROOT / "dialplan" / "extensions_centralino.conf"))
    assert result.exit_code == 0, result.output


def test_run_says_which_database_it_cannot_reach_without_a_traceback():
    result = CliRunner().invoke(main, ["--settings", SETTINGS, "run"], env={
        "CENTRALINO_DATABASE__URL": "postgresql+asyncpg://centralino:s3cret@127.0.0.1:1/desk",
        "CENTRALINO_HTTP__PORT": "18998"})
    assert result.exit_code == 1
    assert ("cannot open the database postgresql+asyncpg://centralino:***@127.0.0.1:1/desk "
            "(is it running and reachable?)") in result.output
    assert "s3cret" not in result.output and "Traceback" not in result.output
