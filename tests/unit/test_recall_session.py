"""Placing recall requests (centralino.recalls.placing) on the fake Asterisk and a virtual
clock, with the requests in a real Store (SQLite): which phones ring, who is bridged to whom,
what the request says afterwards. tests/integration/test_recalls_placed.py runs the same
against the real Asterisk."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import pytest

from centralino.clock import VirtualClock
from centralino.recalls.placing import RecallParts, Recalls
from centralino.storage.models import RecallRequest
from centralino.storage.store import Store
from cti.agents import AgentState
from cti.messages import RecallOffer, RecallOutcome
from cti.recalls import RecallError, RecallSettings
from tests.unit.fakeasterisk import START, Desk_, Phone

NUMBER = "+390612345678"
AGENT = "Local/1001@centralino-agents"


class World(Desk_):
    store: Store
    recalls: Recalls
    settings: RecallSettings

    @property
    def citizen_phone(self) -> str:
        return self.settings.dial_string(NUMBER)

    async def until(self, check: Callable[[], object]) -> None:
        """Until `check()` holds: the store answers from a thread, so real time must pass
        for it. Virtual time stands still meanwhile, but timers that fell due while the
        store was answering (set for "now") fire."""
        async with asyncio.timeout(3):
            while not check():
                await asyncio.sleep(0.005)
                await self.clock.advance(0)


@pytest.fixture
async def world(tmp_path) -> AsyncIterator[World]:
    world = World(VirtualClock(START))
    world.settings = RecallSettings(retry_delays=[60], max_attempts=2, ring_timeout=20,
                                    caller_id="0611111111")
    async with Store(f"sqlite+aiosqlite:///{tmp_path / 'c.sqlite'}") as store:
        world.store = store
        world.recalls = Recalls(RecallParts(world.legs, store, world.settings,
                                            lambda: world.call_config), world._spawn)
        yield world
        for task in world.spawned:
            task.cancel()
        await asyncio.gather(*world.spawned, return_exceptions=True)


async def request(world: World, topic: str = "beta", due_in: float = 0) -> RecallRequest:
    now = world.clock.now()
    row = RecallRequest(id=uuid.uuid4().hex, number=NUMBER, number_type="fixed_line",
                        topic=topic, mode="now", slot_at=None, name="Maria Rossi",
                        note="pratica 42", portal_ref="P-42", client="portal", status="waiting",
                        created_at=now, updated_at=now, due_at=now + timedelta(seconds=due_in),
                        attempts=0, boost=0.0)
    row, created = await world.store.create_recall(row)
    assert created
    return row


async def stored(world: World, recall_id: str) -> RecallRequest:
    row = await world.store.get_recall(recall_id)
    assert row is not None
    return row


async def test_the_agent_answers_then_the_citizen_and_they_talk(world):
    world.desk.ask("1001", "login", "agent:1001")
    row = await request(world)
    await world.recalls.start()
    await world.until(lambda: world.asterisk.leg_of(AGENT))
    pop = world.desk.last_pop["1001"]
    assert isinstance(pop, RecallOffer) and (pop.number, pop.note) == (NUMBER, "pratica 42")
    assert (await stored(world, row.id)).status == "calling"
    await world.clock.advance(1)  # the agent answers: now the citizen is dialled
    await world.until(lambda: world.asterisk.leg_of(world.citizen_phone))
    citizen = world.asterisk.leg_of(world.citizen_phone)
    dialled = next(p for c, _, p in world.asterisk.originated if c == citizen)
    assert dialled["callerId"] == "0611111111"  # the help desk's number, not the agent's
    await world.clock.advance(1)  # the citizen answers
    bridge = f"centralino-call-{row.id}"
    agent_leg = world.asterisk.leg_of(AGENT)
    await world.until(lambda: world.asterisk.bridges.get(bridge) and
                     world.asterisk.bridges[bridge].members == {agent_leg, citizen})
    assert world.desk.agents["1001"].state is AgentState.ON_CALL
    await world.clock.advance(45)
    world.asterisk.hang_up(citizen)
    await world.until(lambda: isinstance(world.desk.last_pop["1001"], RecallOutcome))
    assert agent_leg in world.asterisk.hung_up
    outcome = world.desk.last_pop["1001"]
    assert (outcome.outcome, outcome.status, outcome.attempts) == ("answered", "done", 1)
    after = await stored(world, row.id)
    assert (after.status, after.attempts) == ("done", 1)
    attempts = await world.store.recall_attempts(row.id)
    assert [(a.outcome, a.agent_id, a.detail) for a in attempts] == [
        ("answered", "1001", "ended by the citizen")]
    assert world.desk.agents["1001"].state is AgentState.WRAP_UP


async def test_a_citizen_who_does_not_answer_is_tried_again_later(world):
    world.asterisk.phones[world.settings.dial_string(NUMBER)] = Phone(answer_after=None)
    world.desk.ask("1001", "login", "agent:1001")
    row = await request(world)
    await world.recalls.start()
    await world.until(lambda: world.asterisk.leg_of(AGENT))
    await world.clock.advance(1)
    await world.until(lambda: world.asterisk.leg_of(world.citizen_phone))
    citizen = world.asterisk.leg_of(world.citizen_phone)
    await world.clock.advance(20)  # the citizen's ring timeout
    await world.until(lambda: "1001" in world.desk.last_pop
                     and isinstance(world.desk.last_pop["1001"], RecallOutcome))
    assert citizen in world.asterisk.hung_up
    after = await stored(world, row.id)
    assert (after.status, after.attempts) == ("waiting", 1)
    assert after.due_at == row.due_at.replace(tzinfo=after.due_at.tzinfo) + timedelta(
        seconds=21 + 60) or after.due_at > world.clock.now()  # the retry delay from now
    assert world.queues.position(row.id) is None  # not back in the line before it is due


async def test_an_agent_who_misses_the_recall_does_not_count_as_an_attempt(world):
    world.asterisk.phones[AGENT] = Phone(answer_after=None)
    world.desk.ask("1001", "login", "agent:1001")
    row = await request(world)
    await world.recalls.start()
    await world.until(lambda: world.asterisk.leg_of(AGENT))
    await world.clock.advance(3)  # beta's ring timeout
    await world.until(lambda: world.desk.agents["1001"].missed == 1)
    attempts = await world.store.recall_attempts(row.id)
    assert [(a.outcome, a.agent_id) for a in attempts] == [("agent_missed", "1001")]
    assert (await stored(world, row.id)).attempts == 0  # not counted against the citizen
    # It keeps its place and is offered again (the agent has one more chance: max_missed 2).
    await world.until(lambda: len(world.asterisk.originated) == 2)
    assert [e for _, e, _ in world.asterisk.originated] == [AGENT, AGENT]


async def test_an_agent_who_hangs_up_before_the_citizen_answers(world):
    world.asterisk.phones[world.settings.dial_string(NUMBER)] = Phone(answer_after=10)
    world.desk.ask("1001", "login", "agent:1001")
    row = await request(world)
    await world.recalls.start()
    await world.until(lambda: world.asterisk.leg_of(AGENT))
    await world.clock.advance(1)
    await world.until(lambda: world.asterisk.leg_of(world.citizen_phone))
    citizen = world.asterisk.leg_of(world.citizen_phone)
    world.asterisk.hang_up(world.asterisk.leg_of(AGENT))
    await world.until(lambda: citizen in world.asterisk.hung_up)
    await world.until(lambda: world.desk.agents["1001"].state is not AgentState.ON_CALL)
    # Back at its place in the line (the agent wraps up), nothing counted: the agent's
    # doing, not the citizen's.
    await world.until(lambda: world.queues.position(row.id) == 1)
    after = await stored(world, row.id)
    assert (after.status, after.attempts) == ("waiting", 0)
    assert world.desk.agents["1001"].state is AgentState.WRAP_UP


async def test_a_request_cancelled_while_it_waits_is_never_dialled(world):
    row = await request(world)  # nobody logged in: it waits in its line
    await world.recalls.start()
    await world.until(lambda: world.queues.position(row.id) == 1)
    await world.store.set_recall_status(row.id, "cancelled", world.clock.now(),
                                        only_from=("waiting",))
    world.recalls.cancelled(row.id)
    await world.until(lambda: world.queues.position(row.id) is None)
    world.desk.ask("1001", "login", "agent:1001")
    await world.clock.settle()
    assert world.asterisk.originated == []
    assert world.desk.agents["1001"].state is AgentState.AVAILABLE


async def test_a_caller_in_the_line_hands_their_place_to_a_recall(world):
    world.desk.ask("1001", "login", "agent:1001")
    world.desk.ask("1001", "pause", "agent:1001", "meeting")
    since = world.clock.now() - timedelta(seconds=90)
    row = await world.recalls.from_caller("beta", "0612345678", "", since, 0.0, "Test line")
    assert (row.number, row.client, row.due_at.replace(tzinfo=since.tzinfo)) == (
        "+390612345678", "ivr", since)
    assert world.queues.position(row.id) == 1  # in the line at once, at the caller's place
    again = await world.recalls.from_caller("beta", "0612345678", "", since, 0.0, "Test line")
    assert again.id == row.id  # asked twice: one request
    with pytest.raises(RecallError):
        await world.recalls.from_caller("beta", "+448001234567", "", since, 0.0, "Test line")


async def test_a_due_request_is_placed_when_its_time_comes(world):
    world.desk.ask("1001", "login", "agent:1001")
    row = await request(world, due_in=120)
    await world.recalls.start()
    await world.clock.settle()
    await asyncio.sleep(0.05)
    assert world.queues.position(row.id) is None
    await world.clock.advance(121)
    await world.until(lambda: world.asterisk.leg_of(AGENT))
    assert world.desk.agents["1001"].state is AgentState.RINGING
