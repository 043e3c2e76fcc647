"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL: a
column added to a model without its migration would only fail at the first query in
production."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from centralino.storage.models import Base
from centralino.storage.store import Store


def _urls(tmp: Path) -> list[str]:
    urls = [f"sqlite+aiosqlite:///{tmp}/schema.db"]
    if url := os.environ.get("CENTRALINO_TEST_DATABASE_URL"):
        urls.append(url)
    return urls


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_migrations_match_the_models(backend, tmp_path):
    url = next((u for u in _urls(tmp_path) if u.startswith(backend)), None)
    if url is None:
        pytest.skip("CENTRALINO_TEST_DATABASE_URL is not set (the README's test command sets it)")
    async with Store(url) as store:
        await store.migrate()
        async with store.engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata))
    assert diff == []
