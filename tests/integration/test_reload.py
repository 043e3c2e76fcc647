"""Hot reload of a running `centralino run`: SIGHUP and `centralino reload`."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from functools import partial
from pathlib import Path

from tests.integration.conftest import MENU, PORT, REPO
from tests.integration.conftest import api_get as _get
from tests.integration.waiting import eventually

# Files that used to hurt the running service (issue #9), each with the line:column and words
# of its refusal. The bomb's aliases expand to 387 million strings.
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
HOSTILE = {
    "bomb.yaml": (BOMB.encode(), "2:8", "YAML alias *a: not accepted in configuration files"),
    "photo.yaml": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "3:1", "this is a binary file"),
    "latin1.yaml": ("name: Città\n".encode("latin-1"), "1:11", "not UTF-8 text: byte 0xe0"),
    "deep.yaml": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", "1:53",
                  "nested more than 50 levels deep"),
}


def _hostile_files(flows: Path) -> dict[str, tuple[str, str]]:
    """Write HOSTILE into `flows`; where each must be refused (file:line:col) and the words."""
    for name, (content, _, _) in HOSTILE.items():
        (flows / name).write_bytes(content)
    return {name: (f"{flows / name}:{where}: ", words)
            for name, (_, where, words) in HOSTILE.items()}


def _post(path: str) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{PORT}{path}", data=b"", method="POST",
                                     headers={"Authorization": "Bearer test-admin-token"})
    try:
        with urllib.request.urlopen(request, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def _reloaded(old_version: str) -> str:
    async def version() -> str:
        return _get("/healthz")["config_version"]
    return await eventually(version, lambda version: version != old_version, 15, 0.1,
                            "a new configuration version on /healthz")


async def test_sighup_swaps_config_and_calls_in_progress_keep_their_version(running, caller):
    proc, config, _, _ = running
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

    async def version(call) -> str:  # type: ignore[no-untyped-def]
        """The configuration version of the call's record, once the service has ended it."""
        found = await eventually(
            partial(asyncio.to_thread, _get, f"/api/calls?channel_id={call.service_half}"),
            lambda found: found and found[0]["outcome"] is not None, what="the call's record")
        return found[0]["config_version"]

    assert await version(before) == v1 and await version(after) == v2


async def test_broken_config_is_refused_and_the_running_one_stays(running, caller):
    proc, config, env, log = running
    v1 = _get("/healthz")["config_version"]
    flow = config / "flows" / "menu.yaml"
    good = flow.read_text()
    flow.write_text(good.replace('"2": {queue: beta, label: Beta}', '"2": {queue: nowhere}'))

    proc.send_signal(signal.SIGHUP)
    await eventually(partial(asyncio.to_thread, log.read_text),
                     lambda text: "reload refused (" in text, what="the refusal in the log")
    assert _get("/healthz")["config_version"] == v1
    assert "unknown queue 'nowhere'" in log.read_text()

    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "centralino", "--settings", str(config / "centralino.yaml"),
         "reload"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
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
    cli = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "centralino", "--settings", str(config / "centralino.yaml"),
         "reload"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stderr
    assert "reloaded" in cli.stdout


async def test_api_reload_refuses_hostile_files_while_the_service_keeps_answering(running):
    _, config, _, log = running
    v1 = _get("/healthz")["config_version"]
    flows = config / "flows"
    expected = _hostile_files(flows)
    # Legal to parse but slow (20000 values is the limit): long enough to see /healthz answer
    # while the reload runs; parsed on the event loop, it held every answer back until the end.
    (flows / "heavy.yaml").write_text("ids:\n" + "  - 1\n" * 19_000)

    reload = asyncio.ensure_future(asyncio.to_thread(_post, "/api/admin/reload"))
    answered_meanwhile = 0
    while not reload.done():
        assert (await asyncio.to_thread(_get, "/healthz"))["config_version"] == v1
        answered_meanwhile += 1
    status, body = await reload

    assert status == 422, body
    assert body["running_version"] == v1
    for name, (where, words) in expected.items():
        mine = [p for p in body["problems"] if p.startswith(f"{flows / name}:")]
        assert len(mine) == 1 and mine[0].startswith(where) and words in mine[0], mine
    assert any(p.startswith(f"{flows / 'heavy.yaml'}:") for p in body["problems"])
    assert answered_meanwhile >= 5, answered_meanwhile
    assert "Traceback" not in log.read_text()

    for name in (*HOSTILE, "heavy.yaml"):
        (flows / name).unlink()
    assert _post("/api/admin/reload") == (200, {"version": v1, "warnings": []})


async def test_sighup_with_hostile_files_is_refused_in_the_log_and_calls_go_on(running, caller):
    proc, config, _, log = running
    v1 = _get("/healthz")["config_version"]
    expected = _hostile_files(config / "flows")

    proc.send_signal(signal.SIGHUP)
    text = await eventually(partial(asyncio.to_thread, log.read_text),
                            lambda text: "reload refused (" in text, 30, 0.1,
                            "the refusal in the log")
    assert "reload refused (4 problem(s)): the running configuration stays" in text
    for where, words in expected.values():
        lines = [ln for ln in text.splitlines() if f"reload refused: {where}" in ln]
        assert len(lines) == 1 and words in lines[0], (where, text)
    assert "Task exception was never retrieved" not in text
    assert "Traceback" not in text

    assert _get("/healthz")["config_version"] == v1
    call = await caller.dial(MENU)  # a real call, on the running configuration
    await call.wait_heard("menu_main")
    await call.hangup()
