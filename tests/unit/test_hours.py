"""Opening hours at explicit instants: weekly ranges, Italian holidays, closures, time zone changes,
operators' overrides, the next opening, and the mistakes ops can make in hours.yaml."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from ivr.clock import LOCAL, FixedClock
from ivr.hours import LineStatus, Override, Schedule, line_status, next_opening

OFFICE = {"mon-fri": ["08:30-13:00", "14:00-17:00"], "sat": ["09:00-12:00"]}
EVERY_DAY = {"mon-sun": ["00:00-24:00"]}


def schedule(weekly: dict | None = None, **fields) -> Schedule:
    return Schedule.model_validate({"weekly": OFFICE if weekly is None else weekly, **fields})


def rome(y: int, mo: int, d: int, h: int = 10, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL)


def utc(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def is_open(sched: Schedule, at: datetime) -> bool:
    return line_status(sched, None, at).open


# 2026-12-14 is a Monday; 2026-12-19 a Saturday, 2026-12-20 a Sunday.
MON, TUE, FRI, SAT, SUN = (date(2026, 12, d) for d in (14, 15, 18, 19, 20))


def at(day: date, h: int, mi: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, h, mi, tzinfo=LOCAL)


# --- weekly ranges ----------------------------------------------------------------------------

@pytest.mark.parametrize("hour, minute, open_", [
    (8, 29, False),
    (8, 30, True),  # open from the first minute...
    (12, 59, True),
    (13, 0, False),  # ...closed from the end minute
    (13, 30, False),  # lunch
    (14, 0, True),
    (16, 59, True),
    (17, 0, False),
])
def test_weekday_ranges_and_their_boundaries(hour, minute, open_):
    assert is_open(schedule(), at(TUE, hour, minute)) is open_


def test_status_says_which_range_is_open_and_why_it_is_closed():
    assert line_status(schedule(), None, at(TUE, 10)) == LineStatus(True, "open", "08:30-13:00")
    assert line_status(schedule(), None, at(TUE, 13, 30)) == LineStatus(False, "hours")


def test_a_clock_moving_across_closing_time():
    clock = FixedClock(at(FRI, 16, 59))
    assert is_open(schedule(), clock.now())
    clock.advance(60)
    assert not is_open(schedule(), clock.now())


@pytest.mark.parametrize("day, hour, open_", [
    (SAT, 9, True),
    (SAT, 11, True),
    (SAT, 12, False),
    (SAT, 15, False),  # the weekday afternoon range does not apply on Saturday
    (SUN, 10, False),
    (FRI, 15, True),
])
def test_saturday_has_only_its_own_range(day, hour, open_):
    assert is_open(schedule(), at(day, hour)) is open_


def test_comma_separated_days():
    weekend = schedule({"sat,sun": ["10:00-12:00"]})
    assert [is_open(weekend, at(d, 11)) for d in (MON, FRI, SAT, SUN)] == [False, False, True, True]


def test_day_range_covers_every_day_between():
    weekdays = schedule({"mon-fri": ["10:00-12:00"]})
    week = [MON + timedelta(days=n) for n in range(7)]
    assert [is_open(weekdays, at(d, 11)) for d in week] == [True] * 5 + [False] * 2


def test_range_up_to_midnight():
    late = schedule({"mon": ["20:00-24:00"]})
    assert is_open(late, at(MON, 23, 59))
    assert not is_open(late, at(MON + timedelta(days=1), 0, 0))


# --- Italian national holidays ----------------------------------------------------------------

@pytest.mark.parametrize("day, name", [
    (date(2026, 1, 1), "Capodanno"),
    (date(2026, 1, 6), "Epifania"),
    (date(2026, 4, 6), "Lunedì dell'Angelo"),
    (date(2027, 3, 29), "Lunedì dell'Angelo"),
    (date(2026, 4, 25), "Anniversario della Liberazione"),
    (date(2026, 5, 1), "Festa del Lavoro"),
    (date(2026, 6, 2), "Festa della Repubblica"),
    (date(2025, 8, 15), "Assunzione della Beata Vergine Maria"),
    (date(2027, 11, 1), "Ognissanti"),
    (date(2026, 12, 8), "Immacolata Concezione"),
    (date(2026, 12, 25), "Natale"),
    (date(2026, 12, 26), "Santo Stefano"),
    # A national holiday again from 2026 (law 151/2025); a Monday in 2027.
    (date(2027, 10, 4), "Festa nazionale di San Francesco d'Assisi, patrono d'Italia"),
])
def test_national_holidays_close_the_line_even_within_hours(day, name):
    assert line_status(schedule(EVERY_DAY), None, at(day, 10)) == LineStatus(False, "holiday", name)


def test_the_day_after_a_holiday_is_an_ordinary_day():
    assert is_open(schedule(), rome(2026, 4, 7, 10))  # Tuesday after Easter Monday


def test_national_holidays_can_be_ignored():
    always = schedule(EVERY_DAY, national_holidays=False)
    assert line_status(always, None, rome(2026, 12, 25)) == LineStatus(True, "open", "00:00-24:00")


# --- extra closures ---------------------------------------------------------------------------

CLOSURES = [
    {"date": "2027-06-29", "reason": "Santi Pietro e Paolo"},
    {"date": "2027-08-09", "to": "2027-08-13", "reason": "chiusura estiva"},
    {"date": "2027-07-01"},
]


@pytest.mark.parametrize("day, status", [
    (date(2027, 6, 28), LineStatus(True, "open", "08:30-13:00")),
    (date(2027, 6, 29), LineStatus(False, "closure", "Santi Pietro e Paolo")),
    (date(2027, 6, 30), LineStatus(True, "open", "08:30-13:00")),
    (date(2027, 7, 1), LineStatus(False, "closure", "closure")),  # no reason given
    (date(2027, 8, 6), LineStatus(True, "open", "08:30-13:00")),
    (date(2027, 8, 9), LineStatus(False, "closure", "chiusura estiva")),  # first day
    (date(2027, 8, 11), LineStatus(False, "closure", "chiusura estiva")),
    (date(2027, 8, 13), LineStatus(False, "closure", "chiusura estiva")),  # last day
    (date(2027, 8, 16), LineStatus(True, "open", "08:30-13:00")),
])
def test_closures_single_days_and_ranges(day, status):
    assert line_status(schedule(closures=CLOSURES), None, at(day, 10)) == status


def test_closure_ending_before_it_starts_is_refused():
    with pytest.raises(ValidationError, match="`to` is before `date`"):
        schedule(closures=[{"date": "2027-08-13", "to": "2027-08-09"}])


# --- daylight saving time ---------------------------------------------------------------------

def test_spring_forward_day_uses_summer_time():
    # 2026-03-29: at 02:00 Italy moves to UTC+2, so 08:00 local is 06:00 UTC.
    sunday = schedule({"sun": ["08:00-12:00"]})
    assert not is_open(sunday, utc(2026, 3, 29, 5, 59))
    assert is_open(sunday, utc(2026, 3, 29, 6, 0))
    assert is_open(sunday, utc(2026, 3, 29, 9, 59))
    assert not is_open(sunday, utc(2026, 3, 29, 10, 0))


def test_day_before_spring_forward_is_still_winter_time():
    saturday = schedule({"sat": ["08:00-12:00"]})
    assert not is_open(saturday, utc(2026, 3, 28, 6, 30))  # 07:30 local
    assert is_open(saturday, utc(2026, 3, 28, 7, 0))


def test_fall_back_day_uses_winter_time():
    # 2026-10-25: at 03:00 Italy goes back to UTC+1, so 08:00 local is 07:00 UTC.
    sunday = schedule({"sun": ["08:00-12:00"]})
    assert not is_open(sunday, utc(2026, 10, 25, 6, 59))
    assert is_open(sunday, utc(2026, 10, 25, 7, 0))
    assert is_open(sunday, utc(2026, 10, 25, 10, 59))
    assert not is_open(sunday, utc(2026, 10, 25, 11, 0))


def test_local_date_decides_the_holiday_not_the_utc_date():
    # 23:30 UTC on Christmas Eve is already Christmas in Rome.
    late = schedule(EVERY_DAY)
    assert line_status(late, None, utc(2026, 12, 24, 23, 30)).why == "holiday"
    assert line_status(late, None, utc(2026, 12, 24, 22, 59)).open


def test_other_time_zone():
    london = schedule({"mon-fri": ["09:00-17:00"]}, timezone="Europe/London")
    assert not is_open(london, rome(2026, 12, 15, 9, 30))  # 08:30 in London
    assert is_open(london, rome(2026, 12, 15, 10, 0))


# --- operators' overrides ---------------------------------------------------------------------

def test_override_open_during_a_holiday():
    forced = Override("open", until=rome(2026, 12, 25, 18), reason="emergenza neve")
    assert line_status(schedule(), forced, rome(2026, 12, 25, 10)) == \
        LineStatus(True, "override", "emergenza neve")


def test_override_closed_during_hours():
    forced = Override("closed", until=rome(2026, 12, 15, 12), reason="guasto")
    assert line_status(schedule(), forced, rome(2026, 12, 15, 10)) == \
        LineStatus(False, "override", "guasto")


def test_override_closes_a_line_without_schedule():
    forced = Override("closed", until=rome(2026, 12, 15, 12), reason="guasto")
    assert line_status(None, forced, rome(2026, 12, 15, 10)).open is False
    assert line_status(None, None, rome(2026, 12, 15, 10)).open is True


def test_expired_override_is_ignored():
    forced = Override("closed", until=rome(2026, 12, 15, 10), reason="guasto")
    assert line_status(schedule(), forced, rome(2026, 12, 15, 9, 59)).why == "override"
    assert line_status(schedule(), forced, rome(2026, 12, 15, 10)) == \
        LineStatus(True, "open", "08:30-13:00")  # expires at `until`
    expired_open = Override("open", until=rome(2026, 12, 24, 18), reason="x")
    assert line_status(schedule(), expired_open, rome(2026, 12, 25, 10)).why == "holiday"


# --- next opening -----------------------------------------------------------------------------

def test_next_opening_while_open_is_now():
    assert next_opening(schedule(), at(TUE, 10, 15)) == at(TUE, 10, 15)


def test_next_opening_after_lunch():
    assert next_opening(schedule(), at(TUE, 13, 5)) == at(TUE, 14)


def test_next_opening_across_the_weekend():
    weekdays = schedule({"mon-fri": ["08:30-13:00", "14:00-17:00"]})
    assert next_opening(weekdays, at(FRI, 17, 30)) == at(MON + timedelta(days=7), 8, 30)
    assert next_opening(schedule(), at(FRI, 17, 30)) == at(SAT, 9)  # Saturday morning


def test_next_opening_skips_holidays():
    # Thu 24 Dec 2026 evening: 25 (Natale) and 26 (Santo Stefano, a Saturday) are holidays,
    # 27 is a Sunday.
    assert next_opening(schedule(), rome(2026, 12, 24, 17, 30)) == rome(2026, 12, 28, 8, 30)


def test_next_opening_skips_closures():
    summer = schedule(closures=[{"date": "2027-08-09", "to": "2027-08-13"}])
    assert next_opening(summer, rome(2027, 8, 7, 12, 30)) == rome(2027, 8, 14, 9)


def test_next_opening_from_a_utc_instant():
    assert next_opening(schedule(), utc(2026, 12, 15, 16, 30)) == rome(2026, 12, 16, 8, 30)


# --- mistakes in hours.yaml -------------------------------------------------------------------

@pytest.mark.parametrize("fields, message", [
    ({"weekly": {"mon": ["08:00-12:00", "11:00-13:00"]}},
     "opening hours overlap on mon: 08:00-12:00 and 11:00-13:00 (from mon)"),
    ({"weekly": {"mon-fri": ["08:00-12:00"], "mon": ["11:30-13:00"]}},
     "opening hours overlap on mon: 08:00-12:00 and 11:30-13:00 (from mon-fri and mon)"),
    ({"weekly": {"mon": ["13:00-08:00"]}},
     "'13:00-08:00' ends before it starts (ranges cannot cross midnight)"),
    ({"weekly": {"mon": ["09:00-09:00"]}}, "'09:00-09:00' ends before it starts"),
    ({"weekly": {"mon": ["8-13"]}}, "'8-13' is not a time range like 08:30-13:00"),
    ({"weekly": {"mon": ["08:00-25:00"]}}, "'08:00-25:00' has an impossible time"),
    ({"weekly": {"lun": ["08:00-12:00"]}}, "unknown day 'lun': use mon, tue, wed"),
    ({"weekly": {"monday": ["08:00-12:00"]}}, "unknown day 'monday'"),
    ({"weekly": {"mon-sab": ["08:00-12:00"]}}, "unknown day 'mon-sab'"),
    ({"weekly": {"fri-mon": ["08:00-12:00"]}}, "day range 'fri-mon' runs backwards"),
    ({"weekly": OFFICE, "timezone": "Europe/Milano"}, "unknown time zone 'Europe/Milano'"),
])
def test_schedule_mistakes_are_refused_with_a_clear_message(fields, message):
    with pytest.raises(ValidationError) as caught:
        Schedule.model_validate(fields)
    assert message in str(caught.value)


def test_adjacent_ranges_do_not_overlap():
    back_to_back = schedule({"mon": ["08:00-12:00", "12:00-13:00"]})
    assert is_open(back_to_back, at(MON, 12))
