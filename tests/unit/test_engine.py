"""The call-flow engine against a scripted caller: what the caller hears and in which order, which
branch a key takes, and what the call's journal records."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from ivr.clock import FixedClock
from ivr.engine import CallerHungUp, FlowResult, Journal, Played, run_flow
from ivr.hours import ALWAYS_OPEN, LineStatus
from ivr.schema import Flow

NOW = datetime(2026, 12, 15, 10, 0, tzinfo=ZoneInfo("Europe/Rome"))  # a Tuesday
TODAY = NOW.date()


# --- the caller's script ----------------------------------------------------------------------

def during(prompt: str, key: str) -> tuple:
    """The caller presses `key` while `prompt` plays."""
    return ("during", prompt, key)


def press(key: str) -> tuple:
    """The caller presses `key` when the engine waits for one."""
    return ("key", key)


def hangup_during(prompt: str) -> tuple:
    return ("hangup", prompt)


NO_KEY = ("timeout",)  # the engine waits, the caller presses nothing
HANGUP_WAITING = ("hangup", None)  # the caller hangs up while the engine waits for a key


class FakeCall:
    """A CallPort driven by a script. A key pressed while a prompt plays stops the playback only if
    the playback accepts it (`interrupt`); otherwise it is lost, as on a real non-interruptible
    playback. Events are consumed in order; the test checks the whole script was used."""

    def __init__(self, script: Sequence[tuple]):
        self.script = list(script)
        self.heard: list[str] = []  # every prompt that started playing, in order
        self.plays: list[tuple[list[str], str]] = []  # each play request: prompts, interrupt
        self.ignored: list[str] = []  # keys pressed during a playback that did not accept them
        self.waits: list[float] = []  # the timeout of each wait for a key

    def _event_for(self, prompt: str) -> tuple | None:
        if self.script and self.script[0][:2] in (("during", prompt), ("hangup", prompt)):
            return self.script.pop(0)
        return None

    async def play(self, prompts: Sequence[str], interrupt: str) -> Played:
        self.plays.append((list(prompts), interrupt))
        for completed, prompt in enumerate(prompts):
            self.heard.append(prompt)
            while event := self._event_for(prompt):
                if event[0] == "hangup":
                    raise CallerHungUp(completed)
                key = event[2]
                if interrupt == "any" or (interrupt and key in interrupt):
                    return Played(key, completed)
                self.ignored.append(key)
        return Played(None, len(prompts))

    async def wait_key(self, timeout: float) -> str | None:
        self.waits.append(timeout)
        assert self.script, "the engine waits for a key but the caller's script is over"
        event = self.script.pop(0)
        if event == HANGUP_WAITING:
            raise CallerHungUp()
        assert event[0] in ("key", "timeout"), f"the engine waits for a key; the script has {event}"
        return event[1] if event[0] == "key" else None


async def call(flow: Flow, *script: tuple, status: LineStatus = ALWAYS_OPEN,
               today: date = TODAY) -> tuple[FlowResult, FakeCall, Journal]:
    fake, journal = FakeCall(script), Journal(FixedClock(NOW).now)
    result = await run_flow(flow, fake, journal, status=status, today=today)
    assert not fake.script, f"the flow ended before the caller's script: {fake.script}"
    return result, fake, journal


async def call_until_hangup(flow: Flow, *script: tuple) -> tuple[FakeCall, Journal]:
    fake, journal = FakeCall(script), Journal(FixedClock(NOW).now)
    with pytest.raises(CallerHungUp):
        await run_flow(flow, fake, journal, status=ALWAYS_OPEN, today=TODAY)
    return fake, journal


def trail(journal: Journal, *kinds: str) -> list[str]:
    """The journal as short lines ("announcement welcome skipped", "key main 1 SUAP"), optionally
    only the steps of the given kinds."""
    return [
        " ".join(str(x) for x in (s.kind, s.node, s.key, s.prompt, s.detail) if x)
        for s in journal.steps if not kinds or s.kind in kinds
    ]


# --- flows ------------------------------------------------------------------------------------

TREE = {
    "number": "0612345001",
    "name": "Test line",
    "goodbye_prompt": "goodbye",
    "invalid_prompt": "invalid_key",
    "timeout_prompt": "no_key",
    "operator": "generale",
    "menu": "main",
    "menus": {
        "main": {"prompt": "menu_main", "options": {
            "1": {"menu": "suap", "label": "SUAP"},
            "2": {"queue": "tributi", "label": "Tributi"},
            "3": {"info": "info_orari", "label": "Orari"},
            "4": {"info": "info_pec", "then": "goodbye", "label": "PEC"},
            "0": {"do": "operator", "label": "Operatore"},
            "8": {"do": "hangup"},
            "9": {"do": "repeat"},
            "*": {"do": "back"},
        }},
        "suap": {"prompt": "menu_suap", "options": {
            "1": {"queue": "suap", "label": "Pratiche in corso"},
            "2": {"menu": "forms", "label": "Modulistica"},
            "*": {"do": "back"},
        }},
        "forms": {"prompt": "menu_forms", "options": {
            "1": {"info": "info_forms"},
            "*": {"do": "back"},
        }},
    },
}


def tree(main: dict | None = None, **fields) -> Flow:
    """The menu tree above, with some fields of the flow (or of its main menu) changed."""
    spec = copy.deepcopy(TREE)
    spec["menus"]["main"].update(main or {})
    spec.update(fields)
    return Flow.model_validate({k: v for k, v in spec.items() if v is not None})


def ann(prompt: str, **fields) -> dict:
    return {"prompt": prompt, **fields}


def announcing(*announcements: dict, **fields) -> Flow:
    """The tree, preceded by these announcements."""
    return tree(announcements=list(announcements), **fields)


CHOOSE_TRIBUTI = press("2")  # ends a call in the main menu: queue tributi
MENU = "menu_main"


# --- announcements ----------------------------------------------------------------------------

async def test_announcements_play_in_order_then_the_menu():
    flow = announcing(ann("cost_notice", when_closed=True), ann("welcome", skippable=True),
                      ann("promo", skippable=True), ann("privacy", skippable=True))
    result, fake, journal = await call(flow, CHOOSE_TRIBUTI)
    assert fake.heard == ["cost_notice", "welcome", "promo", "privacy", MENU]
    assert trail(journal, "announcement") == [
        "announcement cost_notice full", "announcement welcome full",
        "announcement promo full", "announcement privacy full",
    ]
    assert result == FlowResult("queue", "tributi", "Tributi")


async def test_consecutive_unskippable_announcements_go_out_in_one_playback():
    flow = announcing(ann("legal_1"), ann("legal_2"), ann("welcome", skippable=True),
                      ann("privacy", skippable=True), ann("notice_1"), ann("notice_2"))
    _, fake, _ = await call(flow, CHOOSE_TRIBUTI)
    assert fake.plays == [
        (["legal_1", "legal_2"], ""),
        (["welcome"], "#"),
        (["privacy"], "#"),
        (["notice_1", "notice_2"], ""),
        ([MENU], "any"),
    ]


@pytest.mark.parametrize("skip_key, key, skipped", [
    ("#", "#", True),
    ("#", "1", False),
    ("#", "*", False),
    ("*", "*", True),
    ("*", "#", False),
    ("any", "1", True),
    ("any", "#", True),
])
async def test_skip_key_skips_only_the_announcement_playing(skip_key, key, skipped):
    flow = announcing(ann("welcome", skippable=True), ann("privacy", skippable=True),
                      skip_key=skip_key)
    result, fake, journal = await call(flow, during("welcome", key), CHOOSE_TRIBUTI)
    assert trail(journal, "announcement") == [
        f"announcement welcome {'skipped' if skipped else 'full'}",
        "announcement privacy full",  # the next one still plays
    ]
    assert fake.heard == ["welcome", "privacy", MENU]
    assert fake.ignored == ([] if skipped else [key])
    # The key only skipped (or was lost): it did not choose anything in the menu.
    assert len(fake.waits) == 1 and result.topic == "tributi"


async def test_key_during_an_unskippable_announcement_is_lost():
    flow = announcing(ann("cost_notice"), ann("welcome", skippable=True), skip_key="any")
    _, fake, journal = await call(flow, during("cost_notice", "#"), CHOOSE_TRIBUTI)
    assert fake.ignored == ["#"]
    assert trail(journal, "announcement") == [
        "announcement cost_notice full", "announcement welcome full"]


PROMO = ann("promo", skippable=True, valid_from="2026-09-01", valid_until="2027-03-31")


@pytest.mark.parametrize("today, played", [
    (date(2026, 8, 31), False),
    (date(2026, 9, 1), True),  # first valid day
    (date(2027, 3, 31), True),  # last valid day
    (date(2027, 4, 1), False),
])
async def test_dated_announcement_plays_only_between_its_dates(today, played):
    flow = announcing(ann("cost_notice"), PROMO, ann("privacy", skippable=True))
    _, fake, journal = await call(flow, CHOOSE_TRIBUTI, today=today)
    assert ("promo" in fake.heard) is played
    assert trail(journal, "announcement") == [
        "announcement cost_notice full",
        f"announcement promo {'full' if played else 'out_of_dates'}",
        "announcement privacy full",
    ]


async def test_announcement_with_only_an_end_date_stops_after_it():
    flow = announcing(ann("old_news", valid_until="2026-12-14"), ann("welcome"))
    _, fake, journal = await call(flow, CHOOSE_TRIBUTI)
    assert fake.heard == ["welcome", MENU]
    assert "announcement old_news out_of_dates" in trail(journal)


# --- closed line ------------------------------------------------------------------------------

CLOSED_FLOW = {"closed_prompt": "closed_hours", "emergency_prompt": "closed_emergency"}
COST, WELCOME = ann("cost_notice", when_closed=True), ann("welcome", skippable=True)


async def test_closed_line_plays_only_when_closed_announcements_then_closed_prompt():
    flow = announcing(COST, WELCOME, ann("privacy"), **CLOSED_FLOW)
    result, fake, journal = await call(flow, during("closed_hours", "0"),
                                       status=LineStatus(False, "hours"))
    assert result == FlowResult("closed")
    assert fake.heard == ["cost_notice", "closed_hours"]
    assert fake.ignored == ["0"]  # the closed message cannot be cut short, nor leads anywhere
    assert trail(journal) == ["announcement cost_notice full", "closed hours"]


async def test_closed_for_a_holiday_records_its_name_and_plays_the_closed_prompt():
    flow = announcing(COST, **CLOSED_FLOW)
    _, fake, journal = await call(flow, status=LineStatus(False, "holiday", "Natale"))
    assert fake.heard == ["cost_notice", "closed_hours"]
    assert "closed holiday: Natale" in trail(journal)


async def test_forced_closure_plays_the_emergency_prompt():
    flow = announcing(COST, WELCOME, **CLOSED_FLOW)
    result, fake, journal = await call(flow, status=LineStatus(False, "override", "guasto"))
    assert result.outcome == "closed"
    assert fake.heard == ["cost_notice", "closed_emergency"]
    assert "closed override: guasto" in trail(journal)


async def test_forced_closure_without_emergency_prompt_plays_the_closed_prompt():
    flow = announcing(COST, closed_prompt="closed_hours")
    _, fake, _ = await call(flow, status=LineStatus(False, "override", "guasto"))
    assert fake.heard == ["cost_notice", "closed_hours"]


async def test_closed_line_without_menu_does_not_queue():
    flow = announcing(COST, menu=None, menus={}, queue="tecnico", closed_prompt="closed_hours")
    result, fake, _ = await call(flow, status=LineStatus(False, "hours"))
    assert result == FlowResult("closed")
    assert fake.heard == ["cost_notice", "closed_hours"]


async def test_out_of_dates_when_closed_announcement_is_not_played_on_a_closed_line():
    flow = announcing(ann("strike_notice", when_closed=True, valid_until="2026-12-01"), COST,
                      **CLOSED_FLOW)
    _, fake, _ = await call(flow, status=LineStatus(False, "hours"))
    assert fake.heard == ["cost_notice", "closed_hours"]


# --- menus: keys, barge-in, retries -----------------------------------------------------------

async def test_key_during_menu_prompt_chooses_at_once():
    result, fake, journal = await call(tree(), during(MENU, "2"))
    assert result == FlowResult("queue", "tributi", "Tributi")
    assert fake.plays == [([MENU], "any")]
    assert fake.waits == []  # no wait after the prompt: the key already chose
    assert trail(journal) == ["menu main menu_main", "key main 2 Tributi", "queue main tributi"]


async def test_without_barge_in_a_key_during_the_prompt_is_ignored():
    result, fake, _ = await call(tree(main={"barge_in": False}), during(MENU, "2"), press("0"))
    assert fake.plays == [([MENU], "")]
    assert fake.ignored == ["2"]
    assert result == FlowResult("queue", "generale", "Operatore")  # the key pressed afterwards


async def test_timeout_plays_timeout_prompt_then_the_menu_again():
    result, fake, journal = await call(tree(main={"timeout": 8}), NO_KEY, CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "no_key", MENU]
    assert fake.waits == [8.0, 8.0]
    assert trail(journal, "menu", "timeout", "key") == [
        "menu main menu_main", "timeout main", "menu main menu_main", "key main 2 Tributi"]
    assert result.topic == "tributi"


async def test_invalid_key_plays_invalid_prompt_then_the_menu_again():
    result, fake, journal = await call(tree(), press("7"), CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "invalid_key", MENU]
    assert trail(journal, "menu", "invalid", "key") == [
        "menu main menu_main", "invalid main 7", "menu main menu_main", "key main 2 Tributi"]
    assert result.topic == "tributi"


async def test_menu_error_prompts_take_precedence_over_the_flow_ones():
    flow = tree(main={"invalid_prompt": "invalid_main", "timeout_prompt": "no_key_main"})
    _, fake, _ = await call(flow, press("7"), NO_KEY, CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "invalid_main", MENU, "no_key_main", MENU]


async def test_without_error_prompts_the_menu_is_just_repeated():
    _, fake, journal = await call(tree(invalid_prompt=None, timeout_prompt=None),
                                  press("7"), NO_KEY, CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, MENU, MENU]
    assert trail(journal, "invalid", "timeout") == ["invalid main 7", "timeout main"]


async def test_key_during_the_invalid_message_is_the_next_choice():
    result, fake, journal = await call(tree(), press("7"), during("invalid_key", "2"))
    assert fake.heard == [MENU, "invalid_key"]  # the menu is not played again
    assert fake.plays[-1] == (["invalid_key"], "any")
    assert result == FlowResult("queue", "tributi", "Tributi")
    assert trail(journal, "key") == ["key main 2 Tributi"]


async def test_key_during_the_timeout_message_is_the_next_choice():
    result, fake, _ = await call(tree(), NO_KEY, during("no_key", "1"), during("menu_suap", "1"))
    assert fake.heard == [MENU, "no_key", "menu_suap"]
    assert result == FlowResult("queue", "suap", "Pratiche in corso")


async def test_wrong_key_during_the_invalid_message_counts_as_another_failure():
    flow = tree(main={"max_retries": 2, "fallback": {"queue": "generale"}})
    result, fake, journal = await call(flow, press("7"), during("invalid_key", "6"))
    assert trail(journal, "invalid", "fallback") == [
        "invalid main 7", "invalid main 6", "fallback main queue:generale"]
    # The last failure is explained too (not interruptible) before the fallback.
    assert fake.heard == [MENU, "invalid_key", "invalid_key"]
    assert fake.plays[-1] == (["invalid_key"], "")
    assert result == FlowResult("queue", "generale", None)


async def test_timeouts_and_invalid_keys_count_together_towards_max_retries():
    flow = tree(main={"max_retries": 3, "fallback": {"queue": "generale"}})
    result, fake, journal = await call(flow, NO_KEY, press("7"), NO_KEY)
    # The third failure is explained, then leads to the fallback.
    assert fake.heard == [MENU, "no_key", MENU, "invalid_key", MENU, "no_key"]
    assert trail(journal, "timeout", "invalid", "fallback", "queue") == [
        "timeout main", "invalid main 7", "timeout main",
        "fallback main queue:generale", "queue main generale"]
    assert result == FlowResult("queue", "generale", None)


@pytest.mark.parametrize("menu_fallback, flow_fallback, chosen, result, last_heard", [
    ({"queue": "tributi"}, {"do": "operator"}, "queue:tributi", FlowResult("queue", "tributi"),
     "no_key"),
    (None, {"do": "operator"}, "operator", FlowResult("queue", "generale"), "no_key"),
    (None, None, "hangup", FlowResult("goodbye"), "goodbye"),  # default: goodbye and hang up
])
async def test_fallback_is_the_menus_else_the_flows_else_hangup(
        menu_fallback, flow_fallback, chosen, result, last_heard):
    flow = tree(main={"max_retries": 1, "fallback": menu_fallback}, fallback=flow_fallback)
    got, fake, journal = await call(flow, NO_KEY)
    assert got == result
    assert fake.heard[-1] == last_heard
    assert trail(journal, "fallback") == [f"fallback main {chosen}"]


async def test_a_chosen_option_resets_the_failure_count():
    flow = tree(main={"max_retries": 2, "fallback": {"queue": "generale"}})
    result, _, journal = await call(flow, press("7"), press("9"), press("7"), CHOOSE_TRIBUTI)
    assert trail(journal, "fallback") == []
    assert result.topic == "tributi"


async def test_fallback_to_a_submenu_then_back_returns_to_the_menu():
    flow = tree(main={"max_retries": 1, "fallback": {"menu": "suap"}})
    result, fake, _ = await call(flow, NO_KEY, press("*"), CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "no_key", "menu_suap", MENU]
    assert result.topic == "tributi"


# --- menus: actions ---------------------------------------------------------------------------

async def test_submenu_and_back():
    result, fake, journal = await call(tree(), press("1"), press("*"), CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "menu_suap", MENU]
    assert journal.path() == ["1 SUAP", "* back", "2 Tributi"]
    assert result.topic == "tributi"


async def test_back_climbs_one_level_at_a_time():
    _, fake, _ = await call(tree(), press("1"), press("2"), press("*"), press("*"),
                            CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "menu_suap", "menu_forms", "menu_suap", MENU]


async def test_back_in_the_first_menu_repeats_it():
    _, fake, journal = await call(tree(), press("*"), CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, MENU]
    assert trail(journal, "menu") == ["menu main menu_main"] * 2


async def test_repeat_plays_the_menu_again():
    _, fake, journal = await call(tree(), press("9"), CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, MENU]
    assert journal.path() == ["9 repeat", "2 Tributi"]


async def test_info_then_back_to_the_same_menu():
    result, fake, journal = await call(tree(), press("3"), CHOOSE_TRIBUTI)
    assert fake.heard == [MENU, "info_orari", MENU]
    assert trail(journal, "key", "info") == [
        "key main 3 Orari", "info main info_orari", "key main 2 Tributi"]
    assert result.topic == "tributi"


async def test_a_key_during_an_info_message_is_the_next_choice_of_its_menu():
    result, fake, journal = await call(tree(), press("3"), during("info_orari", "2"))
    assert fake.heard == [MENU, "info_orari"]  # the menu is not played again
    assert fake.plays[1] == (["info_orari"], "any")
    assert journal.path() == ["3 Orari", "2 Tributi"]
    assert result.topic == "tributi"


async def test_info_cannot_be_cut_in_a_menu_without_barge_in():
    result, fake, _ = await call(tree(main={"barge_in": False}), press("3"),
                                 during("info_orari", "2"), CHOOSE_TRIBUTI)
    assert fake.plays[1] == (["info_orari"], "")
    assert fake.ignored == ["2"]
    assert result.topic == "tributi"


async def test_info_then_goodbye():
    result, fake, journal = await call(tree(), press("4"))
    assert result == FlowResult("goodbye")
    assert fake.heard == [MENU, "info_pec", "goodbye"]
    assert trail(journal)[-3:] == ["key main 4 PEC", "info main info_pec", "goodbye main"]


async def test_queue_leaf_returns_topic_and_label_and_is_journaled():
    result, _, journal = await call(tree(), press("1"), press("1"))
    assert result == FlowResult("queue", "suap", "Pratiche in corso")
    assert trail(journal)[-1] == "queue suap suap"
    assert journal.path() == ["1 SUAP", "1 Pratiche in corso"]


async def test_operator_goes_to_the_flows_operator_topic():
    result, _, journal = await call(tree(), press("0"))
    assert result == FlowResult("queue", "generale", "Operatore")
    assert trail(journal)[-1] == "queue main generale"


async def test_hangup_says_goodbye():
    result, fake, journal = await call(tree(), press("8"))
    assert result == FlowResult("goodbye")
    assert fake.heard == [MENU, "goodbye"]
    assert trail(journal)[-1] == "goodbye main"


async def test_hangup_without_goodbye_prompt_ends_silently():
    result, fake, _ = await call(tree(goodbye_prompt=None), press("8"))
    assert result == FlowResult("goodbye")
    assert fake.heard == [MENU]


async def test_line_without_menu_goes_to_its_queue_after_the_announcements():
    flow = announcing(COST, WELCOME, menu=None, menus={}, queue="tecnico")
    result, fake, journal = await call(flow)
    assert result == FlowResult("queue", "tecnico", None)
    assert fake.heard == ["cost_notice", "welcome"]
    assert fake.waits == []
    assert trail(journal) == [
        "announcement cost_notice full", "announcement welcome full", "queue tecnico"]


async def test_path_shows_the_action_of_options_without_label():
    _, _, journal = await call(tree(), press("1"), press("2"), press("1"), press("*"),
                               press("*"), CHOOSE_TRIBUTI)
    assert journal.path() == ["1 SUAP", "2 Modulistica", "1 info:info_forms", "* back", "* back",
                              "2 Tributi"]


# --- the caller hangs up ----------------------------------------------------------------------

async def test_hangup_mid_announcement_records_what_was_heard():
    flow = announcing(ann("cost_notice"), ann("legal"), ann("welcome", skippable=True))
    fake, journal = await call_until_hangup(flow, hangup_during("legal"))
    assert fake.heard == ["cost_notice", "legal"]
    assert trail(journal) == ["announcement cost_notice full", "announcement legal hangup"]


async def test_hangup_during_the_first_announcement():
    flow = announcing(ann("cost_notice"), ann("legal"))
    _, journal = await call_until_hangup(flow, hangup_during("cost_notice"))
    assert trail(journal) == ["announcement cost_notice hangup"]


async def test_hangup_during_a_skippable_announcement():
    flow = announcing(ann("cost_notice"), WELCOME, ann("privacy", skippable=True))
    _, journal = await call_until_hangup(flow, hangup_during("welcome"))
    assert trail(journal) == ["announcement cost_notice full", "announcement welcome hangup"]


async def test_hangup_in_a_menu_leaves_the_path_so_far():
    _, journal = await call_until_hangup(tree(), press("1"), HANGUP_WAITING)
    assert journal.path() == ["1 SUAP"]
    assert trail(journal)[-1] == "menu suap menu_suap"


# --- the journal ------------------------------------------------------------------------------

async def test_journal_steps_carry_the_clock_time_and_reach_the_listener():
    clock, seen = FixedClock(NOW), []
    journal = Journal(clock.now, listener=seen.append)
    fake = FakeCall([press("9"), CHOOSE_TRIBUTI])
    journal.add("announcement", prompt="x", detail="full")
    clock.advance(30)
    await run_flow(tree(), fake, journal, status=ALWAYS_OPEN, today=TODAY)
    assert seen == journal.steps
    assert journal.steps[0].at == NOW
    assert {s.at for s in journal.steps[1:]} == {clock.now()}
    assert clock.now() != NOW
