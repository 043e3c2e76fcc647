"""Tickets in the store on a real SQLite file (issue #11): the numbers citizens get, who has a
ticket in charge, what its history and its thread say, an operator's inbox, and the migration
that adds them to a database of the previous version."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from centralino.storage.models import Ticket
from centralino.storage.store import NewTicket, Store
from tests.unit.test_store import TABLES, migrate, schema, url_of
from tickets import states
from tickets.states import TicketError

DAY = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
TICKET_TABLES = {"tickets", "ticket_events", "ticket_messages", "ticket_sequences",
                 "ticket_attachments"}


def at(hour: int, minute: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute)


def request(**changes: Any) -> NewTicket:
    """A citizen's request from the web form (what the tests do not say is this)."""
    fields: dict[str, Any] = {
        "prefix": "HD", "topic": "anagrafe", "subject": "Certificato di residenza",
        "body": "Buongiorno, mi serve un certificato di residenza.", "channel": "web",
        "requester_name": "Maria Rossi", "requester_email": "maria@example.it",
        "status_token": uuid.uuid4().hex, "at": at(9)}
    return NewTicket(**{**fields, **changes})


@pytest.fixture(scope="module")
async def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "centralino.sqlite"
    async with Store(url_of(path)):
        pass
    return path


@pytest.fixture
async def store(migrated: Path, tmp_path: Path) -> AsyncIterator[Store]:
    path = tmp_path / "centralino.sqlite"
    shutil.copyfile(migrated, path)
    async with Store(url_of(path)) as opened:
        yield opened


def history(events: list[Any]) -> list[tuple[str, str, str, str, str | None]]:
    return [(e.by, e.action, e.state, e.level, e.owner) for e in events]


# --- numbers ------------------------------------------------------------------------------

async def test_numbers_follow_each_other_per_desk_and_restart_each_year(store):
    numbers = [(await store.create_ticket(request(at=at(9 + i)))).number for i in range(3)]
    assert numbers == ["HD-2026-000001", "HD-2026-000002", "HD-2026-000003"]
    # Another desk (prefix) counts on its own.
    assert (await store.create_ticket(request(prefix="URP"))).number == "URP-2026-000001"
    # 23:30 UTC on 31 December is already the new year at the office (Rome): a new sequence.
    new_year = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    assert (await store.create_ticket(request(at=new_year))).number == "HD-2027-000001"
    assert (await store.create_ticket(request(at=new_year - timedelta(hours=1)))).number == \
        "HD-2026-000004"
    found = await store.ticket("HD-2026-000002")
    assert found is not None and found.created_at == at(10)


async def test_a_ticket_that_could_not_be_stored_uses_up_no_number(store):
    first = await store.create_ticket(request(status_token="same"))
    with pytest.raises(IntegrityError, match="status_token_sha256"):  # the same link: refused
        await store.create_ticket(request(status_token="same"))
    assert (await store.create_ticket(request())).number == "HD-2026-000002"
    assert first.number == "HD-2026-000001"
    with pytest.raises(ValueError, match="2 to 6 capital letters"):
        await store.create_ticket(request(prefix="hd"))
    with pytest.raises(ValueError, match="ticket channel 'fax'"):
        await store.create_ticket(request(channel="fax"))
    assert (await store.create_ticket(request())).number == "HD-2026-000003"


async def test_many_tickets_opened_at_once_get_distinct_consecutive_numbers(store):
    made = await asyncio.gather(*(store.create_ticket(request()) for _ in range(10)))
    assert sorted(t.number for t in made) == [f"HD-2026-{i:06d}" for i in range(1, 11)]


# --- opening ------------------------------------------------------------------------------

async def test_a_new_ticket_is_stored_with_its_first_message_and_its_history(store):
    due = at(17)
    made = await store.create_ticket(request(resolution_due=due, first_response_due=at(12),
                                             status_token="s3cret-link-token"))
    ticket = await store.ticket(made.id)
    assert ticket is not None and ticket.number == "HD-2026-000001"
    assert (ticket.state, ticket.level, ticket.owner) == ("nuovo", "I", None)
    assert (ticket.topic, ticket.subject, ticket.requester_name, ticket.requester_email) == (
        "anagrafe", "Certificato di residenza", "Maria Rossi", "maria@example.it")
    assert (ticket.first_response_due, ticket.resolution_due, ticket.created_at) == (
        at(12), due, at(9))
    [message] = await store.ticket_messages(made.id)
    assert (message.direction, message.visibility, message.author, message.body) == (
        "in", "public", "citizen", "Buongiorno, mi serve un certificato di residenza.")
    assert history(await store.ticket_events(made.id)) == [
        ("citizen", "opened", "nuovo", "I", None)]
    # The status link finds it; the database never holds the link itself.
    assert (await store.ticket_for_status_token("s3cret-link-token")).id == made.id
    assert await store.ticket_for_status_token("s3cret-link-tokeN") is None
    stored = await asyncio.to_thread(Path(store.url.split(":///", 1)[1]).read_bytes)
    assert b"s3cret-link-token" not in stored


async def test_a_ticket_an_operator_opens_during_a_call_says_so(store):
    made = await store.create_ticket(request(channel="phone", by="agent:1001", call_id="c1",
                                             requester_phone="+393331234567",
                                             requester_email=None))
    assert (made.channel, made.call_id, made.requester_phone) == ("phone", "c1",
                                                                  "+393331234567")
    assert history(await store.ticket_events(made.id)) == [
        ("agent:1001", "opened", "nuovo", "I", None)]
    assert [m.author for m in await store.ticket_messages(made.id)] == ["agent:1001"]


# --- taking it in charge ------------------------------------------------------------------

async def test_the_first_agent_takes_it_and_the_next_is_told_who_has_it(store):
    made = await store.create_ticket(request())
    taken = await store.take_ticket(made.id, "1001", frozenset(), at(10))
    assert taken is not None and (taken.owner, taken.state, taken.updated_at) == (
        "1001", "preso in carico", at(10))
    with pytest.raises(TicketError, match="preso in carico by 1001"):
        await store.take_ticket(made.number, "1002", frozenset(), at(11))
    stored = await store.ticket(made.number)
    assert stored is not None and stored.owner == "1001"
    assert history(await store.ticket_events(made.id)) == [
        ("citizen", "opened", "nuovo", "I", None),
        ("agent:1001", "taken", "preso in carico", "I", "1001")]
    assert await store.take_ticket("no-such-ticket", "1001", frozenset(), at(10)) is None


async def test_of_agents_taking_it_at_once_exactly_one_has_it(store):
    made = await store.create_ticket(request())
    agents = [f"10{i:02d}" for i in range(8)]

    async def take(agent: str) -> str | None:
        try:
            won = await store.take_ticket(made.id, agent, frozenset(), at(10))
        except TicketError:
            return None
        return won.owner if won else None

    owners = [o for o in await asyncio.gather(*(take(a) for a in agents)) if o]
    stored = await store.ticket(made.id)
    assert stored is not None and owners == [stored.owner]
    assert [e.action for e in await store.ticket_events(made.id)] == ["opened", "taken"]


async def test_an_escalated_ticket_is_taken_only_by_a_member_of_its_group(store):
    made = await store.create_ticket(request())
    await store.take_ticket(made.id, "1001", frozenset(), at(10))
    escalated = await store.apply_step(made.id, lambda t: states.escalate(
        t, "1001", "sistemi", "serve l'accesso all'ANPR", frozenset({"sistemi"}), at(11)))
    assert escalated is not None and (escalated.state, escalated.level, escalated.owner) == (
        "escalato", "sistemi", None)
    with pytest.raises(TicketError, match="escalated to sistemi: only its members take it"):
        await store.take_ticket(made.id, "1002", frozenset({"tributi"}), at(12))
    taken = await store.take_ticket(made.id, "2001", frozenset({"sistemi"}), at(12))
    assert taken is not None and (taken.owner, taken.level) == ("2001", "sistemi")
    events = await store.ticket_events(made.id)
    assert history(events) == [
        ("citizen", "opened", "nuovo", "I", None),
        ("agent:1001", "taken", "preso in carico", "I", "1001"),
        ("agent:1001", "escalated to sistemi", "escalato", "sistemi", None),
        ("agent:2001", "taken", "preso in carico", "sistemi", "2001")]
    assert events[2].note == "serve l'accesso all'ANPR"


async def test_a_step_on_a_ticket_changed_meanwhile_writes_nothing(store):
    """The rule decided on the ticket as read; another agent changed it before the write:
    nothing is written (None: read it again)."""
    made = await store.create_ticket(request())

    def take_while_someone_else_does(ticket: states.Ticket) -> Any:
        with sqlite3.connect(store.url.split(":///", 1)[1]) as other:  # the other agent
            other.execute("UPDATE tickets SET owner = '1002', state = 'preso in carico'")
        return states.take(ticket, "1001", frozenset(), at(10))

    assert await store.apply_step(made.id, take_while_someone_else_does) is None
    stored = await store.ticket(made.id)
    assert stored is not None and stored.owner == "1002"
    assert [e.action for e in await store.ticket_events(made.id)] == ["opened"]


async def test_resolving_and_reopening_keep_when_it_was_resolved(store):
    made = await store.create_ticket(request())
    await store.take_ticket(made.id, "1001", frozenset(), at(10))
    replied = await store.apply_step(made.id, lambda t: states.reply(t, "1001", at(11)))
    assert replied is not None and replied.first_response_at == at(11)
    resolved = await store.apply_step(made.id, lambda t: states.resolve(t, "1001", at(12)))
    assert resolved is not None and (resolved.state, resolved.resolved_at) == ("risolto",
                                                                              at(12))
    reopened = await store.apply_step(made.id, lambda t: states.citizen_wrote(t, at(13)))
    assert reopened is not None and (reopened.state, reopened.owner, reopened.resolved_at) == (
        "preso in carico", "1001", None)
    assert reopened.first_response_at == at(11)


# --- the thread ---------------------------------------------------------------------------

async def test_the_thread_in_order_and_the_citizen_sees_no_internal_note(store):
    made = await store.create_ticket(request())
    await store.add_ticket_message(made.id, at(10), "out", "internal", "agent:1001",
                                   "chiedere all'ufficio elettorale")
    await store.add_ticket_message(made.id, at(11), "out", "public", "agent:1001",
                                   "Il certificato è pronto.")
    thread = await store.ticket_messages(made.id)
    assert [(m.at, m.visibility, m.body) for m in thread][1:] == [
        (at(10), "internal", "chiedere all'ufficio elettorale"),
        (at(11), "public", "Il certificato è pronto.")]
    assert [m.body for m in await store.ticket_messages(made.id, public_only=True)] == [
        "Buongiorno, mi serve un certificato di residenza.", "Il certificato è pronto."]
    stored = await store.ticket(made.id)
    assert stored is not None and stored.updated_at == at(11)
    assert await store.add_ticket_message("nope", at(11), "in", "public", "citizen", "x") is None
    with pytest.raises(ValueError, match="in or out"):
        await store.add_ticket_message(made.id, at(11), "sideways", "public", "citizen", "x")


# --- the inbox ----------------------------------------------------------------------------

async def test_the_inbox_shows_mine_first_then_what_i_may_take_soonest_deadline_first(store):
    async def ticket(topic: str, due: datetime | None, created: datetime | None = None,
                     owner: str | None = None) -> Ticket:
        created = created or at(8)
        made = await store.create_ticket(request(topic=topic, resolution_due=due, at=created))
        if owner:
            await store.take_ticket(made.id, owner, frozenset(), created)
        return made

    later = await ticket("anagrafe", at(16), at(9))
    sooner = await ticket("anagrafe", at(14))
    other_topic = await ticket("tributi", at(10))
    mine = await ticket("anagrafe", at(18), owner="1001")
    theirs = await ticket("anagrafe", at(11), owner="1002")
    no_deadline = await ticket("anagrafe", None)
    same_deadline_earlier = await ticket("anagrafe", at(16), at(8))
    escalated = await ticket("tributi", at(15), owner="1003")
    await store.apply_step(escalated.id, lambda t: states.escalate(
        t, "1003", "sistemi", "password del portale", frozenset({"sistemi"}), at(9)))
    resolved = await ticket("anagrafe", at(9), owner="1001")
    await store.apply_step(resolved.id, lambda t: states.resolve(t, "1001", at(9)))

    inbox = await store.inbox("1001", topics={"anagrafe"}, groups={"sistemi"})
    assert [t.number for t in inbox] == [t.number for t in (
        mine, sooner, escalated, same_deadline_earlier, later, no_deadline)]
    assert [t.number for t in await store.inbox("1001", {"anagrafe"}, {"sistemi"}, limit=2)
            ] == [mine.number, sooner.number]
    # Another operator: theirs, then the other topic; not the group they are not in.
    assert [t.number for t in await store.inbox("1002", {"tributi"}, set())] == [
        theirs.number, other_topic.number]


# --- the migration ------------------------------------------------------------------------

async def test_an_empty_database_gets_the_ticket_tables(store):
    built = await schema(store)
    assert built["version"] == ["0019"] and built["tables"] >= TICKET_TABLES
    assert {"ix_tickets_inbox", "ix_tickets_owner_state"} <= built["indexes"]["tickets"]
    assert "ix_ticket_events_ticket_id" in built["indexes"]["ticket_events"]


async def test_a_database_of_0007_gets_tickets_and_keeps_its_calls(tmp_path):
    path = tmp_path / "centralino.sqlite"
    async with Store(url_of(path)) as opened:
        await migrate(opened, command.downgrade, "0007")
        async with opened.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO calls (id, channel_id, number, line, caller_number, caller_name,"
                " config_version, started_at, detail) VALUES ('c1', 'ch1', '0612345001',"
                " 'Anagrafe', '333', '', 'v1', '2026-12-01 09:00:00.000000', '')"))
    async with Store(url_of(path)) as upgraded:
        assert (await schema(upgraded))["version"] == ["0019"]
        assert await upgraded.get_call("c1") is not None
        made = await upgraded.create_ticket(request(channel="phone", call_id="c1"))
        assert made.number == "HD-2026-000001"


async def test_going_back_to_0007_removes_only_the_tickets(store):
    await store.create_ticket(request())
    built = await schema(store)
    await migrate(store, command.downgrade, "0007")
    at_0007 = await schema(store)
    assert at_0007["version"] == ["0007"]
    assert at_0007["tables"] == TABLES - TICKET_TABLES - {"mail_messages", "mail_outbox",
                                                          "bounced_addresses"}
    later = {"calls": {"waiting_for"}}  # (0019's, not the tickets')
    assert {t: at_0007["columns"][t] for t in at_0007["tables"]} == {
        t: built["columns"][t] - later.get(t, set()) for t in at_0007["tables"]}
    await store.migrate()
    assert await schema(store) == built
    assert (await store.create_ticket(request())).number == "HD-2026-000001"  # a new start


async def test_the_pop_finds_a_caller_s_tickets_by_phone_and_those_opened_during_the_call(store):
    by_phone = await store.create_ticket(request(requester_phone="+390611111111", at=at(9)))
    during = await store.create_ticket(request(requester_phone=None, call_id=None, at=at(10)))
    await store.create_ticket(request(requester_phone=None, at=at(11)))  # nobody's
    # (the ticket opened during the call: linked to it)
    linked = await store.create_ticket(request(requester_phone=None, at=at(12), call_id="c1"))
    found = await store.previous_tickets("+390611111111", call_id="c1")
    assert [t.number for t in found] == [linked.number, by_phone.number]
    assert [t.number for t in await store.previous_tickets(None, call_id="c1")] == [
        linked.number]
    assert await store.previous_tickets(None) == []  # never "every ticket without a phone"
    assert during.number not in [t.number for t in found]
