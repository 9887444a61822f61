"""The NYSE calendar behind the "data as of" badge."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from datapipe_dashboard import trading_calendar as cal


def test_holidays_2026_match_the_nyse_schedule() -> None:
    assert sorted(cal.holidays(2026)) == [
        date(2026, 1, 1), date(2026, 1, 19), date(2026, 2, 16), date(2026, 4, 3), date(2026, 5, 25),
        date(2026, 6, 19), date(2026, 7, 3), date(2026, 9, 7), date(2026, 11, 26), date(2026, 12, 25),
    ]


def test_observed_rules_2027_and_saturday_new_year() -> None:
    h = cal.holidays(2027)
    assert date(2027, 3, 26) in h  # Good Friday (Easter 2027-03-28)
    assert date(2027, 6, 18) in h  # Juneteenth on Saturday -> Friday
    assert date(2027, 7, 5) in h  # July 4th on Sunday -> Monday
    assert date(2027, 12, 24) in h  # Christmas on Saturday -> Friday
    # New Year's Day 2022 fell on a Saturday: not observed, Friday 2021-12-31 was a trading day.
    assert cal.is_trading_day(date(2021, 12, 31))
    assert date(2021, 12, 31) not in cal.holidays(2021) | cal.holidays(2022)
    assert not any(d.year == 2021 and d.month == 6 and d.day in (18, 19) for d in cal.holidays(2021))


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 26, 15, 0, tzinfo=UTC), date(2026, 11, 25)),  # Thanksgiving
        (datetime(2026, 11, 27, 17, 59, tzinfo=UTC), date(2026, 11, 25)),  # before the 13:00 ET early close
        (datetime(2026, 11, 27, 18, 0, tzinfo=UTC), date(2026, 11, 27)),  # at the early close
        (datetime(2026, 11, 30, 20, 59, tzinfo=UTC), date(2026, 11, 27)),  # Monday before 16:00 ET
        (datetime(2026, 11, 30, 21, 0, tzinfo=UTC), date(2026, 11, 30)),  # Monday at the close
        (datetime(2026, 11, 29, 12, 0, tzinfo=UTC), date(2026, 11, 27)),  # Sunday
        (datetime(2026, 4, 6, 12, 0, tzinfo=UTC), date(2026, 4, 2)),  # Monday after Good Friday
    ],
)
def test_last_completed_trading_day(now: datetime, expected: date) -> None:
    assert cal.last_completed_trading_day(now) == expected


@pytest.mark.parametrize(
    ("latest", "now", "status", "behind"),
    [
        (date(2026, 11, 25), datetime(2026, 11, 26, 15, 0, tzinfo=UTC), "fresh", 0),
        (date(2026, 11, 25), datetime(2026, 11, 27, 19, 0, tzinfo=UTC), "amber", 1),
        (date(2026, 11, 25), datetime(2026, 12, 2, 22, 0, tzinfo=UTC), "red", 4),
        (date(2026, 11, 27), datetime(2026, 11, 29, 9, 0, tzinfo=UTC), "fresh", 0),  # weekend: not stale
        (date(2026, 11, 30), datetime(2026, 11, 30, 15, 0, tzinfo=UTC), "fresh", 0),  # partial current day
    ],
)
def test_freshness(latest: date, now: datetime, status: str, behind: int) -> None:
    got_status, got_behind, _ = cal.freshness(latest, now)
    assert (got_status, got_behind) == (status, behind)


def test_easter_known_dates() -> None:
    assert [cal.easter_sunday(y) for y in (2024, 2025, 2026, 2038)] == [
        date(2024, 3, 31), date(2025, 4, 20), date(2026, 4, 5), date(2038, 4, 25),
    ]
