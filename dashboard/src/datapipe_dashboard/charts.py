"""Plotly figures: the symbol chart (candles + volume + RSI + MACD) and the portfolio charts."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

UP, DOWN = "#26a69a", "#ef5350"
OVERLAYS = {
    "SMA 20": ("sma_20", "#f9a825"),
    "SMA 50": ("sma_50", "#fb8c00"),
    "SMA 200": ("sma_200", "#8e24aa"),
    "EMA 12": ("ema_12", "#1e88e5"),
    "EMA 26": ("ema_26", "#3949ab"),
}
BOLLINGER = "Bollinger bands"


def symbol_chart(history: pd.DataFrame, symbol: str, overlays: Iterable[str]) -> go.Figure:
    """Candlestick with the chosen overlays, volume, RSI(14) with 30/70 lines, MACD."""
    h = history
    x = h["trade_date"]
    fig = make_subplots(
        rows=4, cols=1, shared_xaxes=True, vertical_spacing=0.025,
        row_heights=[0.52, 0.14, 0.16, 0.18],
        subplot_titles=(None, "Volume", "RSI (14)", "MACD (12, 26, 9)"),
    )
    fig.add_trace(
        go.Candlestick(
            x=x, open=h["open"], high=h["high"], low=h["low"], close=h["close"], name=symbol,
            increasing_line_color=UP, decreasing_line_color=DOWN, showlegend=False,
        ),
        row=1, col=1,
    )
    chosen = set(overlays)
    for label, (column, color) in OVERLAYS.items():
        if label in chosen:
            fig.add_trace(go.Scatter(x=x, y=h[column], name=label, line={"color": color, "width": 1.3}), row=1, col=1)
    if BOLLINGER in chosen:
        band = {"color": "rgba(120,144,156,0.9)", "width": 1, "dash": "dot"}
        fig.add_trace(go.Scatter(x=x, y=h["bb_upper"], name="BB upper", line=band), row=1, col=1)
        fig.add_trace(
            go.Scatter(x=x, y=h["bb_lower"], name="BB lower", line=band, fill="tonexty",
                       fillcolor="rgba(120,144,156,0.10)"),
            row=1, col=1,
        )
        fig.add_trace(go.Scatter(x=x, y=h["bb_middle"], name="BB middle",
                                 line={"color": "rgba(120,144,156,0.9)", "width": 1}), row=1, col=1)
    colors = [UP if c >= o else DOWN for o, c in zip(h["open"], h["close"], strict=True)]
    fig.add_trace(go.Bar(x=x, y=h["volume"], name="Volume", marker_color=colors, showlegend=False), row=2, col=1)
    fig.add_trace(go.Scatter(x=x, y=h["rsi_14"], name="RSI 14", line={"color": "#5e35b1", "width": 1.3},
                             showlegend=False), row=3, col=1)
    for level, color in ((70, DOWN), (30, UP)):
        fig.add_hline(y=level, line={"color": color, "width": 1, "dash": "dash"}, row=3, col=1)
    hist_colors = [UP if (v or 0) >= 0 else DOWN for v in h["macd_hist"].fillna(0)]
    fig.add_trace(go.Bar(x=x, y=h["macd_hist"], name="MACD hist", marker_color=hist_colors, showlegend=False),
                  row=4, col=1)
    fig.add_trace(go.Scatter(x=x, y=h["macd"], name="MACD", line={"color": "#1e88e5", "width": 1.3}), row=4, col=1)
    fig.add_trace(go.Scatter(x=x, y=h["macd_signal"], name="Signal", line={"color": "#fb8c00", "width": 1.3}),
                  row=4, col=1)
    fig.update_yaxes(range=[0, 100], tickvals=[30, 70], row=3, col=1)
    fig.update_xaxes(rangebreaks=[{"bounds": ["sat", "mon"]}], rangeslider_visible=False)
    fig.update_layout(
        height=820, margin={"l": 10, "r": 10, "t": 30, "b": 10}, hovermode="x unified",
        legend={"orientation": "h", "y": 1.02, "x": 0, "yanchor": "bottom"}, xaxis_rangeslider_visible=False,
    )
    return fig


def value_chart(series: pd.Series, cost: float) -> go.Figure:
    fig = go.Figure(go.Scatter(x=series.index, y=series.values, name="Value", fill="tozeroy",
                               line={"color": "#1e88e5", "width": 1.6}))
    fig.add_hline(y=cost, line={"color": "#757575", "dash": "dash", "width": 1},
                  annotation_text="cost basis", annotation_position="top left")
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 10, "b": 10}, yaxis_title="Value")
    return fig


def allocation_chart(val: pd.DataFrame) -> go.Figure:
    frame = val[val["market_value"] > 0]
    fig = go.Figure(
        go.Treemap(
            labels=[*frame["sector"].unique(), *frame["symbol"]],
            parents=["" for _ in frame["sector"].unique()] + list(frame["sector"]),
            values=[*frame.groupby("sector", sort=False)["market_value"].sum(), *frame["market_value"]],
            branchvalues="total",
            texttemplate="%{label}<br>%{percentRoot:.1%}",
        )
    )
    fig.update_layout(height=360, margin={"l": 0, "r": 0, "t": 10, "b": 0})
    return fig
