"""The store on a real SQLite file (the service's embedded default): what the service writes
through its records is what it reads back (the screen pop's history, a restarted service's
waiting callers and agents, overrides, recalls, the figures' rows), and the migrations build,
take down and rebuild the schema without losing what an older database held."""

from __future__ import annotations

import shutil
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError, StatementError

from centralino.storage.faults import fault_of
from centralino.storage.models import RecallAttempt, RecallRequest
from centralino.storage.records import NewCall, Record, Records
from centralino.storage.store import MIGRATIONS, DatabaseError, Store

DAY = datetime(2026, 12, 1, tzinfo=UTC)  # a Tuesday
ROME = ZoneInfo("Europe/Rome")


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return DAY.replace(hour=hour, minute=minute, second=second)


def url_of(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="module")
async def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database the migrations built, once: each test starts from a copy of it (building
    one takes a few hundred ms; the migrations are tested on their own below)."""
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


class Batch:
    """The service's Records, collected into one batch for Store.write (the writer's job)."""

    def __init__(self) -> None:
        self.items: list[Record] = []
        self.records = Records(self)

    def put(self, record: Record) -> None:
        self.items.append(record)


async def write(store: Store, fill: Callable[[Records], None]) -> None:
    batch = Batch()
    fill(batch.records)
    await store.write(batch.items)


def ids(rows: list[Any]) -> list[str]:
    return [row.id for row in rows]


def new_call(call_id: str, started: datetime, *, caller: str = "3331234567",
             channel: str | None = None, number: str = "0612345001", line: str = "Anagrafe",
             queue_log_id: str | None = None) -> NewCall:
    return NewCall(call_id, channel or f"ch-{call_id}", number, line, caller, "", "v1",
                   started, queue_log_id)


# --- opening, restarting ------------------------------------------------------------------

async def test_what_was_written_is_found_by_the_next_start(tmp_path):
    """A restart runs the migrations again (nothing to do) and finds every record."""
    path = tmp_path / "deep" / "dir" / "centralino.sqlite"  # its directory is made
    async with Store(url_of(path)) as first:
        await write(first, lambda r: (r.call_started(new_call("c1", at(9))),
                                      r.call_step("c1", 0, at(9), "key", "main", "1", None,
                                                  "Tributi")))
    async with Store(url_of(path)) as second:
        call = await second.get_call("c1")
        assert call is not None and call.started_at == at(9)
        assert [(s.kind, s.key, s.detail) for s in call.steps] == [("key", "1", "Tributi")]
        assert await second.get_call("nope") is None


async def test_sqlite_keeps_its_rollback_journal(tmp_path):
    """Not a write-ahead log: its shared-memory index is a mapped file, and a full disk then
    kills the process with SIGBUS instead of refusing a write (seen with the disk-full test)."""
    path = tmp_path / "centralino.sqlite"
    async with Store(url_of(path)) as store:
        await write(store, lambda r: r.call_started(new_call("c1", at(9))))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)


async def test_a_file_that_is_not_a_database_is_said_at_start(tmp_path):
    path = tmp_path / "centralino.sqlite"
    path.write_bytes(b"this is a text file, not SQLite " * 64)
    with pytest.raises(DatabaseError) as raised:
        async with Store(url_of(path)):
            pass
    message = str(raised.value)
    assert str(path) in message and "not a database file" in message
    assert "refuses writes" in message  # the hint: what to check


async def test_a_database_of_an_unknown_later_version_is_refused_at_start(tmp_path):
    """A downgrade of the service onto a database migrated by a newer one: said at start,
    not found out at the first query."""
    path = tmp_path / "centralino.sqlite"
    async with Store(url_of(path)) as opened, opened.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = '0999'"))
    with pytest.raises(DatabaseError, match="0999") as raised:
        async with Store(url_of(path)):
            pass
    assert "check database.url" in str(raised.value)


async def test_an_unreachable_server_is_said_at_start_without_its_password():
    """PostgreSQL down (nothing accepts on its port): the operator reads which database, that
    it is unreachable, and what to check; never the password of database.url."""
    with socket.socket() as held:  # a port bound and not listening: connections refused
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        url = f"postgresql+asyncpg://centralino:s3cret@127.0.0.1:{port}/centralino"
        with pytest.raises(DatabaseError) as raised:
            async with Store(url):
                pass
    message = str(raised.value)
    assert f"127.0.0.1:{port}/centralino" in message and "s3cret" not in message
    assert "connection refused" in message and "is it running and reachable?" in message


async def test_a_connection_left_read_only_is_dropped_and_the_next_write_goes_through(store):
    """SQLite (or a PostgreSQL standby) refused writes on a connection: once the database
    takes writes again, the records are written on a new connection, not refused forever."""
    assert store._records_engine is not None  # SQLite: records go through their own engine
    with store._records_engine.connect() as conn:  # its pool's only connection
        conn.exec_driver_sql("PRAGMA query_only = ON")
    with pytest.raises(DBAPIError) as refused:
        await write(store, lambda r: r.call_started(new_call("c1", at(9))))
    assert fault_of(refused.value).reason == "read-only"
    await write(store, lambda r: r.call_started(new_call("c1", at(9))))
    assert await store.get_call("c1") is not None


# --- calls --------------------------------------------------------------------------------

async def test_calls_left_open_by_a_crash_are_closed_once(store):
    def fill(r: Records) -> None:
        for call_id, started in (("open1", at(9)), ("open2", at(10)), ("done", at(8))):
            r.call_started(new_call(call_id, started))
        r.call_changed("done", outcome="goodbye", ended_at=at(8, 5))

    await write(store, fill)
    assert await store.mark_unfinished("interrupted", at(11)) == 2
    assert await store.mark_unfinished("interrupted", at(12)) == 0  # nothing left open
    calls = {c.id: c for c in await store.find_calls()}
    assert {k: (c.outcome, c.ended_at) for k, c in calls.items()} == {
        "open1": ("interrupted", at(11)), "open2": ("interrupted", at(11)),
        "done": ("goodbye", at(8, 5))}


async def test_find_calls_filters_and_lists_newest_first(store):
    def fill(r: Records) -> None:
        r.call_started(new_call("a", at(9), caller="111", number="0612345001", channel="x"))
        r.call_started(new_call("b", at(10), caller="222", number="0612345002"))
        r.call_started(new_call("c", at(11), caller="111", number="0612345002"))

    await write(store, fill)
    assert ids(await store.find_calls()) == ["c", "b", "a"]
    assert ids(await store.find_calls(limit=2)) == ["c", "b"]
    assert ids(await store.find_calls(caller="111")) == ["c", "a"]
    assert ids(await store.find_calls(number="0612345002")) == ["c", "b"]
    assert ids(await store.find_calls(channel_id="x")) == ["a"]
    assert ids(await store.find_calls(caller="111", number="0612345001")) == ["a"]
    assert await store.find_calls(caller="999") == []


async def test_the_screen_pop_shows_the_callers_earlier_calls_newest_first(store):
    def fill(r: Records) -> None:
        for i in range(7):  # seven earlier calls from the same number
            r.call_started(new_call(f"old{i}", at(8, i * 5)))
            r.call_changed(f"old{i}", topic="tributi", outcome="answered", agent_id="1001")
        r.call_started(new_call("other", at(8, 50), caller="3339999999"))  # someone else
        r.call_started(new_call("now", at(9)))  # the call ringing now
        r.call_started(new_call("later", at(9, 30)))  # after it

    await write(store, fill)
    previous = await store.previous_contacts("3331234567", at(9))
    assert [c.id for c in previous] == ["old6", "old5", "old4", "old3", "old2"]  # 5 by default
    assert (previous[0].topic, previous[0].outcome, previous[0].agent_id) == (
        "tributi", "answered", "1001")
    assert [c.id for c in await store.previous_contacts("3331234567", at(9), limit=2)] == [
        "old6", "old5"]
    assert [c.id for c in await store.previous_contacts("3331234567", at(8, 6))] == [
        "old1", "old0"]
    assert await store.previous_contacts("3331234567", at(8)) == []  # the first call


async def test_anonymous_callers_share_no_history(store):
    """Callers without a number (withheld) are not each other's previous contacts."""
    await write(store, lambda r: (r.call_started(new_call("anon1", at(8), caller="")),
                                  r.call_started(new_call("anon2", at(8, 30), caller=""))))
    assert await store.previous_contacts("", at(9)) == []


async def test_times_in_another_zone_are_compared_as_the_same_instants(store):
    """The service's clock may give local times: they are the same instants in UTC."""
    await write(store, lambda r: r.call_started(new_call("c1", at(9))))
    local_nine_utc = at(9).astimezone(ROME)  # 10:00 in Rome
    assert await store.previous_contacts("3331234567", local_nine_utc) == []
    later = local_nine_utc + timedelta(seconds=1)
    (call,) = await store.previous_contacts("3331234567", later)
    assert call.started_at == at(9) and call.started_at.tzinfo is not None


async def test_naive_times_are_refused_not_stored_shifted(store):
    naive = datetime(2026, 12, 1, 9)
    with pytest.raises(StatementError, match="naive datetime"):
        await write(store, lambda r: r.call_started(new_call("c1", naive)))
    assert await store.get_call("c1") is None


async def test_a_restarted_service_finds_where_a_channel_was_waiting(store):
    def fill(r: Records) -> None:
        r.call_started(new_call("first", at(9), channel="ch1"))
        r.call_changed("first", topic="tributi", queued_at=at(9, 1))
        r.call_started(new_call("menu", at(9), channel="ch2"))  # still in the menu

    await write(store, fill)
    # Rows written before the 0007 migration have no queue_log_id: the call's own id.
    assert await store.waiting_since("ch1") == ("first", at(9, 1), frozenset())
    assert await store.waiting_since("ch2") is None
    assert await store.waiting_since("unknown") is None

    # Adopted after a restart: a new record, writing under the first record's id, at the
    # first arrival; a second restart finds the same place and the same id.
    def adopted(r: Records) -> None:
        r.call_started(new_call("second", at(9, 10), channel="ch1", queue_log_id="first"))
        r.call_changed("second", topic="tributi", queued_at=at(9, 1))

    await write(store, adopted)
    assert await store.waiting_since("ch1") == ("first", at(9, 1), frozenset())
    # A newer record of the channel that has not queued yet does not hide the place.
    await write(store, lambda r: r.call_started(new_call("third", at(9, 20), channel="ch1")))
    assert await store.waiting_since("ch1") == ("first", at(9, 1), frozenset())
    # Transferred to a group: waiting for its members, who are found again after a restart.
    await write(store, lambda r: r.call_changed("second", waiting_for="1002,1005"))
    assert await store.waiting_since("ch1") == ("first", at(9, 1),
                                                frozenset({"1002", "1005"}))


async def test_a_calls_offers_in_the_order_the_phones_rang(store):
    def fill(r: Records) -> None:
        r.call_started(new_call("c1", at(9)))
        r.offer_made("o2", "c1", "1002", at(9, 2))
        r.offer_made("o1", "c1", "1001", at(9, 1))
        r.offer_made("x", "c2", "1001", at(9, 3))  # another call's
        r.offer_changed("o1", outcome="no_answer", ended_at=at(9, 1, 20))
        r.offer_changed("o2", outcome="answered", answered_at=at(9, 2, 10))
        r.offer_seen("o2", "1002", at(9, 2, 1))

    await write(store, fill)
    offers = await store.offers_for("c1")
    assert [(o.id, o.agent_id, o.outcome) for o in offers] == [
        ("o1", "1001", "no_answer"), ("o2", "1002", "answered")]
    assert (offers[1].answered_at, offers[1].acked_at) == (at(9, 2, 10), at(9, 2, 1))
    assert await store.offers_for("c9") == []


# --- agents -------------------------------------------------------------------------------

async def test_a_restart_finds_each_agents_latest_state(store):
    def fill(r: Records) -> None:
        r.agent_changed("1001", at(8), "available", "", "1001")
        r.agent_changed("1002", at(8), "available", "", "1002")
        r.agent_changed("1001", at(9), "paused", "pranzo", "1001")
        r.agent_changed("1002", at(9), "logged_out", "", "sup")
        r.agent_changed("1001", at(9), "available", "", "sup")  # same instant: written last

    await write(store, fill)
    states = await store.last_agent_states()
    assert {a: (e.state, e.by) for a, e in states.items()} == {
        "1001": ("available", "sup"), "1002": ("logged_out", "sup")}
    history = await store.agent_events("1001")
    assert [(e.state, e.reason) for e in history] == [
        ("available", ""), ("paused", "pranzo"), ("available", "")]
    assert [e.state for e in await store.agent_events("1001", limit=1)] == ["available"]
    assert await store.agent_events("1003") == []


async def test_an_empty_database_has_no_agent_states(store):
    assert await store.last_agent_states() == {}


async def test_agent_changes_in_a_window_in_order_per_agent(store):
    def fill(r: Records) -> None:
        r.agent_changed("1002", at(9, 30), "wrap_up", "", "system")
        r.agent_changed("1001", at(9, 10), "wrap_up", "", "system")
        r.agent_changed("1001", at(9), "on_call", "", "system")
        r.agent_changed("1001", at(10), "available", "", "system")  # at `until`: out
        r.agent_changed("1001", at(8, 59), "available", "", "system")  # before: out

    await write(store, fill)
    rows = await store.agent_changes(at(9), at(10))
    assert [(r.agent_id, r.at, r.state) for r in rows] == [
        ("1001", at(9), "on_call"), ("1001", at(9, 10), "wrap_up"),
        ("1002", at(9, 30), "wrap_up")]


# --- queue_log and figures ----------------------------------------------------------------

async def test_queue_log_lines_by_time_and_call(store):
    def fill(r: Records) -> None:
        r.queue_log(at(9, 5), "c1", "tributi", "1001", "CONNECT", 60, "o1", 3)
        r.queue_log(at(9), "c1", "tributi", "NONE", "ENTERQUEUE", "", "333", 1, 4, 5, 6)
        r.queue_log(at(9), "c2", "tributi", "NONE", "ENTERQUEUE", "", "444", 2)
        r.queue_log(at(10), "c2", "tributi", "NONE", "ABANDON", 1, 1, 3600)

    await write(store, fill)
    everything = await store.queue_log()
    assert [(e.call_id, e.event) for e in everything] == [  # by time, then as written
        ("c1", "ENTERQUEUE"), ("c2", "ENTERQUEUE"), ("c1", "CONNECT"), ("c2", "ABANDON")]
    first = everything[0]  # only five data fields: the sixth is dropped
    assert (first.data1, first.data2, first.data3, first.data4, first.data5) == (
        "", "333", "1", "4", "5")
    assert [e.event for e in await store.queue_log(call_id="c1")] == ["ENTERQUEUE", "CONNECT"]
    window = await store.queue_log(since=at(9, 1), until=at(10))
    assert [(e.call_id, e.event) for e in window] == [("c1", "CONNECT")]


async def test_the_export_pages_lose_and_repeat_nothing_across_equal_times(store):
    """Keyset pages: lines of the same instant split over two pages are all exported, once."""
    def fill(r: Records) -> None:
        for i in range(7):
            r.queue_log(at(9, i // 3), f"c{i}", "tributi", "NONE", "ENTERQUEUE", "", i, 1)
        r.queue_log(at(8), "before", "tributi", "NONE", "ENTERQUEUE")
        r.queue_log(at(10), "after", "tributi", "NONE", "ENTERQUEUE")

    await write(store, fill)
    pages = [page async for page in store.queue_log_batches(at(9), at(10), size=2)]
    assert [len(p) for p in pages] == [2, 2, 2, 1]
    assert [row.call_id for p in pages for row in p] == [f"c{i}" for i in range(7)]
    assert [row.data2 for p in pages for row in p] == [str(i) for i in range(7)]
    exact = [page async for page in store.queue_log_batches(at(9), at(9, 1), size=3)]
    assert [[row.call_id for row in p] for p in exact] == [["c0", "c1", "c2"]]
    assert [page async for page in store.queue_log_batches(at(11), at(12))] == []


async def test_figures_take_every_event_of_the_calls_that_entered_in_the_window(store):
    def fill(r: Records) -> None:
        r.call_started(new_call("in", at(9), line="Tributi", number="0612345001"))
        r.call_changed("in", announced_wait=120)
        r.call_started(new_call("early", at(7)))
        r.queue_log(at(7), "early", "tributi", "NONE", "ENTERQUEUE")  # entered before
        r.queue_log(at(9, 1), "early", "tributi", "1001", "CONNECT")  # answered inside
        r.queue_log(at(9), "in", "tributi", "NONE", "ENTERQUEUE")
        r.queue_log(at(10, 30), "in", "tributi", "1001", "CONNECT")  # answered after until
        r.queue_log(at(9, 30), "full", "tributi", "NONE", "FULL")  # refused: no call row
        r.queue_log(at(11), "late", "tributi", "NONE", "ENTERQUEUE")  # entered after

    await write(store, fill)
    rows = await store.figures_rows(at(8), at(10))
    assert [(r.call_id, r.event, r.line, r.number, r.announced_wait) for r in rows] == [
        ("in", "ENTERQUEUE", "Tributi", "0612345001", 120),
        ("full", "FULL", None, None, None),
        ("in", "CONNECT", "Tributi", "0612345001", 120)]
    assert rows[-1].at == at(10, 30) and rows[-1].agent == "1001"


# --- line overrides -----------------------------------------------------------------------

async def test_an_override_holds_until_it_expires_or_is_cleared(store):
    line, other = "0612345001", "0612345002"
    first = await store.set_override(line, "closed", at(12), "sciopero", "sup", at(9))
    assert first.id is not None
    await store.set_override(other, "open", at(18), "evento", "sup", at(9))
    assert {(o.number, o.state) for o in await store.active_overrides(at(11))} == {
        (line, "closed"), (other, "open")}
    assert [o.number for o in await store.active_overrides(at(12))] == [other]  # expired

    # A new override on the same line replaces the first (one active per line).
    await store.set_override(line, "open", at(17), "riapertura", "capo", at(10))
    active = {o.number: (o.state, o.reason) for o in await store.active_overrides(at(11))}
    assert active == {line: ("open", "riapertura"), other: ("open", "evento")}

    assert await store.clear_override(line, "capo", at(11)) == 1
    assert await store.clear_override(line, "capo", at(11, 1)) == 0  # nothing left to clear
    assert [o.number for o in await store.active_overrides(at(11, 2))] == [other]

    history = await store.override_history(line)
    assert [(o.state, o.set_by, o.cleared_by, o.cleared_at) for o in history] == [
        ("open", "capo", "capo", at(11)), ("closed", "sup", "capo", at(10))]
    assert len(await store.override_history(line, limit=1)) == 1
    assert await store.override_history("0699999999") == []


# --- recall requests ----------------------------------------------------------------------

def recall(rid: str, *, number: str = "+393331234567", topic: str = "tributi",
           status: str = "waiting", created: datetime | None = None,
           due: datetime | None = None, client: str = "portal", mode: str = "now"
           ) -> RecallRequest:
    created = created or at(9)
    return RecallRequest(id=rid, number=number, number_type="mobile", topic=topic, mode=mode,
                         slot_at=None, name="Maria Rossi", note="", portal_ref=None,
                         client=client, status=status, created_at=created, updated_at=created,
                         due_at=due or created, attempts=0, boost=0.0)


def attempt(rid: str, outcome: str, when: datetime, *, detail: str = "",
            dialled: datetime | None = None) -> RecallAttempt:
    return RecallAttempt(request_id=rid, at=when, outcome=outcome, detail=detail,
                         agent_id="1001", dialled_at=dialled)


async def test_one_open_request_per_number_and_topic(store):
    row, created = await store.create_recall(recall("r1"))
    assert created and row.id == "r1"
    again, created = await store.create_recall(recall("r2", created=at(9, 5)))
    assert not created and again.id == "r1"  # the open one stands
    assert await store.get_recall("r2") is None
    _, created = await store.create_recall(recall("r3", topic="anagrafe"))
    assert created  # another topic
    _, created = await store.create_recall(recall("r4", number="+390612345678"))
    assert created  # another number

    open_one = await store.open_recall("+393331234567", "tributi")
    assert open_one is not None and open_one.id == "r1"
    await store.set_recall_status("r1", "cancelled", at(9, 10), only_from=("waiting",))
    assert await store.open_recall("+393331234567", "tributi") is None
    _, created = await store.create_recall(recall("r5", created=at(9, 20)))
    assert created  # closed requests do not block a new one


async def test_a_duplicate_id_is_an_error_not_a_duplicate_request(store):
    await store.create_recall(recall("r1"))
    await store.set_recall_status("r1", "done", at(9, 5), only_from=("waiting",))
    with pytest.raises(IntegrityError):  # not the open-request index: a real problem
        await store.create_recall(recall("r1", topic="anagrafe"))


async def test_requests_of_a_number_in_the_last_day(store):
    await store.create_recall(recall("r1", created=at(8)))
    await store.create_recall(recall("r2", topic="anagrafe", created=at(9)))
    await store.create_recall(recall("r3", number="+390612345678", created=at(7)))
    count, oldest = await store.recalls_since("+393331234567", at(7, 30))
    assert (count, oldest) == (2, at(8)) and oldest is not None and oldest.tzinfo is not None
    assert await store.recalls_since("+393331234567", at(8, 30)) == (1, at(9))
    assert await store.recalls_since("+393330000000", at(0)) == (0, None)


async def test_only_one_of_dialler_and_portal_moves_a_request(store):
    await store.create_recall(recall("r1"))
    claimed = await store.set_recall_status("r1", "calling", at(9, 1), only_from=("waiting",))
    assert claimed is not None and (claimed.status, claimed.updated_at) == ("calling", at(9, 1))
    # The portal's cancel comes second: refused, nothing changed.
    assert await store.set_recall_status("r1", "cancelled", at(9, 2),
                                         only_from=("waiting",)) is None
    stored = await store.get_recall("r1")
    assert stored is not None and (stored.status, stored.updated_at) == ("calling", at(9, 1))
    assert await store.set_recall_status("nope", "cancelled", at(9, 2),
                                         only_from=("waiting",)) is None


async def test_find_recalls_filters_newest_first(store):
    await store.create_recall(recall("a", created=at(8), client="portal"))
    await store.create_recall(recall("b", topic="anagrafe", created=at(9), client="ivr"))
    await store.create_recall(recall("c", number="+390612345678", created=at(10),
                                     client="portal"))
    await store.set_recall_status("c", "cancelled", at(10, 1), only_from=("waiting",))
    assert ids(await store.find_recalls()) == ["c", "b", "a"]
    assert ids(await store.find_recalls(limit=1)) == ["c"]
    assert ids(await store.find_recalls(status="waiting")) == ["b", "a"]
    assert ids(await store.find_recalls(topic="tributi")) == ["c", "a"]
    assert ids(await store.find_recalls(client="portal", status="waiting")) == ["a"]


async def test_due_requests_in_due_order_and_the_next_one(store):
    await store.create_recall(recall("late", topic="t1", due=at(11)))
    await store.create_recall(recall("early", topic="t2", due=at(9)))
    await store.create_recall(recall("mid", topic="t3", due=at(10)))
    await store.create_recall(recall("busy", topic="t4", due=at(8)))
    await store.set_recall_status("busy", "calling", at(9), only_from=("waiting",))

    assert [r.id for r in await store.due_recalls(at(10))] == ["early", "mid"]  # not calling
    assert await store.due_recalls(at(8)) == []
    nxt = await store.next_recall_due(at(10))
    assert nxt == at(11) and nxt is not None and nxt.tzinfo is not None
    assert await store.next_recall_due(at(9)) == at(10)
    assert await store.next_recall_due(at(11)) is None


async def test_a_caller_asking_again_from_the_line_moves_the_request_up_only(store):
    await store.create_recall(recall("r1", due=at(11)))
    moved = await store.advance_recall("r1", at(9, 30), at(9, 31))
    assert moved is not None and (moved.due_at, moved.updated_at) == (at(9, 30), at(9, 31))
    assert await store.advance_recall("r1", at(10), at(9, 32)) is None  # not later
    assert await store.advance_recall("r1", at(9, 30), at(9, 32)) is None  # already then
    await store.set_recall_status("r1", "calling", at(9, 33), only_from=("waiting",))
    assert await store.advance_recall("r1", at(9), at(9, 34)) is None  # being called
    stored = await store.get_recall("r1")
    assert stored is not None and stored.due_at == at(9, 30)


async def test_requests_nobody_reached_in_time_expire(store):
    await store.create_recall(recall("old", topic="t1", due=at(7)))
    await store.create_recall(recall("ringing", topic="t2", due=at(7)))
    await store.create_recall(recall("fresh", topic="t3", due=at(9)))
    await store.set_recall_status("ringing", "calling", at(8), only_from=("waiting",))

    assert await store.expire_recalls(at(8), at(12)) == ["old"]
    assert await store.expire_recalls(at(8), at(12, 1)) == []  # once
    expired = await store.get_recall("old")
    assert expired is not None and (expired.status, expired.updated_at) == ("expired", at(12))
    assert [r.id for r in await store.due_recalls(at(12))] == ["fresh"]
    # An expired request no longer blocks a new one for the same number and topic.
    _, created = await store.create_recall(recall("new", topic="t1", created=at(12, 5)))
    assert created


async def test_requests_left_calling_by_a_stop_wait_again_at_their_place(store):
    await store.create_recall(recall("r1", topic="t1", due=at(8)))
    await store.create_recall(recall("r2", topic="t2", due=at(9)))
    await store.create_recall(recall("r3", topic="t3", due=at(7)))
    for rid in ("r1", "r2"):
        await store.set_recall_status(rid, "calling", at(9, 1), only_from=("waiting",))

    assert await store.release_calling(at(10)) == 2
    assert await store.release_calling(at(10, 1)) == 0
    rows = {r.id: r for r in await store.find_recalls()}
    assert {k: (r.status, r.due_at) for k, r in rows.items()} == {
        "r1": ("waiting", at(8)), "r2": ("waiting", at(9)), "r3": ("waiting", at(7))}
    assert (rows["r1"].updated_at, rows["r3"].updated_at) == (at(10), at(9))
    assert [r.id for r in await store.due_recalls(at(10))] == ["r3", "r1", "r2"]


async def test_only_attempts_that_dialled_the_citizen_count(store):
    await store.create_recall(recall("r1"))
    await store.set_recall_status("r1", "calling", at(9, 1), only_from=("waiting",))
    # No agent answered: the citizen was never dialled, the request waits again, later.
    assert await store.end_recall_attempt(attempt("r1", "no_agent", at(9, 2)), "waiting",
                                          at(9, 30), counted=False)
    row = await store.get_recall("r1")
    assert row is not None and (row.status, row.attempts, row.due_at, row.updated_at) == (
        "waiting", 0, at(9, 30), at(9, 2))

    await store.set_recall_status("r1", "calling", at(9, 30), only_from=("waiting",))
    assert await store.end_recall_attempt(
        attempt("r1", "no_answer", at(9, 31), dialled=at(9, 30, 30)), "waiting", None,
        counted=True)
    row = await store.get_recall("r1")
    assert row is not None and (row.status, row.attempts, row.due_at) == (
        "waiting", 1, at(9, 30))  # due_at unchanged when none is given

    # Not calling any more (cancelled meanwhile): nothing stored, nothing changed.
    assert not await store.end_recall_attempt(attempt("r1", "answered", at(9, 40)), "done",
                                              None, counted=True)
    attempts = await store.recall_attempts("r1")
    assert [(a.outcome, a.dialled_at) for a in attempts] == [
        ("no_agent", None), ("no_answer", at(9, 30, 30))]
    row = await store.get_recall("r1")
    assert row is not None and (row.status, row.attempts) == ("waiting", 1)


async def done_with_an_answered_attempt(store: Store, rid: str = "r1") -> RecallAttempt:
    await store.create_recall(recall(rid))
    await store.set_recall_status(rid, "calling", at(9, 1), only_from=("waiting",))
    assert await store.end_recall_attempt(
        attempt(rid, "answered", at(9, 5), detail="risposto", dialled=at(9, 2)), "done", None,
        counted=True)
    (answered,) = await store.recall_attempts(rid)
    return answered


async def test_an_agent_marks_an_answered_attempt_once(store):
    answered = await done_with_an_answered_attempt(store)
    assert await store.mark_recall(answered, "wrong_person", "agent:1001", "waiting", at(10),
                                   at(9, 10))
    row = await store.get_recall("r1")
    assert row is not None and (row.status, row.due_at, row.updated_at) == (
        "waiting", at(10), at(9, 10))
    (marked,) = await store.recall_attempts("r1")
    assert marked.outcome == "wrong_person"
    assert marked.detail == "risposto (marked wrong_person by agent:1001)"
    # Marked already (the request is not done any more): refused, nothing changed.
    assert not await store.mark_recall(answered, "no_answer", "agent:1002", "failed", None,
                                       at(9, 11))
    row = await store.get_recall("r1")
    assert row is not None and row.status == "waiting"
    assert [a.outcome for a in await store.recall_attempts("r1")] == ["wrong_person"]


async def test_reopening_a_request_while_another_is_open_changes_nothing(store):
    answered = await done_with_an_answered_attempt(store)
    _, created = await store.create_recall(recall("r2", created=at(9, 20)))
    assert created  # the first one is done: a new one is open
    with pytest.raises(IntegrityError):
        await store.mark_recall(answered, "no_answer", "agent:1001", "waiting", None, at(9, 30))
    row = await store.get_recall("r1")
    assert row is not None and row.status == "done"
    assert [a.outcome for a in await store.recall_attempts("r1")] == ["answered"]


async def test_recall_figures_take_the_requests_of_the_window_and_all_their_attempts(store):
    await done_with_an_answered_attempt(store, "r1")  # created at 9
    await store.create_recall(recall("r2", topic="anagrafe", created=at(9, 30)))
    await store.create_recall(recall("r3", topic="servizi", created=at(11)))  # after
    await store.set_recall_status("r3", "calling", at(11, 1), only_from=("waiting",))
    await store.end_recall_attempt(attempt("r3", "busy", at(11, 2)), "waiting", None, True)

    requests, attempts = await store.recall_figures_rows(at(8), at(10))
    assert sorted((r.id, r.topic, r.status, r.attempts) for r in requests) == [
        ("r1", "tributi", "done", 1), ("r2", "anagrafe", "waiting", 0)]
    assert [(a.request_id, a.outcome, a.dialled_at) for a in attempts] == [
        ("r1", "answered", at(9, 2))]
    requests, attempts = await store.recall_figures_rows(at(8), at(10), topic="anagrafe")
    assert ([r.id for r in requests], attempts) == (["r2"], [])


# --- migrations ---------------------------------------------------------------------------

TABLES = {"calls", "call_steps", "line_overrides", "agent_events", "offers", "queue_log",
          "recall_requests", "recall_attempts", "tickets", "ticket_events", "ticket_messages",
          "ticket_sequences", "ticket_attachments", "mail_messages", "mail_outbox",
          "bounced_addresses"}


def _alembic(action: Callable[[AlembicConfig, str], None], revision: str
             ) -> Callable[[Connection], None]:
    def run(connection: Connection) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = connection
        action(cfg, revision)
    return run


async def migrate(store: Store, action: Callable[[AlembicConfig, str], None],
                  revision: str) -> None:
    async with store.engine.begin() as conn:
        await conn.run_sync(_alembic(action, revision))


def _schema(connection: Connection) -> dict[str, Any]:
    found = inspect(connection)
    tables = set(found.get_table_names()) - {"alembic_version"}
    version = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    return {"tables": tables, "version": list(version),
            "columns": {t: {c["name"] for c in found.get_columns(t)} for t in tables},
            "indexes": {t: {i["name"] for i in found.get_indexes(t)} for t in tables}}


async def schema(store: Store) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        return await conn.run_sync(_schema)


async def test_an_empty_database_is_built_to_the_latest_schema(store):
    built = await schema(store)
    assert built["tables"] == TABLES and built["version"] == ["0019"]
    columns = built["columns"]
    assert {"announced_wait", "queue_log_id", "queued_at", "connected_at",
            "agent_id"} <= columns["calls"]
    assert "boost" in columns["recall_requests"] and "dialled_at" in columns["recall_attempts"]
    assert "ux_recall_requests_open" in built["indexes"]["recall_requests"]
    await store.migrate()  # again: nothing to do, nothing lost
    assert await schema(store) == built


async def test_the_migrations_go_down_to_nothing_and_up_again(store):
    built = await schema(store)
    await migrate(store, command.downgrade, "0003")
    at_0003 = await schema(store)
    assert at_0003["tables"] == TABLES - {"recall_requests", "recall_attempts", "tickets",
                                          "ticket_events", "ticket_messages", "ticket_sequences",
                                          "ticket_attachments", "mail_messages",
                                          "mail_outbox", "bounced_addresses"}
    assert at_0003["version"] == ["0003"]
    assert "announced_wait" in at_0003["columns"]["calls"]
    assert "queue_log_id" not in at_0003["columns"]["calls"]

    await migrate(store, command.downgrade, "base")
    assert (await schema(store))["tables"] == set()
    await store.migrate()
    assert await schema(store) == built
    # And the rebuilt schema works: its unique index keeps one open request again.
    await store.create_recall(recall("r1"))
    assert not (await store.create_recall(recall("r2")))[1]


async def test_an_older_database_is_upgraded_at_start_keeping_its_records(tmp_path):
    """A database of the version before 0007 (calls without queue_log_id), with a caller
    waiting: the next start migrates it and finds the caller's place."""
    path = tmp_path / "centralino.sqlite"
    async with Store(url_of(path)) as opened:
        await migrate(opened, command.downgrade, "0006")
        async with opened.engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO calls (id, channel_id, number, line, caller_number, caller_name,"
                " config_version, started_at, detail, queued_at, topic) VALUES ('c1', 'ch1',"
                " '0612345001', 'Anagrafe', '333', '', 'v1', '2026-12-01 09:00:00.000000', '',"
                " '2026-12-01 09:01:00.000000', 'tributi')"))
    async with Store(url_of(path)) as upgraded:
        assert (await schema(upgraded))["version"] == ["0019"]
        call = await upgraded.get_call("c1")
        assert call is not None and (call.queue_log_id, call.topic) == (None, "tributi")
        assert await upgraded.waiting_since("ch1") == ("c1", at(9, 1), frozenset())

