"""Hot reload of a running `centralino run`: SIGHUP and `centralino reload`."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys

from tests.integration.conftest import MENU, REPO, api_get as _get


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
