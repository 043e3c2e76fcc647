"""Calls, recalls and tickets through one distributor, on a virtual clock: a call is never held
back by an agent busy only with tickets (unless configured), capacities hold, no ticket is
handed out twice, tickets go by deadline then age, and a property test over random events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from cti.agents import Agent, AgentState
from cti.distributor import Distributor, Pending, TicketOffer
from queue_manager.queues import QueueManager, Waiting

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def agent(agent_id: str, tickets: int = 2, groups: frozenset[str] = frozenset(),
          calls: bool = True, **topics: int) -> Agent:
    a = Agent(agent_id, agent_id, f"PJSIP/{agent_id}", topics or {"suap": 0},
              ticket_capacity=tickets, groups=groups, takes_calls=calls)
    a.login(T0, "test")
    return a


def ticket(ticket_id: str, due_minutes: float, age_minutes: float = 0, topic: str = "suap",
           level: str = "I") -> Pending:
    return Pending(T0 + timedelta(minutes=due_minutes), T0 - timedelta(minutes=age_minutes),
                   ticket_id, ticket_id, topic, level)


class World:
    """The desk around the distributor: tickets arrive, hand-overs are stored (or not), calls
    and recalls wait in the lines; after each event the distributor matches, calls first."""

    def __init__(self, *agents: Agent, calls_during_tickets: bool = True):
        self.queues = QueueManager()
        self.distributor = Distributor(self.queues, agents)
        self.distributor.calls_during_tickets = calls_during_tickets
        self.now = T0

    def match(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        calls = [(o.call_id, o.agent_id) for o, _ in self.distributor.match(self.now)]
        tickets = self.distributor.match_tickets()
        for offer in tickets:  # each hand-over stored
            self.distributor.ticket_done(offer, stored=True)
        return calls, [(o.ticket_id, o.agent_id) for o in tickets]

    def arrive(self, *pending: Pending) -> list[tuple[str, str]]:
        for p in pending:
            self.distributor.backlog.put(p)
        return self.match()[1]

    def call(self, call_id: str, topic: str = "suap", recall: bool = False
             ) -> list[tuple[str, str]]:
        self.queues.join(Waiting(call_id, topic, self.now, recall=recall))
        return self.match()[0]


def test_tickets_go_by_deadline_then_age_and_never_beyond_capacity():
    giulia = agent("1001", tickets=2)
    world = World(giulia)
    handed = world.arrive(ticket("late", 300), ticket("urgent", 30),
                          ticket("old", 300, age_minutes=60))
    assert handed == [("urgent", "1001"), ("old", "1001")]
    assert giulia.tickets == {"urgent", "old"}
    assert world.arrive(ticket("more", 10)) == []  # full: it waits, however urgent
    giulia.tickets.discard("urgent")  # resolved: room for the most urgent left
    assert world.match()[1] == [("more", "1001")]


def test_a_call_reaches_an_agent_busy_with_tickets_unless_configured():
    giulia = agent("1001")
    world = World(giulia)
    world.arrive(ticket("t1", 30))
    assert giulia.tickets == {"t1"}
    assert world.call("c1") == [("c1", "1001")]  # tickets do not hold a call back

    marco = agent("1002")
    strict = World(marco, calls_during_tickets=False)
    strict.arrive(ticket("t2", 30))
    assert strict.call("c2") == []  # busy with a ticket: no call
    marco.tickets.clear()
    assert strict.match()[0] == [("c2", "1002")]


def test_nothing_is_handed_to_an_agent_on_a_call_ringing_or_paused():
    giulia, anna = agent("1001"), agent("1003")
    world = World(giulia, anna)
    assert world.call("c1") == [("c1", "1001")]
    giulia.answered(T0)
    anna.pause(T0, "Pranzo", "1003")
    assert world.arrive(ticket("t1", 30)) == []
    giulia.call_ended(T0, 0)
    giulia.wrap_up_done(T0)
    assert world.match()[1] == [("t1", "1001")]


def test_a_recall_and_a_call_still_go_in_arrival_order_next_to_tickets():
    giulia = agent("1001", tickets=1)
    world = World(giulia)
    world.arrive(ticket("t1", 30))
    world.queues.join(Waiting("recall-1", "suap", T0 - timedelta(seconds=5), recall=True))
    world.queues.join(Waiting("c1", "suap", T0))
    calls, _ = world.match()
    assert calls == [("recall-1", "1001")]  # first come, with a ticket in hand


def test_an_agent_of_written_requests_only_gets_no_call_and_penalties_choose_the_agent():
    back = agent("1004", calls=False)
    front = agent("1001", suap=1)
    world = World(back, front)
    assert world.call("c1") == [("c1", "1001")]
    # For a ticket, the lower penalty first: 1004 (suap 0) before 1001 (busy anyway).
    assert world.arrive(ticket("t1", 30)) == [("t1", "1004")]


def test_escalated_tickets_go_to_their_group_only():
    member = agent("1003", groups=frozenset({"back-office"}), generale=0)
    other = agent("1001")
    world = World(member, other)
    handed = world.arrive(ticket("up", 30, level="back-office"), ticket("down", 60))
    assert sorted(handed) == [("down", "1001"), ("up", "1003")]


def test_a_hand_over_that_fails_frees_the_agent_and_the_ticket_goes_to_someone_else():
    giulia, luca = agent("1001", tickets=1), agent("1004", tickets=1, suap=1)
    world = World(giulia, luca)
    world.distributor.backlog.put(ticket("t1", 30))
    [offer] = world.distributor.match_tickets()
    assert offer == TicketOffer("t1", "1001")
    assert world.distributor.match_tickets() == []  # reserved: not offered twice
    world.distributor.ticket_done(offer, stored=False)  # taken by hand meanwhile, say
    assert giulia.tickets == set()
    assert world.distributor.match_tickets() == [TicketOffer("t1", "1001")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["ticket", "call", "done", "pause", "resume",
                                           "fail"]),
                          st.integers(0, 3), st.integers(0, 500)), max_size=60))
def test_no_ticket_is_handed_twice_and_capacities_hold_whatever_happens(events):
    agents = [agent("a0", tickets=1), agent("a1", tickets=2, suap=1),
              agent("a2", tickets=3, groups=frozenset({"g"}), calls=False)]
    world = World(*agents)
    handed: list[str] = []
    for serial, (kind, who, minutes) in enumerate(events):
        a = agents[who % 3]
        if kind == "ticket":
            level = "g" if who == 3 else "I"
            world.distributor.backlog.put(ticket(f"t{serial}", minutes, level=level))
        elif kind == "call":
            world.queues.join(Waiting(f"c{serial}", "suap", world.now))
        elif kind == "done" and a.tickets:
            a.tickets.discard(sorted(a.tickets)[0])
        elif kind == "pause":
            a.pause(world.now, "x", a.id)
        elif kind == "resume" and a.state is AgentState.PAUSED:
            a.resume(world.now, a.id)
        offers = world.distributor.match_tickets()
        for offer in offers:
            stored = kind != "fail"
            world.distributor.ticket_done(offer, stored=stored)
            if stored:
                handed.append(offer.ticket_id)
        for x in agents:
            assert len(x.tickets) <= x.ticket_capacity
        assert len(handed) == len(set(handed)), "a ticket handed out twice"
        assert not set(handed) & set(world.distributor.backlog.by_id)


def test_a_ticket_given_back_is_not_handed_straight_back_to_who_gave_it():
    giulia, luca = agent("1001"), agent("1004", suap=1)
    luca.pause(T0, "Pranzo", "1004")
    world = World(giulia, luca)
    released = Pending(T0 + timedelta(minutes=5), T0, "t1", "t1", "suap", "I", passed_by="1001")
    assert world.arrive(released, ticket("t2", 60)) == [("t2", "1001")]  # t1 waits
    giulia.tickets.clear()  # she resolved t2: still not t1 for her
    assert world.match()[1] == []
    # Once she is back from a logout, what she gave back may come to her again.
    world.distributor.backlog.forget_passes("1001")
    assert world.match()[1] == [("t1", "1001")]


def test_what_an_agent_gave_back_goes_to_a_colleague_who_becomes_free():
    giulia, luca = agent("1001"), agent("1004", suap=1)
    luca.pause(T0, "Pranzo", "1004")
    world = World(giulia, luca)
    world.arrive(Pending(T0 + timedelta(minutes=5), T0, "t1", "t1", "suap", "I",
                         passed_by="1001"))
    luca.resume(T0, "1004")
    assert world.match()[1] == [("t1", "1004")]
