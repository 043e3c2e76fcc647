"""A reload that removes or renames a topic while callers wait in it (issue #9, finding 10):
they are not orphaned. The topic retires: the agents who served it keep serving it, it stays in
the figures and metrics, until a later reload finds its line empty."""

from __future__ import annotations

import re
import shutil

import aiohttp

from tests.integration.conftest import TEST_SETTINGS, record_of, settings_for
from tests.integration.desk_api import staff

DIRECT = "0999000002"  # straight to queue beta
API = "http://127.0.0.1:18081"
ADMIN = {"Authorization": "Bearer test-admin-token"}


async def metric(name: str, labels: str) -> str | None:
    async with aiohttp.ClientSession() as http, http.get(f"{API}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return line.split()[-1]
    return None


async def test_a_renamed_topic_keeps_serving_its_callers(start_service, desk, caller, phones,
                                                         tmp_path):
    config = tmp_path / "config"
    shutil.copytree(TEST_SETTINGS.parent, config)
    service = await start_service(settings=settings_for(config / "centralino.yaml"))
    await staff(desk)  # nobody: the caller waits
    waiting = await caller.dial(DIRECT, caller_number="0633333333")
    await waiting.wait_idle()
    assert [w["caller"] for w in await desk.waiting("beta")] == ["0633333333"]

    # Ops rename beta to gamma everywhere (queues, flows, agents) and reload.
    for path in config.rglob("*.yaml"):
        path.write_text(re.sub(r"\bbeta\b", "gamma", path.read_text()))
    await desk.reload()
    configured, retiring = await desk.topics()
    assert "beta" not in configured
    assert retiring == {"beta"}
    assert "beta" in (await desk.agent("1003"))["topics"]  # its agents still serve it
    assert await metric("centralino_queue_waiting", 'topic="beta"') == "1.0"
    async with (aiohttp.ClientSession() as http,
                http.get(f"{API}/api/figures", headers=ADMIN) as resp):
        live = (await resp.json())["live"]["topics"]
    assert live["beta"]["waiting"] == 1 and live["gamma"]["waiting"] == 0

    # Agent 1003 served beta (now gamma): they still get its caller.
    phones.set("1003", "answer")
    await staff(desk, "1003")
    ring = await phones.wait_answered("1003")
    assert ring.caller_number == "0633333333"
    await desk.until_state("1003", "on_call")  # bridged, not just picked up
    await phones.hang_up(ring)
    record = await record_of(service, waiting)
    assert (record.outcome, record.topic, record.agent_id) == ("answered", "beta", "1003")

    # New callers go to gamma; a later reload, beta's line empty, retires it for good.
    later = await caller.dial(DIRECT, caller_number="0644444444")
    await later.wait_idle()
    assert await desk.waiting("beta") == []
    await desk.reload()
    assert (await desk.topics())[1] == set()  # nothing retiring
    assert "beta" not in (await desk.agent("1003"))["topics"]
    assert await metric("centralino_queue_waiting", 'topic="beta"') is None
    ring = await phones.wait_answered("1003")  # after the wrap-up
    assert ring.caller_number == "0644444444"
    await desk.until_state("1003", "on_call")  # bridged, as above (hanging up as it answers
    # is another test)
    await phones.hang_up(ring)
    assert (await record_of(service, later)).topic == "gamma"
