"""Symbol detail: candlestick + volume, overlays, RSI and MACD panels, date range, company facts."""

from __future__ import annotations

import math
from datetime import date, timedelta
from typing import Any

import pandas as pd
import streamlit as st

from datapipe_dashboard import charts, live, queries
from datapipe_dashboard.db import NotPublished
from datapipe_dashboard.settings import Settings
from datapipe_dashboard.ui import as_date, overview, render

DEFAULT_OVERLAYS = ["SMA 50", "SMA 200"]


def _fmt_number(value: Any, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    v = float(value)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M")):
        if abs(v) >= size:
            return f"{v / size:.2f} {suffix}{unit}"
    return f"{v:,.2f}{unit}"


def page(settings: Settings, q: queries.Query) -> None:
    ov = overview(q)
    names = dict(zip(ov["symbol"], ov["name"], strict=True))
    symbols = list(ov["symbol"])
    wanted = str(st.query_params.get("symbol", symbols[0])).upper()
    index = symbols.index(wanted) if wanted in symbols else 0

    st.title("Symbol detail")
    top = st.columns([2, 3, 3])
    symbol = top[0].selectbox("Symbol", symbols, index=index, format_func=lambda s: f"{s} — {names.get(s) or ''}")
    st.query_params["symbol"] = symbol

    bounds = queries.price_bounds(q, symbol)
    if bounds.empty or pd.isna(bounds["last_date"].iloc[0]):
        st.info(f"No published prices for {symbol} yet.")
        return
    first, last = as_date(bounds["first_date"].iloc[0]), as_date(bounds["last_date"].iloc[0])
    default_start = max(first, last - timedelta(days=365))
    picked = top[1].date_input("Date range", value=(default_start, last), min_value=first, max_value=last,
                               key=f"range_{symbol}")
    start, end = _range(picked, default_start, last)
    overlays = top[2].pills("Overlays", [*charts.OVERLAYS, charts.BOLLINGER], selection_mode="multi",
                            default=DEFAULT_OVERLAYS, key="overlays")

    history = queries.price_history(q, symbol, start, end)
    if history.empty:
        st.info(f"No bars for {symbol} between {start} and {end}.")
        return
    interval = queries.bar_interval(start, end)
    numeric = [c for c in history.columns if c not in ("trade_date", "days")]
    history[numeric] = history[numeric].astype(float)
    row = ov[ov["symbol"] == symbol].iloc[0]

    m = st.columns(5)
    m[0].metric("Last close", f"{float(row['close']):,.2f}",
                f"{float(row['day_change_pct']):+.2f} %" if pd.notna(row["day_change_pct"]) else None)
    m[1].metric("52-week high", _fmt_number(row["high_52w"]))
    m[2].metric("52-week low", _fmt_number(row["low_52w"]))
    m[3].metric("RSI 14", _fmt_number(row["rsi_14"]))
    m[4].metric("Bars in range", f"{int(history['days'].sum()):,}", help="daily bars (trading days) in the range")

    live.fragment(settings, lambda: live_price(settings, symbol))
    st.vega_lite_chart(spec=charts.symbol_chart(history, symbol, overlays or []), key="symbol_chart",
                     width="stretch")
    shown = "daily bars" if interval == "day" else (
        f"{len(history):,} {interval}ly bars (open of the first day, high, low, close of the last day, "
        "volume summed; indicators as of the last day)")
    st.caption(f"{symbol}: {start:%Y-%m-%d} → {end:%Y-%m-%d}, {shown}; "
               f"Published history {first:%Y-%m-%d} → {last:%Y-%m-%d}{history_note(q, symbol, first)}.")
    company_facts(queries.company(q, symbol), symbol)


def live_price(settings: Settings, symbol: str) -> None:
    """During the session: the live price and its change since the last close, and today's intraday
    line when bars exist (refreshed in place)."""
    frame = live.quotes(settings)
    if frame is None:
        return
    row = frame[frame["symbol"] == symbol]
    if row.empty:
        st.caption(live.WHY_NONE)
        return
    quote = row.iloc[0]
    cols = st.columns([1, 3])
    closed = pd.notna(quote["last_close_usd"])
    cols[0].metric("Live price", f"{quote['price_usd']:,.2f}",
                   f"{quote['change_usd']:+,.2f} ({quote['change_pct']:+.2f} %)" if pd.notna(quote["change_usd"])
                   else None, help=f"vs the last close {quote['last_close_usd']:,.2f}" if closed else live.NO_CLOSE)
    cols[0].caption(quote["label"])
    bars = live.intraday(settings, symbol)
    if not bars.empty:
        with cols[1]:
            close = float(quote["last_close_usd"]) if pd.notna(quote["last_close_usd"]) else None
            st.vega_lite_chart(spec=charts.intraday_chart(bars, close), key="intraday_chart", width="stretch")


def history_note(q: queries.Query, symbol: str, first: date) -> str:
    """'; history since <date> (free key)' when the symbol was never loaded with its full history:
    a free key gets the newest 100 sessions only, so indicators needing more bars start later."""
    try:
        loads = queries.history_loads(q, symbol)
    except NotPublished:  # no extraction log to read (an older warehouse): say nothing
        return ""
    if loads.empty or int(loads["loads"].iloc[0]) == 0 or int(loads["full_loads"].iloc[0]) > 0:
        return ""
    return f"; history since {first:%Y-%m-%d} (free key)"


def _range(picked: Any, default_start: date, last: date) -> tuple[date, date]:
    if isinstance(picked, tuple | list):
        if len(picked) == 2:
            return picked[0], picked[1]
        if len(picked) == 1:
            return picked[0], last
    if isinstance(picked, date):
        return picked, last
    return default_start, last


def company_facts(frame: pd.DataFrame, symbol: str) -> None:
    st.subheader("Company")
    if frame.empty:
        st.info(f"No company facts for {symbol} in marts.dim_company.")
        return
    c = frame.iloc[0]
    st.markdown(f"**{c['name'] or symbol}** · {c['exchange'] or '-'} · {c['currency'] or '-'} · {c['country'] or '-'}")
    cols = st.columns(6)
    cols[0].metric("Sector", c["sector"] or "-")
    cols[1].metric("Industry", c["industry"] or "-")
    cols[2].metric("Market cap", _fmt_number(c["market_capitalization"]))
    cols[3].metric("P/E", _fmt_number(c["pe_ratio"]))
    dy = c["dividend_yield"]
    cols[4].metric("Dividend yield", "-" if dy is None or pd.isna(dy) else f"{float(dy) * 100:.2f} %")
    cols[5].metric("Beta", _fmt_number(c["beta"]))
    if c["description"]:
        st.write(c["description"])
    if c["updated_at"] is not None and not pd.isna(c["updated_at"]):
        updated = pd.Timestamp(c["updated_at"])
        st.caption(f"Company facts updated {updated:%Y-%m-%d %H:%M} · type {c['asset_type'] or '-'}")


if __name__ == "__main__":  # Streamlit runs each page as a script (st.navigation in app.py)
    render(page)
