"""Holdings of the portfolio page: input (editable table or CSV `symbol,shares,cost_basis`), validation and
valuation (no Streamlit here: pages/portfolio.py shows them).

`cost_basis` is what was paid for the whole position (not per share), in the symbol's currency.
Validation never stops at the first problem: each bad row gets one message naming the row and what
is wrong, and every valid row is still valued.

Numbers are plain decimals: digits with an optional dot (`1500`, `1.5`, a leading `$` allowed). A
comma is refused whatever it means (`1,5` is 1.5 in much of Europe and 15 to Python's locale-free
parsing, `1,500` is 1500 in the US): the message shows the accepted form. Exponents, `inf`, `nan`
and hexadecimal are not numbers here. Bounds: 0 < shares <= MAX_SHARES, 0 <= cost_basis <=
MAX_COST_BASIS. Text echoed in a message is cut to ECHO_CHARS and kept on one line; the page
escapes it before Streamlit's markdown sees it.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

CSV_COLUMNS = ("symbol", "shares", "cost_basis")
# The upload limit, in Streamlit's megabytes (MiB): the server refuses bigger uploads before reading
# them (`--server.maxUploadSize`, cli.py), the uploader announces it, and the parser checks it again.
MAX_UPLOAD_MB = 1
MAX_CSV_BYTES = MAX_UPLOAD_MB * 1024 * 1024
# Documented bounds (docs/dashboard.md): a billion shares, a trillion of cost.
MAX_SHARES = 1_000_000_000
MAX_COST_BASIS = 1_000_000_000_000
MAXIMUM = {"shares": MAX_SHARES, "cost_basis": MAX_COST_BASIS}
# The page lists at most this many problems (then "... and N more").
MAX_PROBLEMS_SHOWN = 20
# User text quoted in a message is cut to this many characters.
ECHO_CHARS = 24
ACCEPTED_FORM = "write numbers like 1500 or 1.5"
_DECIMAL = re.compile(r"[-+]?\$?(\d+(\.\d*)?|\.\d+)")


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


def echo(raw: object, limit: int = ECHO_CHARS) -> str:
    """User text quoted in a message: on one line, at most `limit` characters."""
    text = " ".join(str(raw).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _value(raw: object, name: str) -> float | str:
    """The field as a number within its bounds, or what is wrong with it."""
    if raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return f"{name} is missing"
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        value = float(raw)
        if math.isinf(value):
            return f"{name} {value} is not a finite number"
    else:
        text = str(raw).strip()
        if not text:
            return f"{name} is missing"
        if "," in text:
            return (f"{name} '{echo(text)}' contains a comma: {ACCEPTED_FORM}"
                    " (no thousands separator, a dot for decimals)")
        if not _DECIMAL.fullmatch(text):
            return f"{name} '{echo(text)}' is not a number: {ACCEPTED_FORM}"
        value = float(text.replace("$", ""))
        if math.isinf(value):  # digits beyond any float
            return f"{name} '{echo(text)}' is above the maximum {MAXIMUM[name]}"
    if value < 0:
        return f"{name} {_fmt(value)} is negative"
    if value > MAXIMUM[name]:
        return f"{name} {_fmt(value)} is above the maximum {MAXIMUM[name]}"
    return value


def validate_record(record: Mapping[str, object], where: str, known: Iterable[str]) -> Holding | Problem:
    """One row -> a Holding, or the first Problem found in it."""
    symbol = str(record.get("symbol") or "").strip().upper()
    if not symbol or symbol == "NAN" or symbol == "NONE":
        return Problem(where, "symbol is empty")
    known_set = known if isinstance(known, set | frozenset) else set(known)
    if symbol not in known_set:
        return Problem(where, f"unknown symbol '{echo(symbol)}' (not in the published marts)")
    values: dict[str, float] = {}
    for name in ("shares", "cost_basis"):
        value = _value(record.get(name), name)
        if isinstance(value, str):
            return Problem(where, value)
        values[name] = value
    if values["shares"] == 0:
        return Problem(where, "shares is 0 (leave the row out instead)")
    return Holding(symbol, values["shares"], values["cost_basis"])


def _fmt(value: float) -> str:
    """A number as typed: integers without a fraction, others in their shortest form."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:g}" if abs(value) >= 1e15 else repr(value)


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
        return Parsed([], [Problem("CSV file", f"larger than {MAX_UPLOAD_MB} MB")])
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return Parsed([], [Problem("CSV file", f"not UTF-8 text (byte {exc.start})")])
    if "\x00" in text:
        return Parsed([], [Problem("CSV file", "not a text file (contains NUL bytes)")])
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        return Parsed([], [Problem("CSV file", f"malformed CSV ({echo(exc, 80)})")])
    numbered = [(n, r) for n, r in enumerate(rows, start=1) if any(cell.strip() for cell in r)]
    if not numbered:
        return Parsed([], [Problem("CSV file", "empty; expected the header symbol,shares,cost_basis")])
    header_line, header = numbered[0]
    names = [h.strip().lower() for h in header]
    if sorted(names) != sorted(CSV_COLUMNS):
        return Parsed(
            [],
            [Problem(f"CSV line {header_line}",
                     f"header must be symbol,shares,cost_basis; got {echo(','.join(header), 80)}")],
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
