-- The schemas and the ops tables of the extractor (docs/warehouse.md). Idempotent: run at every extractor
-- start (`extract migrate` runs it alone). Executed in one transaction under an advisory lock, so concurrent
-- extractors cannot race on `create ... if not exists`. The raw tables, one per endpoint, are created from
-- the endpoint registry (extract/endpoints.py, db.raw_table_sql) in the same transaction.

create schema if not exists raw;
create schema if not exists ops;

-- One row per `extract <endpoint command>` invocation (prices, companies, quotes, ...).
create table if not exists ops.extract_runs (
    run_id             uuid primary key,
    command            text        not null,
    function           text        not null,
    started_at         timestamptz not null,
    finished_at        timestamptz null,
    status             text        not null check (status in ('running', 'succeeded', 'failed')),
    symbols_requested  int         not null default 0,
    symbols_succeeded  int         not null default 0,
    symbols_failed     int         not null default 0,
    requests           int         not null default 0,
    bars               int         not null default 0,
    base_url           text        not null
);

-- One row per symbol of a run.
create table if not exists ops.extract_run_symbols (
    run_id       uuid        not null references ops.extract_runs (run_id),
    symbol       text        not null,
    function     text        not null,
    output_size  text        null,
    status       text        not null check (status in ('succeeded', 'unchanged', 'failed', 'skipped')),
    bars         int         not null default 0,
    requests     int         not null default 0,
    reason_code  text        null check (reason_code in (
        'invalid_symbol', 'throttled', 'daily_quota', 'premium_endpoint', 'demo_key', 'invalid_payload',
        'http_error', 'timeout', 'connection_error', 'not_attempted')),
    reason       text        null,
    started_at   timestamptz null,
    finished_at  timestamptz null,
    primary key (run_id, symbol)
);

-- The NYSE sessions (datapipe_common.calendar: exchange_calendars' XNYS), from the first session of
-- 2000 to a year ahead: what SQL reads instead of a weekday rule (dbt's source freshness, the
-- continuity of a symbol's history). Replaced by `extract` at every start when the calendar changed
-- (db.sync_trading_sessions; the table's comment holds the calendar's fingerprint).
create table if not exists ops.trading_sessions (
    session_date    date        primary key,
    open_at         timestamptz not null,
    close_at        timestamptz not null,
    -- when the session's daily bar is due: close_at + datapipe_common.calendar.DATA_DELAY
    bar_due_at      timestamptz not null,
    is_early_close  boolean     not null
);
