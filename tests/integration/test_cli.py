"""The ops commands against a running `centralino run` and the real Asterisk."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import MENU, REPO


def centralino(config, env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", str(config / "centralino.yaml"), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_call_places_a_real_call_and_prints_what_was_played(running):
    _, config, env, _ = running
    result = centralino(config, env, "call", "--number", MENU, "--keys", "1,1", "--hold", "1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    played = [ln.split()[-1] for ln in lines if ln.strip().startswith("played")]
    assert played == ["cost", "welcome", "promo_now", "privacy", "menu_main", "menu_sub"]
    assert "record: outcome abandoned (alpha); keys 1:Sub 1:Alpha" in result.stdout


def test_line_close_status_and_auto(running, caller):
    _, config, env, _ = running
    closed = centralino(config, env, "line", "close", MENU, "--until", "2026-12-01T18:00",
                        "--reason", "allagamento")
    assert closed.returncode == 0, closed.stderr
    assert f"{MENU} forced closed until 2026-12-01T18:00:00+01:00" in closed.stdout
    status = centralino(config, env, "line", "status")
    line = next(ln for ln in status.stdout.splitlines() if MENU in ln)
    assert "CLOSED (override)" in line and "allagamento" in line

    heard = centralino(config, env, "call", "--number", MENU)
    assert "played emergency" in heard.stdout and "the service hung up" in heard.stdout

    auto = centralino(config, env, "line", "auto", MENU)
    assert auto.returncode == 0
    status = centralino(config, env, "line", "status")
    assert "OPEN   (open)" in next(ln for ln in status.stdout.splitlines() if MENU in ln)


def test_line_close_refuses_a_time_in_the_past_and_unknown_numbers(running):
    _, config, env, _ = running
    past = centralino(config, env, "line", "close", MENU, "--until", "2020-01-01",
                      "--reason", "test")
    assert past.returncode == 1 and "until: must be in the future" in past.stderr
    unknown = centralino(config, env, "line", "close", "0123", "--until", "2030-01-01",
                         "--reason", "test")
    assert unknown.returncode == 1 and "no line with number 0123" in unknown.stderr


def test_commands_explain_when_the_service_is_not_running(asterisk, tmp_path):
    from tests.integration.conftest import TEST_SETTINGS

    result = subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", str(TEST_SETTINGS), "reload"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        env={"PATH": "/usr/bin:/bin", "CENTRALINO_HTTP__PORT": "1"})
    assert result.returncode == 1
    assert "the service is not answering" in result.stderr and "centralino run" in result.stderr
