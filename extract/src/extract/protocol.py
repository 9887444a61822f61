"""Alpha Vantage's protocol: turn one HTTP answer into validated data or a typed error.

Alpha Vantage reports most errors as HTTP 200 with a JSON body keyed `Error Message`, `Note` or
`Information`, so the status code alone means little: look for the expected key, then classify.
Nothing here raises anything but an `ExtractError` subclass for any input (property-tested).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter, le
from typing import Any, NamedTuple

import orjson

from extract.errors import (
    EmptyAnswerError,
    PermanentSymbolError,
    PremiumFeatureError,
    StopAllError,
    ThrottledError,
    TransientError,
)
from extract.masking import mask_secret

DAILY = "TIME_SERIES_DAILY"
OVERVIEW = "OVERVIEW"
GLOBAL_QUOTE = "GLOBAL_QUOTE"
ETF_PROFILE = "ETF_PROFILE"
SERIES_KEY = "Time Series (Daily)"
BAR_FIELDS = ("1. open", "2. high", "3. low", "4. close", "5. volume")
QUOTE_FIELDS = (
    "01. symbol",
    "02. open",
    "03. high",
    "04. low",
    "05. price",
    "06. volume",
    "07. latest trading day",
    "08. previous close",
    "09. change",
    "10. change percent",
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_get_bar = itemgetter(*BAR_FIELDS)
_INF = math.inf
_NUMBER_TYPES = {str, int, float}
SNIPPET = 160

_THROTTLE_HINTS = ("per minute", "per second", "call frequency", "sparingly", "burst", "too many requests")
_QUOTA_HINTS = ("per day", "daily rate limit", "daily limit", "requests today")


class Content(NamedTuple):
    """What a valid answer holds (an endpoint's parser returns it)."""

    items: int  # daily bars, or 1 for an overview / quote
    last_refreshed: str | None = None
    first_day: str | None = None  # a time series: its oldest and newest day (YYYY-MM-DD)
    last_day: str | None = None


@dataclass(frozen=True)
class Parsed:
    """A validated payload: the body exactly as received, and what it holds."""

    function: str
    symbol: str
    body: bytes
    bars: int  # daily bars, or 1 for an overview / quote
    last_refreshed: str | None = None
    first_day: str | None = None  # a time series: the oldest and newest day it holds
    last_day: str | None = None


def _snippet(body: bytes) -> str:
    text = body[:SNIPPET].decode("utf-8", "replace").replace("\n", " ").strip()
    return text + ("..." if len(body) > SNIPPET else "")


def classify_message(doc: dict[str, Any], key: str | None) -> None:
    """Raise the typed error for an `Error Message` / `Note` / `Information` body (masked)."""
    if "Error Message" in doc:
        raw = str(doc["Error Message"])
        text = mask_secret(raw, key)
        if "apikey" in raw.lower() or "api key" in raw.lower():
            raise StopAllError(f"the API refused the key: {text}", reason_code="demo_key")
        raise PermanentSymbolError(f"Error Message: {text}", reason_code="invalid_symbol")
    for field in ("Information", "Note"):
        if field not in doc:
            continue
        raw = str(doc[field])
        low = raw.lower()  # classify the API's own words; only the message we keep is masked
        text = mask_secret(raw, key)
        if "is a premium endpoint" in low or "premium-only" in low:
            raise StopAllError(f"premium endpoint: {text}", reason_code="premium_endpoint")
        if "premium feature" in low:
            # a parameter value (outputsize=full on a free key): permanent for this request only
            raise PremiumFeatureError(f"premium feature: {text}")
        if "demo" in low and "api key" in low:
            raise StopAllError(f"demo API key: {text}", reason_code="demo_key")
        if field == "Note" or any(h in low for h in _THROTTLE_HINTS):
            raise ThrottledError(f"throttled ({field}): {text}")
        if any(h in low for h in _QUOTA_HINTS):
            raise StopAllError(f"daily quota exhausted: {text}", reason_code="daily_quota")
        # An unknown notice: treat like throttling (bounded retries), and keep its text.
        raise ThrottledError(f"unexpected {field}: {text}")


def decode(status: int, content_type: str | None, body: bytes, key: str | None) -> Any:
    """HTTP status + body -> the JSON document, or a typed transport error."""
    if status == 429:
        raise ThrottledError(f"HTTP 429 Too Many Requests: {mask_secret(_snippet(body), key)}")
    if status >= 500:
        raise TransientError(f"HTTP {status}: {mask_secret(_snippet(body), key)}", reason_code="http_error")
    if status != 200:
        raise PermanentSymbolError(f"HTTP {status}: {mask_secret(_snippet(body), key)}", reason_code="http_error")
    stripped = body.lstrip()
    if not stripped:
        raise TransientError("empty response body", reason_code="invalid_payload")
    if stripped[:1] == b"<" or (content_type and "html" in content_type.lower()):
        raise TransientError(
            f"non-JSON answer (HTML page): {mask_secret(_snippet(stripped), key)}", reason_code="http_error"
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise TransientError(
            f"invalid or truncated JSON ({len(body)} bytes): {exc}", reason_code="invalid_payload"
        ) from None


def _expect_dict(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise TransientError(f"{what}: expected a JSON object, got {type(doc).__name__}", reason_code="invalid_payload")
    if not doc:
        raise TransientError(f"{what}: empty JSON object {{}}", reason_code="invalid_payload")
    return doc


def _check_symbol(got: Any, symbol: str, where: str) -> None:
    if not isinstance(got, str) or got.strip().upper() != symbol.upper():
        raise PermanentSymbolError(f"{where} is {got!r}, requested {symbol!r}", reason_code="invalid_payload")


def _explain_bar(day: Any, bar: Any) -> str:
    """Why one bar is invalid (slow path, only after the fast check failed)."""
    if not isinstance(day, str) or not _DATE.fullmatch(day):
        return f"date key {day!r} is not YYYY-MM-DD"
    try:
        dt.date.fromisoformat(day)
    except ValueError:
        return f"date {day!r} is not a calendar date"
    if not isinstance(bar, dict):
        return f"bar {day}: expected an object, got {type(bar).__name__}"
    values = []
    for name in BAR_FIELDS:
        if name not in bar:
            return f"bar {day}: field {name!r} missing"
        raw = bar[name]
        try:
            if isinstance(raw, bool):
                raise TypeError
            value = float(raw)
        except (TypeError, ValueError):
            return f"bar {day}: {name} = {raw!r} is not a number"
        if not math.isfinite(value) or value < 0:
            return f"bar {day}: {name} = {raw!r} is not a finite, non-negative number"
        values.append(value)
    o, h, low, c, _ = values
    if not (low <= o <= h and low <= c <= h):
        return f"bar {day}: OHLC inconsistent (open {o}, high {h}, low {low}, close {c})"
    return ""


def validate_series(series: dict[str, Any], body: bytes = b"") -> int:
    """Check every bar of a daily series; return the number of bars. Vectorised through C-level
    map/itemgetter so a 5000-bar series costs milliseconds; the slow path (_explain_bar) only explains."""
    days = list(series)
    bars = list(series.values())
    try:
        # 10 characters, ISO, and no week-date form ("2024-W19-5" also parses): exactly YYYY-MM-DD.
        ok = set(map(len, days)) == {10} and "W" not in "".join(days)
        if ok:
            set(map(dt.date.fromisoformat, days))
            rows = list(map(_get_bar, bars))
            opens, highs, lows, closes, volumes = zip(*rows, strict=True)
            columns = (opens, highs, lows, closes, volumes)
            if (b"true" in body or b"false" in body or not body) and not all(
                set(map(type, col)) <= _NUMBER_TYPES for col in columns
            ):
                ok = False  # JSON true/false: float() would accept them
            else:
                o = list(map(float, opens))
                h = list(map(float, highs))
                lo = list(map(float, lows))
                c = list(map(float, closes))
                v = list(map(float, volumes))
                ok = (
                    all(map(le, lo, o))
                    and all(map(le, o, h))
                    and all(map(le, lo, c))
                    and all(map(le, c, h))
                    and min(lo) >= 0
                    and max(h) < _INF
                    and min(v) >= 0
                    and max(v) < _INF
                )
    except (TypeError, ValueError, KeyError, AttributeError):
        ok = False
    if ok:
        return len(days)
    for day, bar in series.items():
        reason = _explain_bar(day, bar)
        if reason:
            raise PermanentSymbolError(f"invalid bar: {reason}", reason_code="invalid_payload")
    raise PermanentSymbolError("invalid series (no single bar to blame)", reason_code="invalid_payload")


def parse_daily(doc: Any, symbol: str, key: str | None, body: bytes = b"") -> Content:
    doc = _expect_dict(doc, DAILY)
    if SERIES_KEY not in doc:
        classify_message(doc, key)
        raise TransientError(
            f"{SERIES_KEY!r} missing (keys: {', '.join(map(str, list(doc)[:5]))})", reason_code="invalid_payload"
        )
    meta = doc.get("Meta Data")
    if not isinstance(meta, dict):
        raise PermanentSymbolError("'Meta Data' missing or not an object", reason_code="invalid_payload")
    _check_symbol(meta.get("2. Symbol"), symbol, "Meta Data '2. Symbol'")
    series = doc[SERIES_KEY]
    if not isinstance(series, dict):
        raise PermanentSymbolError(f"{SERIES_KEY!r} is not an object", reason_code="invalid_payload")
    if not series:
        raise PermanentSymbolError(f"{SERIES_KEY!r} is empty", reason_code="invalid_payload")
    bars = validate_series(series, body)
    last = meta.get("3. Last Refreshed")
    return Content(bars, last if isinstance(last, str) else None, min(series), max(series))


_MISSING = ("None", "-", "")


def parse_overview(doc: Any, symbol: str, key: str | None, body: bytes = b"") -> Content:
    if doc == {}:  # Alpha Vantage's answer for a symbol it has no overview of (an ETF, a delisted symbol)
        raise EmptyAnswerError(f"OVERVIEW answered {{}}: no company overview of {symbol}")
    if isinstance(doc, dict) and "Symbol" not in doc:
        classify_message(doc, key)
    doc = _expect_dict(doc, OVERVIEW)
    if "Symbol" not in doc:
        raise TransientError(
            f"'Symbol' missing (keys: {', '.join(map(str, list(doc)[:5]))})", reason_code="invalid_payload"
        )
    _check_symbol(doc["Symbol"], symbol, "OVERVIEW 'Symbol'")
    for name, value in doc.items():
        if not isinstance(value, str):
            raise PermanentSymbolError(
                f"OVERVIEW field {name!r} is {value!r}, expected a string", reason_code="invalid_payload"
            )
        if "\x00" in value or "\x00" in name:
            raise PermanentSymbolError(f"OVERVIEW field {name!r} holds a NUL character", reason_code="invalid_payload")
    for name in ("MarketCapitalization", "PERatio", "DividendYield", "Beta", "SharesOutstanding"):
        value = doc.get(name, "None")
        if value in _MISSING:
            continue
        try:
            number = float(value)
        except ValueError:
            raise PermanentSymbolError(
                f"OVERVIEW {name} = {value!r} is not a number", reason_code="invalid_payload"
            ) from None
        if not math.isfinite(number):
            raise PermanentSymbolError(f"OVERVIEW {name} = {value!r} is not finite", reason_code="invalid_payload")
    return Content(1)


ETF_FIELDS = ("net_assets", "net_expense_ratio", "portfolio_turnover", "dividend_yield", "inception_date",
              "leveraged", "sectors", "holdings")


def parse_etf_profile(doc: Any, symbol: str, key: str | None, body: bytes = b"") -> Content:
    """ETF_PROFILE: a flat object of strings (no symbol in it) plus `sectors` and `holdings` lists of
    objects of strings; `{}` for a symbol that is not a fund."""
    if doc == {}:
        raise EmptyAnswerError(f"ETF_PROFILE answered {{}}: {symbol} is not a fund Alpha Vantage knows")
    if isinstance(doc, dict) and not any(f in doc for f in ETF_FIELDS):
        classify_message(doc, key)
    doc = _expect_dict(doc, ETF_PROFILE)
    if not any(f in doc for f in ETF_FIELDS):
        raise TransientError(f"no ETF_PROFILE field (keys: {', '.join(map(str, list(doc)[:5]))})",
                             reason_code="invalid_payload")
    for name, value in doc.items():
        items = value if name in ("sectors", "holdings") else [{name: value}]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise PermanentSymbolError(f"ETF_PROFILE {name!r} is not a list of objects", reason_code="invalid_payload")
        for item in items:
            for field, text in item.items():
                if not isinstance(text, str) or "\x00" in text:
                    raise PermanentSymbolError(f"ETF_PROFILE {name} {field!r} = {text!r}: expected a string",
                                               reason_code="invalid_payload")
    for name in ("net_assets", "net_expense_ratio", "dividend_yield"):
        value = doc.get(name, "n/a")
        if value in (*_MISSING, "n/a"):
            continue
        try:
            number = float(value)
        except ValueError:
            raise PermanentSymbolError(f"ETF_PROFILE {name} = {value!r} is not a number",
                                       reason_code="invalid_payload") from None
        if not math.isfinite(number):
            raise PermanentSymbolError(f"ETF_PROFILE {name} = {value!r} is not finite", reason_code="invalid_payload")
    return Content(1)


def parse_global_quote(doc: Any, symbol: str, key: str | None, body: bytes = b"") -> Content:
    if isinstance(doc, dict) and "Global Quote" not in doc:
        classify_message(doc, key)
    doc = _expect_dict(doc, GLOBAL_QUOTE)
    quote = doc.get("Global Quote")
    if not isinstance(quote, dict):
        raise TransientError("'Global Quote' missing or not an object", reason_code="invalid_payload")
    if not quote:
        raise PermanentSymbolError(
            f"empty 'Global Quote' for {symbol!r} (unknown symbol?)", reason_code="invalid_symbol"
        )
    _check_symbol(quote.get("01. symbol"), symbol, "'01. symbol'")
    for name in QUOTE_FIELDS[1:]:
        if name not in quote:
            raise PermanentSymbolError(f"'Global Quote' field {name!r} missing", reason_code="invalid_payload")
        raw = quote[name]
        if not isinstance(raw, str):
            raise PermanentSymbolError(
                f"'Global Quote' {name} = {raw!r} is not a string", reason_code="invalid_payload"
            )
        if name == "07. latest trading day":
            try:
                if not _DATE.fullmatch(raw):
                    raise ValueError(raw)
                dt.date.fromisoformat(raw)
            except ValueError:
                raise PermanentSymbolError(
                    f"'Global Quote' {name} = {raw!r} is not a date", reason_code="invalid_payload"
                ) from None
            continue
        try:
            value = float(raw.removesuffix("%"))
        except ValueError:
            raise PermanentSymbolError(
                f"'Global Quote' {name} = {raw!r} is not a number", reason_code="invalid_payload"
            ) from None
        if not math.isfinite(value):
            raise PermanentSymbolError(f"'Global Quote' {name} = {raw!r} is not finite", reason_code="invalid_payload")
    return Content(1)


def interpret(
    status: int, content_type: str | None, body: bytes, *, function: str, symbol: str, key: str | None = None
) -> Parsed:
    """One HTTP answer -> a validated `Parsed`, or raise TransientError / PermanentSymbolError / StopAllError.
    The function's parser comes from the endpoint registry (extract.endpoints)."""
    from extract.endpoints import endpoint  # the registry imports this module's parsers

    return interpret_with(endpoint(function).parse, status, content_type, body, function=function, symbol=symbol,
                          key=key)


def interpret_with(
    parse: Callable[[Any, str, str | None, bytes], Content], status: int, content_type: str | None, body: bytes, *,
    function: str, symbol: str, key: str | None = None,
) -> Parsed:
    """`interpret` with the endpoint's parser given (helper processes get it pickled by reference)."""
    doc = decode(status, content_type, body, key)
    if isinstance(doc, dict) and doc and "Error Message" in doc:
        classify_message(doc, key)
    content = parse(doc, symbol, key, body)
    return Parsed(function, symbol, body, *content)
