"""Transfers between real SIP phones (issue #13): a caller and two agents, each a baresip
registered on the dev Asterisk, each sending its own tone (the caller 440 Hz, agent 1005
660 Hz, agent 1004 880 Hz), so that what each one hears says who it hears. Attended
(consultation then complete), cancelled, then blind to a named agent; at each step the
caller, the agents and whoever waits hear exactly who they should (music while held)."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import subprocess
import wave
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tests.integration.conftest import TEST_SETTINGS, record_of, settings_for
from tests.integration.desk_api import staff
from tests.integration.test_call_hold import heard_tones
from tests.integration.test_sip_phone import Phone, _until

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None,
                                reason="baresip is installed by ./dev test")
DIRECT = "0999000002"  # straight to beta
CALLER, FIRST, SECOND = 440, 660, 880  # the tone each phone sends
TONES = (CALLER, FIRST, SECOND)


def _tone(path: Path, hz: int) -> None:
    samples = (0.3 * 32767 * np.sin(2 * np.pi * hz * np.arange(8000 * 120) / 8000))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(samples.astype("<i2").tobytes())


PhoneFactory = Callable[[str, str, int, int], Awaitable[Phone]]


@pytest.fixture
async def sip_phones(tmp_path: Path, asterisk) -> AsyncIterator[PhoneFactory]:
    """start(name, account, tone, n): a baresip as `account` (its line in baresip's accounts
    file), its microphone a tone, on its own ports (n: 0, 1, 2 ...)."""
    running: list[tuple[subprocess.Popen[bytes], asyncio.StreamWriter, object]] = []

    async def start(name: str, account: str, tone: int, n: int) -> Phone:
        home = tmp_path / name
        home.mkdir()
        _tone(home / "tone.wav", tone)
        ctrl = 4450 + n
        (home / "config").write_text(f"""\
poll_method epoll
sip_listen 127.0.0.1:{5090 + 10 * n}
sip_transports udp
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{ctrl}
audio_player aubridge,nowhere
audio_alert aubridge,nowhere
audio_source aufile,{home}/tone.wav
rtp_ports {41000 + 200 * n}-{41100 + 200 * n}
""")
        (home / "accounts").write_text(account + "\n")
        output = (home / "baresip.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 - starting does not block
            ["baresip", "-f", str(home)], stdout=output, stderr=subprocess.STDOUT)
        for _ in range(50):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", ctrl)
                break
            except OSError:
                await asyncio.sleep(0.1)
        else:
            proc.kill()
            pytest.fail(f"baresip {name} did not start")
        running.append((proc, writer, output))
        return Phone(reader, writer)

    yield start
    for proc, writer, output in running:
        writer.close()
        proc.terminate()  # unregisters as it quits: 1004 is unreachable again for later tests
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        output.close()  # type: ignore[attr-defined]


def _agent(agent: str) -> str:
    return (f"<sip:{agent}@127.0.0.1;transport=udp>;auth_pass=agent-dev;regint=120;"
            "answermode=auto;audio_codecs=PCMA")


def _desk_config(into: Path) -> None:
    """The test configuration with agent 1005 on a SIP phone in beta (1004 is there)."""
    shutil.copytree(TEST_SETTINGS.parent, into, dirs_exist_ok=True)
    token = hashlib.sha256(b"dev-1005").hexdigest()
    agents = (into / "agents.yaml").read_text().replace("supervisors:", f"""\
  "1005":
    name: Agente Cinque
    device: PJSIP/1005
    topics: {{beta: 0}}
    token_sha256: {token}
supervisors:""", 1)
    (into / "agents.yaml").write_text(agents)


async def test_attended_cancelled_and_blind_transfers_between_sip_phones(
        start_service, desk, caller, sip_phones, tmp_path):
    config = tmp_path / "config"
    _desk_config(config)
    service = await start_service(settings=settings_for(CENTRALINO_CONFIG_DIR=str(config)))
    await sip_phones("1005", _agent("1005"), FIRST, 0)
    colleague = await sip_phones("1004", _agent("1004"), SECOND, 1)
    citizen = await sip_phones("caller", "<sip:caller@127.0.0.1;transport=udp>;"
                               "auth_pass=caller-dev;regint=0;audio_codecs=PCMA", CALLER, 2)

    async def registered() -> bool:
        states = [(await desk.asterisk(f"/endpoints/PJSIP/{a}"))["state"]
                  for a in ("1004", "1005")]
        return states == ["online", "online"]
    await _until(registered, timeout=20)

    def channel_of(endpoint: str) -> Callable[[], Awaitable[str | None]]:
        async def find() -> str | None:
            return next((c["id"] for c in await desk.asterisk("/channels")
                         if c["name"].startswith(f"PJSIP/{endpoint}-")), None)
        return find

    async def hears(channel: str) -> tuple[float, dict[int, float]]:
        """What the phone on `channel` hears: level, and share of each phone's tone."""
        return await heard_tones(caller.ari, channel, TONES, spy="out")

    async def hears_only(channel: str, tone: int) -> None:
        level, shares = await hears(channel)
        assert level > 0.005 and shares[tone] > 0.8, (channel, tone, level, shares)

    async def hears_music(channel: str) -> None:
        level, shares = await hears(channel)
        assert level > 0.005 and max(shares.values()) < 0.3, (channel, level, shares)

    async def ask(agent: str, what: str, body: dict[str, str] | None = None) -> None:
        await desk.request("POST", f"/api/agents/{agent}/call/{what}", token=f"dev-{agent}",
                           json_body=body or {}, expect=(200, 202))

    # Attended: 1005 answers, consults 1004 (the caller on hold), completes.
    await staff(desk, "1005", "1004")  # 1005 idle longest: theirs
    await citizen.command("dial", f"sip:{DIRECT}@127.0.0.1:5060")
    await desk.until_state("1005", "on_call", timeout=20)
    me, first = await _until(channel_of("caller")), await _until(channel_of("1005"))
    await hears_only(me, FIRST)
    await hears_only(first, CALLER)
    await ask("1005", "consult", {"agent": "1004"})
    await desk.until_state("1004", "on_call")
    second = await _until(channel_of("1004"))
    await desk.until_bridged(first, second)  # (the caller out of it since the consultation began)
    await hears_music(me)  # on hold: the line's music, neither agent
    await hears_only(first, SECOND)  # the agents hear each other
    await hears_only(second, FIRST)
    await ask("1005", "consult/complete")
    await _until(lambda: _gone(channel_of("1005")), timeout=10)  # 1005's phone hung up
    assert await desk.state("1005") in ("wrap_up", "available")
    await hears_only(me, SECOND)  # caller and colleague talk
    await hears_only(second, CALLER)
    await citizen.command("hangup")
    await _until(lambda: _gone(channel_of("1004")), timeout=10)
    record = await record_of(service, SimpleNamespace(service_half=me))
    assert (record.outcome, record.agent_id) == ("answered", "1004")
    assert [e.event for e in await desk.queue_log(record.id)] == [
        "ENTERQUEUE", "CONNECT", "ATTENDEDTRANSFER"]

    # Cancelled, then blind to a named agent: 1005 answers again (1004 wraps up longer).
    await desk.until_state("1005", "available")
    await desk.until_state("1004", "available")
    await staff(desk, "1005", "1004")
    await citizen.command("dial", f"sip:{DIRECT}@127.0.0.1:5060")
    await desk.until_state("1005", "on_call", timeout=20)
    me, first = await _until(channel_of("caller")), await _until(channel_of("1005"))
    await ask("1005", "consult", {"agent": "1004"})
    await desk.until_state("1004", "on_call")
    await ask("1005", "consult/cancel")
    await _until(lambda: _gone(channel_of("1004")), timeout=10)
    await desk.until_bridged(me, first)
    await hears_only(me, FIRST)  # back with 1005
    await hears_only(first, CALLER)
    await desk.until_state("1004", "available", timeout=10)
    await ask("1005", "transfer", {"agent": "1004", "note": "La segue lei"})
    await _until(lambda: _gone(channel_of("1005")), timeout=10)
    await desk.until_state("1004", "on_call", timeout=20)
    second = await _until(channel_of("1004"))
    await hears_only(me, SECOND)
    await hears_only(second, CALLER)
    await citizen.command("hangup")
    await _until(lambda: _gone(channel_of("1004")), timeout=10)
    record = await record_of(service, SimpleNamespace(service_half=me))
    assert (record.outcome, record.agent_id) == ("answered", "1004")
    events = [(e.agent, e.event) for e in await desk.queue_log(record.id)]
    assert events == [("NONE", "ENTERQUEUE"), ("1005", "CONNECT"), ("1005", "BLINDTRANSFER"),
                      ("NONE", "ENTERQUEUE"), ("1004", "CONNECT"), ("1004", "COMPLETECALLER")]

    # The colleague hangs up before completion, then does not answer: each time the caller is
    # told (beta's transfer_failed prompt) and back with 1005; then the caller hangs up
    # during a consultation: both agents' phones are hung up.
    await desk.until_state("1005", "available")
    await desk.until_state("1004", "available")
    await staff(desk, "1005", "1004")
    await citizen.command("dial", f"sip:{DIRECT}@127.0.0.1:5060")
    await desk.until_state("1005", "on_call", timeout=20)
    me, first = await _until(channel_of("caller")), await _until(channel_of("1005"))
    await ask("1005", "consult", {"agent": "1004"})
    await desk.until_state("1004", "on_call")
    await colleague.command("hangup")
    await desk.until_state("1004", "wrap_up", "available")
    await _until(lambda: _told(desk, me, 1))
    await desk.until_bridged(me, first)  # back once the prompt has played
    await hears_only(me, FIRST)
    await hears_only(first, CALLER)

    await colleague.command("answermode", "manual")  # rings, nobody picks up
    await desk.until_state("1004", "available", timeout=10)
    await ask("1005", "consult", {"agent": "1004"})
    await desk.until_state("1004", "ringing")
    await _until(lambda: _told(desk, me, 2), timeout=15)  # beta's ring_timeout: 3 s
    await desk.until_bridged(me, first)  # back once the prompt has played
    await hears_only(me, FIRST)
    await hears_only(first, CALLER)

    await colleague.command("answermode", "auto")
    await desk.until_state("1004", "available", timeout=10)
    await ask("1005", "consult", {"agent": "1004"})
    await desk.until_state("1004", "on_call")
    await citizen.command("hangup")
    await _until(lambda: _gone(channel_of("1004")), timeout=10)
    await _until(lambda: _gone(channel_of("1005")), timeout=10)
    record = await record_of(service, SimpleNamespace(service_half=me))
    assert (record.outcome, record.agent_id) == ("answered", "1005")
    assert [(s.kind, s.detail) for s in record.steps if s.kind in ("resume", "consult")] == [
        ("consult", "1004 by 1005"), ("resume", "consultation with 1004: hung_up"),
        ("consult", "1004 by 1005"), ("resume", "consultation with 1004: no_answer"),
        ("consult", "1004 by 1005")]
    await desk.logout("1005")  # the next tests' configuration has no 1005
    await desk.logout("1004")


async def _told(desk: Any, channel: str, times: int) -> bool:
    """The caller on `channel` has been told `times` that a transfer did not work."""
    found = await desk.call_of(channel)
    return found is not None and sum(s["kind"] == "transfer_failed"
                                     for s in found["steps"]) >= times


async def _gone(find: Callable[[], Awaitable[str | None]]) -> bool:
    return await find() is None
