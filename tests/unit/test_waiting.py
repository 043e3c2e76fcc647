"""A caller's stay in a line, as the pure state machine decides it (queue_manager.waiting), on a
virtual clock: entry rules, timers, messages and announcements, keys, offers and rings."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest

from ivr.schema import Destination, QueueTopic
from queue_manager.waiting import (
    EMPTY_CHECK,
    CallbackResult,
    Command,
    Entered,
    Gone,
    Held,
    Join,
    Key,
    Leave,
    Line,
    Notice,
    Offered,
    Play,
    Played,
    Refuse,
    Ring,
    RingResult,
    Stay,
    Stop,
    StoreCallback,
    Talk,
    Tick,
    WakeAt,
)

TODAY = date(2026, 12, 1)
STAFFED = Line(logged_in=1, serving=1, free=0, position=1)
NOBODY = Line(logged_in=0)
SORRY = Destination(info="sorry")
ELSEWHERE = Destination(queue="alpha")


def topic(**rules: Any) -> QueueTopic:
    return QueueTopic.model_validate({"name": "Omega", **rules})


def held(settings: QueueTopic, at: float = 100.0, *, logged_in: int = 1, waiting: int = 0,
         rules_on_entry: bool = True, resuming: bool = False, waited: float = 0.0,
         first_message: int = 0) -> tuple[Stay, list[Command]]:
    """A stay that joined the line at `at`: the commands after `Held`."""
    stay = Stay("omega", settings)
    assert stay.handle(Entered(logged_in, waiting, rules_on_entry, resuming)) == [
        Join(rotate=bool(settings.messages and settings.messages.order == "rotate"))]
    return stay, stay.handle(Held(at, waited, first_message))


def tick(stay: Stay, now: float, line: Line = STAFFED, today: date = TODAY) -> list[Command]:
    return stay.handle(Tick(now, today, line))


MESSAGES = {"every": 30, "first_after": 10, "items": [{"prompt": "m1"}, {"prompt": "m2"}]}
ANNOUNCE = {"every": 60, "first_after": 0, "handle_time": 120}


# --- entry ---------------------------------------------------------------------------------

def test_nobody_logged_in_on_entry_refuses_the_caller():
    stay = Stay("omega", topic(no_agents={"info": "sorry"}))
    assert stay.handle(Entered(logged_in=0, waiting=0)) == [
        Refuse("JOINEMPTY", "no_agents", SORRY)]
    assert stay.over
    assert stay.handle(Held(0.0)) == []  # nothing more happens to a refused caller


def test_paused_agents_count_as_logged_in_and_no_rule_means_waiting_anyway():
    assert Stay("omega", topic(no_agents={"info": "sorry"})).handle(Entered(1, 0)) == [
        Join(rotate=False)]
    assert Stay("omega", topic()).handle(Entered(0, 0)) == [Join(rotate=False)]


def test_a_full_line_refuses_one_caller_more():
    settings = topic(max_callers={"callers": 2, "then": {"info": "full"}})
    assert Stay("omega", settings).handle(Entered(1, waiting=1)) == [Join(rotate=False)]
    assert Stay("omega", settings).handle(Entered(1, waiting=2)) == [
        Refuse("FULL", "queue_full", Destination(info="full"))]
    assert Stay("omega", settings).handle(Entered(1, waiting=7)) == [
        Refuse("FULL", "queue_full", Destination(info="full"))]


def test_no_agents_is_checked_before_a_full_line():
    settings = topic(no_agents={"info": "sorry"}, max_callers={"callers": 1, "then": {"info": "x"}})
    assert Stay("omega", settings).handle(Entered(0, waiting=5))[0].log_event == "JOINEMPTY"


@pytest.mark.parametrize("logged_in, waiting", [(0, 0), (0, 9), (1, 9)])
def test_without_rules_on_entry_the_caller_joins_whatever_the_line(logged_in, waiting):
    """Moved too often, or resumed after a restart: they wait where they are."""
    settings = topic(no_agents={"info": "sorry"}, max_callers={"callers": 1, "then": SORRY})
    stay = Stay("omega", settings)
    assert stay.handle(Entered(logged_in, waiting, rules_on_entry=False)) == [Join(rotate=False)]


def test_a_rotating_message_list_asks_where_the_caller_starts():
    rotating = topic(messages={**MESSAGES, "order": "rotate"})
    assert Stay("omega", rotating).handle(Entered(1, 0)) == [Join(rotate=True)]
    stay, _ = held(rotating, at=0, first_message=1)
    assert tick(stay, 10) == [Play(message="m2"), WakeAt(None)]


# --- timers: maximum wait, nobody logged in ------------------------------------------------

def test_only_music_means_no_timer():
    _, commands = held(topic())
    assert commands == [WakeAt(None)]


def test_max_wait_leaves_exactly_at_the_deadline():
    stay, commands = held(topic(max_wait={"seconds": 30, "then": {"queue": "alpha"}}), at=100)
    assert commands == [WakeAt(130)]
    assert tick(stay, 129.99) == [WakeAt(130)]  # a timer a little early: not yet
    assert tick(stay, 130) == [Leave("EXITWITHTIMEOUT", "max_wait", ELSEWHERE)]
    assert stay.over
    assert tick(stay, 131) == []


def test_a_resumed_caller_has_only_the_rest_of_the_max_wait():
    settings = topic(max_wait={"seconds": 30, "then": {"queue": "alpha"}})
    stay, commands = held(settings, at=100, rules_on_entry=False, resuming=True, waited=20)
    assert commands == [WakeAt(110)]
    assert tick(stay, 110) == [Leave("EXITWITHTIMEOUT", "max_wait", ELSEWHERE)]


def test_a_resumed_caller_past_their_max_wait_leaves_at_the_first_tick():
    settings = topic(max_wait={"seconds": 30, "then": {"queue": "alpha"}})
    stay, commands = held(settings, at=100, rules_on_entry=False, resuming=True, waited=45)
    assert commands == [WakeAt(85)]
    assert tick(stay, 100) == [Leave("EXITWITHTIMEOUT", "max_wait", ELSEWHERE)]


def test_a_moved_caller_gets_the_whole_max_wait_of_the_new_line():
    """Time waited before the move counts for their place, not for the new line's max wait."""
    settings = topic(max_wait={"seconds": 30, "then": {"queue": "alpha"}})
    _, commands = held(settings, at=100, rules_on_entry=False, waited=45)
    assert commands == [WakeAt(130)]


def test_nobody_logged_in_any_more_is_checked_every_few_seconds():
    stay, commands = held(topic(no_agents={"info": "sorry"}), at=100)
    assert commands == [WakeAt(100 + EMPTY_CHECK)]
    assert tick(stay, 105) == [WakeAt(110)]
    assert tick(stay, 110) == [WakeAt(115)]
    assert tick(stay, 115, NOBODY) == [Leave("EXITEMPTY", "no_agents", SORRY)]


def test_the_max_wait_wins_over_nobody_logged_in_at_the_same_tick():
    settings = topic(no_agents={"info": "sorry"},
                     max_wait={"seconds": 5, "then": {"queue": "alpha"}})
    stay, commands = held(settings, at=0)
    assert commands == [WakeAt(5)]
    assert tick(stay, 5, NOBODY) == [Leave("EXITWITHTIMEOUT", "max_wait", ELSEWHERE)]


def test_without_rules_on_entry_the_periodic_check_still_applies():
    stay, _ = held(topic(no_agents={"info": "sorry"}), at=0, logged_in=0, rules_on_entry=False)
    assert tick(stay, 5, NOBODY) == [Leave("EXITEMPTY", "no_agents", SORRY)]


def test_nothing_is_checked_while_an_agent_rings_then_at_the_next_tick():
    settings = topic(no_agents={"info": "sorry"}, max_wait={"seconds": 8, "then": SORRY})
    stay, _ = held(settings, at=0)
    assert stay.handle(Offered(1, "1003", "omega", offered_to="1003")) == [
        Ring("1003"), WakeAt(None)]
    assert tick(stay, 5, NOBODY) == []  # ringing: a stray timer changes nothing
    assert tick(stay, 9, NOBODY) == []
    assert stay.handle(RingResult(20, "missed")) == [WakeAt(8)]  # overdue: at once
    assert tick(stay, 20, NOBODY) == [Leave("EXITWITHTIMEOUT", "max_wait", SORRY)]


def test_after_a_missed_ring_the_no_agent_check_starts_again():
    stay, _ = held(topic(no_agents={"info": "sorry"}), at=0)
    stay.handle(Offered(1, "1003", "omega", offered_to="1003"))
    assert stay.handle(RingResult(16, "missed")) == [WakeAt(16 + EMPTY_CHECK)]
    assert tick(stay, 21, NOBODY) == [Leave("EXITEMPTY", "no_agents", SORRY)]


# --- messages and announcements -------------------------------------------------------------

def test_messages_in_order_each_every_interval_after_the_last_ended():
    stay, commands = held(topic(messages=MESSAGES), at=0)
    assert commands == [WakeAt(10)]
    assert tick(stay, 10) == [Play(message="m1"), WakeAt(None)]
    assert stay.handle(Played(14)) == [WakeAt(44)]
    assert tick(stay, 44) == [Play(message="m2"), WakeAt(None)]
    assert stay.handle(Played(50)) == [WakeAt(80)]
    assert tick(stay, 80) == [Play(message="m1"), WakeAt(None)]


def test_a_message_out_of_its_dates_is_never_played():
    settings = topic(messages={**MESSAGES, "items": [
        {"prompt": "old", "valid_until": "2026-11-30"}, {"prompt": "now"}]})
    stay, _ = held(settings, at=0)
    assert tick(stay, 10) == [Play(message="now"), WakeAt(None)]
    stay.handle(Played(12))
    assert tick(stay, 42) == [Play(message="now"), WakeAt(None)]


def test_no_valid_message_today_means_music_and_a_look_later():
    settings = topic(messages={**MESSAGES, "items": [
        {"prompt": "old", "valid_until": "2026-11-30"}]})
    stay, _ = held(settings, at=0)
    assert tick(stay, 10) == [WakeAt(40)]


def test_nothing_is_checked_while_a_message_plays():
    settings = topic(messages=MESSAGES, no_agents={"info": "sorry"},
                     max_wait={"seconds": 12, "then": SORRY})
    stay, commands = held(settings, at=0)
    assert commands == [WakeAt(5)]
    assert tick(stay, 5) == [WakeAt(10)]
    assert tick(stay, 10) == [Play(message="m1"), WakeAt(None)]
    assert tick(stay, 12, NOBODY) == []
    assert stay.handle(Played(16)) == [WakeAt(12)]  # the max wait passed meanwhile
    assert tick(stay, 16) == [Leave("EXITWITHTIMEOUT", "max_wait", SORRY)]


def test_position_and_wait_on_entry_then_every_interval():
    settings = topic(announce=ANNOUNCE)
    stay, commands = held(settings, at=0)
    assert commands == [WakeAt(0)]
    # one agent serving, none free, 120 s per call: the first waits 120 s, the third 360 s
    assert tick(stay, 0, Line(1, serving=1, free=0, position=1)) == [
        Play(position=1, wait=120), WakeAt(None)]
    assert stay.handle(Played(6)) == [WakeAt(66)]
    assert tick(stay, 66, Line(1, serving=1, free=0, position=3)) == [
        Play(position=3, wait=360), WakeAt(None)]


def test_recent_handle_times_replace_the_configured_one():
    stay, _ = held(topic(announce=ANNOUNCE), at=0)
    assert tick(stay, 0, Line(1, serving=2, free=0, position=2, handle_time=300)) == [
        Play(position=2, wait=300), WakeAt(None)]


def test_a_wait_under_a_minute_or_unknown_is_not_said():
    stay, _ = held(topic(announce=ANNOUNCE), at=0)
    assert tick(stay, 0, Line(1, serving=1, free=1, position=1)) == [
        Play(position=1), WakeAt(None)]  # a free agent: no wait at all
    stay, _ = held(topic(announce=ANNOUNCE), at=0)
    assert tick(stay, 0, Line(1, serving=0, free=0, position=2)) == [
        Play(position=2), WakeAt(None)]  # nobody serving: no honest estimate
    stay, _ = held(topic(announce=ANNOUNCE), at=0)
    assert tick(stay, 0, Line(1, serving=4, free=0, position=1)) == [
        Play(position=1), WakeAt(None)]  # 30 s


def test_a_wait_only_announcement_with_nothing_to_say_plays_nothing():
    stay, _ = held(topic(announce={**ANNOUNCE, "position": False}), at=0)
    assert tick(stay, 0, Line(1, serving=1, free=1)) == [WakeAt(60)]  # as if played at 0
    assert tick(stay, 60, Line(1, serving=1, free=0)) == [Play(wait=120), WakeAt(None)]


def test_announcement_and_message_due_together_play_as_one():
    settings = topic(announce=ANNOUNCE, messages={**MESSAGES, "first_after": 0})
    stay, _ = held(settings, at=0)
    assert tick(stay, 0) == [Play(position=1, wait=120, message="m1"), WakeAt(None)]
    assert stay.handle(Played(8)) == [WakeAt(38)]  # the message's interval first


# --- keys --------------------------------------------------------------------------------------

KEYS = {"leave_key": {"key": "0", "then": {"info": "bye"}},
        "callback_key": {"key": "5", "confirm": "ok", "unavailable": "cannot"}}


def test_the_leave_key_takes_the_caller_out():
    stay, _ = held(topic(**KEYS), at=0)
    assert stay.handle(Key(3, "0")) == [
        Leave("EXITWITHKEY", "left_queue", Destination(info="bye"), key="0")]
    assert stay.over


def test_other_keys_are_ignored_and_keep_the_timers():
    stay, _ = held(topic(messages=MESSAGES, **KEYS), at=0)
    assert stay.handle(Key(3, "1")) == []
    assert stay.handle(Key(3, "")) == []
    assert stay.handle(Key(3, "#")) == []
    assert tick(stay, 10) == [Play(message="m1"), WakeAt(None)]
    assert stay.handle(Key(11, "9")) == []  # does not cut the message either
    assert not stay.over


def test_without_keys_configured_no_key_does_anything():
    stay, _ = held(topic(), at=0)
    assert stay.handle(Key(1, "0")) == []
    assert stay.handle(Key(1, "5")) == []


def test_a_key_cuts_a_message_short_then_is_acted_on():
    stay, _ = held(topic(messages=MESSAGES, **KEYS), at=0)
    tick(stay, 10)
    assert stay.handle(Key(12, "0")) == [
        Stop(), Leave("EXITWITHKEY", "left_queue", Destination(info="bye"), key="0")]


def test_the_callback_key_accepted_hands_the_place_to_a_recall():
    stay, _ = held(topic(**KEYS), at=0)
    assert stay.handle(Key(3, "5")) == [StoreCallback("5"), WakeAt(None)]
    assert stay.handle(Key(4, "0")) == []  # storing: nothing else is taken meanwhile
    assert stay.handle(CallbackResult(4, stored=True)) == [
        Leave("EXITWITHKEY", "callback", Destination(info="ok"), key="5")]


def test_the_callback_key_declined_says_why_and_the_caller_keeps_waiting():
    settings = topic(messages=MESSAGES, max_wait={"seconds": 100, "then": SORRY}, **KEYS)
    stay, _ = held(settings, at=0)
    assert stay.handle(Key(3, "5")) == [StoreCallback("5"), WakeAt(None)]
    assert stay.handle(CallbackResult(4, stored=False)) == [Notice("cannot"), WakeAt(None)]
    assert tick(stay, 10) == []  # the notice plays: the message waits for it
    assert stay.handle(Played(7)) == [WakeAt(10)]  # the messages' schedule is not moved
    assert tick(stay, 10) == [Play(message="m1"), WakeAt(None)]


def test_a_key_cuts_the_callback_notice_short_and_is_acted_on():
    stay, _ = held(topic(**KEYS), at=0)
    stay.handle(Key(3, "5"))
    stay.handle(CallbackResult(4, stored=False))
    assert stay.handle(Key(5, "5")) == [Stop(), StoreCallback("5"), WakeAt(None)]
    assert stay.handle(CallbackResult(6, stored=False)) == [Notice("cannot"), WakeAt(None)]
    assert stay.handle(Key(7, "0")) == [
        Stop(), Leave("EXITWITHKEY", "left_queue", Destination(info="bye"), key="0")]


def test_the_callback_key_during_a_message_stops_it_and_counts_it_as_played():
    stay, _ = held(topic(messages=MESSAGES, **KEYS), at=0)
    tick(stay, 10)
    assert stay.handle(Key(12, "5")) == [Stop(), StoreCallback("5"), WakeAt(None)]
    assert stay.handle(CallbackResult(13, stored=False)) == [Notice("cannot"), WakeAt(None)]
    assert stay.handle(Played(15)) == [WakeAt(42)]  # 30 s after the message was cut at 12


# --- offers and rings ----------------------------------------------------------------------

def test_an_offer_for_this_stay_rings_the_agent_and_an_answer_ends_the_stay():
    stay, _ = held(topic(), at=0)
    assert stay.handle(Offered(1, "1003", "omega", offered_to="1003")) == [
        Ring("1003"), WakeAt(None)]
    assert stay.handle(RingResult(5, "answered")) == [Talk()]
    assert stay.over


@pytest.mark.parametrize("offer", [
    Offered(1, "1003", "alpha", offered_to="1003"),  # made while the caller waited in alpha
    Offered(1, "1003", "omega", offered_to=None),  # withdrawn (the caller left the line)
    Offered(1, "1003", "omega", offered_to="1004"),  # the desk offered them to another since
])
def test_an_offer_from_a_previous_stay_or_withdrawn_is_ignored(offer):
    stay, _ = held(topic(messages=MESSAGES), at=0)
    assert stay.handle(offer) == []
    assert tick(stay, 10) == [Play(message="m1"), WakeAt(None)]
    # during a message it still cuts it short (as any offer does), then nothing
    assert stay.handle(replace(offer, now=11)) == [Stop(), WakeAt(41)]


def test_an_offer_cuts_a_message_short_and_the_agent_rings():
    stay, _ = held(topic(messages=MESSAGES), at=0)
    tick(stay, 10)
    assert stay.handle(Offered(11, "1003", "omega", offered_to="1003")) == [
        Stop(), Ring("1003"), WakeAt(None)]
    assert stay.handle(RingResult(26, "missed")) == [WakeAt(41)]


def test_the_leave_key_while_the_agent_rang():
    stay, _ = held(topic(**KEYS), at=0)
    stay.handle(Offered(1, "1003", "omega", offered_to="1003"))
    assert stay.handle(Key(2, "5")) == []  # the ring is on: keys are the ring's business
    assert stay.handle(Offered(2, "1004", "omega", offered_to="1004")) == []
    assert stay.handle(RingResult(3, "left")) == [
        Leave("EXITWITHKEY", "left_queue", Destination(info="bye"), key="0")]


def test_a_missed_ring_puts_the_caller_back_to_waiting_and_a_new_offer_rings_again():
    stay, _ = held(topic(messages=MESSAGES), at=0)
    stay.handle(Offered(1, "1003", "omega", offered_to="1003"))
    assert stay.handle(RingResult(16, "missed")) == [WakeAt(10)]  # overdue: at once
    assert stay.handle(Offered(17, "1004", "omega", offered_to="1004")) == [
        Ring("1004"), WakeAt(None)]


# --- the end ---------------------------------------------------------------------------------

def test_a_caller_gone_ends_the_stay_whatever_it_was_doing():
    for prepare in ([], [Tick(10, TODAY, STAFFED)], [Offered(1, "1003", "omega", "1003")]):
        stay, _ = held(topic(messages=MESSAGES), at=0)
        for event in prepare:
            stay.handle(event)
        assert stay.handle(Gone(12)) == []
        assert stay.over
        assert stay.handle(Played(13)) == []
        assert stay.handle(RingResult(13, "answered")) == []
        assert stay.handle(Key(13, "0")) == []


def test_a_whole_stay_on_a_virtual_clock():
    """Announcement on entry, messages, an offer missed, later an offer answered: what a caller
    of omega hears, in order, with one agent busy (each playback takes 4 s, each ring 15 s)."""
    settings = topic(announce=ANNOUNCE, messages=MESSAGES,
                     max_wait={"seconds": 600, "then": {"queue": "alpha"}})
    stay, commands = held(settings, at=0)
    heard: list[Command] = []
    now, wake = 0.0, commands[-1].at
    script = {50.0: Offered(50, "1003", "omega", "1003"), 120.0: Offered(120, "1003", "omega",
                                                                           "1003")}
    while not stay.over and now < 600:
        now = max(now, wake) if wake is not None else now
        offer = next((o for at, o in script.items() if at <= now), None)
        if offer:
            del script[offer.now]
            out = stay.handle(offer)
        else:
            out = tick(stay, now)
        heard += [c for c in out if not isinstance(c, WakeAt)]
        if out and isinstance(out[0], Play):
            now += 4
            out = stay.handle(Played(now))
        elif any(isinstance(c, Ring) for c in out):
            now += 15
            out = stay.handle(RingResult(now, "missed" if now < 100 else "answered"))
            heard += [c for c in out if not isinstance(c, WakeAt)]
        wake = next((c.at for c in out if isinstance(c, WakeAt)), None)
    # after the missed ring (64-79) the overdue announcement and message play together
    assert heard == [Play(1, 120), Play(message="m1"), Play(message="m2"), Ring("1003"),
                     Play(1, 120, "m1"), Play(message="m2"), Ring("1003"), Talk()]
