"""The business calendar on its own: which days work, and how each kind of deadline is counted.

The 2026 dates are the State Council's arrangement (国务院办公厅关于2026年部分节假日安排的通知, 2025-11-04) as
chinese-calendar 1.11.0 carries it: 国庆节 10-01 (Thu) to 10-07 (Wed) off, 中秋节 09-25 to 09-27 off, and the
adjusted working days Sunday 09-20 and Saturday 10-10. 10-08 (Thu) is an ordinary working day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from engine.calendar import (
    SHANGHAI,
    BusinessCalendar,
    CalendarError,
    UnknownCalendarYear,
    estimated_note,
)
from engine.lang.iso8601 import parse_duration

CAL = BusinessCalendar.official()


def at(day: str, hour: int = 10) -> datetime:
    d = date.fromisoformat(day)
    return datetime(d.year, d.month, d.day, hour, tzinfo=SHANGHAI)


def end_of(day: str) -> datetime:
    """24:00 of the day, the instant a period ending that day runs out."""
    return at(day, 0) + timedelta(days=1)


# ------------------------------------------------------------------------------------------------ days
def test_the_2026_national_day_arrangement_as_the_package_carries_it() -> None:
    off = [date(2026, 10, d) for d in range(1, 8)] + [date(2026, 9, d) for d in (25, 26, 27)]
    assert all(not CAL.is_working_day(d) for d in off)
    assert CAL.is_working_day(date(2026, 9, 20)) and date(2026, 9, 20).weekday() == 6  # adjusted Sunday
    assert CAL.is_working_day(date(2026, 10, 10)) and date(2026, 10, 10).weekday() == 5  # adjusted Saturday
    assert CAL.is_working_day(date(2026, 10, 8))  # not part of the 2026 holiday (brief said 10-01..08)
    assert not CAL.is_working_day(date(2026, 10, 11))  # an ordinary Sunday
    info = CAL.day_info(date(2026, 10, 10))
    assert info.working and info.known and info.name == "国庆节"


def test_a_year_the_package_does_not_know_is_unknown_not_guessed() -> None:
    assert CAL.knows(date(2026, 12, 31)) and not CAL.knows(date(2027, 1, 1))
    with pytest.raises(UnknownCalendarYear) as caught:
        CAL.is_working_day(date(2027, 1, 1))
    assert caught.value.year == 2027
    info = CAL.day_info(date(2027, 1, 1))  # a Friday: Monday–Friday says working, and says it is a guess
    assert info.working and not info.known
    assert 2026 in CAL.known_years() and 2027 not in CAL.known_years()
    assert CAL.source(2026) == "chinese-calendar 1.11.0" and CAL.source(2027) is None


# -------------------------------------------------------------------------------------- working days
def test_working_days_spanning_national_day_end_on_the_adjusted_saturday() -> None:
    # Triggered Wednesday 09-30: 10-01..07 count nothing; 10-08 (1), 10-09 (2), Saturday 10-10 (3).
    deadline = CAL.add_working_days(at("2026-09-30", 16), 3)
    assert deadline.last_day == date(2026, 10, 10)
    assert deadline.due == end_of("2026-10-10") == datetime(2026, 10, 10, 16, 0, tzinfo=UTC)
    assert not deadline.estimated and deadline.note is None


def test_five_working_days_across_national_day() -> None:
    # 09-30 (1), 10-08 (2), 10-09 (3), Saturday 10-10 (4), Monday 10-12 (5); Sunday 10-11 is a rest day.
    deadline = CAL.deadline("working_days", at("2026-09-29"), parse_duration("P5D"))
    assert deadline.last_day == date(2026, 10, 12)
    assert deadline.due == end_of("2026-10-12")


def test_a_deadline_landing_on_an_adjusted_working_saturday() -> None:
    # Thursday 10-08 + 2 working days: Friday 10-09 (1), Saturday 10-10 (2, adjusted working day).
    deadline = CAL.deadline("working_days", at("2026-10-08", 9), parse_duration("P2D"))
    assert deadline.last_day == date(2026, 10, 10)
    assert deadline.due == end_of("2026-10-10")


def test_the_adjusted_sunday_before_national_day_counts() -> None:
    # Triggered Saturday 09-19: Sunday 09-20 is a working day (1), Monday 09-21 (2).
    assert CAL.add_working_days(at("2026-09-19"), 2).last_day == date(2026, 9, 21)


def test_the_triggering_day_never_counts_even_early_on_a_working_day() -> None:
    # Monday 2026-03-02 at 08:00: day one is Tuesday.
    assert CAL.add_working_days(at("2026-03-02", 8), 1).due == end_of("2026-03-03")
    # P0D: the period runs out at 24:00 of the triggering day.
    assert CAL.add_working_days(at("2026-03-02", 8), 0).due == end_of("2026-03-02")


def test_a_utc_trigger_is_counted_on_the_beijing_date() -> None:
    # 2026-09-30T17:00Z is already 10-01 01:00 in Beijing: the trigger day is 10-01, so day one is 10-08.
    deadline = CAL.add_working_days(datetime(2026, 9, 30, 17, 0, tzinfo=UTC), 1)
    assert deadline.last_day == date(2026, 10, 8)


def test_spring_festival_2026_and_its_two_adjusted_saturdays() -> None:
    # Friday 02-13 + 1: Saturday 02-14 is an adjusted working day.
    assert CAL.add_working_days(at("2026-02-13"), 1).last_day == date(2026, 2, 14)
    # Saturday 02-14 + 1: 02-15..23 off, Tuesday 02-24.
    assert CAL.add_working_days(at("2026-02-14"), 1).last_day == date(2026, 2, 24)
    # Friday 02-27 + 1: Saturday 02-28 works too.
    assert CAL.add_working_days(at("2026-02-27"), 1).last_day == date(2026, 2, 28)


# ------------------------------------------------------------------------------------- calendar days
def test_calendar_days_ending_on_a_holiday_move_to_the_next_working_day() -> None:
    # 09-22 + 15 days = 10-07, a holiday: the period ends on 10-08 (民法典 第二百零三条).
    deadline = CAL.deadline("calendar_days", at("2026-09-22"), parse_duration("P15D"))
    assert deadline.last_day == date(2026, 10, 8)
    assert deadline.due == end_of("2026-10-08")


def test_calendar_days_ending_on_an_adjusted_saturday_stay_there() -> None:
    assert CAL.add_calendar_days(at("2026-10-03"), 7).last_day == date(2026, 10, 10)


def test_calendar_days_ending_on_an_ordinary_sunday_move_to_monday() -> None:
    assert CAL.add_calendar_days(at("2026-03-01"), 7).last_day == date(2026, 3, 9)  # 03-08 is a Sunday


def test_ninety_days_from_filing() -> None:
    # 行政处罚法 第六十条: filed 2026-03-02, day 90 is Sunday 05-31 -> Monday 06-01, ends 24:00.
    deadline = CAL.deadline("calendar_days", at("2026-03-02"), parse_duration("P90D"))
    assert deadline.last_day == date(2026, 6, 1)


def test_a_month_ends_on_the_corresponding_day_or_the_month_end() -> None:
    assert CAL.deadline("calendar_days", at("2026-03-31"), parse_duration("P1M")).last_day == date(
        2026, 4, 30
    )
    # 2026-01-31 + 1 month -> 02-28, a Saturday, but an adjusted working day (春节调休): it stays.
    assert CAL.deadline("calendar_days", at("2026-01-31"), parse_duration("P1M")).last_day == date(
        2026, 2, 28
    )


# --------------------------------------------------------------------------------------------- hours
def test_hours_run_from_the_moment_itself_through_holidays() -> None:
    deadline = CAL.deadline("hours", at("2026-09-30", 16), parse_duration("PT24H"))
    assert deadline.due == at("2026-10-01", 16)
    assert not deadline.estimated
    assert CAL.deadline("hours", at("2026-12-31", 16), parse_duration("PT24H")).note is None  # no calendar


def test_a_duration_the_kind_cannot_count_is_refused() -> None:
    with pytest.raises(CalendarError, match="working days"):
        CAL.deadline("working_days", at("2026-03-02"), parse_duration("PT3H"))
    with pytest.raises(CalendarError, match="working days"):
        CAL.deadline("working_days", at("2026-03-02"), parse_duration("P1M"))
    with pytest.raises(CalendarError, match="calendar days do not count"):
        CAL.deadline("calendar_days", at("2026-03-02"), parse_duration("P1DT2H"))
    with pytest.raises(CalendarError, match="not one of"):
        CAL.deadline("business_days", at("2026-03-02"), parse_duration("P1D"))
    with pytest.raises(CalendarError, match="longer than"):
        CAL.add_working_days(at("2026-03-02"), 100_000)


# ------------------------------------------------------------------------------- past the known data
def test_working_days_past_the_known_data_are_estimated_monday_to_friday_and_flagged() -> None:
    # Monday 2026-12-28: 12-29 (1), 12-30 (2), 12-31 (3), Friday 2027-01-01 (4, a guess), Monday 01-04 (5).
    deadline = CAL.add_working_days(at("2026-12-28"), 5)
    assert deadline.last_day == date(2027, 1, 4)
    assert deadline.estimated and deadline.unknown_years == (2027,)
    assert deadline.note == "期限超出已知节假日安排（2027 年），按周一至周五推算，请核对"


def test_calendar_days_are_flagged_only_when_the_last_day_is_unknown() -> None:
    assert not CAL.add_calendar_days(at("2026-12-01"), 15).estimated  # ends in December 2026
    late = CAL.add_calendar_days(at("2026-12-20"), 15)  # 2027-01-04, a Monday by the fallback
    assert late.estimated and late.unknown_years == (2027,) and late.last_day == date(2027, 1, 4)


def test_estimated_note_lists_each_year_once() -> None:
    assert (
        estimated_note([2028, 2027, 2027])
        == "期限超出已知节假日安排（2027、2028 年），按周一至周五推算，请核对"
    )


def test_a_year_before_the_package_is_unknown_too() -> None:
    assert CAL.add_working_days(at("2003-06-02"), 1).unknown_years == (2003,)


# --------------------------------------------------------------------------------------- local dates
def test_local_dates_win_over_the_package_and_make_their_year_known() -> None:
    calendar = BusinessCalendar(
        holidays={date(2027, 1, 1): "元旦", date(2026, 10, 9): "测试更正"},
        workdays={date(2027, 1, 9): "测试调休"},
        years={2027: "test arrangement"},
    )
    assert not calendar.is_working_day(date(2026, 10, 9))  # corrected date of a package year
    assert calendar.is_working_day(date(2026, 10, 8))  # the rest of 2026 stays the package's
    assert not calendar.is_working_day(date(2027, 1, 1))
    assert calendar.is_working_day(date(2027, 1, 9))  # a Saturday made a working day
    assert calendar.is_working_day(date(2027, 1, 5))  # other 2027 days: Monday–Friday, but known
    deadline = calendar.add_working_days(at("2026-12-30"), 3)  # 12-31 (1), 01-04 (2), 01-05 (3)
    assert deadline.last_day == date(2027, 1, 5) and not deadline.estimated
    assert calendar.source(2027) == "test arrangement"


def test_a_date_cannot_be_both_holiday_and_working_day() -> None:
    with pytest.raises(CalendarError, match="both"):
        BusinessCalendar(holidays={date(2027, 1, 1): "a"}, workdays={date(2027, 1, 1): "b"})


# ------------------------------------------------------------------------------------ instance flags
def test_instance_flags_keep_what_is_stored_and_add_each_element_once() -> None:
    from engine.runtime.instance import Projection, TimerView, deadline_flags

    due = at("2027-01-05", 0)
    note = estimated_note([2027])
    projection = Projection(completed=False, timers=[TimerView("t1", "overdue", due, note)])
    foreign = {"kind": "something_else", "element_id": "overdue"}
    flags = deadline_flags([foreign], projection)
    assert flags == [
        foreign,
        {"kind": "deadline_estimated", "element_id": "overdue", "due_at": due.isoformat(), "note": note},
    ]
    assert deadline_flags(flags, projection) == flags  # the same element is not flagged twice
    assert deadline_flags(None, Projection(completed=False)) is None
