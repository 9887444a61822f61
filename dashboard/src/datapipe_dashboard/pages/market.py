"""Market overview: one row per symbol, freshness badge, breadth metrics."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from datapipe_dashboard import live, queries
from datapipe_dashboard.db import NotPublished
from datapipe_dashboard.settings import Settings
from datapipe_dashboard.ui import as_date, empty_state, freshness_badge, overview, render

DAY_CHANGE_SCALE = 5.0  # +-% at the ends of the day-change bar


def trends(frame: pd.DataFrame) -> pd.Series:
    """close vs SMA 50 vs SMA 200, per row (vectorized: row-wise apply cost ~50 ms per 500 rows)."""
    close, sma50, sma200 = frame["close"], frame["sma_50"], frame["sma_200"]
    labels = np.select(
        [sma50.isna() | sma200.isna(), (close > sma50) & (sma50 > sma200), (close < sma50) & (sma50 < sma200)],
        ["- not enough history", "▲ uptrend", "▼ downtrend"], "◆ mixed",
    )
    return pd.Series(labels, index=frame.index)


def rsi_signal(rsi: Any) -> str:
    if _missing(rsi):
        return ""
    if rsi >= 70:
        return "overbought"
    if rsi <= 30:
        return "oversold"
    return "neutral"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def range_positions(frame: pd.DataFrame) -> pd.Series:
    """Where the last close sits in its 52-week range, 0 (low) to 100 (high); NaN when unknown."""
    low, high, close = frame["low_52w"], frame["high_52w"], frame["close"]
    position = ((close - low) / (high - low) * 100).clip(0.0, 100.0)
    return position.where(low.notna() & high.notna() & (high > low))


def market_table(ov: pd.DataFrame, spark: pd.DataFrame) -> pd.DataFrame:
    numeric = ["close", "previous_close", "day_change", "day_change_pct", "high_52w", "low_52w",
               "sma_20", "sma_50", "sma_200", "rsi_14", "macd", "macd_signal"]
    frame = ov.copy()
    frame[numeric] = frame[numeric].astype(float)
    closes = dict(zip(spark["symbol"], spark["closes"], strict=True)) if not spark.empty else {}
    return pd.DataFrame(
        {
            "symbol": frame["symbol"],
            "name": frame["name"],
            "sector": frame["sector"],
            "close": frame["close"],
            "day_change_pct": frame["day_change_pct"],
            "range_52w": range_positions(frame),
            "low_52w": frame["low_52w"],
            "high_52w": frame["high_52w"],
            "rsi_14": frame["rsi_14"],
            "rsi_signal": frame["rsi_14"].map(rsi_signal),
            "trend": trends(frame),
            "sparkline": frame["symbol"].map(lambda s: list(closes.get(s) or [])),
            "detail": "symbol?symbol=" + frame["symbol"],
            "trade_date": frame["trade_date"],
        }
    )


def page(settings: Settings, q: queries.Query) -> None:
    try:
        ov = overview(q)
    except NotPublished as exc:
        # a fresh deployment: the quotes DAG can publish live prices before the daily DAG's first publish
        empty_state(str(exc))
        live.fragment(settings, lambda: live_prices(settings, when_none=None))
        return
    latest = as_date(ov["trade_date"].max())
    head, badge = st.columns([3, 1], vertical_alignment="bottom")
    head.title("Market overview")
    with badge:
        freshness_badge(latest, settings)

    table = market_table(ov, queries.sparklines(q, latest))
    change = table["day_change_pct"]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Symbols", len(table))
    c2.metric("Advancers", int((change > 0).sum()))
    c3.metric("Decliners", int((change < 0).sum()))
    c4.metric("Median day change", f"{change.median():+.2f} %" if change.notna().any() else "-")

    live.fragment(settings, lambda: live_prices(settings))

    query = st.text_input("Filter", placeholder="symbol, name or sector", label_visibility="collapsed")
    if query:
        needle = query.strip().lower()
        mask = (
            table["symbol"].str.lower().str.contains(needle, regex=False)
            | table["name"].fillna("").str.lower().str.contains(needle, regex=False)
            | table["sector"].fillna("").str.lower().str.contains(needle, regex=False)
        )
        table = table[mask]

    # No pandas Styler: styling 500 rows cost ~0.7 s of server CPU and 600 KB per view. The day change
    # is a diverging bar instead, green above 0 and red below ("auto" colours the upper half green).
    bound = DAY_CHANGE_SCALE
    st.dataframe(
        table,
        hide_index=True,
        width="stretch",
        height=min(38 + 35 * len(table), 760),
        column_order=["symbol", "name", "sector", "close", "day_change_pct", "range_52w", "rsi_14", "rsi_signal",
                      "trend", "sparkline", "detail"],
        column_config={
            "symbol": st.column_config.TextColumn("Symbol", width="small"),
            "name": st.column_config.TextColumn("Name", width="medium"),
            "sector": st.column_config.TextColumn("Sector"),
            "close": st.column_config.NumberColumn("Last close", format="%.2f"),
            "day_change_pct": st.column_config.ProgressColumn(
                "Day change", min_value=-bound, max_value=bound, format="%+.2f %%", color="auto", width=130,
                help=f"green: up, red: down; the bar spans -{bound:g} % .. +{bound:g} %",
            ),
            "range_52w": st.column_config.ProgressColumn(
                "52-week range", min_value=0, max_value=100, format="%.0f %%", color="blue",
                help="Where the last close sits between the 52-week low (0 %) and high (100 %)",
            ),
            "low_52w": st.column_config.NumberColumn("52w low", format="%.2f"),
            "high_52w": st.column_config.NumberColumn("52w high", format="%.2f"),
            "rsi_14": st.column_config.NumberColumn("RSI 14", format="%.1f"),
            "rsi_signal": st.column_config.TextColumn("RSI signal"),
            "trend": st.column_config.TextColumn("Trend", help="close vs SMA 50 vs SMA 200"),
            "sparkline": st.column_config.LineChartColumn(f"Last {queries.SPARKLINE_DAYS} days", color="auto",
                                                          width="medium"),
            "detail": st.column_config.LinkColumn("Detail", display_text="open", width="small"),
        },
    )
    st.caption(f"{len(table)} of {len(ov)} symbols · last trade date {latest:%Y-%m-%d} · "
               "day change: green bar up, red bar down")


def live_prices(settings: Settings, when_none: str | None = live.WHY_NONE) -> None:
    """During the session: the live price of every symbol next to its last close (refreshed in place)."""
    live.block(settings, ["symbol", "price_usd", "change_usd", "change_pct", "last_close_usd", "label"],
               title="Live prices", when_none=when_none)


if __name__ == "__main__":  # Streamlit runs each page as a script (st.navigation in app.py)
    render(page)
