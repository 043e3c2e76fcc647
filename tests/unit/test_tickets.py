"""Tickets' rules (tickets/): the states an operator moves a ticket through, the SLA clock on
the office's calendar (Italian holidays, lunch breaks, pauses while the citizen is asked for
something), and the numbers citizens quote."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ivr.clock import LOCAL
from ivr.hours import Schedule
from tickets import attachments, figures, numbers, requests, sla, states
from tickets.config import load_tickets_config
from tickets.numbers import TicketNumber
from tickets.sla import Clock, NoWorkingTime, Target, add_working, working_seconds
from tickets.states import State, TicketError

OFFICE = Schedule(weekly={"mon-fri": ["08:30-13:00", "14:00-17:00"]})  # 7.5 h a day
HOUR = 3600.0


def rome(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=LOCAL)


# --- the business calendar ----------------------------------------------------------------

def test_working_time_skips_lunch_the_night_and_the_weekend():
    friday_noon = rome(2026, 12, 4, 12)
    # Friday 12-13 and 14-17 (4 h), Monday 8:30-10:30 (2 h)
    assert working_seconds(OFFICE, friday_noon, rome(2026, 12, 7, 10, 30)) == 6 * HOUR


def test_a_deadline_of_eight_working_hours_from_friday_afternoon_falls_on_monday():
    # Friday 16-17 (1 h), Monday 8:30-13 (4.5 h) and 14-16:30 (2.5 h)
    assert add_working(OFFICE, rome(2026, 12, 4, 16), 8 * HOUR) == rome(2026, 12, 7, 16, 30)


def test_italian_holidays_do_not_count():
    # Tuesday 8 December (Immacolata) is a national holiday: Monday 7, then Wednesday 9.
    due = add_working(OFFICE, rome(2026, 12, 7, 8, 30), 10 * HOUR)
    assert due == rome(2026, 12, 9, 11, 0)
    assert working_seconds(OFFICE, rome(2026, 12, 8, 9), rome(2026, 12, 8, 12)) == 0


def test_a_request_arriving_at_night_starts_counting_at_the_opening():
    assert add_working(OFFICE, rome(2026, 12, 2, 22), HOUR) == rome(2026, 12, 3, 9, 30)


def test_a_deadline_that_ends_exactly_at_closing_stays_on_that_day():
    assert add_working(OFFICE, rome(2026, 12, 2, 14), 3 * HOUR) == rome(2026, 12, 2, 17)


def test_without_a_calendar_every_hour_counts():
    start = rome(2026, 12, 5, 23)  # a Saturday night
    assert add_working(None, start, 2 * HOUR) == start + timedelta(hours=2)
    assert working_seconds(None, start, start + timedelta(hours=2)) == 2 * HOUR


def test_a_round_the_clock_calendar_counts_midnight_to_midnight():
    always = Schedule(weekly={"mon-sun": ["00:00-24:00"]}, national_holidays=False)
    start = rome(2026, 12, 2, 23)
    assert add_working(always, start, 2 * HOUR) == rome(2026, 12, 3, 1)


def test_a_calendar_with_no_hours_is_a_clear_error():
    closed = Schedule(weekly={})
    with pytest.raises(NoWorkingTime, match="no room for 3600 s of working time"):
        add_working(closed, rome(2026, 12, 2, 9), HOUR)


instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                        timezones=st.just(LOCAL))


@given(instants, st.floats(min_value=1, max_value=200 * HOUR))
def test_the_working_time_up_to_a_deadline_is_the_target(start, seconds):
    due = add_working(OFFICE, start, seconds)
    assert abs(working_seconds(OFFICE, start, due) - seconds) < 1e-3
    assert due > start


# --- the SLA clock ----------------------------------------------------------------------------

FIRST_RESPONSE = Target(8 * HOUR)


def test_warnings_come_at_their_thresholds_then_the_breach():
    clock = Clock.start(OFFICE, rome(2026, 12, 2, 8, 30), FIRST_RESPONSE)
    assert clock.due == rome(2026, 12, 3, 9, 0)
    assert clock.standing(OFFICE, rome(2026, 12, 2, 12), FIRST_RESPONSE) == ("ok", None)
    # 5.5 of 8 h used (lunch does not count): 69 %, then 75 %
    assert clock.standing(OFFICE, rome(2026, 12, 2, 15), FIRST_RESPONSE) == ("ok", None)
    assert clock.standing(OFFICE, rome(2026, 12, 2, 15, 30), FIRST_RESPONSE) == ("warning", 0.7)
    assert clock.standing(OFFICE, rome(2026, 12, 2, 16, 48), FIRST_RESPONSE) == ("warning", 0.9)
    assert clock.standing(OFFICE, rome(2026, 12, 3, 9), FIRST_RESPONSE) == ("breached", None)
    # Overnight nothing is used: a warning at closing time is the same warning in the morning.
    assert (clock.used(OFFICE, rome(2026, 12, 2, 17), FIRST_RESPONSE)
            == clock.used(OFFICE, rome(2026, 12, 3, 8), FIRST_RESPONSE))


def test_waiting_for_the_citizen_stops_the_clock_and_moves_the_deadline():
    clock = Clock.start(OFFICE, rome(2026, 12, 2, 8, 30), FIRST_RESPONSE)
    paused = clock.pause(rome(2026, 12, 2, 10, 30))  # 2 h used
    # Three working days later the citizen answers: still 2 h used, 6 h left from now.
    at = rome(2026, 12, 7, 9)
    assert paused.used(OFFICE, at, FIRST_RESPONSE) == pytest.approx(0.25)
    running = paused.resume(OFFICE, at)
    assert running.paused_since is None
    assert running.due == add_working(OFFICE, at, 6 * HOUR)
    assert running.used(OFFICE, at, FIRST_RESPONSE) == pytest.approx(0.25)
    assert paused.pause(at) == paused  # pausing twice changes nothing


# --- states -----------------------------------------------------------------------------------

AT = rome(2026, 12, 2, 9)
GROUPS = frozenset({"back-office", "sistemi"})


def taken(agent: str = "1001") -> states.Ticket:
    ticket, _ = states.new(AT)
    ticket, _ = states.take(ticket, agent, frozenset(), AT)
    return ticket


def test_a_ticket_goes_from_new_to_closed_and_each_step_is_in_its_history():
    ticket, opened = states.new(AT)
    history = [opened]
    for step in (lambda t: states.take(t, "1001", frozenset(), AT),
                 lambda t: states.reply(t, "1001", AT + timedelta(minutes=5)),
                 lambda t: states.wait_for_citizen(t, "1001", AT, "manca la visura"),
                 lambda t: states.citizen_wrote(t, AT + timedelta(days=1)),
                 lambda t: states.resolve(t, "1001", AT + timedelta(days=1)),
                 lambda t: states.close(t, "system", AT + timedelta(days=8))):
        ticket, event = step(ticket)
        history.append(event)
    assert [(e.action, e.state) for e in history] == [
        ("opened", State.NEW), ("taken", State.IN_CHARGE), ("replied", State.IN_CHARGE),
        ("waiting for the citizen", State.WAITING_CITIZEN),
        ("citizen replied", State.IN_CHARGE), ("resolved", State.RESOLVED),
        ("closed", State.CLOSED)]
    assert ticket.first_response_at == AT + timedelta(minutes=5)
    assert history[3].note == "manca la visura" and history[1].by == "agent:1001"


def test_a_ticket_an_operator_opens_during_a_call_says_who_opened_it():
    ticket, opened = states.new(AT, by="agent:1001")
    assert (opened.by, opened.action, ticket.state, ticket.owner) == (
        "agent:1001", "opened", State.NEW, None)
    assert states.new(AT)[1].by == "citizen"  # the web form, an e-mail


def test_only_the_owner_works_on_a_ticket_and_nobody_takes_it_twice():
    ticket = taken("1001")
    with pytest.raises(TicketError, match="cannot take a ticket that is preso in carico by 1001"):
        states.take(ticket, "1002", frozenset(), AT)
    with pytest.raises(TicketError, match="cannot answer this ticket: 1001 has it"):
        states.reply(ticket, "1002", AT)
    fresh, _ = states.new(AT)
    with pytest.raises(TicketError, match="nobody has taken it"):
        states.resolve(fresh, "1001", AT)


def test_escalation_needs_a_note_and_only_the_group_takes_it_back():
    ticket = taken("1001")
    with pytest.raises(TicketError, match="a note is required"):
        states.escalate(ticket, "1001", "back-office", "  ", GROUPS, AT)
    with pytest.raises(TicketError, match="no second-level group 'tributi'"):
        states.escalate(ticket, "1001", "tributi", "serve il SUAP", GROUPS, AT)
    ticket, event = states.escalate(ticket, "1001", "back-office", "verifica catastale",
                                    GROUPS, AT)
    assert (ticket.state, ticket.level, ticket.owner) == (State.ESCALATED, "back-office", None)
    assert event.note == "verifica catastale"
    with pytest.raises(TicketError, match="only its members take it"):
        states.take(ticket, "1001", frozenset(), AT)
    ticket, _ = states.take(ticket, "2001", frozenset({"back-office"}), AT)
    assert (ticket.state, ticket.owner, ticket.level) == (State.IN_CHARGE, "2001", "back-office")
    ticket, event = states.hand_back(ticket, "2001", "manca il parere del comune", AT)
    assert (ticket.state, ticket.level, ticket.owner) == (State.NEW, "I", None)
    assert event.action == "handed back by back-office"
    with pytest.raises(TicketError, match="at the first level already"):
        states.hand_back(ticket, "2001", "di nuovo", AT)


def test_a_citizen_writing_reopens_a_resolved_ticket_but_not_one_closed_long_ago():
    ticket = taken("1001")
    ticket, _ = states.resolve(ticket, "1001", AT)
    assert states.after_citizen(ticket, AT + timedelta(days=2)) == "reopen"
    reopened, event = states.citizen_wrote(ticket, AT + timedelta(days=2))
    assert (reopened.state, reopened.owner, event.action) == (State.IN_CHARGE, "1001",
                                                              "reopened")
    closed, _ = states.close(ticket, "system", AT + timedelta(days=7))
    assert states.after_citizen(closed, AT + timedelta(days=20)) == "reopen"
    assert states.after_citizen(closed, AT + timedelta(days=38)) == "new"
    with pytest.raises(TicketError, match="opens a new ticket"):
        states.citizen_wrote(closed, AT + timedelta(days=38))
    with pytest.raises(TicketError, match="only a resolved ticket closes"):
        states.close(taken(), "system", AT)


# --- numbers ------------------------------------------------------------------------------------

def test_numbers_read_the_way_citizens_quote_them():
    number = TicketNumber("HD", 2026, 123)
    assert str(number) == "HD-2026-000123"
    for text in ("Re: [HD-2026-000123] richiesta", "rif. hd 2026/123", "pratica HD_2026_000123.",
                 "HD-2026-123"):
        assert numbers.find(text, "HD") == number, text
    assert numbers.find("SUAP-2026-000123 e HD-2025-7", "HD") == TicketNumber("HD", 2025, 7)
    assert numbers.find("CHD-2026-000123", "HD") is None  # another word, not our prefix
    assert numbers.find("HD-2026-0", "HD") is None
    with pytest.raises(ValueError, match="2 to 6 capital letters"):
        TicketNumber("hd1", 2026, 1)


@given(st.sampled_from(["HD", "SUAP", "IC"]), st.integers(2000, 9999),
       st.integers(1, 999_999_999), st.text(max_size=20), st.text(max_size=20))
def test_a_number_written_anywhere_in_a_text_is_found(prefix, year, seq, before, after):
    number = TicketNumber(prefix, year, seq)
    text = f"{before} {number} {after}"
    found = numbers.find(text, prefix)
    assert found is not None
    assert found == number or str(found) in f"{before} "  # an earlier number in `before`


def test_steps_refused_with_their_reason():
    ticket = taken("1001")
    waiting, _ = states.wait_for_citizen(ticket, "1001", AT)
    with pytest.raises(TicketError, match="the ticket is in attesa del cittadino"):
        states.wait_for_citizen(waiting, "1001", AT)
    escalated, _ = states.escalate(ticket, "1001", "sistemi", "rete", GROUPS, AT)
    mine, _ = states.take(escalated, "2002", frozenset({"sistemi"}), AT)
    with pytest.raises(TicketError, match="already at sistemi"):
        states.escalate(mine, "2002", "sistemi", "ancora", GROUPS, AT)
    with pytest.raises(TicketError, match="preso in carico by 2002"):
        states.hand_back(mine, "2003", "non mio", AT)
    with pytest.raises(TicketError, match="say what the first level should do"):
        states.hand_back(mine, "2002", "", AT)
    resolved, _ = states.resolve(mine, "2002", AT)
    with pytest.raises(TicketError, match="the ticket is risolto"):
        states.reply(resolved, "2002", AT)


def test_a_citizen_writing_to_an_open_ticket_adds_to_its_thread_only():
    ticket = taken("1001")
    same, event = states.citizen_wrote(ticket, AT)
    assert (same, event.action, event.by) == (ticket, "citizen wrote", "citizen")
    clock = Clock.start(OFFICE, AT, FIRST_RESPONSE)
    assert clock.resume(OFFICE, AT + timedelta(hours=1)) == clock  # was not paused


# --- the deadlines follow the steps (tickets.sla.follow) ----------------------------------------

TARGETS = {"I": (Target(8 * HOUR), Target(40 * HOUR)), "back-office": (Target(4 * HOUR),
                                                                        Target(16 * HOUR))}


def step(before: states.Ticket, outcome: tuple[states.Ticket, states.Event]) -> states.Ticket:
    after, event = outcome
    return sla.follow(before, after, event.at, OFFICE, TARGETS.__getitem__)


def test_a_new_ticket_gets_its_level_s_deadlines_on_the_office_calendar():
    ticket = sla.start(states.new(AT)[0], OFFICE, AT, TARGETS.__getitem__)
    # 9-13 and 14-17 make 7 h on Wednesday; the 8th is Thursday from 8:30
    assert ticket.first_response_due == rome(2026, 12, 3, 9, 30)
    assert ticket.resolution_due == add_working(OFFICE, AT, 40 * HOUR)


def test_waiting_for_the_citizen_overnight_moves_both_deadlines_by_the_working_time_lost():
    ticket = sla.start(taken(), OFFICE, AT, TARGETS.__getitem__)
    waiting = step(ticket, states.wait_for_citizen(ticket, "1001", rome(2026, 12, 2, 16, 30)))
    assert waiting.paused_since == rome(2026, 12, 2, 16, 30)
    assert waiting.resolution_due == ticket.resolution_due  # nothing moves while it waits
    # The citizen answers the next morning at 9:00: 30 min that day + 30 min this morning.
    back = step(waiting, states.citizen_wrote(waiting, rome(2026, 12, 3, 9)))
    assert back.state is State.IN_CHARGE and back.paused_since is None
    assert back.first_response_due == add_working(OFFICE, ticket.first_response_due, HOUR)
    assert back.resolution_due == add_working(OFFICE, ticket.resolution_due, HOUR)


def test_escalation_starts_the_group_s_clocks_and_a_hand_back_the_first_level_s_again():
    ticket = sla.start(taken(), OFFICE, AT, TARGETS.__getitem__)
    answered = step(ticket, states.reply(ticket, "1001", AT + timedelta(minutes=10)))
    at = rome(2026, 12, 2, 11)
    up = step(answered, states.escalate(answered, "1001", "back-office", "verifica",
                                        GROUPS, at))
    assert up.first_response_due == rome(2026, 12, 2, 16)  # 11:00 + 4 h - lunch
    assert up.resolution_due == add_working(OFFICE, at, 16 * HOUR)
    assert up.first_response_at is None  # the group's clock runs: taking it stops it
    taken_up = step(up, states.take(up, "1003", GROUPS, rome(2026, 12, 2, 12)))
    assert taken_up.first_response_at == rome(2026, 12, 2, 12)
    back = step(taken_up, states.hand_back(taken_up, "1003", "manca un documento",
                                           rome(2026, 12, 3, 9)))
    assert back.level == "I" and back.first_response_at is None
    assert back.first_response_due == add_working(OFFICE, rome(2026, 12, 3, 9), 8 * HOUR)


def test_a_resolved_ticket_s_clock_stands_still_until_the_citizen_reopens_it():
    ticket = sla.start(taken(), OFFICE, AT, TARGETS.__getitem__)
    done = step(ticket, states.resolve(ticket, "1001", rome(2026, 12, 2, 10)))
    assert done.paused_since == rome(2026, 12, 2, 10)
    again = step(done, states.citizen_wrote(done, rome(2026, 12, 2, 12)))
    assert again.state is State.IN_CHARGE
    assert again.resolution_due == add_working(OFFICE, ticket.resolution_due, 2 * HOUR)


# --- what a citizen's request must hold (tickets.requests) --------------------------------------

DESK = load_tickets_config(Path(__file__).resolve().parents[2] / "config" / "tickets.yaml",
                           {"suap", "tributi", "generale"}, {"1003", "1004"}, {"ufficio"})
REQUEST = {"topic": "suap", "subject": "Modulistica", "body": "Quale modulo?",
           "name": "Maria Rossi", "email": "Maria.Rossi@Esempio.IT"}


def test_a_good_request_comes_out_normalised():
    assert DESK is not None
    got = requests.check({**REQUEST, "subject": "modulistica", "phone": "347 123 4567",
                          "tax_code": "rssmra85t10a562s", "body": "  riga 1\r\nriga 2 "}, DESK)
    assert got == requests.Request("suap", "Modulistica", "riga 1\nriga 2", "Maria Rossi",
                                   "Maria.Rossi@esempio.it", "+393471234567",
                                   "RSSMRA85T10A562S")


@pytest.mark.parametrize(("changes", "fields"), [
    ({"topic": "anagrafe"}, {"topic"}),  # a line of queues.yaml, but not in tickets.yaml
    ({"subject": "Diritto annuale"}, {"subject"}),  # another topic's subject
    ({"body": " ", "name": ""}, {"body", "name"}),
    ({"email": ""}, {"email"}),  # no way to answer
    ({"email": "maria@"}, {"email"}),
    ({"phone": "12"}, {"phone"}),
    ({"tax_code": "RSSMRA85T10A562X"}, {"tax_code"}),  # wrong check character
    ({"name": "Maria\x00"}, {"name"}),
    ({"body": "x" * (requests.MAX_BODY + 1)}, {"body"}),
])
def test_every_problem_of_a_request_names_its_field(changes, fields):
    assert DESK is not None
    with pytest.raises(requests.InvalidRequest) as caught:
        requests.check({**REQUEST, **changes}, DESK)
    assert {p.field for p in caught.value.problems} == fields


# --- figures (tickets.figures) ------------------------------------------------------------------

def test_figures_count_by_state_and_measure_answers_in_working_time():
    day = rome(2026, 12, 2, 9)
    rows = [
        # answered 2 working hours later, resolved the next morning (7 h + 1 h), in time
        figures.TicketRow("HD-1", "suap", "I", "web", "risolto", day, day + timedelta(hours=2),
                          rome(2026, 12, 3, 9, 30), day + timedelta(hours=8),
                          rome(2026, 12, 10, 9), escalations=1, hand_backs=1),
        # answered across lunch (11:00 -> 15:00 is 3 working hours), too late
        figures.TicketRow("HD-2", "suap", "back-office", "email", "escalato",
                          rome(2026, 12, 2, 11), rome(2026, 12, 2, 15), None,
                          rome(2026, 12, 2, 12), None, escalations=1),
        figures.TicketRow("HD-3", "tributi", "I", "web", "nuovo", day, None, None, None, None),
    ]
    got = figures.report(rows, OFFICE)
    assert got["opened"] == 3
    assert got["by_state"] == {"risolto": 1, "escalato": 1, "nuovo": 1}
    assert got["by_channel"] == {"web": 2, "email": 1}
    assert got["by_level"] == {"I": 2, "back-office": 1}
    assert got["first_response_avg"] == 2.5 * HOUR
    assert got["first_response_p90"] == 3 * HOUR
    assert got["resolution_avg"] == 8 * HOUR  # 9:00-17:00 less lunch, then 8:30-9:30
    assert got["first_response_met_pct"] == 50.0
    assert got["resolution_met_pct"] == 100.0
    assert (got["escalations"], got["hand_backs"]) == (2, 1)


def test_figures_of_no_ticket_say_undefined_not_zero():
    got = figures.report([], OFFICE)
    assert got["opened"] == 0 and got["first_response_avg"] is None
    assert got["resolution_met_pct"] is None


# --- attachments (tickets.attachments) ------------------------------------------------------------

def _zip(first: str, content: bytes) -> bytes:
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(zipfile.ZipInfo(first), content)
        z.writestr("content.xml", b"<x/>")
    return out.getvalue()[:attachments.SNIFF_BYTES]


@pytest.mark.parametrize(("head", "name", "kind"), [
    (b"%PDF-1.4 ...", "a.pdf", "application/pdf"),
    (b"%PDF-1.4 ...", "renamed.doc", "application/pdf"),  # what it is, not what it says
    (b"\x89PNG\r\n\x1a\n....", "a.png", "image/png"),
    (b"\xff\xd8\xff\xe0....", "foto.JPG", "image/jpeg"),
    ("Testo con accenti: è à ù\n".encode(), "nota.txt", "text/plain; charset=utf-8"),
    # markup in a .txt stays text: it is only ever served as text/plain, nosniff, a download
    (b"<html><script>", "pagina.txt", "text/plain; charset=utf-8"),
    (_zip("mimetype", b"application/vnd.oasis.opendocument.text"), "a.odt",
     "application/vnd.oasis.opendocument.text"),
    (_zip("[Content_Types].xml", b"<Types/>"), "a.docx",
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
])
def test_accepted_files_are_known_by_their_first_bytes(head, name, kind):
    assert attachments.content_type(head, name) == kind


@pytest.mark.parametrize(("head", "name"), [
    (b"MZ\x90\x00", "fattura.pdf"),  # a Windows program
    (b"<html><script>", "pagina.html"),
    (b"<svg onload=alert(1)>", "img.svg"),
    (_zip("[Content_Types].xml", b"<Types/>"), "macro.docm"),  # macro-enabled
    (_zip("virus.exe", b"MZ"), "archivio.zip"),
    (b"\x00\x01binary", "dati.txt"),
])
def test_other_files_are_refused_with_a_reason(head, name):
    with pytest.raises(attachments.Refused):
        attachments.content_type(head, name)


def test_file_names_lose_folders_and_control_characters_and_keep_their_extension():
    assert attachments.clean_name("C:\\Users\\maria\\visura.pdf") == "visura.pdf"
    assert attachments.clean_name("../../fo\u202eto.png") == "foto.png"
    assert attachments.clean_name("a" * 300 + ".pdf") == "a" * 110 + ".pdf"
    assert attachments.clean_name("...") == "allegato"


def test_time_in_charge_adds_each_agent_s_stretches_clipped_to_the_period():
    since, until = rome(2026, 12, 2), rome(2026, 12, 3)
    got = figures.time_in_charge([
        ("1001", rome(2026, 12, 1, 16), rome(2026, 12, 2, 1)),  # 1 h of it falls in the day
        ("1001", rome(2026, 12, 2, 10), rome(2026, 12, 2, 10, 30)),
        ("1002", rome(2026, 12, 2, 23), rome(2026, 12, 3, 2)),  # 1 h in the day
        ("1003", rome(2026, 12, 3, 9), rome(2026, 12, 3, 10)),  # another day
    ], since, until)
    assert got == {"1001": 5400.0, "1002": 3600.0}


CLOSED = Schedule(weekly={"mon-fri": ["08:30-13:00", "14:00-17:00"], "sat": ["09:00-12:00"]},
                  closures=[{"date": "2026-08-10", "to": "2026-08-21", "reason": "ferie"}])


@given(st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31)),
       st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=800)))
def test_long_spans_count_the_same_as_day_by_day(start, span):
    """Whole days come from running totals: the same as adding every interval up, over
    holidays, closures and the changes of summer time."""
    a = start.replace(tzinfo=LOCAL)
    b = a + span
    slow = sum((hi - lo).total_seconds() for lo, hi in sla.working_intervals(CLOSED, a, b))
    assert working_seconds(CLOSED, a, b) == pytest.approx(slow)
