"""The live quotes' interval planner (datapipe_common.intraday), by properties: whatever the symbols and
budgets, the chosen interval never exceeds the per-minute rate or the daily budget, is the shortest that
fits, and its polls are never outside an NYSE session's hours nor on a holiday (early closes included)."""

from __future__ import annotations

import datetime as dt

from datapipe_common.calendar import NEW_YORK, nyse
from datapipe_common.intraday import (
    INTERVALS_MIN,
    LIMITER_MARGIN,
    cron_expressions,
    is_poll_time,
    max_polls_per_day,
    plan_interval,
    requests_per_poll,
    session_poll_times,
)
from hypothesis import given, settings
from hypothesis import strategies as st

budgets = st.fixed_dictionaries({
    "symbols": st.integers(1, 3000),
    "bulk": st.booleans(),
    "requests_per_minute": st.one_of(st.just(0), st.integers(1, 1200)),  # Alpha Vantage plans: whole numbers
    "daily_budget": st.one_of(st.none(), st.integers(1, 200_000)),
    "reserved_per_day": st.integers(0, 2000),
    "min_interval_min": st.sampled_from(INTERVALS_MIN),
})


def fits(interval: int, case: dict) -> bool:
    per_poll = requests_per_poll(case["symbols"], bulk=case["bulk"])
    rpm, budget = case["requests_per_minute"], case["daily_budget"]
    minute_ok = rpm == 0 or per_poll * LIMITER_MARGIN <= rpm * interval
    day_ok = budget is None or case["reserved_per_day"] + per_poll * max_polls_per_day(interval) <= budget
    return minute_ok and day_ok


def request_times(case: dict, interval: int) -> list[float]:
    """Seconds since midnight of every request of a full session's polls, spaced as the limiter does."""
    per_poll = requests_per_poll(case["symbols"], bulk=case["bulk"])
    gap = LIMITER_MARGIN * 60.0 / case["requests_per_minute"]
    starts = [t.hour * 3600 + t.minute * 60 for t in session_poll_times(dt.date(2026, 11, 24), interval)]
    return [start + i * gap for start in starts for i in range(per_poll)]


@settings(max_examples=400, deadline=None)
@given(budgets)
def test_the_plan_never_exceeds_either_budget_and_is_the_shortest_interval(case):
    plan = plan_interval(**case)
    allowed = [m for m in INTERVALS_MIN if m >= case["min_interval_min"]]
    if plan.interval_min is None:
        assert not any(fits(m, case) for m in allowed), plan
        return
    assert plan.interval_min in allowed and fits(plan.interval_min, case)
    assert not any(fits(m, case) for m in allowed if m < plan.interval_min), "a shorter interval fits"
    assert plan.requests_per_day == plan.requests_per_poll * plan.polls_per_day
    if case["daily_budget"] is not None:
        assert plan.requests_per_day + case["reserved_per_day"] <= case["daily_budget"]


@settings(max_examples=60, deadline=None)
@given(budgets.filter(lambda c: c["requests_per_minute"] > 0 and c["symbols"] <= 400))
def test_no_sixty_seconds_ever_hold_more_requests_than_the_rate(case):
    plan = plan_interval(**case)
    if plan.interval_min is None:
        return
    times = request_times(case, plan.interval_min)
    limit = case["requests_per_minute"]
    j = 0
    for i, t in enumerate(times):  # sliding window [t, t + 60)
        while times[j] < t - 60 + 1e-9:
            j += 1
        assert i - j + 1 <= limit + 1e-9, (case, t)


sessions_range = st.dates(dt.date(2000, 1, 1), dt.date(2026, 12, 31))


@settings(max_examples=300, deadline=None)
@given(sessions_range, st.sampled_from(INTERVALS_MIN))
def test_polls_are_only_during_a_sessions_hours_and_never_on_a_holiday(day, interval):
    calendar = nyse()
    polls = session_poll_times(day, interval)
    if not calendar.is_session(day):
        assert polls == []
        return
    session = calendar.session(day)
    assert all(session.open_at <= t < session.close_at for t in polls)
    assert all(calendar.is_open(t) and is_poll_time(t, interval) for t in polls)
    assert len(polls) <= max_polls_per_day(interval)  # the daily budget holds on every session
    if session.is_early_close:
        assert all(t.time() < dt.time(13, 0) for t in polls)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(dt.datetime(2000, 1, 3), dt.datetime(2026, 12, 31)), st.sampled_from(INTERVALS_MIN))
def test_a_poll_time_is_always_within_a_session(naive, interval):
    at = naive.replace(tzinfo=NEW_YORK)
    if is_poll_time(at, interval):
        assert nyse().is_open(at)


def cron_fires(expression: str, day: dt.date) -> set[dt.time]:
    minutes, hours, _, _, weekdays = expression.split()
    assert weekdays == "1-5"
    if day.weekday() >= 5:
        return set()
    return {dt.time(int(h), int(m)) for h in hours.split(",") for m in minutes.split(",")}


def test_the_cron_lines_fire_at_every_poll_and_the_check_drops_the_rest():
    """Every poll instant of every session of 2025-2026 is a cron instant, and the cron instants that are
    not polls (holidays, after an early close) are exactly the ones is_poll_time refuses."""
    for interval in INTERVALS_MIN:
        crons = cron_expressions(interval)
        day = dt.date(2025, 1, 1)
        while day <= dt.date(2026, 12, 31):
            fires = set().union(*(cron_fires(c, day) for c in crons))
            polls = {t.time() for t in session_poll_times(day, interval)}
            assert polls <= fires, (interval, day)
            kept = {t for t in fires if is_poll_time(dt.datetime.combine(day, t, tzinfo=NEW_YORK), interval)}
            assert kept == polls, (interval, day)
            day += dt.timedelta(days=1)


def test_worked_examples():
    # ten symbols, a 75/min premium key without a daily limit: the minimum interval
    plan = plan_interval(10, bulk=False, requests_per_minute=75, daily_budget=None, reserved_per_day=20,
                         min_interval_min=5)
    assert (plan.interval_min, plan.polls_per_day, plan.requests_per_day) == (5, 78, 780)
    # 500 symbols with bulk quotes: 5 requests a poll
    assert plan_interval(500, bulk=True, requests_per_minute=75, daily_budget=None, reserved_per_day=0,
                         min_interval_min=1).requests_per_poll == 5
    # a daily budget stretches the interval, and says so
    stretched = plan_interval(100, bulk=False, requests_per_minute=75, daily_budget=5000, reserved_per_day=200,
                              min_interval_min=1)
    assert stretched.interval_min == 10 and "stretched" in stretched.reason
    # a free key's 25 requests a day: nothing fits beside the daily DAG's 20
    assert plan_interval(10, bulk=False, requests_per_minute=5, daily_budget=25, reserved_per_day=20,
                         min_interval_min=5).interval_min is None
    # the day after Thanksgiving closes at 13:00: half-hourly polls stop at 12:30
    assert [t.time().isoformat("minutes") for t in session_poll_times(dt.date(2026, 11, 27), 30)][-1] == "12:30"
    assert session_poll_times(dt.date(2026, 11, 26), 5) == []  # Thanksgiving
