"""Holdings of the portfolio page: input (editable table or CSV `symbol,shares,cost_basis`), validation and
valuation (no Streamlit here: pages/portfolio.py shows them).

`cost_basis` is what was paid for the whole position (not per share), in the symbol's currency.
Validation never stops at the first problem: each bad row gets one message naming the row and what
is wrong, and every valid row is still valued.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

CSV_COLUMNS = ("symbol", "shares", "cost_basis")
MAX_CSV_BYTES = 1_000_000


@dataclass(frozen=True)
class Holding:
    symbol: str
    shares: float
    cost_basis: float


@dataclass(frozen=True)
class Problem:
    where: str  # "CSV line 3", "table row 2", "CSV file"
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True)
class Parsed:
    holdings: list[Holding]
    problems: list[Problem]


def _number(raw: object) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, int | float):
        value = float(raw)
    else:
        text = str(raw).strip().replace(",", "").replace("$", "")
        if not text:
            return None
        value = float(text)  # ValueError propagates to the caller, which names the field
    return value


def validate_record(record: Mapping[str, object], where: str, known: Iterable[str]) -> Holding | Problem:
    """One row -> a Holding, or the first Problem found in it."""
    symbol = str(record.get("symbol") or "").strip().upper()
    if not symbol or symbol == "NAN" or symbol == "NONE":
        return Problem(where, "symbol is empty")
    known_set = set(known)
    if symbol not in known_set:
        return Problem(where, f"unknown symbol '{symbol}' (not in the published marts)")
    values: dict[str, float] = {}
    for name in ("shares", "cost_basis"):
        raw = record.get(name)
        try:
            value = _number(raw)
        except ValueError:
            return Problem(where, f"{name} '{raw}' is not a number")
        if value is None or math.isnan(value):
            return Problem(where, f"{name} is missing")
        if math.isinf(value):
            return Problem(where, f"{name} '{raw}' is not a finite number")
        if value < 0:
            return Problem(where, f"{name} {_fmt(value)} is negative")
        values[name] = value
    if values["shares"] == 0:
        return Problem(where, "shares is 0 (leave the row out instead)")
    return Holding(symbol, values["shares"], values["cost_basis"])


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def parse_table(frame: pd.DataFrame, known: Iterable[str]) -> Parsed:
    """Rows of the editable table (1-based row numbers); fully empty rows are ignored."""
    known_set = set(known)
    holdings: list[Holding] = []
    problems: list[Problem] = []
    for number, (_, row) in enumerate(frame.iterrows(), start=1):
        record = {c: row.get(c) for c in CSV_COLUMNS}
        if all(_blank(v) for v in record.values()):
            continue
        result = validate_record(record, f"table row {number}", known_set)
        (holdings if isinstance(result, Holding) else problems).append(result)  # type: ignore[arg-type]
    return Parsed(holdings, problems)


def _blank(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def parse_csv(data: bytes, known: Iterable[str]) -> Parsed:
    """A CSV file with the header `symbol,shares,cost_basis` (any order, case-insensitive)."""
    known_set = set(known)
    if len(data) > MAX_CSV_BYTES:
        return Parsed([], [Problem("CSV file", f"larger than {MAX_CSV_BYTES // 1000} kB")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Parsed([], [Problem("CSV file", f"not UTF-8 text (byte {exc.start})")])
    if "\x00" in text:
        return Parsed([], [Problem("CSV file", "not a text file (contains NUL bytes)")])
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        return Parsed([], [Problem("CSV file", f"malformed CSV ({exc})")])
    numbered = [(n, r) for n, r in enumerate(rows, start=1) if any(cell.strip() for cell in r)]
    if not numbered:
        return Parsed([], [Problem("CSV file", "empty; expected the header symbol,shares,cost_basis")])
    header_line, header = numbered[0]
    names = [h.strip().lower() for h in header]
    if sorted(names) != sorted(CSV_COLUMNS):
        return Parsed(
            [],
            [Problem(f"CSV line {header_line}", f"header must be symbol,shares,cost_basis; got {','.join(header)}")],
        )
    holdings: list[Holding] = []
    problems: list[Problem] = []
    for line, row in numbered[1:]:
        where = f"CSV line {line}"
        if len(row) != len(names):
            problems.append(Problem(where, f"expected 3 fields (symbol,shares,cost_basis), got {len(row)}"))
            continue
        result = validate_record(dict(zip(names, row, strict=True)), where, known_set)
        (holdings if isinstance(result, Holding) else problems).append(result)  # type: ignore[arg-type]
    if not holdings and not problems:
        problems.append(Problem("CSV file", "has a header but no holdings"))
    return Parsed(holdings, problems)


def positions(holdings: Iterable[Holding]) -> pd.DataFrame:
    """One row per symbol (several lots of a symbol are added up)."""
    frame = pd.DataFrame([h.__dict__ for h in holdings], columns=["symbol", "shares", "cost_basis"])
    return frame.groupby("symbol", as_index=False)[["shares", "cost_basis"]].sum()


def valuation(pos: pd.DataFrame, last_close: Mapping[str, float], sector: Mapping[str, str]) -> pd.DataFrame:
    """Per position: last close, market value, P/L in currency and %, weight."""
    out = pos.copy()
    out["last_close"] = out["symbol"].map(last_close).astype(float)
    out["sector"] = out["symbol"].map(sector).fillna("Unknown")
    out["market_value"] = out["shares"] * out["last_close"]
    out["pl"] = out["market_value"] - out["cost_basis"]
    out["pl_pct"] = (out["pl"] / out["cost_basis"].where(out["cost_basis"] > 0)) * 100
    total = out["market_value"].sum()
    out["weight_pct"] = out["market_value"] / total * 100 if total else 0.0
    return out


def totals(val: pd.DataFrame) -> dict[str, float]:
    value = float(val["market_value"].sum())
    cost = float(val["cost_basis"].sum())
    pl = value - cost
    return {"value": value, "cost": cost, "pl": pl, "pl_pct": (pl / cost * 100) if cost else math.nan}


def value_over_time(pos: pd.DataFrame, closes: pd.DataFrame) -> pd.Series:
    """Daily portfolio value: shares x close, carried forward over a symbol's missing days, from the
    first day every held symbol has a price."""
    if closes.empty:
        return pd.Series(dtype=float, name="value")
    wide = closes.pivot_table(index="trade_date", columns="symbol", values="close", aggfunc="last")
    wide = wide.astype(float).sort_index().ffill().dropna()
    shares = pos.set_index("symbol")["shares"].reindex(wide.columns).fillna(0.0)
    series = (wide * shares).sum(axis=1)
    series.name = "value"
    return series
