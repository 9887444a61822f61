"""Long date ranges are downsampled in the warehouse (queries.PRICE_BARS_SQL): the weekly and monthly
bars must equal an independent aggregation (pandas, from the marts read back by the admin role), and
the symbol page must show them with the daily bar count."""

from __future__ import annotations

import math
from datetime import date, timedelta

import pandas as pd
import pytest
from datapipe_common.marts import INDICATOR_COLUMNS
from datapipe_dashboard import queries
from datapipe_dashboard.db import Connector
from test_pages import frame_with, metrics, no_errors, vega_charts

INDICATORS = list(INDICATOR_COLUMNS)
RULES = {"week": "W-SUN", "month": "M"}  # date_trunc: weeks start on Monday


def test_bar_interval_by_span() -> None:
    d = date(2026, 1, 1)
    assert queries.bar_interval(d - timedelta(days=365), d) == "day"
    assert queries.bar_interval(d - timedelta(days=queries.DAILY_MAX_DAYS), d) == "day"
    assert queries.bar_interval(d - timedelta(days=queries.DAILY_MAX_DAYS + 1), d) == "week"
    assert queries.bar_interval(d - timedelta(days=20 * 365), d) == "month"


def expected_bars(dataset, symbol: str, start: date, end: date, rule: str) -> pd.DataFrame:
    rows = dataset.rows(
        f"select p.trade_date, p.open::float8, p.high::float8, p.low::float8, p.close::float8, p.volume::float8, "
        f"{', '.join(f'i.{c}' for c in INDICATORS)} from marts.fct_daily_prices p "
        "left join marts.fct_technical_indicators i on i.symbol = p.symbol and i.trade_date = p.trade_date "
        "where p.symbol = %s and p.trade_date between %s and %s order by p.trade_date", (symbol, start, end))
    daily = pd.DataFrame(rows, columns=["trade_date", "open", "high", "low", "close", "volume", *INDICATORS])
    daily["period"] = pd.to_datetime(daily["trade_date"]).dt.to_period(rule)
    grouped = daily.groupby("period", sort=True)
    bars = pd.DataFrame({
        "trade_date": grouped["trade_date"].max(), "open": grouped["open"].first(), "high": grouped["high"].max(),
        "low": grouped["low"].min(), "close": grouped["close"].last(), "volume": grouped["volume"].sum(),
        "days": grouped.size(),
    }).reset_index(drop=True)
    last_day = daily.drop(columns="period").set_index("trade_date")[INDICATORS]
    return bars.join(last_day, on="trade_date")


@pytest.mark.parametrize(("years", "unit"), [(3, "week"), (11, "month")])
def test_long_ranges_are_aggregated_exactly(dataset, years: int, unit: str) -> None:
    end = dataset.last_day
    start = end - timedelta(days=365 * years)
    assert queries.bar_interval(start, end) == unit
    conn = Connector(dataset.settings.conninfo)
    try:
        got = queries.price_history(conn.query, "IBM", start, end)
    finally:
        conn.close()
    want = expected_bars(dataset, "IBM", start, end, RULES[unit])
    assert len(got) == len(want) > 10  # the seed holds ~15 months
    assert int(got["days"].sum()) == int(want["days"].sum())
    assert list(pd.to_datetime(got["trade_date"])) == list(pd.to_datetime(want["trade_date"]))
    for column in ["open", "high", "low", "close", "volume", "days", *INDICATORS]:
        for g, w in zip(got[column], want[column], strict=True):
            assert (pd.isna(w) and pd.isna(g)) or math.isclose(float(g), float(w)), (column, g, w)


def test_symbol_page_downsamples_the_whole_history(make_app, published) -> None:
    """The pipeline's sandbox history is ~20 years: the whole range is drawn as coarser bars."""
    at = make_app("symbol", settings=published.settings, query={"symbol": "IBM"})
    (first, last, count), = published.rows("select min(trade_date), max(trade_date), count(*) "
                                           "from marts.fct_daily_prices where symbol = 'IBM'")
    unit = queries.bar_interval(first, last)
    assert unit != "day", f"the sandbox history should span more than two years (has {first} .. {last})"
    at.date_input[0].set_value((first, last)).run()
    no_errors(at)
    want = expected_bars(published, "IBM", first, last, RULES[unit])
    assert metrics(at)["Bars in range"] == f"{count:,}"
    (_, frames), = vega_charts(at)
    candles = frame_with(frames, "close").sort_values("trade_date")
    assert list(candles["close"]) == pytest.approx(list(want["close"]))
    assert list(candles["high"]) == pytest.approx(list(want["high"]))
    assert list(candles["open"]) == pytest.approx(list(want["open"]))
    assert any(f"{len(want):,} {unit}ly bars" in c.value for c in at.caption)
