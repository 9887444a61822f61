-- raw and ops tables of the extractor (docs/warehouse.md). Idempotent: run at every extractor start
-- (`extract migrate` runs it alone). Executed in one transaction under an advisory lock, so concurrent
-- extractors cannot race on `create ... if not exists`.

create schema if not exists raw;
create schema if not exists ops;

-- One row per successful, validated API response. Append-only.
create table if not exists raw.time_series_daily (
    payload_id      bigint generated always as identity primary key,
    run_id          uuid        not null,
    symbol          text        not null,
    function        text        not null,
    output_size     text        null,
    request_url     text        not null,
    requested_at    timestamptz not null,
    received_at     timestamptz not null,
    payload_sha256  text        not null,
    payload         jsonb       not null
);
-- Payloads are stored uncompressed (TOAST `external`): pglz costs ~40 ms of server CPU per 600 kB
-- full history on a small machine, twice the jsonb parse itself; disk is ~4x larger (~0.7 MB per full load).
do $$
begin
  if exists (select from pg_attribute where attrelid = 'raw.time_series_daily'::regclass
             and attname = 'payload' and attstorage <> 'e') then
    alter table raw.time_series_daily alter column payload set storage external;
  end if;
end $$;
create index if not exists time_series_daily_symbol_latest_idx
    on raw.time_series_daily (symbol, function, received_at desc, payload_id desc);

create table if not exists raw.company_overview (
    payload_id      bigint generated always as identity primary key,
    run_id          uuid        not null,
    symbol          text        not null,
    function        text        not null,
    output_size     text        null,
    request_url     text        not null,
    requested_at    timestamptz not null,
    received_at     timestamptz not null,
    payload_sha256  text        not null,
    payload         jsonb       not null
);
create index if not exists company_overview_symbol_latest_idx
    on raw.company_overview (symbol, function, received_at desc, payload_id desc);

-- One row per `extract prices|companies` invocation.
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
