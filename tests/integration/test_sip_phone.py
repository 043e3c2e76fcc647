"""A real SIP phone (baresip) dials in over UDP and navigates with RFC 4733 DTMF."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import wave
from pathlib import Path

import pytest

from tests.integration.conftest import MENU
from tests.integration.waiting import eventually

pytestmark = pytest.mark.skipif(shutil.which("baresip") is None,
                                reason="baresip is installed by ./dev test")
CTRL_PORT = 4444


def _config(home: Path) -> None:
    with wave.open(str(home / "silence.wav"), "wb") as w:  # what the phone's microphone sends
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 8000 * 60)
    (home / "config").write_text(f"""\
poll_method epoll
sip_listen 127.0.0.1:5070
sip_transports udp
module_path /usr/lib/baresip/modules
module g711.so
module aufile.so
module aubridge.so
module_app account.so
module_app menu.so
module_app ctrl_tcp.so
ctrl_tcp_listen 127.0.0.1:{CTRL_PORT}
audio_player aubridge,nowhere
audio_alert aubridge,nowhere
audio_source aufile,{home}/silence.wav
rtp_ports 40000-40100
""")
    # The `caller` endpoint of asterisk-dev/etc/pjsip.conf; DTMF as RFC 4733 telephone-events.
    (home / "accounts").write_text(
        "<sip:caller@127.0.0.1;transport=udp>;auth_pass=caller-dev;regint=0;audio_codecs=PCMA\n")


class Phone:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    async def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.writer.write(b"%d:%s," % (len(body), body))  # ctrl_tcp speaks netstrings
        await self.writer.drain()


@pytest.fixture
async def phone(tmp_path: Path, asterisk):
    _config(tmp_path)
    proc = subprocess.Popen(  # noqa: ASYNC220 - starting does not block; it is not waited for
        ["baresip", "-f", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(50):
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", CTRL_PORT)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("baresip did not start")
    yield Phone(reader, writer)
    writer.close()
    proc.terminate()
    proc.wait(timeout=10)


async def _until(check, timeout: float = 60):  # type: ignore[no-untyped-def]
    """Until `await check()` is true; its value."""
    return await eventually(check, timeout=timeout, what=getattr(check, "__name__", "check"))


async def test_sip_phone_navigates_with_rfc4733_dtmf(start_service, desk, phone):
    await start_service()
    await phone.command("dial", f"sip:{MENU}@127.0.0.1:5060")

    async def sip_channel():  # type: ignore[no-untyped-def]  # the phone's, as Asterisk has it
        return next((c for c in await desk.asterisk("/channels")
                     if c["name"].startswith("PJSIP/caller-")), None)
    channel = await _until(sip_channel)

    def record():  # type: ignore[no-untyped-def]  # its record, written as the call goes
        return desk.call_of(channel["id"])

    def entered(menu: str):  # type: ignore[no-untyped-def]
        async def check() -> bool:
            found = await record()
            return found is not None and any(s["kind"] == "menu" and s["node"] == menu
                                             for s in found["steps"])
        return check

    await _until(entered("main"))
    await phone.command("sndcode", "1")  # barge-in from a real phone
    await _until(entered("sub"))
    await phone.command("sndcode", "1")

    async def queued() -> bool:  # waiting in alpha's line
        call_id = (await record())["id"]
        return any(w["call_id"] == call_id for w in await desk.waiting("alpha"))
    await _until(queued)
    await phone.command("hangup")

    async def ended():  # type: ignore[no-untyped-def]
        found = await record()
        return found if found is not None and found["outcome"] is not None else None
    found = await _until(ended)
    assert found["caller_number"] == "caller"
    assert [(s["node"], s["key"], s["detail"]) for s in found["steps"] if s["kind"] == "key"] == [
        ("main", "1", "Sub"), ("sub", "1", "Alpha")]
    assert (found["outcome"], found["topic"]) == ("abandoned", "alpha")
