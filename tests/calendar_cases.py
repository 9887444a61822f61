"""The calendar situations every component must answer alike (one shared NYSE calendar).

At each instant (New York time) the newest daily bar that should exist is `expected`: the latest
NYSE session whose close (13:00 on early-close days) plus the data delay (60 min) has passed. The
sandbox serves it as its last bar, the gate expects it, dbt's source freshness counts sessions up to
it, the dashboard calls data of that day fresh, and the DAG runs only on sessions. `previous` is the
session before `expected`; `run_day` is the instant's own date and whether a scheduled run goes ahead.

Stdlib only: every suite imports it (tests/ is on sys.path through tests/conftest.py).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")


@dataclass(frozen=True)
class CalendarCase:
    name: str
    at: dt.datetime  # aware, New York
    expected: dt.date  # the newest bar due at `at`
    previous: dt.date  # the session before `expected`
    is_session: bool  # is `at`'s own date a session (does a scheduled run go ahead)?

    @property
    def run_day(self) -> dt.date:
        return self.at.date()


def _ny(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=NEW_YORK)


CASES = (
    CalendarCase("normal session", _ny("2026-11-25T18:00"), dt.date(2026, 11, 25), dt.date(2026, 11, 24), True),
    CalendarCase("holiday (Thanksgiving)", _ny("2026-11-26T18:00"), dt.date(2026, 11, 25), dt.date(2026, 11, 24),
                 False),
    # closes at 13:00; its bar is due at 14:00, before the regular 16:00 close
    CalendarCase("early close", _ny("2026-11-27T14:30"), dt.date(2026, 11, 27), dt.date(2026, 11, 25), True),
    CalendarCase("special closure (2025-01-09)", _ny("2025-01-09T18:00"), dt.date(2025, 1, 8),
                 dt.date(2025, 1, 7), False),
)
CASE_IDS = [c.name for c in CASES]
