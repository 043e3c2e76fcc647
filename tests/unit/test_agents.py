"""The agent state machine at explicit instants: every transition, every refusal, and what a
pause or logout asked for during a call does once the call is over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cti.agents import BUSY, Agent, AgentState, AgentStateError, Change

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday morning
MAX_MISSED = 2
S = AgentState


def t(seconds: float) -> datetime:
    """The virtual clock: `seconds` after T0."""
    return T0 + timedelta(seconds=seconds)


def agent(topics: dict[str, int] | None = None) -> Agent:
    return Agent("1001", "Agente Uno", "PJSIP/1001", {"alpha": 0} if topics is None else topics)


def logged_in(at: float = 0) -> Agent:
    a = agent()
    a.login(t(at), "1001")
    return a


def paused(at: float = 0) -> Agent:
    a = logged_in(at)
    a.pause(t(at), "coffee", "1001")
    return a


def ringing(at: float = 10) -> Agent:
    a = logged_in()
    a.offer("call-1", t(at))
    return a


def on_call(at: float = 20) -> Agent:
    a = ringing()
    a.answered(t(at))
    return a


def wrapping_up(at: float = 30) -> Agent:
    a = on_call()
    a.call_ended(t(at), wrap_up=15)
    return a


def in_state(state: AgentState) -> Agent:
    return {S.LOGGED_OUT: agent, S.AVAILABLE: logged_in, S.PAUSED: paused, S.RINGING: ringing,
            S.ON_CALL: on_call, S.WRAP_UP: wrapping_up}[state]()


def after_the_call(a: Agent, at: float = 100) -> Change:
    """End whatever call the agent is in (ringing: the caller left; no wrap-up)."""
    if a.state is S.RINGING:
        return a.cancelled(t(at))
    if a.state is S.ON_CALL:
        return a.call_ended(t(at), wrap_up=0)
    assert a.state is S.WRAP_UP
    return a.wrap_up_done(t(at))


def miss(a: Agent, call_id: str, at: float) -> Change:
    a.offer(call_id, t(at))
    return a.missed_offer(t(at + 20), MAX_MISSED)


# --- a new agent, login -----------------------------------------------------------------------

def test_a_new_agent_is_logged_out_and_was_never_idle():
    a = agent()
    assert (a.state, a.since, a.idle_since, a.missed, a.call_id, a.after_call) == (
        S.LOGGED_OUT, None, None, 0, None, None)


def test_login_makes_the_agent_available_and_idle_from_then():
    a = agent()
    change = a.login(t(5), "1001")
    assert change == Change("1001", t(5), S.AVAILABLE, "", "1001")
    assert (a.state, a.since, a.idle_since) == (S.AVAILABLE, t(5), t(5))


def test_login_by_a_supervisor_says_who():
    assert agent().login(t(0), "sup").by == "sup"


@pytest.mark.parametrize("state", [S.AVAILABLE, S.PAUSED, *BUSY])
def test_login_when_already_in_is_a_no_op(state):
    a = in_state(state)
    before = (a.state, a.since, a.idle_since, a.reason, a.call_id)
    assert a.login(t(500), "1001") is None
    assert (a.state, a.since, a.idle_since, a.reason, a.call_id) == before


# --- logout -----------------------------------------------------------------------------------

@pytest.mark.parametrize("state", [S.AVAILABLE, S.PAUSED])
def test_logout_from_available_or_paused(state):
    a = in_state(state)
    assert a.logout(t(50), "sup") == Change("1001", t(50), S.LOGGED_OUT, "", "sup")
    assert (a.state, a.since, a.reason) == (S.LOGGED_OUT, t(50), "")


def test_logout_when_logged_out_is_a_no_op():
    a = agent()
    assert a.logout(t(5), "1001") is None
    assert (a.state, a.since, a.after_call) == (S.LOGGED_OUT, None, None)


@pytest.mark.parametrize("state", BUSY)
def test_logout_during_a_call_applies_after_it(state):
    a = in_state(state)
    assert a.logout(t(40), "sup") is None
    assert a.state is state  # still in the call
    assert after_the_call(a, 100) == Change("1001", t(100), S.LOGGED_OUT, "", "sup")
    assert (a.state, a.after_call) == (S.LOGGED_OUT, None)


def test_a_login_after_logging_out_gives_a_fresh_idle_time():
    a = logged_in(0)
    a.logout(t(10), "1001")
    a.login(t(60), "1001")
    assert (a.state, a.idle_since) == (S.AVAILABLE, t(60))


# --- pause and resume -------------------------------------------------------------------------

def test_pause_while_logged_out_is_refused():
    a = agent()
    with pytest.raises(AgentStateError, match="log in first"):
        a.pause(t(5), "coffee", "1001")
    assert a.state is S.LOGGED_OUT


def test_pause_from_available_keeps_reason_and_who():
    a = logged_in(0)
    change = a.pause(t(30), "coffee", "sup")
    assert change == Change("1001", t(30), S.PAUSED, "coffee", "sup")
    assert (a.state, a.since, a.reason) == (S.PAUSED, t(30), "coffee")


def test_pause_while_paused_changes_the_reason():
    a = paused(0)
    assert a.pause(t(30), "training", "sup") == Change("1001", t(30), S.PAUSED, "training", "sup")
    assert a.reason == "training"


@pytest.mark.parametrize("state", BUSY)
def test_pause_during_a_call_is_deferred_to_after_it(state):
    a = in_state(state)
    assert a.pause(t(40), "lunch", "1001") is None
    assert (a.state, a.reason) == (state, "")
    assert after_the_call(a, 100) == Change("1001", t(100), S.PAUSED, "lunch", "1001")
    assert (a.state, a.reason, a.after_call) == (S.PAUSED, "lunch", None)


def test_the_latest_request_during_a_call_wins():
    a = on_call()
    a.logout(t(21), "1001")
    a.pause(t(22), "lunch", "sup")
    assert after_the_call(a).state is S.PAUSED


@pytest.mark.parametrize("state", [S.LOGGED_OUT, S.AVAILABLE])
def test_resume_when_not_paused_is_refused(state):
    a = in_state(state)
    with pytest.raises(AgentStateError, match="not paused"):
        a.resume(t(50), "1001")
    assert a.state is state


@pytest.mark.parametrize("state", BUSY)
def test_resume_during_a_call_with_nothing_deferred_is_refused(state):
    a = in_state(state)
    with pytest.raises(AgentStateError, match="not paused"):
        a.resume(t(40), "1001")
    assert a.state is state


def test_resume_makes_the_agent_available_and_idle_from_then():
    a = paused(0)
    assert a.resume(t(300), "sup") == Change("1001", t(300), S.AVAILABLE, "", "sup")
    assert (a.state, a.since, a.idle_since, a.reason) == (S.AVAILABLE, t(300), t(300), "")


@pytest.mark.parametrize("state", BUSY)
def test_resume_during_a_call_cancels_a_deferred_pause(state):
    a = in_state(state)
    a.pause(t(40), "lunch", "1001")
    assert a.resume(t(45), "1001") is None
    assert (a.state, a.after_call) == (state, None)
    assert after_the_call(a, 100).state is S.AVAILABLE


def test_resume_during_a_call_does_not_cancel_a_deferred_logout():
    a = on_call()
    a.logout(t(40), "sup")
    with pytest.raises(AgentStateError):
        a.resume(t(45), "1001")
    assert after_the_call(a).state is S.LOGGED_OUT


def test_pausing_does_not_move_the_idle_time():
    a = logged_in(0)
    a.pause(t(30), "coffee", "1001")
    assert a.idle_since == t(0)


# --- a call: offer, answer, end, wrap-up ------------------------------------------------------

def test_offer_rings_the_agent():
    a = logged_in(0)
    assert a.offer("call-1", t(10)) == Change("1001", t(10), S.RINGING, "", "system")
    assert (a.state, a.call_id, a.since, a.idle_since) == (S.RINGING, "call-1", t(10), t(0))


@pytest.mark.parametrize("state", [S.LOGGED_OUT, S.PAUSED, *BUSY])
def test_only_an_available_agent_can_be_offered_a_call(state):
    a = in_state(state)
    with pytest.raises(AgentStateError, match="offered a call while"):
        a.offer("call-2", t(50))


def test_answered_puts_the_agent_on_the_call():
    a = ringing(10)
    assert a.answered(t(14)) == Change("1001", t(14), S.ON_CALL, "", "system")
    assert (a.state, a.call_id, a.since) == (S.ON_CALL, "call-1", t(14))


def test_call_ended_with_wrap_up_then_available():
    a = on_call(20)
    assert a.call_ended(t(80), wrap_up=15) == Change("1001", t(80), S.WRAP_UP, "", "system")
    assert (a.state, a.call_id) == (S.WRAP_UP, None)
    assert a.wrap_up_done(t(95)) == Change("1001", t(95), S.AVAILABLE, "", "system")
    assert (a.state, a.idle_since) == (S.AVAILABLE, t(95))


def test_call_ended_without_wrap_up_goes_straight_to_available():
    a = on_call(20)
    assert a.call_ended(t(80), wrap_up=0) == Change("1001", t(80), S.AVAILABLE, "", "system")
    assert (a.state, a.call_id, a.idle_since) == (S.AVAILABLE, None, t(80))


def test_a_deferred_request_waits_for_the_end_of_wrap_up_not_of_the_call():
    a = on_call(20)
    a.pause(t(30), "lunch", "1001")
    assert a.call_ended(t(80), wrap_up=15).state is S.WRAP_UP
    assert a.wrap_up_done(t(95)).state is S.PAUSED


def test_idle_since_is_when_the_agent_last_became_available():
    a = logged_in(0)
    a.offer("call-1", t(10))
    a.answered(t(12))
    assert a.idle_since == t(0)  # not available: unchanged, and not used
    a.call_ended(t(70), wrap_up=10)
    assert a.idle_since == t(0)
    a.wrap_up_done(t(80))
    assert a.idle_since == t(80)


# --- ring-no-answer, auto-pause ---------------------------------------------------------------

def test_a_missed_offer_counts_and_makes_the_agent_the_most_recently_idle():
    a = ringing(10)
    assert a.missed_offer(t(30), MAX_MISSED) == Change("1001", t(30), S.AVAILABLE, "", "system")
    assert (a.state, a.missed, a.call_id, a.idle_since) == (S.AVAILABLE, 1, None, t(30))


def test_max_missed_in_a_row_pauses_the_agent():
    a = logged_in(0)
    miss(a, "call-1", 10)
    change = miss(a, "call-2", 40)
    assert change == Change("1001", t(60), S.PAUSED, "2 calls not answered", "system")
    assert (a.state, a.reason, a.missed, a.call_id) == (S.PAUSED, "2 calls not answered", 2, None)


def test_the_reason_counts_the_misses():
    a = logged_in(0)
    for n in range(2):
        a.offer(f"call-{n}", t(10 + 30 * n))
        assert a.missed_offer(t(30 + 30 * n), 3).state is S.AVAILABLE
    a.offer("call-2", t(70))
    assert a.missed_offer(t(90), 3).reason == "3 calls not answered"


def test_max_missed_of_one_pauses_at_the_first_miss():
    a = ringing(10)
    assert a.missed_offer(t(30), 1).reason == "1 calls not answered"


def test_answering_resets_the_misses():
    a = logged_in(0)
    miss(a, "call-1", 10)
    a.offer("call-2", t(40))
    a.answered(t(42))
    assert a.missed == 0
    a.call_ended(t(100), wrap_up=0)
    assert miss(a, "call-3", 110).state is S.AVAILABLE  # one in a row, not two


def test_resuming_resets_the_misses():
    a = logged_in(0)
    miss(a, "call-1", 10)
    miss(a, "call-2", 40)
    assert a.state is S.PAUSED
    a.resume(t(300), "1001")
    assert (a.state, a.missed, a.reason) == (S.AVAILABLE, 0, "")
    assert miss(a, "call-3", 310).state is S.AVAILABLE


def test_misses_do_not_survive_a_logout():
    # Auto-paused, then logged out rather than resumed: tomorrow's first miss is the first.
    a = logged_in(0)
    miss(a, "call-1", 10)
    miss(a, "call-2", 40)
    a.logout(t(100), "1001")
    a.login(t(86_400), "1001")
    assert a.missed == 0
    assert miss(a, "call-3", 86_410).state is S.AVAILABLE


def test_a_deferred_pause_applies_after_a_missed_offer():
    a = ringing(10)
    a.pause(t(15), "lunch", "1001")
    assert a.missed_offer(t(30), MAX_MISSED) == Change("1001", t(30), S.PAUSED, "lunch", "1001")
    assert a.after_call is None


def test_a_deferred_logout_applies_after_a_missed_offer():
    a = ringing(10)
    a.logout(t(15), "1001")
    assert a.missed_offer(t(30), MAX_MISSED).state is S.LOGGED_OUT


def test_a_deferred_logout_is_not_lost_when_the_miss_would_auto_pause():
    a = logged_in(0)
    miss(a, "call-1", 10)
    a.offer("call-2", t(40))
    a.logout(t(45), "1001")
    assert a.missed_offer(t(60), MAX_MISSED).state is S.LOGGED_OUT
    assert a.after_call is None


def test_no_request_is_left_over_after_an_auto_pause():
    # A pause asked while ringing must not linger and strike after the next call.
    a = logged_in(0)
    miss(a, "call-1", 10)
    a.offer("call-2", t(40))
    a.pause(t(45), "lunch", "1001")
    a.missed_offer(t(60), MAX_MISSED)
    assert (a.state, a.after_call) == (S.PAUSED, None)
    a.resume(t(3600), "1001")
    a.offer("call-3", t(3610))
    a.answered(t(3612))
    assert a.call_ended(t(3700), wrap_up=0).state is S.AVAILABLE


# --- the caller left while the phone rang -----------------------------------------------------

def test_cancelled_is_not_a_miss_and_keeps_the_place_among_the_longest_idle():
    a = logged_in(0)
    miss(a, "call-1", 10)  # idle since 30, one miss
    a.offer("call-2", t(100))
    assert a.cancelled(t(105)) == Change("1001", t(105), S.AVAILABLE, "", "system")
    assert (a.state, a.missed, a.call_id, a.idle_since) == (S.AVAILABLE, 1, None, t(30))
    assert a.since == t(105)


def test_cancelled_applies_a_deferred_request():
    a = ringing(10)
    a.pause(t(12), "lunch", "sup")
    assert a.cancelled(t(15)) == Change("1001", t(15), S.PAUSED, "lunch", "sup")


# --- topics -----------------------------------------------------------------------------------

def test_serves_its_topics_only():
    a = agent({"alpha": 0, "beta": 2})
    assert (a.serves("alpha"), a.serves("beta"), a.serves("gamma")) == (True, True, False)


def test_an_unreachable_phone_pauses_the_agent_without_a_missed_call():
    a = ringing(10)
    change = a.unreachable(t(11), "Allocation failed")
    assert (change.state, change.by) == (S.PAUSED, "system")
    assert change.reason == "phone unreachable: Allocation failed"
    assert a.missed == 0 and a.call_id is None
