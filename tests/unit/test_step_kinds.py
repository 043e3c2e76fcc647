"""Every kind of step a call's journal writes fits the column that stores it (`call_steps.kind`):
PostgreSQL refuses a longer one and the step is lost, while SQLite and the fakes take it."""

from __future__ import annotations

import re
from pathlib import Path

from centralino.storage.models import CallStep

REPO = Path(__file__).resolve().parents[2]


def test_every_step_kind_fits_its_column():
    width = CallStep.__table__.c.kind.type.length
    kinds = {kind for package in ("centralino", "ivr", "queue_manager", "cti")
             for source in (REPO / package).rglob("*.py")
             for kind in re.findall(r'journal\.add\(\s*"([a-z_]+)"', source.read_text())}
    assert len(kinds) > 20  # the scan finds them
    assert sorted(k for k in kinds if len(k) > width) == []
