"""Independent Python reference of the indicator definitions in ISSUE 3 / docs/transform.md.

Straightforward loops over a list of closes, written from the definitions (not from the SQL), so
the marts can be compared value by value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

Series = list[float | None]


def sma(closes: Sequence[float], n: int) -> Series:
    return [None if i < n - 1 else sum(closes[i - n + 1 : i + 1]) / n for i in range(len(closes))]


def ema(values: Sequence[float | None], n: int) -> Series:
    """EMA with alpha 2/(n+1); the n-th defined value is the mean of the first n; None before."""
    alpha = 2 / (n + 1)
    out: Series = []
    seen: list[float] = []
    prev: float | None = None
    for v in values:
        if v is None:
            out.append(None)
            continue
        seen.append(v)
        if len(seen) < n:
            out.append(None)
        elif len(seen) == n:
            prev = sum(seen) / n
            out.append(prev)
        else:
            assert prev is not None
            prev = alpha * v + (1 - alpha) * prev
            out.append(prev)
    return out


def macd(closes: Sequence[float]) -> tuple[Series, Series, Series]:
    e12, e26 = ema(closes, 12), ema(closes, 26)
    line: Series = [a - b if a is not None and b is not None else None for a, b in zip(e12, e26, strict=True)]
    signal = ema(line, 9)
    hist: Series = [m - s if m is not None and s is not None else None for m, s in zip(line, signal, strict=True)]
    return line, signal, hist


def rsi(closes: Sequence[float], n: int = 14) -> Series:
    out: Series = [None] * len(closes)
    gains = [max(closes[i] - closes[i - 1], 0.0) for i in range(1, len(closes))]
    losses = [max(closes[i - 1] - closes[i], 0.0) for i in range(1, len(closes))]
    if len(gains) < n:
        return out
    avg_gain = sum(gains[:n]) / n
    avg_loss = sum(losses[:n]) / n
    for k in range(n - 1, len(gains)):
        if k >= n:
            avg_gain = (avg_gain * (n - 1) + gains[k]) / n
            avg_loss = (avg_loss * (n - 1) + losses[k]) / n
        out[k + 1] = 100.0 if avg_loss == 0 else 100 - 100 / (1 + avg_gain / avg_loss)
    return out


def bollinger(closes: Sequence[float], n: int = 20, k: float = 2.0) -> tuple[Series, Series, Series]:
    upper: Series = []
    middle: Series = []
    lower: Series = []
    for i in range(len(closes)):
        if i < n - 1:
            upper.append(None)
            middle.append(None)
            lower.append(None)
            continue
        window = closes[i - n + 1 : i + 1]
        mean = sum(window) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in window) / n)
        upper.append(mean + k * sd)
        middle.append(mean)
        lower.append(mean - k * sd)
    return upper, middle, lower


def indicators(closes: Sequence[float]) -> dict[str, Series]:
    line, signal, hist = macd(closes)
    upper, middle, lower = bollinger(closes)
    return {
        "sma_20": sma(closes, 20),
        "sma_50": sma(closes, 50),
        "sma_200": sma(closes, 200),
        "ema_12": ema(closes, 12),
        "ema_26": ema(closes, 26),
        "macd": line,
        "macd_signal": signal,
        "macd_hist": hist,
        "rsi_14": rsi(closes),
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
    }


def daily_prices(highs: Sequence[float], lows: Sequence[float], closes: Sequence[float]) -> dict[str, Series]:
    ret: Series = [None] + [closes[i] / closes[i - 1] - 1 for i in range(1, len(closes))]
    hi: Series = [max(highs[max(0, i - 251) : i + 1]) for i in range(len(highs))]
    lo: Series = [min(lows[max(0, i - 251) : i + 1]) for i in range(len(lows))]
    return {"daily_return": ret, "high_52w": hi, "low_52w": lo}


def close_enough(a: float | None, b: float | None, rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=0.0) or a == b
