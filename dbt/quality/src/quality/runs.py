"""`ops.pipeline_runs`: the pipeline's own figures per run, for on-call, without Airflow.

One row per pipeline run: when it ran, how it ended, how long each step took, rows loaded, API
requests, symbols that failed, checks failed, rows published and how far the data lag behind the
NYSE calendar. The data-quality page of the dashboard and any external monitor read this one view
(`quality summary --json` prints it too); docs/warehouse.md documents the columns.

What a run is. A step that carries the pipeline run's id (DATAPIPE_RUN_ID: the Airflow run id, one
id per `make pipeline`; extract's `pipeline_run_id`, the gate's `run_id`) belongs to that run, so
backfill runs that overlap in time stay apart, and `pipeline_run_id` names it. Steps without one (an
older release, a step run by hand) are grouped in time among themselves: a run starts with an
extraction that follows a gate (the previous run got that far), or that starts more than an hour
after the previous extraction or gate ended; everything after it (the other extractions, retried
ones too, the gate runs, the publishes of those gate runs) belongs to it. Either way a `make
pipeline` or an Airflow run is one row, its retried steps counted in it. `run_number` counts the
runs in order of their start. The dbt build and the publish are not logged with their own start,
so their durations are the gaps around them: `transform_s` from the end of the extraction to the gate's
start (dbt, plus the scheduling between tasks), `publish_s` from the gate's end to the publish.
Freshness lag: the NYSE sessions (ops.trading_sessions) after the newest bar the run's last gate saw
in the facts, up to the session that gate required (its freshness expectation: the latest completed
session, minus QUALITY_FRESHNESS_LAG_DAYS); 0 = up to date.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import psycopg

from quality import db
from quality.settings import Settings

VIEW = "pipeline_runs"
# a run that starts more than this after the previous step ended is a new run
NEW_RUN_AFTER = "1 hour"

RUNS_VIEW_SQL = f"""
create or replace view ops.{VIEW} as
with events as (
    -- extract's pipeline_run_id read through to_jsonb: the view works on an ops.extract_runs an older
    -- extractor created (the column is added by extract's schema.sql when it next runs)
    select 'extract' as kind, x.run_id::text as id, x.started_at, coalesce(x.finished_at, x.started_at) as ended_at,
        nullif(to_jsonb(x) ->> 'pipeline_run_id', '') as pipeline_run
    from ops.extract_runs as x
    union all
    select 'gate' as kind, g.gate_run_id::text as id, g.started_at, coalesce(g.finished_at, g.started_at) as ended_at,
        nullif(g.run_id, '') as pipeline_run
    from ops.gate_runs as g
),

ordered as (
    -- the steps without a pipeline run id, grouped in time among themselves
    select
        e.*,
        lag(e.kind) over w as previous_kind,
        max(e.ended_at) over (w rows between unbounded preceding and 1 preceding) as previous_end
    from events as e
    where e.pipeline_run is null
    window w as (order by e.started_at, e.kind, e.id)
),

numbered as (
    select
        e.kind,
        e.id,
        'run:' || e.pipeline_run as run_key
    from events as e
    where e.pipeline_run is not null
    union all
    select
        o.kind,
        o.id,
        'time:' || sum(
            case
                when o.previous_kind is null then 1
                when o.kind = 'extract' and (o.previous_kind = 'gate'
                                             or o.started_at > o.previous_end + interval '{NEW_RUN_AFTER}') then 1
                else 0
            end
        ) over (order by o.started_at, o.kind, o.id) as run_key
    from ordered as o
),

extracts as (
    select
        n.run_key,
        min(x.started_at) as started_at,
        max(x.finished_at) as finished_at,
        count(*) as extract_runs,
        count(*) filter (where x.status in ('failed', 'aborted')) as extract_failed,
        count(*) filter (where x.status = 'running') as extract_running,
        sum(x.bars) as rows_loaded,
        sum(x.requests) as api_requests,
        sum(x.symbols_failed) as symbols_failed
    from numbered as n
    inner join ops.extract_runs as x on n.kind = 'extract' and x.run_id::text = n.id
    group by n.run_key
),

gates as (
    select
        n.run_key,
        g.*,
        count(*) over (partition by n.run_key) as gate_runs,
        min(g.started_at) over (partition by n.run_key) as first_started_at,
        row_number() over (partition by n.run_key order by g.started_at desc) as newest_first
    from numbered as n
    inner join ops.gate_runs as g on n.kind = 'gate' and g.gate_run_id::text = n.id
),

last_gate as (
    select
        gates.*,
        fresh.newest_trade_date,
        fresh.expected_trade_date
    from gates
    left join lateral (
        -- the gate's freshness expectation on the facts: the newest bar it saw, the oldest it accepted
        select
            left(btrim(r.observed_value, '"'), 10)::date as newest_trade_date,
            left(r.kwargs ->> 'min_value', 10)::date as expected_trade_date
        from ops.gate_results as r
        where r.gate_run_id = gates.gate_run_id
            and r.mart = 'fct_daily_prices'
            and r.expectation_type = 'expect_column_max_to_be_between'
            and r.column_name = 'trade_date'
            -- stored as GX reports it, a JSON value: "2025-06-13" with its quotes
            and btrim(r.observed_value, '"') ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'
            and r.kwargs ->> 'min_value' ~ '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}'
        limit 1
    ) as fresh on true
    where gates.newest_first = 1
),

publishes as (
    select distinct on (g.run_key)
        g.run_key,
        p.publish_id,
        p.published_at,
        p.status,
        (select sum(c.value::bigint) from jsonb_each_text(coalesce(p.row_counts, '{{}}'::jsonb)) as c) as rows_published
    from gates as g
    inner join ops.publish_history as p on p.gate_run_id = g.gate_run_id
    order by g.run_key, p.published_at desc, p.publish_id desc
),

runs as (
    select run_key from extracts
    union
    select run_key from gates
),

final as (
    select
        row_number() over (
            order by least(x.started_at, lg.first_started_at), r.run_key
        ) as run_number,
        least(x.started_at, lg.first_started_at) as run_started_at,
        greatest(x.finished_at, lg.finished_at, p.published_at) as run_finished_at,
        case
            when p.status = 'published' then 'published'
            when p.status is not null then 'publish ' || p.status
            when lg.gate_run_id is not null and lg.finished_at is null then 'running: gate'
            when lg.status = 'aborted' then 'gate aborted'
            when lg.success then 'gate passed, not published'
            when lg.gate_run_id is not null then 'gate failed'
            when x.extract_running > 0 then 'running: extract'
            when x.extract_failed > 0 then 'extract failed'
            else 'stopped before the gate'
        end as outcome,
        x.extract_runs,
        x.extract_failed,
        round(extract(epoch from x.finished_at - x.started_at)::numeric, 1) as extract_s,
        round(extract(epoch from lg.first_started_at - x.finished_at)::numeric, 1) as transform_s,
        round(extract(epoch from lg.finished_at - lg.started_at)::numeric, 1) as gate_s,
        round(extract(epoch from p.published_at - lg.finished_at)::numeric, 1) as publish_s,
        round(extract(epoch from greatest(x.finished_at, lg.finished_at, p.published_at)
                               - least(x.started_at, lg.first_started_at))::numeric, 1) as total_s,
        x.rows_loaded,
        x.api_requests,
        x.symbols_failed,
        lg.gate_runs,
        lg.gate_run_id,
        lg.success as gate_passed,
        lg.expectations_total as checks_total,
        lg.expectations_failed as checks_failed,
        p.publish_id,
        p.rows_published,
        lg.newest_trade_date,
        lg.expected_trade_date,
        case when lg.newest_trade_date is not null then (
            select count(*)
            from ops.trading_sessions as s
            where s.session_date > lg.newest_trade_date and s.session_date <= lg.expected_trade_date
        ) end as freshness_lag_sessions,
        case when left(r.run_key, 4) = 'run:' then substr(r.run_key, 5) end as pipeline_run_id
    from runs as r
    left join extracts as x on x.run_key = r.run_key
    left join last_gate as lg on lg.run_key = r.run_key
    left join publishes as p on p.run_key = r.run_key
)

select * from final
"""

COLUMNS = (
    "run_number", "run_started_at", "run_finished_at", "outcome", "extract_runs", "extract_failed", "extract_s",
    "transform_s", "gate_s", "publish_s", "total_s", "rows_loaded", "api_requests", "symbols_failed", "gate_runs",
    "gate_run_id", "gate_passed", "checks_total", "checks_failed", "publish_id", "rows_published",
    "newest_trade_date", "expected_trade_date", "freshness_lag_sessions", "pipeline_run_id",
)


def ensure_runs_view(conn: psycopg.Connection) -> bool:
    """Create or update the view once the tables it reads exist (extract creates its own; the gate and
    publish tables are quality's); False when they do not yet."""
    needed = ("extract_runs", "trading_sessions", "gate_runs", "gate_results", "publish_history")
    if not all(db.table_exists(conn, "ops", t) for t in needed):
        return False
    try:
        with conn.transaction():
            conn.execute(RUNS_VIEW_SQL)
    except psycopg.errors.InvalidTableDefinition:
        # an older definition with other columns: replace it (grant-reader grants it again)
        with conn.transaction():
            conn.execute(f"drop view ops.{VIEW}")
            conn.execute(RUNS_VIEW_SQL)
    return True


def latest_runs(settings: Settings, limit: int = 20) -> list[dict[str, Any]]:
    """The newest runs of the view, newest first, as JSON-ready dicts ([] before the first run)."""
    with db.connect(settings, autocommit=True) as conn:
        if not db.table_exists(conn, "ops", VIEW):
            return []
        cur = conn.execute(f"select * from ops.{VIEW} order by run_started_at desc nulls last limit %s", (limit,))
        names = [c.name for c in cur.description or []]
        return [json.loads(json.dumps(dict(zip(names, row, strict=True)), default=_json)) for row in cur.fetchall()]


def _json(value: Any) -> Any:
    """Numbers stay numbers (seconds are numeric), times ISO 8601, ids strings."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return str(value)
