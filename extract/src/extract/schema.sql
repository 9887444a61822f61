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
    status             text        not null check (status in ('running', 'succeeded', 'failed', 'aborted')),
    symbols_requested  int         not null default 0,
    symbols_succeeded  int         not null default 0,
    symbols_failed     int         not null default 0,
    requests           int         not null default 0,
    bars               int         not null default 0,
    base_url           text        not null
);
-- Columns added since the table's first release, each altered only when missing: an ALTER locks the
-- table exclusively even when it changes nothing, and a run in progress (its workers' inserts check
-- the foreign key on ops.extract_runs) would deadlock with it.
--   heartbeat_at, reason: run rows never stay `running` (datapipe_common.runs): a live run beats, a
--     failing one records why it was aborted, the next run aborts rows without a beat for
--     DATAPIPE_RUN_GRACE_S (and the status check learns `aborted`, below);
--   api_tier: the key's tier this run worked with ('free' / 'premium'; null = not known, the run never
--     asked `full`);
--   pipeline_run_id: the pipeline run this extraction belongs to (DATAPIPE_RUN_ID: the Airflow run id,
--     one id per `make pipeline`; null = run by hand); ops.pipeline_runs groups a run's steps by it.
do $$
declare
    col record;
begin
    for col in select * from (values ('heartbeat_at', 'timestamptz'), ('reason', 'text'), ('api_tier', 'text'),
                                     ('pipeline_run_id', 'text')) as c (name, type) loop
        if not exists (select from pg_attribute where attrelid = 'ops.extract_runs'::regclass
                       and attname = col.name and not attisdropped) then
            execute format('alter table ops.extract_runs add column %I %s null', col.name, col.type);
        end if;
    end loop;
    if exists (select from pg_constraint where conrelid = 'ops.extract_runs'::regclass
               and conname = 'extract_runs_status_check' and pg_get_constraintdef(oid) not like '%aborted%') then
        alter table ops.extract_runs drop constraint extract_runs_status_check;
        alter table ops.extract_runs add constraint extract_runs_status_check
            check (status in ('running', 'succeeded', 'failed', 'aborted'));
    end if;
end $$;

-- One row per symbol of a run.
create table if not exists ops.extract_run_symbols (
    run_id       uuid        not null references ops.extract_runs (run_id),
    symbol       text        not null,
    function     text        not null,
    output_size  text        null,
    -- status and reason_code: check constraints kept equal to extract.errors.STATUSES / REASON_CODES
    -- by db.migrate (so a new code reaches existing warehouses too)
    status       text        not null,
    bars         int         not null default 0,
    requests     int         not null default 0,
    reason_code  text        null,
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

-- What the extractor learned about an API key: free keys may not ask `outputsize=full` (docs/extract.md,
-- tiers). One row per API endpoint and key; the key itself is never stored, only the first 12 hex
-- digits of its sha256, so a new key is asked afresh.
create table if not exists ops.api_tiers (
    base_url         text        not null,
    key_fingerprint  text        not null,
    tier             text        not null check (tier in ('free', 'premium')),
    learned_at       timestamptz not null,
    learned_run_id   uuid        null,
    evidence         text        null,
    primary key (base_url, key_fingerprint)
);

-- Holes in a symbol's daily history that the API can no longer fill (a free key after more than
-- ~100 missed sessions). Detected by `extract prices` (the symbol fails until the hole is accepted),
-- accepted by an operator with `extract accept-gap SYMBOL`; the next stored payload sets `restart_on`,
-- and staging keeps only the symbol's bars from that day on (its history restarts after the hole).
create table if not exists ops.history_gaps (
    gap_id           bigint      generated always as identity primary key,
    symbol           text        not null,
    newest_stored    date        not null,
    missing_from     date        not null,
    missing_to       date        not null,
    missing_sessions int         not null,
    detected_at      timestamptz not null,
    detected_run_id  uuid        null,
    accepted_at      timestamptz null,
    restart_on       date        null
);
create index if not exists history_gaps_symbol_idx on ops.history_gaps (symbol);

-- Live prices (`extract quotes`, extract/quotes.py): one row per symbol and bar time, append-only; a price
-- already stored for that bar time is not stored again (`on conflict do nothing`). `quote` is the API's
-- own object as received (the newest intraday bar, a bulk quote item, or a GLOBAL_QUOTE object); dbt's
-- staging types it (stg_alphavantage__quotes). `delay` says what the key saw: realtime, delayed (15 min)
-- or end_of_day (free keys: GLOBAL_QUOTE, whose `bar_at` is the close of its latest trading day).
create table if not exists raw.quotes (
    symbol      text        not null,
    bar_at      timestamptz not null,
    source      text        not null check (source in ('intraday', 'bulk', 'global_quote')),
    delay       text        not null check (delay in ('realtime', 'delayed', 'end_of_day')),
    fetched_at  timestamptz not null,
    run_id      uuid        not null,
    quote       jsonb       not null,
    primary key (symbol, bar_at)
);
create index if not exists quotes_fetched_idx on raw.quotes (fetched_at desc);
