"""The NYSE calendar, from `exchange_calendars` (XNYS): the project's only calendar.

Sessions (weekdays minus the exchange's holidays and its special closures such as 2001-09-11 or
2025-01-09), each with its open and close (13:00 New York on early-close days), from the first
session of 2000 (the oldest history we load) to a year ahead. Everything that asks "is this a
trading day?" or "which bar should exist by now?" asks here: the sandbox's dates, the gate's
freshness expectation, the DAG's session check, the dashboard's "data as of", and, through the
`ops.trading_sessions` table filled from `session_rows()`, the SQL of dbt.

    >>> from datapipe_common.calendar import nyse
    >>> cal = nyse()
    >>> cal.is_session(date(2025, 1, 9))          # national day of mourning
    False
    >>> cal.latest_completed_session(datetime(2025, 11, 28, 14, 30, tzinfo=NEW_YORK))
    datetime.date(2025, 11, 28)                    # early close: 13:00 + the data delay

`exchange_calendars` (with pandas) takes about a second to import and build, so the calendar is
built on first use, once per process.
"""

from __future__ import annotations

import bisect
import datetime as dt
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
EXCHANGE = "XNYS"
# The calendar starts early enough for the whole history we load (the sandbox's walk starts on
# the first session of 2000); it ends a year ahead of today (exchange_calendars' default).
FIRST_DAY = dt.date(2000, 1, 1)
REGULAR_CLOSE = dt.time(16, 0)
# A session's daily bar is due this long after its close: data vendors publish after the close.
# The gate's default (QUALITY_MARKET_CLOSE_DELAY_MINUTES) and the dashboard's "data as of" use it.
DATA_DELAY = dt.timedelta(minutes=60)


class CalendarRangeError(ValueError):
    """A date outside the calendar's range (before 2000 or more than a year ahead)."""


@dataclass(frozen=True)
class Session:
    day: dt.date
    open_at: dt.datetime  # aware, America/New_York
    close_at: dt.datetime  # aware, America/New_York

    @property
    def is_early_close(self) -> bool:
        return self.close_at.timetz().replace(tzinfo=None) < REGULAR_CLOSE


def _aware(at: dt.datetime) -> dt.datetime:
    if at.tzinfo is None:
        raise ValueError(f"{at!r} has no time zone: pass an aware datetime")
    return at.astimezone(NEW_YORK)


class NyseCalendar:
    """The sessions of XNYS between two dates, indexed for O(log n) questions."""

    def __init__(self, sessions: list[Session]) -> None:
        if not sessions:
            raise ValueError("a calendar needs at least one session")
        self._sessions = {s.day: s for s in sessions}
        self.days: tuple[dt.date, ...] = tuple(sorted(self._sessions))
        self.first, self.last = self.days[0], self.days[-1]

    # -- one day --------------------------------------------------------------------------------
    def _check(self, day: dt.date) -> None:
        if not FIRST_DAY <= day <= self.last:
            raise CalendarRangeError(
                f"{day} is outside the NYSE calendar ({FIRST_DAY} .. {self.last}, a year ahead of today)"
            )

    def is_session(self, day: dt.date) -> bool:
        self._check(day)
        return day in self._sessions

    def session(self, day: dt.date) -> Session:
        """The session of `day`; `ValueError` when the exchange is closed that day."""
        if not self.is_session(day):
            raise ValueError(f"{day} is not an NYSE session ({self.closure_reason(day)})")
        return self._sessions[day]

    def closure_reason(self, day: dt.date) -> str | None:
        """None on a session; else 'weekend' or 'holiday' (scheduled or special closure)."""
        if self.is_session(day):
            return None
        return "weekend" if day.weekday() >= 5 else "holiday"

    # -- neighbours -----------------------------------------------------------------------------
    def previous_session(self, day: dt.date) -> dt.date:
        """The last session strictly before `day`."""
        i = bisect.bisect_left(self.days, day)
        if i == 0:
            raise CalendarRangeError(f"no NYSE session before {day} in the calendar (it starts {self.first})")
        return self.days[i - 1]

    def next_session(self, day: dt.date) -> dt.date:
        """The first session strictly after `day`."""
        i = bisect.bisect_right(self.days, day)
        if i == len(self.days):
            raise CalendarRangeError(f"no NYSE session after {day} in the calendar (it ends {self.last})")
        return self.days[i]

    def session_on_or_before(self, day: dt.date) -> dt.date:
        return day if self.is_session(day) else self.previous_session(day)

    def sessions(self, start: dt.date, end: dt.date) -> list[dt.date]:
        """The sessions in [start, end], oldest first."""
        return list(self.days[bisect.bisect_left(self.days, start):bisect.bisect_right(self.days, end)])

    def sessions_between(self, after: dt.date, upto: dt.date) -> int:
        """How many sessions are in (after, upto]: 0 when `after` is not older than `upto`."""
        return max(0, bisect.bisect_right(self.days, upto) - bisect.bisect_right(self.days, after))

    # -- time of day ----------------------------------------------------------------------------
    def is_open(self, at: dt.datetime) -> bool:
        """True while a session is in progress (open <= at < close)."""
        local = _aware(at)
        session = self._sessions.get(local.date())
        return session is not None and session.open_at <= local < session.close_at

    def latest_completed_session(self, at: dt.datetime, delay: dt.timedelta = DATA_DELAY) -> dt.date:
        """The latest session whose close (13:00 on early-close days, else 16:00 New York) plus
        `delay` is at or before `at`: the newest daily bar that should exist at `at`."""
        local = _aware(at)
        self._check(local.date())
        day = self.session_on_or_before(local.date())
        while self._sessions[day].close_at + delay > local:
            day = self.previous_session(day)
        return day

    # -- the warehouse's copy -------------------------------------------------------------------
    def __iter__(self) -> Iterator[Session]:
        return (self._sessions[d] for d in self.days)


def calendar_key(today: dt.date | None = None) -> str:
    """What `session_rows()` depends on: the exchange_calendars release, the range and the data
    delay, and today's date (the calendar reaches a year ahead of it). Known without building the
    calendar, so a process that only keeps ops.trading_sessions up to date pays nothing when it is."""
    from importlib.metadata import version

    today = today or dt.datetime.now(NEW_YORK).date()
    return (f"{EXCHANGE} exchange_calendars {version('exchange-calendars')}, sessions from {FIRST_DAY},"
            f" data delay {DATA_DELAY}, built {today}")


def session_rows() -> list[tuple[dt.date, dt.datetime, dt.datetime, dt.datetime, bool]]:
    """(day, open_at, close_at, bar_due_at, is_early_close) of every session: the rows of
    ops.trading_sessions (bar_due_at = close_at + DATA_DELAY)."""
    return [(s.day, s.open_at, s.close_at, s.close_at + DATA_DELAY, s.is_early_close) for s in nyse()]


@cache
def nyse() -> NyseCalendar:
    """The calendar, built once per process from exchange_calendars' XNYS."""
    import exchange_calendars

    with warnings.catch_warnings():
        # pandas 3 deprecations inside exchange_calendars; nothing we can act on
        warnings.filterwarnings("ignore", message=r"Series\.values returning", module="pandas")
        xnys = exchange_calendars.get_calendar(EXCHANGE, start=FIRST_DAY.isoformat())
    sessions = [
        Session(day=label.date(), open_at=opened.to_pydatetime().astimezone(NEW_YORK),
                close_at=closed.to_pydatetime().astimezone(NEW_YORK))
        for label, opened, closed in zip(xnys.sessions, xnys.opens, xnys.closes, strict=True)
    ]
    return NyseCalendar(sessions)
