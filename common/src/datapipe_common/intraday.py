"""The live quotes' schedule: how often `market_quotes_intraday` polls, and when.

`plan_interval` is the quota planner: the shortest interval (from `INTERVALS_MIN`, each a divisor of
60 or a whole number of hours, so it is a cron step) at which one poll of every symbol never exceeds
the API's per-minute rate (a poll's requests, spread by the extractor's limiter, take at most one
interval) nor its daily budget (every poll of the longest session, plus what the daily DAG keeps for
itself). `poll_times` is when a session is polled: the interval's grid (minutes since midnight, New
York) between the open and the close, so early closes (13:00) end the polls and a holiday has none.
Pure functions (the calendar is the shared one, built on first use): the DAG and its tests use them.

    >>> plan = plan_interval(500, bulk=True, requests_per_minute=75, daily_budget=None, reserved_per_day=0,
    ...                      min_interval_min=1)
    >>> plan.interval_min, plan.requests_per_poll          # 5 requests a poll: one a minute is fine
    (1, 5)
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

from datapipe_common.calendar import NEW_YORK, nyse

# the intervals the planner chooses from (minutes): cron steps within an hour, or whole hours
INTERVALS_MIN = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60, 120, 180, 240)
# REALTIME_BULK_QUOTES: symbols per request
BULK_SYMBOLS_PER_REQUEST = 100
# the extractor's limiter spaces requests 1 % wider than 60/R seconds (extract.ratelimit.SAFETY): a
# poll's requests must fit in its interval with that margin
LIMITER_MARGIN = 1.01
# the longest session (09:30-16:00): the daily budget must hold its polls
REGULAR_OPEN = dt.time(9, 30)
REGULAR_CLOSE = dt.time(16, 0)


def requests_per_poll(symbols: int, *, bulk: bool) -> int:
    """Requests one poll of `symbols` costs: one per symbol, or one per 100 with bulk quotes."""
    return math.ceil(symbols / BULK_SYMBOLS_PER_REQUEST) if bulk else symbols


def _minute_of_day(at: dt.time) -> int:
    return at.hour * 60 + at.minute


def poll_minutes(open_at: dt.time, close_at: dt.time, interval_min: int) -> list[int]:
    """Minutes since midnight at which a session from `open_at` to `close_at` is polled: the interval's
    multiples in [open, close)."""
    first = -(-_minute_of_day(open_at) // interval_min) * interval_min  # ceil to the grid
    return list(range(first, _minute_of_day(close_at), interval_min))


def max_polls_per_day(interval_min: int) -> int:
    """Polls of the longest (regular) session at this interval."""
    return len(poll_minutes(REGULAR_OPEN, REGULAR_CLOSE, interval_min))


@dataclass(frozen=True)
class QuotaPlan:
    """The interval chosen for the quotes DAG, and what it costs."""

    interval_min: int | None  # None: not even one poll a session fits the budget
    requests_per_poll: int
    polls_per_day: int  # on a full session
    requests_per_day: int  # the polls' requests on a full session (the daily DAG's reserve not included)
    reason: str

    def describe(self) -> str:
        if self.interval_min is None:
            return f"no poll fits: {self.reason}"
        return (f"every {self.interval_min} min: {self.requests_per_poll} request(s) a poll, up to"
                f" {self.polls_per_day} polls and {self.requests_per_day} requests a session ({self.reason})")


def plan_interval(symbols: int, *, bulk: bool, requests_per_minute: float, daily_budget: int | None,
                  reserved_per_day: int, min_interval_min: int) -> QuotaPlan:
    """The shortest interval >= `min_interval_min` whose polls stay within both budgets.

    `requests_per_minute` 0 means no per-minute limit; `daily_budget` None means no daily limit;
    `reserved_per_day` is what the daily DAG needs of the daily budget.
    """
    per_poll = requests_per_poll(symbols, bulk=bulk)
    limits = []
    for interval in INTERVALS_MIN:
        if interval < min_interval_min:
            continue
        polls = max_polls_per_day(interval)
        if requests_per_minute > 0 and per_poll * LIMITER_MARGIN > requests_per_minute * interval:
            limits.append(f"{per_poll} requests at {requests_per_minute:g}/min take more than {interval} min")
            continue
        if daily_budget is not None and reserved_per_day + per_poll * polls > daily_budget:
            limits.append(f"{polls} polls x {per_poll} + {reserved_per_day} reserved > {daily_budget} a day")
            continue
        why = "the minimum interval" if interval == max(min_interval_min, INTERVALS_MIN[0]) or not limits \
            else f"stretched: {limits[-1]} at {INTERVALS_MIN[INTERVALS_MIN.index(interval) - 1]} min"
        return QuotaPlan(interval, per_poll, polls, per_poll * polls, why)
    return QuotaPlan(None, per_poll, 0, 0, limits[-1] if limits else f"no interval >= {min_interval_min} min")


def poll_times(open_at: dt.datetime, close_at: dt.datetime, interval_min: int) -> list[dt.datetime]:
    """The poll instants of one session (aware, New York), given its open and close."""
    day = open_at.astimezone(NEW_YORK).date()
    times = poll_minutes(open_at.astimezone(NEW_YORK).time(), close_at.astimezone(NEW_YORK).time(), interval_min)
    return [dt.datetime.combine(day, dt.time(m // 60, m % 60), tzinfo=NEW_YORK) for m in times]


def cron_expressions(interval_min: int) -> list[str]:
    """Cron lines (New York, weekdays) firing at least at every poll instant of any session; the DAG's
    first task skips the instants that are not (`is_poll_time`: holidays, after an early close)."""
    minutes = poll_minutes(REGULAR_OPEN, REGULAR_CLOSE, interval_min)
    by_minute: dict[int, list[int]] = {}
    for m in minutes:
        by_minute.setdefault(m % 60, []).append(m // 60)
    by_hours: dict[tuple[int, ...], list[int]] = {}
    for minute, hours in sorted(by_minute.items()):
        by_hours.setdefault(tuple(hours), []).append(minute)
    return [f"{','.join(map(str, mins))} {','.join(map(str, hours))} * * 1-5"
            for hours, mins in sorted(by_hours.items())]


def is_poll_time(at: dt.datetime, interval_min: int) -> bool:
    """True when `at` (aware; seconds ignored) is a poll instant of an NYSE session at this interval."""
    calendar = nyse()
    local = at.astimezone(NEW_YORK).replace(second=0, microsecond=0)
    if not calendar.is_session(local.date()):
        return False
    session = calendar.session(local.date())
    on_grid = (local.hour * 60 + local.minute) % interval_min == 0  # poll_minutes' grid
    return on_grid and session.open_at <= local < session.close_at


def session_poll_times(day: dt.date, interval_min: int) -> list[dt.datetime]:
    """The poll instants of `day` (none when it is not a session; early closes end them at 13:00)."""
    calendar = nyse()
    if not calendar.is_session(day):
        return []
    session = calendar.session(day)
    return poll_times(session.open_at, session.close_at, interval_min)
