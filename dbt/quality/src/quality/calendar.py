"""The US equity market calendar (NYSE full-day holidays, weekends) and the freshness rule.

`last_completed_trading_day(now)` is the latest trading day whose session has closed (16:00
US/Eastern) plus a delay for the data to be published; the gate expects every symbol's latest bar
to be at least that day (minus a configurable number of trading days of lag).
"""

from __future__ import annotations

import datetime as dt
from functools import cache
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
MARKET_CLOSE = dt.time(16, 0)


def _easter(year: int) -> dt.date:
    """Gregorian Easter Sunday (anonymous Gregorian algorithm)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month, day = divmod(h + ell - 7 * m + 114, 31)
    return dt.date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> dt.date:
    first = dt.date(year, month, 1)
    return first + dt.timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> dt.date:
    nxt = dt.date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - dt.timedelta(days=1)
    return last - dt.timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: dt.date) -> dt.date | None:
    """NYSE rule: Saturday holidays move to Friday, Sunday holidays to Monday. A Saturday
    New Year's Day is not observed on the Friday before (that is still a trading day)."""
    if day.weekday() == 5:
        return None if (day.month, day.day) == (1, 1) else day - dt.timedelta(days=1)
    if day.weekday() == 6:
        return day + dt.timedelta(days=1)
    return day


@cache
def nyse_holidays(year: int) -> frozenset[dt.date]:
    """Full-day NYSE closures of a year by the exchange's standing rules."""
    days: list[dt.date | None] = [
        _observed(dt.date(year, 1, 1)),  # New Year's Day
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        _easter(year) - dt.timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, 0),  # Memorial Day
        _observed(dt.date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(dt.date(year, 12, 25)),  # Christmas
    ]
    if year >= 2022:
        days.append(_observed(dt.date(year, 6, 19)))  # Juneteenth
    return frozenset(d for d in days if d is not None)


def is_trading_day(day: dt.date) -> bool:
    return day.weekday() < 5 and day not in nyse_holidays(day.year)


def previous_trading_day(day: dt.date) -> dt.date:
    """The trading day strictly before `day`."""
    day -= dt.timedelta(days=1)
    while not is_trading_day(day):
        day -= dt.timedelta(days=1)
    return day


def last_completed_trading_day(now: dt.datetime, close_delay_minutes: int = 60) -> dt.date:
    """Latest trading day whose session closed at least `close_delay_minutes` before `now`."""
    local = now.astimezone(EASTERN) if now.tzinfo else now.replace(tzinfo=EASTERN)
    closed_at = dt.datetime.combine(local.date(), MARKET_CLOSE, EASTERN) + dt.timedelta(minutes=close_delay_minutes)
    if is_trading_day(local.date()) and local >= closed_at:
        return local.date()
    return previous_trading_day(local.date())


def expected_latest_trade_date(
    now: dt.datetime, *, today: dt.date | None = None, lag_days: int = 0, close_delay_minutes: int = 60
) -> dt.date:
    """The oldest acceptable latest bar. With a pinned `today` (tests, backfills) the day itself is
    taken as not yet completed: the expectation is the trading day before it."""
    day = previous_trading_day(today) if today is not None else last_completed_trading_day(now, close_delay_minutes)
    for _ in range(lag_days):
        day = previous_trading_day(day)
    return day
