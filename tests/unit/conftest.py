"""Under `--cov=centralino` (./dev test), the test modules that import no centralino code (the
domain's: ivr, queue_manager, cti) run without the coverage tracer: they cannot reach
centralino/, and the tracer doubled their time. Without pytest-cov the marker does nothing."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import pytest

HERE = Path(__file__).parent
_IMPORTS_CENTRALINO = re.compile(r"^\s*(from|import) centralino\b", re.MULTILINE)


@cache
def _reaches_centralino(module: Path) -> bool:
    return _IMPORTS_CENTRALINO.search(module.read_text(encoding="utf-8")) is not None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE) and not _reaches_centralino(item.path):
            item.add_marker(pytest.mark.no_cover)
