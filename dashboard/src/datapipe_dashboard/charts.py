"""Vega-Lite (Altair) figures: the symbol chart (candles + volume + RSI + MACD) and the portfolio charts.

Vega-Lite rather than Plotly: the browser loads and starts Streamlit's Vega-Lite bundle (~0.8 MB)
in about a quarter of the time of its Plotly bundle (~4.7 MB), which dominated the first render of
the chart pages. Streamlit ships the charts' data as Arrow datasets (the tests read them back).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import altair as alt
import pandas as pd

UP, DOWN = "#26a69a", "#ef5350"
OVERLAYS = {
    "SMA 20": ("sma_20", "#f9a825"),
    "SMA 50": ("sma_50", "#fb8c00"),
    "SMA 200": ("sma_200", "#8e24aa"),
    "EMA 12": ("ema_12", "#1e88e5"),
    "EMA 26": ("ema_26", "#3949ab"),
}
BOLLINGER = "Bollinger bands"
BAND = "#78909c"
RSI_LEVELS = (30, 70)
WIDTH: Literal["container"] = "container"


def _bar_size(history: pd.DataFrame) -> float:
    """Candle body width in pixels for ~1,300 px of plot: a bar per trading day, week or month."""
    return max(1.0, min(9.0, 0.6 * 1300 / max(len(history), 1)))


def _lines(history: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Long format (trade_date, series, value) of the given label -> column lines."""
    if not columns:
        return pd.DataFrame({"trade_date": pd.Series(dtype="datetime64[ns]"), "series": [], "value": []})
    wide = history[["trade_date", *columns.values()]].rename(columns={v: k for k, v in columns.items()})
    return wide.melt("trade_date", var_name="series", value_name="value")


def symbol_chart(history: pd.DataFrame, symbol: str, overlays: Iterable[str]) -> alt.VConcatChart:
    """Candlestick with the chosen overlays, volume, RSI(14) with 30/70 lines, MACD (line, signal, histogram)."""
    h = history.assign(trade_date=pd.to_datetime(history["trade_date"]), up=history["close"] >= history["open"])
    h["direction"] = h["up"].map({True: "up", False: "down"})
    h["macd_direction"] = (h["macd_hist"].fillna(0) >= 0).map({True: "up", False: "down"})
    chosen = [label for label in (*OVERLAYS, BOLLINGER) if label in set(overlays)]
    size = _bar_size(h)
    x = alt.X("trade_date:T", title=None)
    updown = alt.Color("direction:N", scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]), legend=None)
    prices = alt.Chart(h).encode(x=x)
    tooltip = [alt.Tooltip("trade_date:T", title="date"), alt.Tooltip("open:Q", format=",.2f"),
               alt.Tooltip("high:Q", format=",.2f"), alt.Tooltip("low:Q", format=",.2f"),
               alt.Tooltip("close:Q", format=",.2f"), alt.Tooltip("volume:Q", format=",.0f")]
    wick = prices.mark_rule().encode(y=alt.Y("low:Q", scale=alt.Scale(zero=False), title=symbol), y2="high:Q",
                                     color=updown)
    body = prices.mark_bar(size=size).encode(y="open:Q", y2="close:Q", color=updown, tooltip=tooltip)
    layers: list[Any] = [wick, body]
    line_columns = {label: OVERLAYS[label][0] for label in chosen if label in OVERLAYS}
    line_colors = {label: OVERLAYS[label][1] for label in line_columns}
    if BOLLINGER in chosen:
        layers.insert(0, prices.mark_area(opacity=0.12, color=BAND).encode(y="bb_lower:Q", y2="bb_upper:Q"))
        line_columns |= {"BB upper": "bb_upper", "BB middle": "bb_middle", "BB lower": "bb_lower"}
        line_colors |= {"BB upper": BAND, "BB middle": BAND, "BB lower": BAND}
    if line_columns:
        layers.append(
            alt.Chart(_lines(h, line_columns)).mark_line(strokeWidth=1.3).encode(
                x=x, y="value:Q",
                color=alt.Color("series:N", scale=alt.Scale(domain=list(line_colors), range=list(line_colors.values())),
                                legend=alt.Legend(orient="top", title=None)),
            )
        )
    price = alt.layer(*layers).resolve_scale(color="independent").properties(height=400, width=WIDTH)
    volume = prices.mark_bar(size=size).encode(
        y=alt.Y("volume:Q", title="Volume", axis=alt.Axis(format="~s")), color=updown,
    ).properties(height=90, width=WIDTH)
    rsi_axis = alt.Y("rsi_14:Q", title="RSI (14)", scale=alt.Scale(domain=[0, 100]), axis=alt.Axis(values=[30, 70]))
    rsi = alt.layer(
        prices.mark_line(color="#5e35b1", strokeWidth=1.3).encode(y=rsi_axis),
        *[alt.Chart().mark_rule(color=color, strokeDash=[4, 3]).encode(y=alt.datum(level))
          for level, color in zip(RSI_LEVELS, (UP, DOWN), strict=True)],
    ).properties(height=110, width=WIDTH)
    macd = alt.layer(
        prices.mark_bar(size=size).encode(
            y=alt.Y("macd_hist:Q", title="MACD (12, 26, 9)"),
            color=alt.Color("macd_direction:N", scale=alt.Scale(domain=["up", "down"], range=[UP, DOWN]), legend=None),
        ),
        prices.mark_line(color="#1e88e5", strokeWidth=1.3).encode(y="macd:Q"),
        prices.mark_line(color="#fb8c00", strokeWidth=1.3).encode(y="macd_signal:Q"),
    ).properties(height=130, width=WIDTH)
    chart: alt.VConcatChart = alt.vconcat(price, volume, rsi, macd, spacing=6).resolve_scale(
        x="shared", color="independent")
    return chart


def value_chart(series: pd.Series, cost: float) -> alt.LayerChart:
    frame = pd.DataFrame({"date": pd.to_datetime(series.index), "value": series.to_numpy(dtype=float)})
    area = alt.Chart(frame).mark_area(line={"color": "#1e88e5"}, color="#1e88e5", opacity=0.25).encode(
        x=alt.X("date:T", title=None), y=alt.Y("value:Q", title="Value", scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("date:T"), alt.Tooltip("value:Q", format=",.2f")],
    )
    basis = alt.Chart().mark_rule(color="#757575", strokeDash=[5, 4]).encode(y=alt.datum(cost))
    return alt.LayerChart(layer=[area, basis], height=340, width=WIDTH)


def allocation_chart(val: pd.DataFrame) -> alt.Chart:
    """Market value per position, coloured by sector, largest first, labelled with its weight."""
    frame = val.loc[val["market_value"] > 0, ["symbol", "sector", "market_value"]].copy()
    frame["sector"] = frame["sector"].fillna("unknown")
    frame["weight"] = frame["market_value"] / frame["market_value"].sum()
    chart: alt.Chart = alt.Chart(frame).mark_bar().encode(
        y=alt.Y("symbol:N", sort="-x", title=None),
        x=alt.X("market_value:Q", title="Market value"),
        color=alt.Color("sector:N", legend=alt.Legend(orient="bottom", title=None)),
        tooltip=["symbol", "sector", alt.Tooltip("market_value:Q", format=",.2f"),
                 alt.Tooltip("weight:Q", format=".1%")],
    ).properties(height=max(120, 28 * len(frame)), width=WIDTH)
    return chart
