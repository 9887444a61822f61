"""The trading calendar behind the freshness expectation, with a pinned clock."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from quality.calendar import (
    expected_latest_trade_date,
    is_trading_day,
    last_completed_trading_day,
    nyse_holidays,
)

ET = ZoneInfo("America/New_York")


def test_nyse_holidays_2025() -> None:
    assert sorted(nyse_holidays(2025)) == [
        dt.date(2025, 1, 1), dt.date(2025, 1, 20), dt.date(2025, 2, 17), dt.date(2025, 4, 18),
        dt.date(2025, 5, 26), dt.date(2025, 6, 19), dt.date(2025, 7, 4), dt.date(2025, 9, 1),
        dt.date(2025, 11, 27), dt.date(2025, 12, 25),
    ]


@pytest.mark.parametrize(("day", "trading"), [
    (dt.date(2026, 7, 3), False),  # July 4th on a Saturday: observed Friday
    (dt.date(2021, 12, 31), True),  # New Year's Day on a Saturday: not observed on Friday
    (dt.date(2022, 12, 26), False),  # Christmas on a Sunday: observed Monday
    (dt.date(2021, 6, 18), True),  # Juneteenth only from 2022
    (dt.date(2022, 6, 20), False),  # Juneteenth 2022 (Sunday) observed Monday
    (dt.date(2024, 3, 29), False),  # Good Friday
    (dt.date(2025, 6, 14), False),  # Saturday
    (dt.date(2025, 6, 16), True),
])
def test_is_trading_day(day: dt.date, trading: bool) -> None:
    assert is_trading_day(day) is trading


@pytest.mark.parametrize(("now", "expected"), [
    (dt.datetime(2025, 6, 16, 10, 0, tzinfo=ET), dt.date(2025, 6, 13)),  # Monday morning -> Friday
    (dt.datetime(2025, 6, 16, 16, 30, tzinfo=ET), dt.date(2025, 6, 13)),  # closed, data not yet published
    (dt.datetime(2025, 6, 16, 17, 1, tzinfo=ET), dt.date(2025, 6, 16)),  # an hour after the close
    (dt.datetime(2025, 6, 15, 12, 0, tzinfo=ET), dt.date(2025, 6, 13)),  # Sunday
    (dt.datetime(2025, 1, 21, 9, 0, tzinfo=ET), dt.date(2025, 1, 17)),  # Tuesday after MLK day
    (dt.datetime(2025, 4, 21, 9, 0, tzinfo=ET), dt.date(2025, 4, 17)),  # Monday after Good Friday
    (dt.datetime(2025, 6, 17, 2, 0, tzinfo=dt.UTC), dt.date(2025, 6, 16)),  # UTC clock, 22:00 in New York
])
def test_last_completed_trading_day(now: dt.datetime, expected: dt.date) -> None:
    assert last_completed_trading_day(now, close_delay_minutes=60) == expected


def test_expected_latest_trade_date_with_pinned_today_and_lag() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # ignored when today is pinned
    assert expected_latest_trade_date(now, today=dt.date(2025, 6, 16)) == dt.date(2025, 6, 13)
    assert expected_latest_trade_date(now, today=dt.date(2025, 6, 16), lag_days=2) == dt.date(2025, 6, 11)
    assert expected_latest_trade_date(dt.datetime(2025, 6, 16, 18, 0, tzinfo=ET)) == dt.date(2025, 6, 16)
