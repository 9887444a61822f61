"""The sandbox's prices during a session: intraday bars, quotes and bulk quotes that move with its clock.

A session's minute-by-minute price is a Brownian bridge from the symbol's daily open to its daily
close (the daily walk of `data.generate`), clamped to the daily bar's low and high, so the intraday
view agrees with the daily bar it ends in. The bridge is seeded by (symbol, day): a price depends only
on (symbol, minute), so two requests in the same minute see the same price and the next minute moves.

What a request sees depends on its key, like the real API: a free key, or a premium key without
`entitlement`, gets end-of-day data (the last completed session); `entitlement=realtime` sees the clock's
minute, `entitlement=delayed` the minute 15 minutes earlier. Outside a session (and before the open plus
the delay) the newest data is the last completed session's close.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import orjson
from datapipe_common.calendar import NEW_YORK, Session, nyse

from extract.sandbox.data import SandboxRequest, Series, global_quote_payload, profile, symbol_seed

DELAY = dt.timedelta(minutes=15)
COMPACT_BARS = 100
BULK_ENDPOINT = "Realtime Bulk Quotes"
DELAYED_QUOTE_KEY = "Global Quote - DATA DELAYED BY 15 MINUTES"


def visible_time(now: dt.datetime, entitlement: str | None) -> dt.datetime | None:
    """The newest instant a request may see: the clock (realtime), 15 minutes back (delayed), or None
    (end of day: the last completed session only)."""
    if entitlement == "realtime":
        return now
    if entitlement == "delayed":
        return now - DELAY
    return None


@dataclass(frozen=True)
class SessionView:
    """One session as far as a request sees it: the session, and the minutes elapsed (its length when
    it is over)."""

    session: Session
    minutes: int  # 0 .. total

    @property
    def total(self) -> int:
        return int((self.session.close_at - self.session.open_at).total_seconds() // 60)

    @property
    def is_live(self) -> bool:
        return self.minutes < self.total

    def at(self, minute: int) -> dt.datetime:
        return self.session.open_at + dt.timedelta(minutes=minute)


def session_view(now: dt.datetime, entitlement: str | None) -> SessionView:
    """The session a request at `now` sees, and how far into it (early closes: the calendar's close)."""
    calendar = nyse()
    local = now.astimezone(NEW_YORK)
    seen = visible_time(local, entitlement)
    if seen is not None and calendar.is_open(seen):
        session = calendar.session(seen.date())
        return SessionView(session, int((seen - session.open_at).total_seconds() // 60))
    day = calendar.latest_completed_session(seen or local, delay=dt.timedelta(0))
    session = calendar.session(day)
    view = SessionView(session, 0)
    return SessionView(session, view.total)


@lru_cache(maxsize=512)
def _bridge(symbol: str, day: dt.date, open_: float, close: float, low: float, high: float,
            minutes: int) -> tuple[float, ...]:
    """The price at each minute 0..minutes of a session: open at 0, close at `minutes`."""
    rng = random.Random(symbol_seed(symbol) ^ day.toordinal())  # noqa: S311 - deterministic data, not crypto
    sigma = profile(symbol).sigma / math.sqrt(max(1, minutes)) * 0.3
    walk = [0.0]
    for _ in range(minutes):
        walk.append(walk[-1] + rng.gauss(0.0, 1.0))
    end = walk[-1]
    prices = []
    for m, w in enumerate(walk):
        f = m / minutes if minutes else 1.0
        price = open_ + (close - open_) * f + open_ * sigma * (w - f * end)
        prices.append(min(high, max(low, price)))
    prices[0], prices[-1] = open_, close
    return tuple(prices)


def minute_prices(series: Series, view: SessionView) -> tuple[float, ...]:
    """The session's minute prices (the series must end on the view's session)."""
    bar = series.bars[-1]
    return _bridge(series.symbol, view.session.day, float(bar["1. open"]), series.closes[-1], float(bar["3. low"]),
                   float(bar["2. high"]), view.total)


@lru_cache(maxsize=512)
def _cumulative_volume(symbol: str, day: dt.date, minutes: int, daily_volume: int) -> tuple[int, ...]:
    """Shares traded by the end of each minute 0..minutes (minute 0: none), summing to about the day's."""
    rng = random.Random(symbol_seed(symbol) ^ (day.toordinal() << 1))  # noqa: S311 - deterministic data
    per_minute = daily_volume / max(1, minutes)
    total, out = 0.0, [0]
    for _ in range(minutes):
        total += per_minute * rng.uniform(0.5, 1.5)
        out.append(int(total))
    return tuple(out)


def volume_between(series: Series, view: SessionView, start: int, end: int) -> int:
    cumulative = _cumulative_volume(series.symbol, view.session.day, view.total, series.volumes[-1])
    return cumulative[end] - cumulative[start]


def _fmt(x: float) -> str:
    return f"{x:.4f}"


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(NEW_YORK).strftime("%Y-%m-%d %H:%M:%S")


def intraday_payload(series: Series, view: SessionView, interval_min: int) -> bytes:
    """TIME_SERIES_INTRADAY: the session's bars of `interval_min` up to the visible minute, newest first,
    each keyed by its start time; the newest may still be forming (its close is the visible minute's
    price). Compact: the newest 100 bars."""
    prices = minute_prices(series, view)
    last = max(view.minutes, 1) if view.is_live else view.total
    bars: dict[str, dict[str, str]] = {}
    for start in range(0, last, interval_min):
        end = min(start + interval_min, last)
        window = prices[start:end + 1]
        volume = volume_between(series, view, start, end)
        bars[_stamp(view.at(start))] = {"1. open": _fmt(window[0]), "2. high": _fmt(max(window)),
                                        "3. low": _fmt(min(window)), "4. close": _fmt(window[-1]),
                                        "5. volume": str(volume)}
    stamps = sorted(bars, reverse=True)[:COMPACT_BARS]
    interval = f"{interval_min}min"
    return orjson.dumps({
        "Meta Data": {
            "1. Information": f"Intraday ({interval}) open, high, low, close prices and volume",
            "2. Symbol": series.symbol,
            "3. Last Refreshed": stamps[0],
            "4. Interval": interval,
            "5. Output Size": "Compact",
            "6. Time Zone": "US/Eastern",
        },
        f"Time Series ({interval})": {s: bars[s] for s in stamps},
    })


def live_bar(series: Series, view: SessionView) -> dict[str, str]:
    """The session's bar as it stands at the visible minute (the daily bar's fields)."""
    prices = minute_prices(series, view)[:view.minutes + 1]
    volume = volume_between(series, view, 0, view.minutes)
    return {"1. open": _fmt(prices[0]), "2. high": _fmt(max(prices)), "3. low": _fmt(min(prices)),
            "4. close": _fmt(prices[-1]), "5. volume": str(volume)}


def global_quote(series: Series, view: SessionView, *, delayed: bool) -> bytes:
    """GLOBAL_QUOTE at the visible minute; with entitlement=delayed under the delayed key."""
    body = global_quote_payload(series, live_bar(series, view) if view.is_live else None)
    if delayed:
        return orjson.dumps({DELAYED_QUOTE_KEY: orjson.loads(body)["Global Quote"]})
    return body


def bulk_item(series: Series, view: SessionView) -> dict[str, str]:
    """One REALTIME_BULK_QUOTES item (every value a string), at the visible minute."""
    bar = live_bar(series, view) if view.is_live else series.bars[-1]
    prev = series.closes[-2] if len(series.closes) > 1 else series.closes[-1]
    price = float(bar["4. close"])
    change = price - prev
    return {
        "symbol": series.symbol,
        "timestamp": _stamp(view.at(view.minutes)) + ".000",
        "open": bar["1. open"],
        "high": bar["2. high"],
        "low": bar["3. low"],
        "close": bar["4. close"],
        "volume": bar["5. volume"],
        "previous_close": _fmt(prev),
        "change": _fmt(change),
        "change_percent": _fmt(change / prev * 100 if prev else 0.0),
        "extended_hours_quote": _fmt(price),
        "extended_hours_change": "0.0000",
        "extended_hours_change_percent": "0.0000",
    }


def bulk_payload(symbols: list[str], view: SessionView, series_for: Callable[[str, dt.date], Series]) -> bytes:
    """REALTIME_BULK_QUOTES: one item per known symbol, in the order asked."""
    items = [bulk_item(series_for(s, view.session.day), view) for s in symbols]
    return orjson.dumps({"endpoint": BULK_ENDPOINT, "data": items})


# -- the registry's generators (extract.endpoints): a request with its view of the session ---------------

def _view(request: SandboxRequest) -> SessionView:
    if request.view is None:
        raise ValueError(f"{request.symbol}: a clocked endpoint's request needs the session view")
    return request.view


def intraday_answer(request: SandboxRequest) -> bytes:
    interval = request.params.get("interval", "5min")
    return intraday_payload(request.series, _view(request), int(interval.removesuffix("min")))


def global_quote_answer(request: SandboxRequest) -> bytes:
    return global_quote(request.series, _view(request), delayed=request.params.get("entitlement") == "delayed")


def bulk_answer(request: SandboxRequest) -> bytes:
    if request.series_for is None:
        raise ValueError("a bulk request needs series_for")
    symbols = [s for s in request.params.get("symbols", request.symbol).split(",") if s]
    return bulk_payload(symbols, _view(request), request.series_for)
