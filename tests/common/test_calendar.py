"""The shared NYSE calendar (datapipe_common.calendar, exchange_calendars' XNYS)."""

from __future__ import annotations

import datetime as dt

import pytest
from calendar_cases import CASE_IDS, CASES, NEW_YORK, CalendarCase
from datapipe_common.calendar import DATA_DELAY, FIRST_DAY, CalendarRangeError, calendar_key, nyse, session_rows


def ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_latest_completed_session_in_each_situation(case: CalendarCase) -> None:
    cal = nyse()
    assert cal.latest_completed_session(case.at) == case.expected
    assert cal.previous_session(case.expected) == case.previous
    assert cal.is_session(case.run_day) is case.is_session


def test_holidays_of_a_year_and_special_closures() -> None:
    cal = nyse()
    weekdays_2024 = [dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(366)]
    closed = [d.isoformat() for d in weekdays_2024 if d.weekday() < 5 and not cal.is_session(d)]
    assert closed == ["2024-01-01", "2024-01-15", "2024-02-19", "2024-03-29", "2024-05-27", "2024-06-19",
                      "2024-07-04", "2024-09-02", "2024-11-28", "2024-12-25"]
    assert len(cal.sessions(dt.date(2024, 1, 1), dt.date(2024, 12, 31))) == 252
    # unscheduled closures: September 11, presidents' funerals, hurricane Sandy
    for day in ("2001-09-11", "2001-09-14", "2004-06-11", "2007-01-02", "2012-10-29", "2012-10-30", "2018-12-05",
                "2025-01-09"):
        assert cal.closure_reason(dt.date.fromisoformat(day)) == "holiday", day
    assert cal.closure_reason(dt.date(2026, 11, 28)) == "weekend"
    # a Saturday New Year's Day is not observed on the Friday before
    assert cal.is_session(dt.date(2021, 12, 31))


def test_early_closes_end_the_session_at_one() -> None:
    cal = nyse()
    for day in ("2025-07-03", "2025-11-28", "2025-12-24", "2026-11-27", "2026-12-24"):
        session = cal.session(dt.date.fromisoformat(day))
        assert session.is_early_close and session.close_at == ny(f"{day}T13:00"), day
    regular = cal.session(dt.date(2026, 11, 25))
    assert not regular.is_early_close and regular.open_at == ny("2026-11-25T09:30")
    assert regular.close_at == ny("2026-11-25T16:00")
    # the bar of an early-close day is due at 14:00, a regular day's at 17:00
    assert cal.latest_completed_session(ny("2026-11-27T13:59")) == dt.date(2026, 11, 25)
    assert cal.latest_completed_session(ny("2026-11-27T14:00")) == dt.date(2026, 11, 27)
    assert cal.latest_completed_session(ny("2026-11-25T16:59")) == dt.date(2026, 11, 24)
    assert cal.latest_completed_session(ny("2026-11-25T17:00")) == dt.date(2026, 11, 25)
    assert cal.latest_completed_session(ny("2026-11-25T16:00"), delay=dt.timedelta(0)) == dt.date(2026, 11, 25)
    assert cal.is_open(ny("2026-11-27T12:59")) and not cal.is_open(ny("2026-11-27T13:00"))


def test_range_is_the_whole_history_and_a_year_ahead() -> None:
    cal = nyse()
    assert cal.first == dt.date(2000, 1, 3) and cal.first >= FIRST_DAY
    assert cal.last >= dt.date.today() + dt.timedelta(days=360)
    with pytest.raises(CalendarRangeError, match="outside the NYSE calendar"):
        cal.is_session(dt.date(1999, 12, 31))
    with pytest.raises(CalendarRangeError, match="outside the NYSE calendar"):
        cal.is_session(cal.last + dt.timedelta(days=10))
    with pytest.raises(ValueError, match="no time zone"):
        cal.latest_completed_session(dt.datetime(2026, 11, 25, 18, 0))


def test_neighbours_and_counts() -> None:
    cal = nyse()
    assert cal.previous_session(dt.date(2025, 1, 10)) == dt.date(2025, 1, 8)
    assert cal.next_session(dt.date(2026, 11, 25)) == dt.date(2026, 11, 27)
    assert cal.session_on_or_before(dt.date(2026, 11, 29)) == dt.date(2026, 11, 27)
    assert cal.sessions_between(dt.date(2026, 11, 24), dt.date(2026, 11, 27)) == 2
    assert cal.sessions_between(dt.date(2026, 11, 27), dt.date(2026, 11, 24)) == 0


def test_session_rows_are_the_warehouse_copy() -> None:
    rows = session_rows()
    cal = nyse()
    assert [r[0] for r in rows] == list(cal.days)
    _, open_at, close_at, due_at, early = next(r for r in rows if r[0] == dt.date(2026, 11, 27))
    assert (open_at, close_at, due_at, early) == (ny("2026-11-27T09:30"), ny("2026-11-27T13:00"),
                                                  ny("2026-11-27T13:00") + DATA_DELAY, True)
    assert calendar_key(dt.date(2026, 11, 25)).startswith("XNYS exchange_calendars 4.")
    assert calendar_key(dt.date(2026, 11, 25)) != calendar_key(dt.date(2026, 11, 26))
