"""A deterministic warehouse for the dashboard tests: the `marts` and `ops` tables exactly as
docs/warehouse.md defines them, filled with generated (seeded) data, and the reader grants that
`quality grant-reader` gives the `dashboard` role. Run as the admin (superuser) role.

The bench (bench/dashboard.py) reuses `create_tables`, `grant_reader` and `indicators`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from datapipe_common import libpq
from datapipe_common.calendar import nyse

# "Now" for the tests: Thanksgiving 2026, 15:00 UTC; the last completed trading day is Wed 2026-11-25.
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
LAST_DAY = date(2026, 11, 25)
BARS = 320

COMPANIES = [
    # symbol, name, sector, industry, exchange, currency, start price
    ("AAPL", "Apple Inc", "TECHNOLOGY", "CONSUMER ELECTRONICS", "NASDAQ", "USD", 190.0),
    ("IBM", "International Business Machines", "TECHNOLOGY", "IT SERVICES", "NYSE", "USD", 160.0),
    ("JPM", "JPMorgan Chase & Co", "FINANCIAL SERVICES", "BANKS - DIVERSIFIED", "NYSE", "USD", 150.0),
    ("MSFT", "Microsoft Corporation", "TECHNOLOGY", "SOFTWARE - INFRASTRUCTURE", "NASDAQ", "USD", 370.0),
    ("XOM", "Exxon Mobil Corporation", "ENERGY", "OIL & GAS INTEGRATED", "NYSE", "USD", 105.0),
]

# published without a company overview (issue 14): listed on the data-quality page
NO_PROFILE = {"XOM": "no company profile"}

DDL = """
create schema if not exists marts;
create schema if not exists ops;
create table if not exists marts.dim_company (
    symbol text primary key, name text, description text, asset_type text, exchange text, currency text,
    country text, sector text, industry text, market_capitalization bigint, pe_ratio numeric,
    dividend_yield numeric, beta numeric, updated_at timestamptz, profile_source text
);
create table if not exists marts.fct_daily_prices (
    symbol text not null, trade_date date not null, open numeric(18, 4), high numeric(18, 4),
    low numeric(18, 4), close numeric(18, 4), volume bigint, daily_return double precision,
    high_52w numeric(18, 4), low_52w numeric(18, 4), primary key (symbol, trade_date)
);
create table if not exists marts.fct_technical_indicators (
    symbol text not null, trade_date date not null, sma_20 double precision, sma_50 double precision,
    sma_200 double precision, ema_12 double precision, ema_26 double precision, macd double precision,
    macd_signal double precision, macd_hist double precision, rsi_14 double precision,
    bb_upper double precision, bb_middle double precision, bb_lower double precision,
    primary key (symbol, trade_date)
);
create table if not exists marts.mart_market_overview (
    symbol text primary key, name text, sector text, industry text, trade_date date, close numeric(18, 4),
    previous_close numeric(18, 4), day_change numeric(18, 4), day_change_pct double precision, volume bigint,
    high_52w numeric(18, 4), low_52w numeric(18, 4), sma_20 double precision, sma_50 double precision,
    sma_200 double precision, ema_12 double precision, ema_26 double precision, macd double precision,
    macd_signal double precision, macd_hist double precision, rsi_14 double precision,
    bb_upper double precision, bb_middle double precision, bb_lower double precision
);
create table if not exists ops.extract_runs (
    run_id uuid primary key, command text, function text, started_at timestamptz, finished_at timestamptz,
    status text, symbols_requested int, symbols_succeeded int, symbols_failed int, requests int, bars int,
    base_url text
);
create table if not exists ops.extract_run_symbols (
    run_id uuid, symbol text, function text, output_size text, status text, bars int, requests int,
    reason_code text, reason text, started_at timestamptz, finished_at timestamptz, primary key (run_id, symbol)
);
create table if not exists ops.gate_runs (
    gate_run_id uuid primary key, started_at timestamptz, finished_at timestamptz, success bool,
    audit_schema text, expectations_total int, expectations_failed int, data_docs_path text
);
create table if not exists ops.gate_results (
    gate_run_id uuid, mart text, expectation_type text, column_name text, kwargs jsonb, success bool,
    observed_value text, details text
);
create table if not exists ops.publish_history (
    publish_id bigint generated always as identity primary key, gate_run_id uuid, published_at timestamptz,
    status text, row_counts jsonb
);
"""

OPS_TABLES = ("extract_runs", "extract_run_symbols", "gate_runs", "gate_results", "publish_history")


def grant_reader(conn: psycopg.Connection[Any], role: str = "dashboard") -> None:
    """What `quality grant-reader` grants: USAGE + SELECT on marts and on the ops tables shown."""
    conn.execute(f"grant usage on schema marts, ops to {role}")
    conn.execute(f"grant select on all tables in schema marts to {role}")
    for table in OPS_TABLES:
        conn.execute(f"grant select on ops.{table} to {role}")


def create_tables(conn: psycopg.Connection[Any]) -> None:
    conn.execute(DDL)


def sessions_ending(end: date, count: int) -> list[date]:
    """The `count` NYSE sessions up to `end`, oldest first."""
    calendar = nyse()
    days = [calendar.session_on_or_before(end)]
    while len(days) < count:
        days.append(calendar.previous_session(days[-1]))
    return days[::-1]


def indicators(prices: pd.DataFrame) -> pd.DataFrame:
    """Indicators of one symbol's bars (sorted by date), computed the textbook way."""
    close = prices["close"].astype(float)
    out = pd.DataFrame({"symbol": prices["symbol"], "trade_date": prices["trade_date"]})
    for n in (20, 50, 200):
        out[f"sma_{n}"] = close.rolling(n).mean()
    out["ema_12"] = close.ewm(span=12, adjust=False).mean()
    out["ema_26"] = close.ewm(span=26, adjust=False).mean()
    out["macd"] = out["ema_12"] - out["ema_26"]
    out["macd_signal"] = out["macd"].ewm(span=9, adjust=False).mean()
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    delta = close.diff()
    gain = delta.clip(lower=0).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    loss = (-delta.clip(upper=0)).ewm(alpha=1 / 14, adjust=False, min_periods=14).mean()
    out["rsi_14"] = 100 - 100 / (1 + gain / loss)
    std = close.rolling(20).std(ddof=0)
    out["bb_middle"] = out["sma_20"]
    out["bb_upper"] = out["sma_20"] + 2 * std
    out["bb_lower"] = out["sma_20"] - 2 * std
    out.loc[out.index[:25], ["ema_12", "ema_26", "macd", "macd_signal", "macd_hist"]] = np.nan
    return out


def generate_prices(symbol: str, start_price: float, days: list[date], rng: np.random.Generator) -> pd.DataFrame:
    returns = rng.normal(0.0004, 0.015, len(days))
    close = np.round(start_price * np.exp(np.cumsum(returns)), 2)
    open_ = np.round(np.concatenate([[start_price], close[:-1]]) * (1 + rng.normal(0, 0.004, len(days))), 2)
    high = np.round(np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.006, len(days)))), 2)
    low = np.round(np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.006, len(days)))), 2)
    volume = rng.integers(1_000_000, 30_000_000, len(days))
    frame = pd.DataFrame({"symbol": symbol, "trade_date": days, "open": open_, "high": high, "low": low,
                          "close": close, "volume": volume})
    frame["daily_return"] = frame["close"].pct_change()
    frame["high_52w"] = frame["high"].rolling(252, min_periods=1).max()
    frame["low_52w"] = frame["low"].rolling(252, min_periods=1).min()
    return frame


def overview_rows(prices: pd.DataFrame, ind: pd.DataFrame, company: tuple[Any, ...]) -> dict[str, Any]:
    last, prev = prices.iloc[-1], prices.iloc[-2]
    i = ind.iloc[-1]
    change = round(float(last["close"]) - float(prev["close"]), 4)
    row = {"symbol": company[0], "name": company[1], "sector": company[2], "industry": company[3],
           "trade_date": last["trade_date"], "close": float(last["close"]), "previous_close": float(prev["close"]),
           "day_change": change, "day_change_pct": change / float(prev["close"]) * 100,
           "volume": int(last["volume"]), "high_52w": float(last["high_52w"]), "low_52w": float(last["low_52w"])}
    for c in ("sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist", "rsi_14",
              "bb_upper", "bb_middle", "bb_lower"):
        row[c] = None if pd.isna(i[c]) else float(i[c])
    return row


def _copy(conn: psycopg.Connection[Any], table: str, frame: pd.DataFrame) -> None:
    cols = ", ".join(frame.columns)
    with conn.cursor() as cur, cur.copy(f"copy {table} ({cols}) from stdin") as copy:
        for rec in frame.itertuples(index=False):
            copy.write_row([None if (isinstance(v, float) and np.isnan(v)) else v for v in rec])


def seed_marts(conn: psycopg.Connection[Any], *, last_day: date = LAST_DAY, bars: int = BARS) -> None:
    rng = np.random.default_rng(20261126)
    days = sessions_ending(last_day, bars)
    overview = []
    for company in COMPANIES:
        symbol, start_price = company[0], company[6]
        prices = generate_prices(symbol, start_price, days, rng)
        ind = indicators(prices)
        _copy(conn, "marts.fct_daily_prices", prices)
        _copy(conn, "marts.fct_technical_indicators", ind)
        overview.append(overview_rows(prices, ind, company))
        conn.execute(
            "insert into marts.dim_company values (%s, %s, %s, 'Common Stock', %s, %s, 'USA', %s, %s, %s, %s, %s,"
            " %s, %s, %s)",
            (symbol, company[1], f"{company[1]} is a company in the {company[2].lower()} sector.", company[4],
             company[5], company[2], company[3], int(start_price * 1e9), 24.5, 0.021, 1.1, NOW - timedelta(hours=3),
             NO_PROFILE.get(symbol, "company overview")),
        )
    _copy(conn, "marts.mart_market_overview", pd.DataFrame(overview))


def seed_ops(conn: psycopg.Connection[Any], now: datetime = NOW) -> None:
    """Two runs today (one with failures), one yesterday; a passed gate today, a failed one yesterday."""
    base = "http://127.0.0.1:8765/query"
    today_run, today_co, yesterday = uuid.UUID(int=1), uuid.UUID(int=2), uuid.UUID(int=3)
    runs = [
        (today_run, "extract prices", "TIME_SERIES_DAILY", now - timedelta(hours=2), "succeeded", 6, 4, 2, 9, 500),
        (today_co, "extract companies", "OVERVIEW", now - timedelta(hours=1, minutes=50), "succeeded", 5, 5, 0, 5, 0),
        (yesterday, "extract prices", "TIME_SERIES_DAILY", now - timedelta(days=1), "failed", 5, 0, 5, 5, 0),
    ]
    for run_id, command, function, started, status, req, ok, failed, requests, bars in runs:
        conn.execute(
            "insert into ops.extract_runs values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (run_id, command, function, started, started + timedelta(seconds=42), status, req, ok, failed, requests,
             bars, base),
        )
    symbols = [
        (today_run, "AAPL", "succeeded", 100, 1, None, None),
        (today_run, "IBM", "succeeded", 100, 1, None, None),
        (today_run, "MSFT", "succeeded", 100, 2, None, None),
        (today_run, "XOM", "succeeded", 100, 1, None, None),
        (today_run, "JPM", "failed", 0, 3, "throttled", "Thank you for using Alpha Vantage! ... 1 request per second"),
        (today_run, "FOO", "failed", 0, 1, "invalid_symbol", "Invalid API call. Please retry or visit the docs."),
    ]
    for run_id, symbol, status, bars, requests, code, reason in symbols:
        conn.execute(
            "insert into ops.extract_run_symbols values (%s, %s, 'TIME_SERIES_DAILY', 'compact', %s, %s, %s, %s, %s,"
            " %s, %s)",
            (run_id, symbol, status, bars, requests, code, reason, now - timedelta(hours=2),
             now - timedelta(hours=2) + timedelta(seconds=5)),
        )
    for symbol, *_ in COMPANIES:
        conn.execute(
            "insert into ops.extract_run_symbols values (%s, %s, 'OVERVIEW', null, 'succeeded', 0, 1, null, null,"
            " %s, %s)",
            (today_co, symbol, now - timedelta(hours=1, minutes=50), now - timedelta(hours=1, minutes=49)),
        )
    for symbol, *_ in COMPANIES:
        conn.execute(
            "insert into ops.extract_run_symbols values (%s, %s, 'TIME_SERIES_DAILY', 'compact', 'failed', 0, 1,"
            " 'daily_quota', 'We have detected your API key as ******** and our standard API rate limit is 25"
            " requests per day.', %s, %s)",
            (yesterday, symbol, now - timedelta(days=1), now - timedelta(days=1) + timedelta(seconds=1)),
        )
    passed, failed = uuid.UUID(int=11), uuid.UUID(int=12)
    conn.execute("insert into ops.gate_runs values (%s, %s, %s, true, 'audit', 4, 0, '/tmp/docs/index.html')",
                 (passed, now - timedelta(hours=1, minutes=40), now - timedelta(hours=1, minutes=39)))
    conn.execute("insert into ops.gate_runs values (%s, %s, %s, false, 'audit', 4, 1, null)",
                 (failed, now - timedelta(days=1), now - timedelta(days=1) + timedelta(seconds=30)))
    expectations = [
        ("fct_daily_prices", "expect_column_values_to_not_be_null", "close", {"column": "close"}, "0 nulls"),
        ("fct_daily_prices", "expect_column_pair_values_a_to_be_greater_than_b", "high",
         {"column_A": "high", "column_B": "low", "or_equal": True}, "0 violations"),
        ("fct_technical_indicators", "expect_column_values_to_be_between", "rsi_14",
         {"column": "rsi_14", "min_value": 0, "max_value": 100}, "min 12.3, max 88.1"),
        ("mart_market_overview", "expect_table_row_count_to_be_between", None, {"min_value": 1}, "5"),
    ]
    for mart, etype, column, kwargs, observed in expectations:
        conn.execute("insert into ops.gate_results values (%s, %s, %s, %s, %s, true, %s, null)",
                     (passed, mart, etype, column, json.dumps(kwargs), observed))
        ok = etype != "expect_column_values_to_be_between"
        conn.execute("insert into ops.gate_results values (%s, %s, %s, %s, %s, %s, %s, %s)",
                     (failed, mart, etype, column, json.dumps(kwargs), ok, observed if ok else "max 131.0",
                      None if ok else "1 of 1600 values out of range"))
    conn.execute(
        "insert into ops.publish_history (gate_run_id, published_at, status, row_counts) values (%s, %s, %s, %s)",
        (passed, now - timedelta(hours=1, minutes=38), "published",
         json.dumps({"fct_daily_prices": len(COMPANIES) * BARS, "mart_market_overview": len(COMPANIES)})),
    )


def seed(admin_env: dict[str, str], *, dbname: str | None = None) -> None:
    """Create and fill the known dataset (idempotent: drops what it made before)."""
    with psycopg.connect(conninfo(admin_env, dbname), autocommit=True) as conn:
        conn.execute("drop schema if exists marts cascade; drop schema if exists ops cascade")
        create_tables(conn)
        seed_marts(conn)
        seed_ops(conn)
        grant_reader(conn)


# Live prices (issue 20): the session after LAST_DAY is the Friday after Thanksgiving, closing at 13:00 ET.
LIVE_DAY = date(2026, 11, 27)
LIVE_NOW = datetime(2026, 11, 27, 17, 0, tzinfo=UTC)  # 12:00 New York: in the session
LIVE_BAR = datetime(2026, 11, 27, 16, 45, tzinfo=UTC)  # 11:45 ET: a 15-minute delayed 5-minute bar
LIVE_DDL = """
drop table if exists marts.fct_live_quotes, marts.fct_intraday_bars;
create table marts.fct_live_quotes (
    symbol text primary key, price_usd numeric, bar_at timestamptz, delay text, delay_minutes int,
    is_end_of_day bool, source text, fetched_at timestamptz, volume_shares bigint, last_close_date date,
    last_close_usd numeric, change_usd numeric, change_pct numeric
);
create table marts.fct_intraday_bars (
    symbol text, bar_at timestamptz, session_date date, open_usd numeric, high_usd numeric, low_usd numeric,
    close_usd numeric, volume_shares bigint
);
"""


def seed_live(conn: psycopg.Connection[Any], *, bar_at: datetime = LIVE_BAR, factor: float = 1.01) -> None:
    """marts.fct_live_quotes and fct_intraday_bars as market_quotes_intraday publishes them (columns of
    dbt/models/quotes): every symbol at `factor` x its LAST_DAY close at `bar_at` (delayed 15 min), and
    5-minute bars from the open up to it, moving linearly from the last close."""
    conn.execute(LIVE_DDL)
    conn.execute(
        "insert into marts.fct_live_quotes select symbol, round(close * %(f)s::numeric, 4), %(bar)s, 'delayed', 15,"
        " false, 'intraday', %(bar)s, 1000, trade_date, close, round(close * %(f)s::numeric, 4) - close,"
        " round(100 * (%(f)s::numeric - 1), 4) from marts.fct_daily_prices where trade_date = %(last)s",
        {"f": factor, "bar": bar_at, "last": LAST_DAY})
    conn.execute(
        "insert into marts.fct_intraday_bars select p.symbol, t, %(day)s, c, c, c, c, 100"
        " from marts.fct_daily_prices as p,"
        " generate_series(%(open)s::timestamptz, %(bar)s, interval '5 minutes') as t,"
        " lateral (select round(p.close * (1 + (%(f)s::numeric - 1) * extract(epoch from t - %(open)s)"
        "   / greatest(extract(epoch from %(bar)s - %(open)s), 1)), 4) as c) as v"
        " where p.trade_date = %(last)s",
        {"f": factor, "bar": bar_at, "last": LAST_DAY, "day": LIVE_DAY,
         "open": datetime(2026, 11, 27, 14, 30, tzinfo=UTC)})
    grant_reader(conn)


def seed_live_before_daily(conn: psycopg.Connection[Any], *, bar_at: datetime = LIVE_BAR) -> None:
    """A fresh deployment with the quotes DAG on: marts holds only what `quality publish-quotes` wrote
    before the daily DAG ever published (dbt/models/quotes/fct_live_quotes.sql): every symbol's price,
    no last close, no change."""
    conn.execute("create schema if not exists marts")
    conn.execute(LIVE_DDL)
    conn.execute(
        "insert into marts.fct_live_quotes (symbol, price_usd, bar_at, delay, delay_minutes, is_end_of_day, source,"
        " fetched_at, volume_shares) select symbol, 100 + 10 * n, %(bar)s, 'delayed', 15, false, 'intraday', %(bar)s,"
        " 1000 from unnest(%(symbols)s::text[]) with ordinality as s(symbol, n)",
        {"bar": bar_at, "symbols": [c[0] for c in COMPANIES]})
    conn.execute("grant usage on schema marts to dashboard")
    conn.execute("grant select on all tables in schema marts to dashboard")


def conninfo(env: dict[str, str], dbname: str | None = None) -> str:
    return libpq.conninfo({**env, "PGDATABASE": dbname or env["PGDATABASE"]})
