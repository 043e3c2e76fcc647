"""Tickets on the real PostgreSQL under concurrency (issue #11): twenty operators clicking
"take" on the same ticket at once leave it with one owner and one line in its history, and
fifty requests arriving at once get fifty consecutive numbers. Each operator has a connection
of their own, as each web request of the service would."""

from __future__ import annotations

import asyncio
import os
import random
import string
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from centralino.storage.store import NewTicket, Store
from tickets import states
from tickets.states import TicketError

URL = os.environ.get("CENTRALINO_TEST_DATABASE_URL", "")
AT = datetime(2026, 12, 1, 9, tzinfo=UTC)

pytestmark = pytest.mark.skipif(not URL.startswith("postgresql"),
                                reason="needs PostgreSQL (CENTRALINO_TEST_DATABASE_URL)")


@pytest.fixture
async def stores() -> AsyncIterator[list[Store]]:
    """Twenty stores on the same database, each with its own connection pool, connected."""
    async with Store(URL) as first:  # migrates
        others = [Store(URL) for _ in range(19)]
        try:
            for store in (first, *others):
                async with store.engine.connect() as conn:  # connections ready before the race
                    await conn.execute(text("SELECT 1"))
            yield [first, *others]
        finally:
            for store in others:
                await store.engine.dispose()


@pytest.fixture
def prefix() -> str:
    """A desk of this run's own: its numbers start at 1 whatever earlier runs stored."""
    return "".join(random.choices(string.ascii_uppercase, k=6))


def request(prefix: str) -> NewTicket:
    return NewTicket(prefix=prefix, topic="anagrafe", subject="Certificato", body="Buongiorno",
                     channel="web", requester_name="Maria Rossi",
                     status_token=uuid.uuid4().hex, at=AT)


async def test_of_twenty_agents_taking_a_ticket_at_once_exactly_one_has_it(stores, prefix):
    made = await stores[0].create_ticket(request(prefix))
    agents = [f"10{i:02d}" for i in range(len(stores))]

    async def take(store: Store, agent: str) -> str:
        try:
            won = await store.take_ticket(made.id, agent, frozenset(), AT)
        except TicketError:  # read it already taken
            return "refused"
        return "won" if won else "lost"  # lost: read it free, another wrote first

    outcomes = await asyncio.gather(*(take(s, a) for s, a in zip(stores, agents, strict=True)))
    assert outcomes.count("won") == 1, outcomes
    winner = agents[outcomes.index("won")]
    stored = await stores[0].ticket(made.number)
    assert stored is not None and (stored.owner, stored.state) == (winner, "preso in carico")
    events = await stores[0].ticket_events(made.id)
    assert [(e.action, e.by, e.owner) for e in events] == [
        ("opened", "citizen", None), ("taken", f"agent:{winner}", winner)]


async def test_fifty_requests_at_once_get_fifty_consecutive_numbers(stores, prefix):
    made = await asyncio.gather(*(stores[i % len(stores)].create_ticket(request(prefix))
                                  for i in range(50)))
    assert sorted(t.number for t in made) == [f"{prefix}-2026-{i:06d}" for i in range(1, 51)]
    assert len({t.id for t in made}) == 50
    # Each number is the ticket's own: found by it, with its own first message.
    for ticket in random.sample(made, 5):
        found = await stores[1].ticket(ticket.number)
        assert found is not None and found.id == ticket.id
        assert len(await stores[2].ticket_messages(ticket.id)) == 1
    assert (await stores[3].create_ticket(request(prefix))).number == f"{prefix}-2026-000051"


async def test_the_backlog_and_the_time_in_charge_are_counted_by_postgresql(stores, prefix):
    """The figures' queries (GROUP BY, window functions) as PostgreSQL runs them."""
    store = stores[0]
    made = [await store.create_ticket(request(prefix)) for _ in range(3)]
    await store.take_ticket(made[0].id, "1001", (), AT)
    later = AT.replace(hour=10)
    await store.apply_step(made[0].id, lambda t: states.resolve(t, "1001", later))
    await store.take_ticket(made[1].id, "1002", (), AT)
    intervals = await store.ticket_charge_intervals(AT, AT.replace(hour=23), later)
    mine = [(agent, start, end) for agent, start, end in intervals if agent in ("1001", "1002")
            and start == AT]
    assert ("1001", AT, later) in mine and ("1002", AT, later) in mine
    backlog = await store.ticket_backlog(later)
    anagrafe = [row for row in backlog["by_topic_level"] if row["topic"] == "anagrafe"]
    assert anagrafe and anagrafe[0]["open"] >= 2  # made[1] and made[2] (and earlier runs')
