"""Hot reload of a running `centralino run`: SIGHUP and `centralino reload`."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.integration.conftest import REPO, TEST_SETTINGS

PORT = 18085
MENU = "0999000001"


def _get(path: str) -> dict:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}",
                                     headers={"Authorization": "Bearer test-admin-token"})
    with urllib.request.urlopen(request, timeout=5) as resp:
        return json.loads(resp.read())


@pytest.fixture
def running(tmp_path: Path, asterisk):
    """`centralino run` as a real process, on a copy of the test config it may edit."""
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    env = {**os.environ,
           "CENTRALINO_HTTP__PORT": str(PORT),
           "CENTRALINO_HTTP__PUBLIC_URL": f"http://127.0.0.1:{PORT}",
           "CENTRALINO_PROMPTS__BUILD_DIR": str(REPO / "var" / "test-prompts"),
           "CENTRALINO_CLOCK_START": "2026-12-01T10:00:00+01:00"}
    if url := os.environ.get("CENTRALINO_TEST_DATABASE_URL"):
        env["CENTRALINO_DATABASE__URL"] = url
    else:
        env["CENTRALINO_DATABASE__URL"] = f"sqlite+aiosqlite:///{tmp_path}/centralino.db"
    log = open(tmp_path / "service.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "centralino", "--settings", str(config / "centralino.yaml"), "run"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        try:
            _get("/healthz")
            break
        except OSError:
            if proc.poll() is not None:
                break
            import time

            time.sleep(0.1)
    else:
        proc.kill()
    assert proc.poll() is None, (tmp_path / "service.log").read_text()
    yield proc, config, env, tmp_path / "service.log"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0


async def _reloaded(old_version: str) -> str:
    async with asyncio.timeout(15):
        while (version := _get("/healthz")["config_version"]) == old_version:
            await asyncio.sleep(0.1)
    return version


async def test_sighup_swaps_config_and_calls_in_progress_keep_their_version(running, caller):
    proc, config, env, _ = running
    v1 = _get("/healthz")["config_version"]
    before = await caller.dial(MENU)
    await before.wait_heard("menu_main")

    flow = config / "flows" / "menu.yaml"
    flow.write_text(flow.read_text().replace("prompt: menu_main", "prompt: menu_slow"))
    proc.send_signal(signal.SIGHUP)
    v2 = await _reloaded(v1)

    await before.press("9")  # repeat: the call started on v1 still hears v1's menu
    await before.wait_heard("menu_main", count=2)
    after = await caller.dial(MENU)
    await after.wait_heard("menu_slow")
    await before.hangup()
    await after.hangup()
    await asyncio.sleep(0.5)
    version = lambda call: _get(f"/api/calls?channel_id={call.service_half}")[0]["config_version"]
    assert version(before) == v1 and version(after) == v2


async def test_broken_config_is_refused_and_the_running_one_stays(running, caller):
    proc, config, env, log = running
    v1 = _get("/healthz")["config_version"]
    flow = config / "flows" / "menu.yaml"
    good = flow.read_text()
    flow.write_text(good.replace('"2": {queue: beta, label: Beta}', '"2": {queue: nowhere}'))

    proc.send_signal(signal.SIGHUP)
    await asyncio.sleep(1.5)
    assert _get("/healthz")["config_version"] == v1
    assert "reload refused" in log.read_text()
    assert "unknown queue 'nowhere'" in log.read_text()

    cli = subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", str(config / "centralino.yaml"),
         "reload"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 1
    line = next(n for n, text in enumerate(good.splitlines(), 1) if '"2":' in text)
    assert f"flows/menu.yaml:{line}:" in cli.stderr
    assert "menus.main.options.2.queue: unknown queue 'nowhere'" in cli.stderr

    call = await caller.dial(MENU)  # still served by the running configuration
    await call.wait_heard("menu_main")
    await call.press("2")
    await call.wait_idle()
    await call.hangup()

    flow.write_text(good)
    cli = subprocess.run(
        [sys.executable, "-m", "centralino", "--settings", str(config / "centralino.yaml"),
         "reload"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "reloaded" in cli.stdout
