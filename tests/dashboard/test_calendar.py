"""The "data as of" badge follows the shared NYSE calendar: in each situation of calendar_cases the
dashboard calls fresh exactly the session the gate expects, and counts sessions (not days) behind."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from calendar_cases import CASE_IDS, CASES, CalendarCase
from datapipe_dashboard.ui import freshness


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_data_of_the_expected_session_is_fresh(case: CalendarCase) -> None:
    assert freshness(case.expected, case.at) == ("fresh", 0, case.expected)
    assert freshness(case.previous, case.at) == ("amber", 1, case.expected)


@pytest.mark.parametrize(
    ("latest", "now", "status", "behind"),
    [
        (date(2026, 11, 25), datetime(2026, 12, 2, 23, 0, tzinfo=UTC), "red", 4),  # Thanksgiving not counted
        (date(2026, 11, 27), datetime(2026, 11, 29, 9, 0, tzinfo=UTC), "fresh", 0),  # weekend: not stale
        (date(2026, 11, 27), datetime(2026, 11, 30, 15, 0, tzinfo=UTC), "fresh", 0),  # session in progress
        (date(2026, 11, 27), datetime(2026, 11, 30, 21, 30, tzinfo=UTC), "fresh", 0),  # closed, bar not yet due
        (date(2026, 11, 27), datetime(2026, 11, 30, 22, 0, tzinfo=UTC), "amber", 1),  # due an hour after the close
        (date(2025, 1, 8), datetime(2025, 1, 10, 20, 0, tzinfo=UTC), "fresh", 0),  # 2025-01-09 closed
    ],
)
def test_sessions_behind(latest: date, now: datetime, status: str, behind: int) -> None:
    got_status, got_behind, _ = freshness(latest, now)
    assert (got_status, got_behind) == (status, behind)
