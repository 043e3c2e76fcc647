"""The configuration running now (centralino/running.py) over a copy of config/, a real SQLite
store and real prompts (espeak-ng): a reload swaps in a valid version whole (the agents' desk
takes it), a broken one is refused with file and line and changes nothing, and the lines'
overrides are stored and served."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from centralino.config import load_config
from centralino.running import RunningConfig
from centralino.storage.store import Store
from ivr.yamlfile import ConfigError
from tests.unit.webparts import NOW, Parts, StillClock, _fresh_database, make_desk, settings_for


class Forgetful:
    """Bridges as a reload uses them: told to make holding bridges again."""

    def __init__(self) -> None:
        self.forgot = 0

    def forget(self) -> None:
        self.forgot += 1


@pytest.fixture
async def running(tmp_path: Any) -> AsyncIterator[tuple[RunningConfig, Any, Store]]:
    settings = settings_for(tmp_path)
    store = await _fresh_database(settings)
    try:
        desk, bridges = make_desk(Parts(settings, load_config(settings), store)), Forgetful()
        live = RunningConfig(settings, store, StillClock(NOW), desk,
                             bridges)  # type: ignore[arg-type]
        await live.load()
        yield live, bridges, store
    finally:
        await store.__aexit__()


async def test_a_valid_reload_is_swapped_in_whole(running, tmp_path):
    live, bridges, _ = running
    before = live.config.version
    queues = tmp_path / "config" / "queues.yaml"
    queues.write_text(queues.read_text().replace("    name: Tributi", "    name: Tributi locali"))
    config = await live.reload()
    assert live.config is config and config.version != before
    assert config.call.queues["tributi"].name == "Tributi locali"
    assert live.catalog.missing(config.call.prompts) == []
    assert bridges.forgot == 1  # the topics' music may have changed
    assert live.topics == list(config.call.queues)


async def test_a_broken_file_is_refused_with_its_line_and_nothing_changes(running, tmp_path):
    live, bridges, _ = running
    config, catalog = live.config, live.catalog
    queues = tmp_path / "config" / "queues.yaml"
    queues.write_text(queues.read_text() + "\n  nonsense: [\n")
    with pytest.raises(ConfigError) as refused:
        await live.reload()
    problem = str(refused.value)
    assert re.search(r"/config/queues\.yaml:\d+:\d+: YAML syntax", problem), problem
    assert live.config is config and live.catalog is catalog and bridges.forgot == 0


async def test_an_override_is_stored_served_and_cleared(running):
    live, _, store = running
    until = NOW + timedelta(hours=2)
    await live.set_override("0612345001", "closed", until, "allagamento", "admin")
    assert live.overrides["0612345001"].reason == "allagamento"
    live.overrides.clear()
    await live.load_overrides()  # the next start reads it back
    assert live.overrides["0612345001"].until == until
    assert await live.clear_override("0612345001", "admin") is True
    assert live.overrides == {}
    assert [r.cleared_by for r in await store.override_history("0612345001")] == ["admin"]
