"""`centralino simulate` on the example configuration: what it prints, and how the call ends."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from ivr.clock import LOCAL
from ivr.config import CallConfig, load_call_config
from ivr.engine import FlowResult, Journal
from ivr.hours import Override
from ivr.simulate import parse_keys, simulate

ROOT = Path(__file__).resolve().parents[2]
ALWAYS_OPEN_DIR = Path(__file__).parent / "configs" / "always_open"

ASSOC, CITT, REF = "0612345001", "0612345002", "0612345003"
TUESDAY = datetime(2026, 12, 15, 10, 0, tzinfo=LOCAL)
SATURDAY = datetime(2026, 12, 19, 10, 0, tzinfo=LOCAL)
SUNDAY = datetime(2026, 12, 13, 10, 0, tzinfo=LOCAL)
CHRISTMAS = datetime(2026, 12, 25, 10, 0, tzinfo=LOCAL)


@pytest.fixture(scope="module")
def example() -> CallConfig:
    return load_call_config(ROOT / "config", ROOT / "prompts" / "manifest.yaml")


@pytest.fixture(scope="module")
def always_open() -> CallConfig:
    return load_call_config(ALWAYS_OPEN_DIR, ALWAYS_OPEN_DIR / "manifest.yaml")


async def run(config: CallConfig, number: str, keys: str, at: datetime,
              override: Override | None = None) -> tuple[FlowResult | None, list[str], Journal]:
    lines: list[str] = []
    result, journal = await simulate(config, number, parse_keys(keys), at, lines.append, override)
    return result, lines, journal


def heard(lines: list[str]) -> list[str]:
    """The prompt ids played, from lines like "  > cost_notice: Chiamata da ..."."""
    return [line[4:].split(":")[0] for line in lines if line.startswith("  > ")]


def in_order(lines: list[str], *wanted: str) -> bool:
    """`wanted` appear among `lines` in this order (other lines may come between)."""
    rest = iter(lines)
    return all(any(line == w for line in rest) for w in wanted)


ANNOUNCEMENTS = ["cost_notice", "welcome_associazioni", "promo_fascicolo_digitale",
                 "privacy_notice"]


# --- open lines -------------------------------------------------------------------------------

async def test_keys_1_1_on_associazioni_wait_in_queue_suap(example):
    result, lines, journal = await run(example, ASSOC, "1,1", TUESDAY)
    assert lines[0] == ("Associazioni di categoria (0612345001) at Tue 2026-12-15 10:00 CET: "
                        "open (open: 08:30-13:00)")
    assert lines[1] == f"  > cost_notice: {example.prompt_text('cost_notice', 'it')}"
    assert lines[1].startswith("  > cost_notice: Chiamata da rete fissa")
    assert heard(lines) == [*ANNOUNCEMENTS, "menu_associazioni", "menu_suap"]
    assert in_order(lines, "[menu main]", "  key 1 -> SUAP", "[menu suap]",
                    "  key 1 -> Pratiche in corso")
    assert lines[-1] == "End: waits in queue suap (SUAP - Sportello unico attività produttive)"
    assert result == FlowResult("queue", "suap", "Pratiche in corso")
    assert journal.path() == ["1 SUAP", "1 Pratiche in corso"]


async def test_promo_outside_its_dates_is_announced_as_not_played(example):
    after_promo = datetime(2027, 4, 6, 10, 0, tzinfo=LOCAL)  # valid until 2027-03-31
    _, lines, _ = await run(example, ASSOC, "2", after_promo)
    assert "promo_fascicolo_digitale" not in heard(lines)
    note = "  (not played: promo_fascicolo_digitale is outside its validity dates)"
    assert note in lines
    welcome = next(i for i, line in enumerate(lines) if line.startswith("  > welcome_"))
    privacy = next(i for i, line in enumerate(lines) if line.startswith("  > privacy_"))
    assert welcome < lines.index(note) < privacy
    assert lines[-1] == "End: waits in queue tributi (Tributi)"


async def test_line_without_menu_goes_straight_to_its_queue(example):
    result, lines, journal = await run(example, REF, "", TUESDAY)
    assert heard(lines) == ["cost_notice", "welcome_referenti"]
    assert not [line for line in lines if line.startswith("[menu")]
    assert lines[-1] == "End: waits in queue tecnico (Referenti tecnici)"
    assert result == FlowResult("queue", "tecnico", None)
    assert journal.path() == []


async def test_submenu_back_and_another_choice(example):
    result, lines, _ = await run(example, ASSOC, "1,*,2", TUESDAY)
    assert heard(lines)[-3:] == ["menu_associazioni", "menu_suap", "menu_associazioni"]
    assert "  key * -> back" in lines
    assert result == FlowResult("queue", "tributi", "Tributi")


async def test_information_then_back_to_the_menu(example):
    result, lines, _ = await run(example, CITT, "3,2", TUESDAY)
    assert heard(lines)[-3:] == ["menu_cittadini", "info_orari", "menu_cittadini"]
    assert result == FlowResult("queue", "tributi", "Tributi")


async def test_information_then_goodbye(example):
    result, lines, _ = await run(example, ASSOC, "3,2", TUESDAY)
    assert heard(lines)[-3:] == ["menu_info", "info_pec", "goodbye"]
    assert lines[-1] == "End: goodbye"
    assert result == FlowResult("goodbye")


async def test_no_key_and_wrong_keys_end_with_the_operator(example):
    result, lines, _ = await run(example, ASSOC, "-,5,-", TUESDAY)
    assert in_order(
        lines,
        "  ... no key for 5 s",
        "  > no_key: Non abbiamo ricevuto alcuna scelta.",
        "  key 5 -> not an option",
        "  > invalid_key: Scelta non valida.",
        "  ... no key for 5 s",
        "  too many attempts -> operator",
        "End: waits in queue generale (Informazioni generali)",
    )
    assert heard(lines).count("menu_associazioni") == 3
    assert result == FlowResult("queue", "generale", None)


async def test_keys_running_out_means_the_caller_hangs_up(example):
    result, lines, journal = await run(example, ASSOC, "1", TUESDAY)
    assert lines[-2:] == ["  (no more keys: the caller hangs up)", "End: the caller hung up"]
    assert heard(lines)[-1] == "menu_suap"
    assert result is None
    assert journal.path() == ["1 SUAP"]


async def test_time_given_in_utc_is_shown_in_local_time(example):
    _, winter, _ = await run(example, REF, "", datetime(2026, 12, 15, 9, 0, tzinfo=UTC))
    _, summer, _ = await run(example, REF, "", datetime(2026, 7, 14, 8, 0, tzinfo=UTC))
    assert winter[0] == ("Referenti tecnici (0612345003) at Tue 2026-12-15 10:00 CET: "
                         "open (open: 08:00-18:00)")
    assert summer[0] == ("Referenti tecnici (0612345003) at Tue 2026-07-14 10:00 CEST: "
                         "open (open: 08:00-18:00)")


# --- closed lines -----------------------------------------------------------------------------

async def test_christmas_is_closed_with_the_holiday_name(example):
    result, lines, _ = await run(example, ASSOC, "1,1", CHRISTMAS)
    assert lines[0] == ("Associazioni di categoria (0612345001) at Fri 2026-12-25 10:00 CET: "
                        "closed (holiday: Natale)")
    assert "  (closed: holiday: Natale)" in lines
    assert heard(lines) == ["cost_notice", "closed_hours"]
    assert lines[-1] == "End: closed"
    assert result == FlowResult("closed")


async def test_sunday_is_closed_outside_hours(example):
    _, lines, _ = await run(example, CITT, "", SUNDAY)
    assert lines[0].endswith("at Sun 2026-12-13 10:00 CET: closed (hours)")
    assert heard(lines) == ["cost_notice", "closed_hours"]


@pytest.mark.parametrize("number, state, last_heard", [
    (ASSOC, "open (open: 09:00-12:00)", "menu_associazioni"),  # "ufficio" opens on Saturday
    (REF, "closed (hours)", "closed_hours_referenti"),  # "esteso" does not
])
async def test_saturday_morning_depends_on_the_schedule(example, number, state, last_heard):
    _, lines, _ = await run(example, number, "2", SATURDAY)
    assert lines[0].endswith(f"at Sat 2026-12-19 10:00 CET: {state}")
    assert heard(lines)[-1] == last_heard


@pytest.mark.parametrize("number, prompt", [
    (ASSOC, "closed_emergency"),
    (REF, "closed_hours_referenti"),  # no emergency_prompt: the usual closed message
])
async def test_forced_closure(example, number, prompt):
    guasto = Override("closed", until=datetime(2026, 12, 15, 12, 0, tzinfo=LOCAL), reason="guasto")
    result, lines, _ = await run(example, number, "1", TUESDAY, override=guasto)
    assert lines[0].endswith("closed (override: guasto)")
    assert "  (closed: override: guasto)" in lines
    assert heard(lines) == ["cost_notice", prompt]
    assert result == FlowResult("closed")


async def test_forced_opening_on_christmas(example):
    neve = Override("open", until=datetime(2026, 12, 25, 18, 0, tzinfo=LOCAL), reason="neve")
    result, lines, _ = await run(example, ASSOC, "2", CHRISTMAS, override=neve)
    assert lines[0].endswith("open (override: neve)")
    assert result == FlowResult("queue", "tributi", "Tributi")


# --- a line with no hours, in English ---------------------------------------------------------

async def test_always_open_line_speaks_its_language(always_open):
    result, lines, _ = await run(always_open, "0699999001", "2", CHRISTMAS)
    assert lines[0] == "English help desk (0699999001) at Fri 2026-12-25 10:00 CET: open (open)"
    assert lines[1] == "  > welcome: Welcome to the help desk."
    assert in_order(lines, "  key 2 -> Hours", "  > info_hours: We never close.",
                    "  > goodbye: Goodbye.", "End: goodbye")
    assert result == FlowResult("goodbye")


async def test_fallback_hangup_after_max_retries(always_open):
    result, lines, _ = await run(always_open, "0699999001", "7,7", TUESDAY)
    assert in_order(lines, "  key 7 -> not an option", "  > invalid_key: Invalid choice.",
                    "  key 7 -> not an option", "  too many attempts -> hangup",
                    "  > goodbye: Goodbye.", "End: goodbye")
    assert result == FlowResult("goodbye")


# --- --keys -----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, keys", [
    ("1,2,#", ["1", "2", "#"]),
    ("12#", ["1", "2", "#"]),
    ("1, 2 ,*", ["1", "2", "*"]),
    ("1,-,2", ["1", "-", "2"]),
    ("--0", ["-", "-", "0"]),
    ("", []),
    ("1,,2", ["1", "2"]),
    ("1 2 #", ["1", "2", "#"]),
])
def test_parse_keys(text, keys):
    assert parse_keys(text) == keys


@pytest.mark.parametrize("text, bad", [
    ("1,10", "10"),
    ("1,12", "12"),  # "12" is a substring of "0123456789*#", still not one key
    ("a", "a"),
    ("1,x,y", "x, y"),
    ("12a", "a"),
])
def test_parse_keys_refuses_what_is_not_a_key(text, bad):
    with pytest.raises(ValueError) as caught:
        parse_keys(text)
    assert str(caught.value) == f"not a key: {bad} (use 0-9, *, # and - for no key)"
