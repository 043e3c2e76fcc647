"""Who gets which caller, on a virtual clock: arrival order, longest idle, penalties, agents in
several topics, boosts that never starve the unboosted line, ring-no-answer, and a property test
that no sequence of events ever rings a caller twice or gives an agent two calls."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from cti.agents import Agent, AgentState, AgentStateError
from cti.distributor import Distributor, Offer
from ivr.clock import FixedClock
from queue_manager.queues import QueueManager, Waiting

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
S = AgentState


def agent(agent_id: str, **topics: int) -> Agent:
    return Agent(agent_id, f"Agente {agent_id}", f"PJSIP/{agent_id}", topics or {"alpha": 0})


class Desk:
    """What the service does around the distributor, by hand and on a virtual clock: callers join
    and leave, agents log in, answer, miss and hang up, and after each event the distributor
    makes its offers (as centralino.desk does)."""

    def __init__(self, *agents: Agent, max_missed: int = 2):
        self.clock = FixedClock(T0)
        self.queues = QueueManager()
        self.agents = {a.id: a for a in agents}
        self.distributor = Distributor(self.queues, agents)
        self.max_missed = max_missed
        self.offered: list[tuple[str, str]] = []  # every (call, agent) offer so far
        self.joined: list[str] = []  # call ids in the order they joined

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def at(self, seconds: float) -> Desk:
        """Move the clock to `seconds` after T0."""
        assert T0 + timedelta(seconds=seconds) >= self.now, "the clock only moves forward"
        self.clock.at = T0 + timedelta(seconds=seconds)
        return self

    def match(self) -> list[tuple[str, str]]:
        made = [(offer.call_id, offer.agent_id) for offer, _ in self.distributor.match(self.now)]
        self.offered += made
        return made

    def join(self, call_id: str, topic: str = "alpha", boost: float = 0) -> list[tuple[str, str]]:
        self.queues.join(Waiting(call_id, topic, self.now, boost=boost))
        self.joined.append(call_id)
        return self.match()

    def leave(self, call_id: str) -> list[tuple[str, str]]:
        """The caller hung up while waiting (maybe while an agent's phone rang for them)."""
        waiting = self.queues.leave(call_id)
        assert waiting is not None
        if waiting.offered_to is not None:
            self.agents[waiting.offered_to].cancelled(self.now)
        return self.match()

    def login(self, *agent_ids: str) -> list[tuple[str, str]]:
        for agent_id in agent_ids:
            self.agents[agent_id].login(self.now, agent_id)
        return self.match()

    def ask(self, agent_id: str, action: str) -> list[tuple[str, str]]:
        a = self.agents[agent_id]
        if action == "pause":
            a.pause(self.now, "coffee", agent_id)
        else:
            getattr(a, action)(self.now, agent_id)
        return self.match()

    def answer(self, agent_id: str) -> str:
        a = self.agents[agent_id]
        assert a.state is S.RINGING and a.call_id is not None
        self.queues.leave(a.call_id)
        a.answered(self.now)
        return a.call_id

    def hang_up(self, agent_id: str, wrap_up: float = 0) -> list[tuple[str, str]]:
        self.agents[agent_id].call_ended(self.now, wrap_up)
        return self.match()

    def wrap_up_done(self, agent_id: str) -> list[tuple[str, str]]:
        self.agents[agent_id].wrap_up_done(self.now)
        return self.match()

    def miss(self, agent_id: str) -> list[tuple[str, str]]:
        """Ring-no-answer: the caller is back at its place, the agent available or paused."""
        a = self.agents[agent_id]
        waiting = self.queues.get(a.call_id or "")
        assert a.state is S.RINGING and waiting is not None and waiting.offered_to == agent_id
        waiting.offered_to = None
        a.missed_offer(self.now, self.max_missed)
        return self.match()


def calls_of(desk: Desk, agent_id: str) -> list[str]:
    return [call for call, a in desk.offered if a == agent_id]


# --- arrival order, idle time, penalties ------------------------------------------------------

def test_three_callers_one_agent_are_served_in_arrival_order_as_the_agent_frees_up():
    desk = Desk(agent("1001"))
    desk.login("1001")
    assert desk.at(10).join("c1") == [("c1", "1001")]
    desk.at(12).answer("1001")
    assert desk.at(20).join("c2") == []
    assert desk.at(30).join("c3") == []
    assert desk.queues.position("c3") == 2
    assert desk.at(100).hang_up("1001", wrap_up=10) == []  # wrap-up first
    assert desk.at(110).wrap_up_done("1001") == [("c2", "1001")]
    desk.at(115).answer("1001")
    assert desk.at(200).hang_up("1001") == [("c3", "1001")]
    assert desk.offered == [("c1", "1001"), ("c2", "1001"), ("c3", "1001")]


def test_the_agent_idle_longest_gets_the_caller():
    desk = Desk(agent("1001"), agent("1002"), agent("1003"))
    desk.at(0).login("1002")
    desk.at(5).login("1003")
    desk.at(9).login("1001")
    assert desk.at(60).join("c1") == [("c1", "1002")]
    assert desk.join("c2") == [("c2", "1003")]
    assert desk.join("c3") == [("c3", "1001")]


def test_after_a_call_the_agent_goes_to_the_back_of_the_idle_order():
    desk = Desk(agent("1001"), agent("1002"))
    desk.at(0).login("1001")
    desk.at(5).login("1002")
    desk.at(10).join("c1")
    desk.at(11).answer("1001")
    desk.at(50).hang_up("1001")  # 1001 idle since 50, 1002 since 5
    assert desk.at(60).join("c2") == [("c2", "1002")]


def test_equal_idle_times_go_by_agent_id():
    desk = Desk(agent("1003"), agent("1001"), agent("1002"))
    desk.login("1003", "1002", "1001")
    assert desk.at(10).join("c1") == [("c1", "1001")]


def test_a_lower_penalty_wins_over_a_longer_idle_time():
    desk = Desk(agent("backup", alpha=1), agent("main", alpha=0))
    desk.at(0).login("backup")
    desk.at(3600).login("main")
    assert desk.at(3601).join("c1") == [("c1", "main")]
    assert desk.join("c2") == [("c2", "backup")]  # the higher penalty only when needed


def test_an_agent_in_two_topics_gets_the_caller_who_waited_longest_across_them():
    desk = Desk(agent("1001", alpha=0, beta=0))
    desk.at(10).join("beta-1", "beta")
    desk.at(20).join("alpha-1", "alpha")
    desk.at(30).join("beta-2", "beta")
    desk.at(40).join("alpha-2", "alpha")
    desk.at(50).login("1001")
    for t in (60, 120, 180):
        desk.at(t).answer("1001")
        desk.at(t + 50).hang_up("1001")
    assert calls_of(desk, "1001") == ["beta-1", "alpha-1", "beta-2", "alpha-2"]


def test_penalties_are_per_topic():
    desk = Desk(agent("1001", alpha=0, beta=2), agent("1002", alpha=2, beta=0))
    desk.login("1001", "1002")
    assert desk.at(10).join("b", "beta") == [("b", "1002")]
    assert desk.at(11).join("a", "alpha") == [("a", "1001")]


def test_a_caller_no_free_agent_can_take_does_not_hold_up_the_others():
    desk = Desk(agent("1001", beta=0))
    desk.at(0).join("alpha-1", "alpha")  # nobody serves alpha now
    desk.at(10).join("beta-1", "beta")
    assert desk.at(20).login("1001") == [("beta-1", "1001")]
    assert desk.queues.get("alpha-1").offered_to is None


@pytest.mark.parametrize("state", ["logged_out", "paused", "busy"])
def test_agents_not_available_get_no_caller(state):
    desk = Desk(agent("1001"), agent("1002"))
    desk.login("1001", "1002")
    if state == "logged_out":
        desk.ask("1001", "logout")
    elif state == "paused":
        desk.ask("1001", "pause")
    else:
        desk.at(5).join("c0")
        desk.answer("1001")
    desk.ask("1002", "pause")
    assert desk.at(10).join("c1") == []
    assert desk.at(20).ask("1002", "resume") == [("c1", "1002")]


def test_a_burst_of_agents_takes_the_best_callers_each_to_the_best_agent():
    desk = Desk(agent("1001", alpha=0, beta=0), agent("1002", alpha=1), agent("1003", beta=0))
    for n, (call, topic) in enumerate([("a1", "alpha"), ("b1", "beta"), ("a2", "alpha"),
                                       ("b2", "beta"), ("a3", "alpha")]):
        desk.at(n).join(call, topic)
    desk.at(100).agents["1003"].login(desk.now, "1003")
    desk.at(101).agents["1002"].login(desk.now, "1002")
    desk.at(102).agents["1001"].login(desk.now, "1001")
    # a1 -> 1001 (penalty 0), b1 -> 1003 (the only beta agent left), a2 -> 1002
    assert desk.match() == [("a1", "1001"), ("b1", "1003"), ("a2", "1002")]


def test_match_marks_caller_and_agent_and_then_has_nothing_more_to_do():
    desk = Desk(agent("1001"))
    desk.login("1001")
    desk.queues.join(Waiting("c1", "alpha", T0))
    [(offer, change)] = desk.distributor.match(T0)
    assert offer == Offer("c1", "alpha", "1001")
    assert (change.agent_id, change.state, change.by) == ("1001", S.RINGING, "system")
    assert desk.queues.get("c1").offered_to == "1001"
    assert (desk.agents["1001"].state, desk.agents["1001"].call_id) == (S.RINGING, "c1")
    assert desk.distributor.match(T0) == []


def test_nothing_to_match():
    assert Distributor(QueueManager()).match(T0) == []
    desk = Desk(agent("1001"))
    assert desk.join("c1") == []  # nobody logged in
    desk.ask("1001", "login")
    assert desk.offered == [("c1", "1001")]


# --- priority between lines -------------------------------------------------------------------

ASSOCIATIONS = 60  # seconds of boost for the trade associations' line


def test_the_associations_line_goes_before_citizens_who_called_shortly_before():
    desk = Desk(agent("1001"))
    desk.login("1001")
    desk.at(1).join("busy")
    desk.answer("1001")
    desk.at(10).join("citizen")
    desk.at(40).join("association", boost=ASSOCIATIONS)
    desk.at(300).hang_up("1001")
    assert desk.offered[-1] == ("association", "1001")


def test_citizens_who_waited_longer_than_the_boost_go_first():
    desk = Desk(agent("1001"))
    desk.login("1001")
    desk.at(1).join("busy")
    desk.answer("1001")
    desk.at(10).join("citizen")
    desk.at(80).join("association", boost=ASSOCIATIONS)
    desk.at(300).hang_up("1001")
    assert desk.offered[-1] == ("citizen", "1001")


def steady_stream(agents: int, handle: int, every: int, boost: float, plain_at: int,
                  horizon: int = 3600) -> tuple[dict[str, int], dict[str, int]]:
    """`agents` agents answer at once and talk `handle` seconds each call; a boosted caller joins
    every `every` seconds and one unboosted caller joins at `plain_at`. Within each second the
    callers join before the calls end, so a freed agent always finds a boosted caller waiting if
    there is one. Returns when each caller joined and when it was offered."""
    desk = Desk(*(agent(f"a{n}") for n in range(agents)))
    desk.login(*desk.agents)
    joined: dict[str, int] = {}
    offered: dict[str, int] = {}
    ends: dict[str, int] = {}  # agent -> when their call ends
    for second in range(horizon):
        desk.at(second)
        made = []
        if second % every == 0:
            joined[f"b{second}"] = second
            made += desk.join(f"b{second}", boost=boost)
        if second == plain_at:
            joined["plain"] = second
            made += desk.join("plain")
        for agent_id in [a for a, end in ends.items() if end == second]:
            del ends[agent_id]
            made += desk.hang_up(agent_id)
        for call, agent_id in made:
            offered[call] = second
            desk.answer(agent_id)
            ends[agent_id] = second + handle
    return joined, offered


@pytest.mark.parametrize("agents, handle, every, boost, plain_at", [
    (1, 10, 10, 60, 125),
    (2, 20, 10, 60, 125),
    (2, 20, 10, 30, 333),
    (3, 45, 15, 120, 601),
    (5, 100, 20, 300, 1000),
])
def test_a_steady_stream_of_boosted_callers_never_starves_an_unboosted_one(
        agents, handle, every, boost, plain_at):
    # The stream keeps every agent busy: with strict priority the unboosted caller would wait
    # forever (see the next test). With ranks it waits the boost plus at most one call.
    assert agents * every == handle  # exactly the agents' capacity
    joined, offered = steady_stream(agents, handle, every, boost, plain_at)
    waited = offered["plain"] - plain_at
    assert boost <= waited <= boost + handle
    # Offered after every boosted caller who joined less than `boost` after it, and before every
    # one who joined more than `boost` after it.
    for call, at in joined.items():
        if call != "plain" and plain_at < at < plain_at + boost:
            assert offered[call] <= offered["plain"], call
        elif call != "plain" and at > plain_at + boost:
            assert offered.get(call, 10**9) >= offered["plain"], call


def test_the_stream_does_saturate_the_agents():
    # The same stream with an (absurd) boost of a week: the unboosted caller is never served,
    # so the previous test's scenario is a real test of starvation.
    _, offered = steady_stream(2, 20, 10, 7 * 86_400, 125)
    assert "plain" not in offered
    assert len(offered) >= 3600 // 10 - 3


def test_an_overloaded_stream_still_serves_the_unboosted_caller_in_rank_order():
    # More boosted callers than the agents can take (one every 8 s for 2 agents of 20 s): the
    # wait grows for everybody, but the unboosted caller still passes every boosted caller who
    # joined more than `boost` after it.
    joined, offered = steady_stream(2, 20, 8, 60, 125)
    assert "plain" in offered
    ahead = [c for c, at in joined.items() if c != "plain" and at - 60 < 125]
    behind = [c for c, at in joined.items() if c != "plain" and at - 60 > 125]
    assert all(offered[c] <= offered["plain"] for c in ahead)
    assert all(offered.get(c, 10**9) >= offered["plain"] for c in behind)


# --- ring-no-answer ---------------------------------------------------------------------------

def test_after_a_missed_offer_the_same_caller_goes_to_the_next_agent():
    desk = Desk(agent("1001"), agent("1002"), max_missed=3)
    desk.at(0).login("1001")
    desk.at(5).login("1002")
    assert desk.at(10).join("c1") == [("c1", "1001")]
    assert desk.at(30).miss("1001") == [("c1", "1002")]  # 1001 is now the most recently idle
    assert desk.at(50).miss("1002") == [("c1", "1001")]  # and now 1002 is
    assert desk.queues.position("c1") == 1  # kept its place all along


def test_a_missed_caller_keeps_its_place_before_later_callers():
    desk = Desk(agent("1001"), agent("1002"), max_missed=3)
    desk.login("1001")
    desk.at(10).join("c1")
    desk.at(15).join("c2")
    desk.at(30).miss("1001")
    assert desk.offered[-1] == ("c1", "1001")  # the only agent: offered again, before c2
    assert desk.at(31).login("1002") == [("c2", "1002")]


def test_when_the_only_agent_misses_the_caller_rings_them_again_until_they_are_paused():
    desk = Desk(agent("1001"), max_missed=2)
    desk.login("1001")
    assert desk.at(10).join("c1") == [("c1", "1001")]
    assert desk.at(30).miss("1001") == [("c1", "1001")]
    assert desk.at(50).miss("1001") == []  # second in a row: paused
    a = desk.agents["1001"]
    assert (a.state, a.reason) == (S.PAUSED, "2 calls not answered")
    c1 = desk.queues.get("c1")
    assert (c1.offered_to, desk.queues.position("c1")) == (None, 1)  # waits, at its place
    assert desk.at(300).ask("1001", "resume") == [("c1", "1001")]


def test_a_caller_who_leaves_while_ringing_leaves_the_agent_first_in_line():
    desk = Desk(agent("1001"), agent("1002"))
    desk.at(0).login("1001")
    desk.at(5).login("1002")
    desk.at(10).join("c1")
    assert desk.at(12).leave("c1") == []
    assert desk.at(20).join("c2") == [("c2", "1001")]  # still the longest idle
    assert desk.agents["1001"].missed == 0


def test_a_caller_who_leaves_while_ringing_frees_the_agent_for_the_next():
    desk = Desk(agent("1001"))
    desk.login("1001")
    desk.at(10).join("c1")
    desk.at(11).join("c2")
    assert desk.at(12).leave("c1") == [("c2", "1001")]


# --- never two offers for one caller, never two calls for one agent ---------------------------

TOPICS = ["alpha", "beta", "gamma"]
BOOSTS = [0, 30, 60]
AGENTS = {"1001": {"alpha": 0, "beta": 0}, "1002": {"alpha": 0},
          "1003": {"beta": 0, "gamma": 0}, "1004": {"gamma": 0, "alpha": 1},
          "1005": {"alpha": 1, "beta": 1, "gamma": 1}, "1006": {"gamma": 0}}
STEPS = [0, 0, 1, 5, 30]  # many events in the same second: equal ranks, equal idle times
# the agents' calls go to an agent in the right state (the n-th ringing one, say)
CALL_EVENTS = {"answer": S.RINGING, "miss": S.RINGING, "end": S.ON_CALL,
               "wrap_up_done": S.WRAP_UP}


def by_the_rule(desk: Desk) -> list[tuple[str, str]]:
    """The documented rule, written out the slow way: the best-ranked unoffered caller (equal
    ranks: who joined first) that some available agent can take; among those agents the lowest
    penalty, then the longest idle, then the id; repeat."""
    seq = {call: n for n, call in enumerate(desk.joined)}
    callers = sorted((w.rank, seq[w.call_id], w.call_id, w.topic)
                     for w in desk.queues if w.offered_to is None)
    free = [a for a in desk.agents.values() if a.state is S.AVAILABLE]
    expected = []
    while True:
        pick = next(((call, topic) for _, _, call, topic in callers
                     if any(a.serves(topic) for a in free)), None)
        if pick is None:
            return expected
        call, topic = pick
        chosen = min((a for a in free if a.serves(topic)),
                     key=lambda a: (a.topics[topic], a.idle_since, a.id))
        expected.append((call, chosen.id))
        free.remove(chosen)
        callers = [c for c in callers if c[2] != call]


def assert_consistent(desk: Desk) -> None:
    ringing_for: dict[str, list[str]] = {}
    for w in desk.queues:
        if w.offered_to is not None:
            ringing_for.setdefault(w.offered_to, []).append(w.call_id)
    for a in desk.agents.values():
        # an agent rings for at most one caller, and is ringing iff a caller's offer names it
        assert len(ringing_for.get(a.id, [])) <= 1, (a.id, ringing_for[a.id])
        assert (a.state is S.RINGING) == (a.id in ringing_for), (a.id, a.state)
        if a.state is S.RINGING:
            assert ringing_for[a.id] == [a.call_id]
        # no available agent could take an unoffered caller of its topics
        if a.state is S.AVAILABLE:
            assert not [w.call_id for w in desk.queues
                        if w.offered_to is None and a.serves(w.topic)], a.id
    # each caller rings at most one agent: no two ringing agents share a call
    rung = [a.call_id for a in desk.agents.values() if a.state is S.RINGING]
    assert len(rung) == len(set(rung))
    assert set(ringing_for) <= set(desk.agents)


joins = st.tuples(st.just("join"), st.sampled_from(TOPICS), st.sampled_from(BOOSTS))
calls = st.tuples(st.sampled_from(["answer", "answer", "miss", "end", "end", "wrap_up_done"]),
                  st.integers(0, 5), st.sampled_from([0, 30]))
event = st.one_of(
    joins, joins,
    st.tuples(st.sampled_from(["login", "login", "login", "logout", "pause", "resume"]),
              st.sampled_from(sorted(AGENTS)), st.just(0)),
    calls, calls,
    st.tuples(st.just("leave"), st.integers(0, 20), st.just(0)),
)
events = st.lists(st.tuples(st.sampled_from(STEPS), event), min_size=20, max_size=120)


def play(desk: Desk, what: str, arg, extra) -> None:
    """One event of the property test, done to the desk without matching."""
    if what == "join":
        call_id = f"c{len(desk.joined) + 1}"
        desk.queues.join(Waiting(call_id, arg, desk.now, boost=extra))
        desk.joined.append(call_id)
    elif what == "leave" and len(desk.queues):
        waiting = sorted(desk.queues, key=lambda w: desk.joined.index(w.call_id))[
            arg % len(desk.queues)]
        desk.queues.leave(waiting.call_id)
        if waiting.offered_to is not None:
            desk.agents[waiting.offered_to].cancelled(desk.now)
    elif what in ("login", "logout", "pause", "resume"):
        a = desk.agents[arg]
        try:
            a.pause(desk.now, "coffee", a.id) if what == "pause" else getattr(a, what)(desk.now,
                                                                                   a.id)
        except AgentStateError:
            pass
    elif what in CALL_EVENTS:
        candidates = [a for a in desk.agents.values() if a.state is CALL_EVENTS[what]]
        if not candidates:
            return
        a = candidates[arg % len(candidates)]
        if what == "answer":
            desk.answer(a.id)
        elif what == "miss":
            desk.queues.get(a.call_id).offered_to = None
            a.missed_offer(desk.now, desk.max_missed)
        elif what == "end":
            a.call_ended(desk.now, extra)
        else:
            a.wrap_up_done(desk.now)


@settings(max_examples=400, deadline=None, database=None)
@given(events)
# three topics, equal ranks (gamma now, beta with 30 s of boost 30 s later, alpha with 60 s of
# boost 60 s later), then an agent of all three: who joined first goes first
@example([(0, ("join", "gamma", 0)), (30, ("join", "beta", 30)), (30, ("join", "alpha", 60)),
          (0, ("login", "1005", 0))])
def test_no_offer_twice_and_no_agent_with_two_calls(steps):
    desk = Desk(*(agent(agent_id, **topics) for agent_id, topics in AGENTS.items()),
                max_missed=2)
    for step, (what, arg, extra) in steps:
        desk.clock.advance(step)
        play(desk, what, arg, extra)
        expected = by_the_rule(desk)
        made = desk.match()
        assert made == expected
        assert len({c for c, _ in made}) == len(made) and len({a for _, a in made}) == len(made)
        assert_consistent(desk)


# --- a caller transferred to a named agent (issue #13) ------------------------------------------

def test_a_caller_transferred_to_a_named_agent_waits_for_them_alone():
    desk = Desk(agent("1001"), agent("1002"))
    desk.login("1001", "1002")
    desk.at(5).join("busy1")
    desk.answer("1001")  # 1001 is on a call; 1002 is free
    desk.queues.join(Waiting("named", "alpha", T0, for_agents=frozenset({"1001"})))  # place: T0
    assert desk.at(10).match() == []  # 1002 is free, but the caller waits for 1001
    assert desk.at(12).join("later") == [("later", "1002")]  # others go on to 1002
    assert desk.at(20).hang_up("1001") == [("named", "1001")]


def test_a_named_agent_who_misses_the_ring_or_logs_out_gives_the_caller_to_the_line():
    desk = Desk(agent("1001"), agent("1002"), max_missed=1)  # a miss pauses 1001
    desk.login("1001")
    desk.queues.join(Waiting("named", "alpha", T0, for_agents=frozenset({"1001"})))
    assert desk.at(1).match() == [("named", "1001")]
    desk.queues.release_for("1001")  # the session, after the missed ring
    desk.at(3).miss("1001")
    assert desk.at(4).login("1002") == [("named", "1002")]
    # Logged out before ringing: released as well.
    other = Desk(agent("1001"), agent("1002"))
    other.login("1002")
    other.queues.join(Waiting("named", "alpha", T0, for_agents=frozenset({"1001"})))
    assert other.at(1).match() == []
    other.queues.release_for("1001")
    assert other.at(2).match() == [("named", "1002")]


# --- a caller transferred to a second-level group (issue #13) -----------------------------------

def test_a_caller_transferred_to_a_group_goes_to_its_members_even_outside_the_topic():
    # 1003 and 1004 are the second level: they serve another line, not alpha.
    desk = Desk(agent("1001"), agent("1002"), agent("1003", gamma=0), agent("1004", gamma=0),
                max_missed=1)
    desk.login("1002", "1003", "1004")
    desk.ask("1003", "pause")
    group = frozenset({"1003", "1004"})
    desk.at(2).ask("1004", "pause")
    desk.queues.join(Waiting("escalated", "alpha", T0, for_agents=group))  # their place: T0
    assert desk.at(3).match() == []  # 1002 serves alpha, and is free: not theirs
    assert desk.at(4).join("plain") == [("plain", "1002")]  # the line goes on as before
    assert desk.at(5).ask("1004", "resume") == [("escalated", "1004")]  # not in alpha: still
    assert desk.miss("1004") == []  # missed (1004 paused): the caller waits for the group
    assert desk.queues.get("escalated").for_agents == group
    assert desk.at(6).ask("1003", "resume") == [("escalated", "1003")]


def test_a_group_caller_goes_back_to_the_line_once_no_member_is_logged_in():
    desk = Desk(agent("1001"), agent("1003", gamma=0), agent("1004", gamma=0))
    desk.login("1003", "1004")
    desk.ask("1003", "pause")
    desk.ask("1004", "pause")
    desk.queues.join(Waiting("escalated", "alpha", T0, for_agents=frozenset({"1003", "1004"})))
    desk.ask("1003", "logout")
    desk.queues.release_for("1003", logged_in={"1004"})  # 1004 is still in: for them
    assert desk.login("1001") == []
    desk.ask("1004", "logout")
    desk.queues.release_for("1004", logged_in={"1001"})  # nobody of the group: anybody
    assert desk.queues.get("escalated").for_agents == frozenset()
    assert desk.at(1).match() == [("escalated", "1001")]
