"""A small NYSE calendar: weekends, full-day holidays, special closures, early closes.

Used for the "data as of" badge: the published data are compared with the last *completed* US
trading day (a session counts once the market has closed, 16:00 New York time, 13:00 on early-close
days).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
REGULAR_CLOSE = time(16, 0)
EARLY_CLOSE = time(13, 0)

# Unscheduled full-day closures since 2001 (market events, national days of mourning).
SPECIAL_CLOSURES = frozenset(
    {
        date(2001, 9, 11), date(2001, 9, 12), date(2001, 9, 13), date(2001, 9, 14),
        date(2004, 6, 11), date(2007, 1, 2), date(2012, 10, 29), date(2012, 10, 30),
        date(2018, 12, 5), date(2025, 1, 9),
    }
)


def easter_sunday(year: int) -> date:
    """Gregorian Easter (anonymous Gregorian algorithm)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = (date(year, month + 1, 1) if month < 12 else date(year + 1, 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Saturday holidays are observed on Friday, Sunday holidays on Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=128)
def holidays(year: int) -> frozenset[date]:
    """NYSE full-day holidays of `year` (rules in force since 1998; Juneteenth since 2022)."""
    days = {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        easter_sunday(year) - timedelta(days=2),  # Good Friday
        _last_weekday(year, 5, 0),  # Memorial Day
        _observed(date(year, 7, 4)),  # Independence Day
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(date(year, 12, 25)),  # Christmas
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:  # a Saturday New Year's Day is not observed on Friday Dec 31
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    return frozenset(days | {d for d in SPECIAL_CLOSURES if d.year == year})


def is_trading_day(day: date) -> bool:
    return day.weekday() < 5 and day not in holidays(day.year)


def close_time(day: date) -> time:
    """Closing time (New York) of a trading day: 13:00 before July 4th, after Thanksgiving, on Dec 24."""
    early = {
        _nth_weekday(day.year, 11, 3, 4) + timedelta(days=1),
        date(day.year, 12, 24),
    }
    if date(day.year, 7, 4).weekday() in (1, 2, 3, 4):  # July 3 is a trading day before a weekday 4th
        early.add(date(day.year, 7, 3))
    return EARLY_CLOSE if day in early else REGULAR_CLOSE


def previous_trading_day(day: date) -> date:
    day -= timedelta(days=1)
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


def last_completed_trading_day(now: datetime) -> date:
    """The most recent trading day whose session has closed at `now` (an aware datetime)."""
    local = now.astimezone(NEW_YORK)
    today = local.date()
    if is_trading_day(today) and local.time() >= close_time(today):
        return today
    return previous_trading_day(today)


def trading_days_behind(latest: date, reference: date) -> int:
    """How many trading days after `latest` up to and including `reference` (0 when up to date)."""
    count, day = 0, latest + timedelta(days=1)
    while day <= reference:
        if is_trading_day(day):
            count += 1
        day += timedelta(days=1)
    return count


def freshness(latest: date, now: datetime) -> tuple[str, int, date]:
    """(status, trading days behind, last completed trading day); status is fresh / amber / red."""
    reference = last_completed_trading_day(now)
    behind = trading_days_behind(latest, reference)
    status = "fresh" if behind == 0 else "amber" if behind == 1 else "red"
    return status, behind, reference
