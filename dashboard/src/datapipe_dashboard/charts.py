"""Vega-Lite figures (plain spec dicts for `st.vega_lite_chart`): the symbol chart (candles + volume +
RSI + MACD) and the portfolio charts.

Why Vega-Lite and why plain dicts (measured with bench/dashboard.py, see bench/README.md):
- the browser loads and starts Streamlit's Vega-Lite bundle (~0.8 MB) in about a quarter of the
  time of its Plotly bundle (~4.7 MB), which dominated the first render of the chart pages;
- building the same chart through Altair objects (deep copies, JSON-schema validation) cost
  ~1 s of server CPU per view; a dict costs nothing. Streamlit ships the `datasets` as Arrow.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pandas as pd

Spec = dict[str, Any]

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
RSI_LEVELS = {30: UP, 70: DOWN}
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
ONE_ROW: Spec = {"values": [{}]}  # data of a constant rule (a mark without data draws nothing)
UPDOWN = {"field": "direction", "type": "nominal", "legend": None,
          "scale": {"domain": ["up", "down"], "range": [UP, DOWN]}}


def _bar_size(bars: int) -> float:
    """Candle body width in pixels for ~1,300 px of plot: one bar per trading day, week or month."""
    return max(1.0, min(9.0, 0.6 * 1300 / max(bars, 1)))


def _lines(history: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """Long format (trade_date, series, value) of the given label -> column lines."""
    wide = history[["trade_date", *columns.values()]].rename(columns={v: k for k, v in columns.items()})
    return wide.melt("trade_date", var_name="series", value_name="value")


def symbol_chart(history: pd.DataFrame, symbol: str, overlays: Iterable[str]) -> Spec:
    """Candlestick with the chosen overlays, volume, RSI(14) with 30/70 lines, MACD (line, signal,
    histogram), stacked with a shared date axis. Datasets: `prices` (one row per bar) and `lines`."""
    h = history.assign(trade_date=pd.to_datetime(history["trade_date"]))
    h["direction"] = (h["close"] >= h["open"]).map({True: "up", False: "down"})
    h["macd_direction"] = (h["macd_hist"].fillna(0) >= 0).map({True: "up", False: "down"})
    wanted = set(overlays)
    line_columns = {label: column for label, (column, _) in OVERLAYS.items() if label in wanted}
    line_colors = {label: color for label, (_, color) in OVERLAYS.items() if label in wanted}
    size = _bar_size(len(h))
    x = {"field": "trade_date", "type": "temporal", "title": None}
    prices = {"name": "prices"}

    def q(field: str, **extra: Any) -> Spec:
        return {"field": field, "type": "quantitative", **extra}

    tooltip = [{"field": "trade_date", "type": "temporal", "title": "date"},
               *[q(f, format=",.2f") for f in ("open", "high", "low", "close")], q("volume", format=",.0f")]
    price_layers: list[Spec] = []
    if BOLLINGER in wanted:
        price_layers.append({"data": prices, "mark": {"type": "area", "opacity": 0.12, "color": BAND},
                             "encoding": {"x": x, "y": q("bb_lower"), "y2": {"field": "bb_upper"}}})
        line_columns |= {"BB upper": "bb_upper", "BB middle": "bb_middle", "BB lower": "bb_lower"}
        line_colors |= {"BB upper": BAND, "BB middle": BAND, "BB lower": BAND}
    price_layers += [
        {"data": prices, "mark": {"type": "rule"},
         "encoding": {"x": x, "y": q("low", scale={"zero": False}, title=symbol), "y2": {"field": "high"},
                      "color": UPDOWN}},
        {"data": prices, "mark": {"type": "bar", "size": size},
         "encoding": {"x": x, "y": q("open"), "y2": {"field": "close"}, "color": UPDOWN, "tooltip": tooltip}},
    ]
    if line_columns:
        price_layers.append(
            {"data": {"name": "lines"}, "mark": {"type": "line", "strokeWidth": 1.3},
             "encoding": {"x": x, "y": q("value"),
                          "color": {"field": "series", "type": "nominal",
                                    "scale": {"domain": list(line_colors), "range": list(line_colors.values())},
                                    "legend": {"orient": "top", "title": None}}}}
        )
    panels: list[Spec] = [
        {"layer": price_layers, "resolve": {"scale": {"color": "independent"}}, "height": 400},
        {"data": prices, "mark": {"type": "bar", "size": size}, "height": 90,
         "encoding": {"x": x, "y": q("volume", title="Volume", axis={"format": "~s"}), "color": UPDOWN}},
        {"height": 110, "layer": [
            {"data": prices, "mark": {"type": "line", "color": "#5e35b1", "strokeWidth": 1.3},
             "encoding": {"x": x, "y": q("rsi_14", title="RSI (14)", scale={"domain": [0, 100]},
                                         axis={"values": list(RSI_LEVELS)})}},
            *[{"data": ONE_ROW, "mark": {"type": "rule", "color": color, "strokeDash": [4, 3]},
               "encoding": {"y": {"datum": level}}} for level, color in RSI_LEVELS.items()],
        ]},
        {"height": 130, "layer": [
            {"data": prices, "mark": {"type": "bar", "size": size},
             "encoding": {"x": x, "y": q("macd_hist", title="MACD (12, 26, 9)"),
                          "color": {**UPDOWN, "field": "macd_direction"}}},
            {"data": prices, "mark": {"type": "line", "color": "#1e88e5", "strokeWidth": 1.3},
             "encoding": {"x": x, "y": q("macd")}},
            {"data": prices, "mark": {"type": "line", "color": "#fb8c00", "strokeWidth": 1.3},
             "encoding": {"x": x, "y": q("macd_signal")}},
        ]},
    ]
    lines = _lines(h, line_columns) if line_columns else pd.DataFrame(columns=["trade_date", "series", "value"])
    return {
        "$schema": SCHEMA,
        "vconcat": [{**p, "width": "container"} for p in panels],
        "spacing": 6,
        "resolve": {"scale": {"x": "shared", "color": "independent"}},
        "datasets": {"prices": h, "lines": lines},
    }


def value_chart(series: pd.Series, cost: float) -> Spec:
    """Portfolio value over time (area) with the cost basis as a dashed line. Dataset: `value`."""
    frame = pd.DataFrame({"date": pd.to_datetime(series.index), "value": series.to_numpy(dtype=float)})
    return {
        "$schema": SCHEMA,
        "height": 340, "width": "container",
        "datasets": {"value": frame},
        "layer": [
            {"data": {"name": "value"}, "mark": {"type": "area", "color": "#1e88e5", "opacity": 0.25,
                                                 "line": {"color": "#1e88e5"}},
             "encoding": {"x": {"field": "date", "type": "temporal", "title": None},
                          "y": {"field": "value", "type": "quantitative", "title": "Value", "scale": {"zero": False}},
                          "tooltip": [{"field": "date", "type": "temporal"},
                                      {"field": "value", "type": "quantitative", "format": ",.2f"}]}},
            {"data": ONE_ROW, "mark": {"type": "rule", "color": "#757575", "strokeDash": [5, 4]},
             "encoding": {"y": {"datum": cost}}},
        ],
    }


def allocation_chart(val: pd.DataFrame) -> Spec:
    """Market value per position, coloured by sector, largest first. Dataset: `allocation`."""
    frame = val.loc[val["market_value"] > 0, ["symbol", "sector", "market_value"]].copy()
    frame["sector"] = frame["sector"].fillna("unknown")
    frame["weight"] = frame["market_value"] / frame["market_value"].sum()
    return {
        "$schema": SCHEMA,
        # "fit" sizing subtracts the axis and legend from the height: leave room for both.
        "height": 110 + 40 * len(frame), "width": "container",
        "datasets": {"allocation": frame},
        "data": {"name": "allocation"},
        "mark": {"type": "bar"},
        "encoding": {
            "y": {"field": "symbol", "type": "nominal", "sort": "-x", "title": None},
            "x": {"field": "market_value", "type": "quantitative", "title": "Market value"},
            "color": {"field": "sector", "type": "nominal", "legend": {"orient": "top", "title": None}},
            "tooltip": [{"field": "symbol"}, {"field": "sector"},
                        {"field": "market_value", "type": "quantitative", "format": ",.2f"},
                        {"field": "weight", "type": "quantitative", "format": ".1%"}],
        },
    }


def intraday_chart(bars: pd.DataFrame, last_close: float | None) -> Spec:
    """Today's intraday line (bar times in New York time, as labelled), with the last close as a rule."""
    frame = pd.DataFrame({
        "time": pd.to_datetime(bars["bar_at"], utc=True).dt.tz_convert("America/New_York").dt.tz_localize(None)
        .dt.strftime("%Y-%m-%dT%H:%M:%S"),
        "close": bars["close"].astype(float),
    })
    layers: list[Spec] = [{
        "data": {"values": frame.to_dict("records")},
        "mark": {"type": "line", "interpolate": "step-after"},
        "encoding": {
            "x": {"field": "time", "type": "temporal", "title": "today (ET)", "axis": {"format": "%H:%M"}},
            "y": {"field": "close", "type": "quantitative", "title": "price", "scale": {"zero": False}},
        },
    }]
    if last_close is not None:
        layers.append({"data": ONE_ROW, "mark": {"type": "rule", "strokeDash": [4, 4], "color": BAND},
                       "encoding": {"y": {"datum": last_close}}})
    return {"$schema": SCHEMA, "height": 160, "layer": layers}
