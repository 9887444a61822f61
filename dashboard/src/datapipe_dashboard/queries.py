"""Every SQL statement the dashboard runs, one function per question, grouped by page.

Each function takes a `Query` callable (sql, params) -> DataFrame: the app passes a cached runner
(st.cache_data with a short TTL), the benchmark an uncached one. Only `marts.*` and the documented
`ops` tables are read, and every value travels as a bound parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import pandas as pd
from datapipe_common.marts import INDICATOR_COLUMNS

Query = Callable[[str, Any], pd.DataFrame]

SPARKLINE_DAYS = 63  # about 43 trading days: a 2-month trend, cheap for 500 symbols

# -- market overview --------------------------------------------------------------------------

MARKET_OVERVIEW_SQL = """
select symbol, name, sector, industry, trade_date, close::float8, previous_close::float8,
       day_change::float8, day_change_pct::float8, volume::float8, high_52w::float8, low_52w::float8,
       sma_20::float8, sma_50::float8, sma_200::float8, macd::float8, macd_signal::float8, rsi_14::float8
from marts.mart_market_overview
order by symbol
"""

SPARKLINES_SQL = """
select symbol, array_agg(close::float8 order by trade_date) as closes
from marts.fct_daily_prices
where trade_date > %s
group by symbol
"""

LAST_PUBLISH_SQL = """
select published_at, status
from ops.publish_history
order by published_at desc
limit 1
"""


def market_overview(q: Query) -> pd.DataFrame:
    return q(MARKET_OVERVIEW_SQL, ())


def sparklines(q: Query, latest: date) -> pd.DataFrame:
    return q(SPARKLINES_SQL, (latest - timedelta(days=SPARKLINE_DAYS),))


def last_publish(q: Query) -> pd.DataFrame:
    return q(LAST_PUBLISH_SQL, ())


# -- symbol detail ----------------------------------------------------------------------------

COMPANY_SQL = """
select symbol, name, description, asset_type, exchange, currency, country, sector, industry,
       market_capitalization, pe_ratio, dividend_yield, beta, updated_at
from marts.dim_company
where symbol = %s
"""

# min/max alone: two descents of the (symbol, trade_date) primary key, whatever the history length.
PRICE_BOUNDS_SQL = """
select min(trade_date) as first_date, max(trade_date) as last_date
from marts.fct_daily_prices
where symbol = %s
"""

# Daily bars for short ranges. Numbers travel as float8: converting thousands of numeric values to
# Decimal costs more than the query. `days` (1 per daily bar) keeps the shape of the aggregated query.
_INDICATORS = ", ".join(f"i.{c}::float8" for c in INDICATOR_COLUMNS)
PRICE_HISTORY_SQL = f"""
select p.trade_date, p.open::float8, p.high::float8, p.low::float8, p.close::float8, p.volume::float8,
       {_INDICATORS}, 1 as days
from marts.fct_daily_prices as p
left join marts.fct_technical_indicators as i
  on i.symbol = p.symbol and i.trade_date = p.trade_date
where p.symbol = %(symbol)s and p.trade_date between %(start)s and %(end)s
order by p.trade_date
"""

# Long ranges are downsampled in the warehouse to weekly or monthly bars, as charting tools do: a
# 20-year daily chart would ship 5,000 rows to draw candles a fraction of a pixel wide. A bar is
# dated by its last trading day: open of the first day, highest high, lowest low, close of the last
# day, summed volume, and the indicators as of the last day (the daily SMA/EMA/RSI/MACD/Bollinger
# values on that day, not recomputed on the coarser bars). Both tables are read through their
# (symbol, trade_date) primary key.
PRICE_BARS_SQL = f"""
with days as (
    select trade_date, open, high, low, close, volume, date_trunc(%(unit)s, trade_date::timestamp) as period
    from marts.fct_daily_prices
    where symbol = %(symbol)s and trade_date between %(start)s and %(end)s
),
bars as (
    select max(trade_date) as trade_date, (array_agg(open order by trade_date))[1] as open, max(high) as high,
           min(low) as low, (array_agg(close order by trade_date desc))[1] as close, sum(volume) as volume,
           count(*) as days
    from days
    group by period
)
select b.trade_date, b.open::float8, b.high::float8, b.low::float8, b.close::float8, b.volume::float8,
       {_INDICATORS}, b.days
from bars as b
left join marts.fct_technical_indicators as i
  on i.symbol = %(symbol)s and i.trade_date = b.trade_date
order by b.trade_date
"""

# Up to ~2 years of daily bars (<= ~500 candles), then weekly (<= ~520), then monthly.
DAILY_MAX_DAYS = 2 * 366
WEEKLY_MAX_DAYS = 10 * 366


def bar_interval(start: date, end: date) -> str:
    """The bar size the symbol chart uses for a date range: 'day', 'week' or 'month'."""
    span = (end - start).days
    if span <= DAILY_MAX_DAYS:
        return "day"
    return "week" if span <= WEEKLY_MAX_DAYS else "month"


# How the symbol's daily history was loaded: a symbol never loaded with `outputsize=full` has only
# what compact answers gave (the newest 100 sessions at its first load): a free key's history.
HISTORY_LOADS_SQL = """
select count(*) filter (where output_size = 'full') as full_loads, count(*) as loads
from ops.extract_run_symbols
where symbol = %s and function = 'TIME_SERIES_DAILY' and status in ('succeeded', 'unchanged')
"""


def company(q: Query, symbol: str) -> pd.DataFrame:
    return q(COMPANY_SQL, (symbol,))


def history_loads(q: Query, symbol: str) -> pd.DataFrame:
    return q(HISTORY_LOADS_SQL, (symbol,))


def price_bounds(q: Query, symbol: str) -> pd.DataFrame:
    return q(PRICE_BOUNDS_SQL, (symbol,))


def price_history(q: Query, symbol: str, start: date, end: date) -> pd.DataFrame:
    """Bars of `symbol` in [start, end] at bar_interval(start, end); `days` = trading days per bar."""
    unit = bar_interval(start, end)
    params = {"symbol": symbol, "start": start, "end": end}
    if unit == "day":
        return q(PRICE_HISTORY_SQL, params)
    return q(PRICE_BARS_SQL, {**params, "unit": unit})


# -- portfolio --------------------------------------------------------------------------------

CLOSES_SQL = """
select symbol, trade_date, close::float8
from marts.fct_daily_prices
where symbol = any(%s) and trade_date >= %s
order by trade_date, symbol
"""


def closes(q: Query, symbols: Sequence[str], start: date) -> pd.DataFrame:
    return q(CLOSES_SQL, (sorted(set(symbols)), start))


# -- data quality -----------------------------------------------------------------------------

EXTRACT_RUNS_SQL = """
select run_id, command, function, started_at, finished_at, status, symbols_requested,
       symbols_succeeded, symbols_failed, requests, bars, base_url
from ops.extract_runs
order by started_at desc
limit %s
"""

# One row per pipeline run (quality.runs; docs/warehouse.md): what an external monitor reads too.
PIPELINE_RUNS_SQL = """
select run_started_at, outcome, extract_s, transform_s, gate_s, publish_s, total_s, rows_loaded,
       api_requests, symbols_failed, checks_total, checks_failed, rows_published, newest_trade_date,
       freshness_lag_sessions
from ops.pipeline_runs
order by run_started_at desc nulls last
limit %s
"""

LAST_GATE_RUN_SQL = """
select gate_run_id, started_at, finished_at, success, audit_schema, expectations_total,
       expectations_failed, data_docs_path
from ops.gate_runs
order by started_at desc
limit 1
"""

GATE_RESULTS_SQL = """
select mart, expectation_type, column_name, kwargs::text as kwargs, success, observed_value, details
from ops.gate_results
where gate_run_id = %s
order by success, mart, expectation_type, column_name
"""

PUBLISH_HISTORY_SQL = """
select publish_id, gate_run_id, published_at, status, row_counts::text as row_counts
from ops.publish_history
order by published_at desc
limit %s
"""

LAST_EXTRACT_PER_SYMBOL_SQL = """
select distinct on (symbol) symbol, status as last_extract_status, finished_at as last_extract_at,
       reason_code as last_reason_code
from ops.extract_run_symbols
where function = 'TIME_SERIES_DAILY'
order by symbol, started_at desc
"""

# Requests per run: the per-symbol counts (retries included) or the run total, whichever is larger
# (a run still in progress may not have written its total yet).
API_REQUESTS_SQL = """
with runs as (
    select run_id, coalesce(requests, 0) as run_requests
    from ops.extract_runs
    where started_at >= %(start)s and started_at < %(end)s
),
symbols as (
    select run_id, sum(coalesce(requests, 0)) as symbol_requests
    from ops.extract_run_symbols
    where started_at >= %(start)s and started_at < %(end)s
    group by run_id
)
select coalesce(sum(greatest(coalesce(r.run_requests, 0), coalesce(s.symbol_requests, 0))), 0)::int as requests,
       count(distinct coalesce(r.run_id, s.run_id))::int as runs
from runs as r
full join symbols as s on s.run_id = r.run_id
"""

FAILURES_BY_REASON_SQL = """
select coalesce(reason_code, 'unknown') as reason_code, count(*)::int as failures,
       max(started_at) as last_seen, (array_agg(reason order by started_at desc))[1] as last_reason
from ops.extract_run_symbols
where status in ('failed', 'skipped') and started_at >= %s and started_at < %s
group by 1
order by failures desc, reason_code
"""


# Published symbols without a company overview (an ETF, a delisted symbol): issue 14.
WITHOUT_COMPANY_PROFILE_SQL = """
select symbol, name, asset_type, profile_source, updated_at
from marts.dim_company
where profile_source <> 'company overview'
order by symbol
"""


def without_company_profile(q: Query) -> pd.DataFrame:
    return q(WITHOUT_COMPANY_PROFILE_SQL, ())


def extract_runs(q: Query, limit: int = 20) -> pd.DataFrame:
    return q(EXTRACT_RUNS_SQL, (limit,))


def pipeline_runs(q: Query, limit: int = 20) -> pd.DataFrame:
    return q(PIPELINE_RUNS_SQL, (limit,))


def last_gate_run(q: Query) -> pd.DataFrame:
    return q(LAST_GATE_RUN_SQL, ())


def gate_results(q: Query, gate_run_id: Any) -> pd.DataFrame:
    return q(GATE_RESULTS_SQL, (gate_run_id,))


def publish_history(q: Query, limit: int = 20) -> pd.DataFrame:
    return q(PUBLISH_HISTORY_SQL, (limit,))


def last_extract_per_symbol(q: Query) -> pd.DataFrame:
    return q(LAST_EXTRACT_PER_SYMBOL_SQL, ())


def api_requests(q: Query, start: datetime, end: datetime) -> pd.DataFrame:
    return q(API_REQUESTS_SQL, {"start": start, "end": end})


def failures_by_reason(q: Query, start: datetime, end: datetime) -> pd.DataFrame:
    return q(FAILURES_BY_REASON_SQL, (start, end))
