"""Warehouse access (psycopg 3) and the `ops` tables owned by `quality`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import psycopg
from datapipe_common import runs
from psycopg import sql

from quality.settings import Settings

OPS_DDL = """
create schema if not exists ops;
create table if not exists ops.gate_runs (
    gate_run_id uuid primary key,
    started_at timestamptz not null,
    finished_at timestamptz,
    success boolean,
    audit_schema text not null,
    expectations_total integer,
    expectations_failed integer,
    data_docs_path text,
    audit_fingerprint jsonb
);
create table if not exists ops.gate_results (
    gate_run_id uuid not null references ops.gate_runs (gate_run_id),
    mart text not null,
    expectation_type text not null,
    column_name text,
    kwargs jsonb,
    success boolean not null,
    observed_value text,
    details text
);
create index if not exists gate_results_run on ops.gate_results (gate_run_id);
create table if not exists ops.publish_history (
    publish_id bigint generated always as identity primary key,
    gate_run_id uuid,
    published_at timestamptz not null default now(),
    status text not null,
    row_counts jsonb
);
-- the change-log watermark the published facts correspond to (quality.scope); null = unknown
alter table ops.publish_history add column if not exists audit_watermark timestamptz;
alter table ops.publish_history add column if not exists mode text;
-- the staging payload cursor the indicator model had consumed when publishing (dbt test scoping)
alter table ops.publish_history add column if not exists source_watermark bigint;
-- which rows the gate's row-level expectations covered (quality.scope)
alter table ops.gate_runs add column if not exists scope text;
-- run rows never stay running (datapipe_common.runs): running -> passed | failed | aborted (+ reason)
alter table ops.gate_runs add column if not exists status text;
alter table ops.gate_runs add column if not exists heartbeat_at timestamptz;
alter table ops.gate_runs add column if not exists reason text;
update ops.gate_runs set status = case when finished_at is null then 'running' when success then 'passed'
    else 'failed' end where status is null;
-- the pipeline run (DATAPIPE_RUN_ID) of the gate and of a publish attempt
alter table ops.gate_runs add column if not exists run_id text;
alter table ops.publish_history add column if not exists run_id text;
"""


@contextmanager
def connect(settings: Settings, *, autocommit: bool = False) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.conninfo(), autocommit=autocommit, application_name="datapipe-quality") as conn:
        yield conn


def ensure_ops_tables(conn: psycopg.Connection) -> None:
    """Create the gate/publish tables idempotently (advisory lock: safe when run in parallel), and the
    view `ops.pipeline_runs` once extract's tables exist too (quality.runs)."""
    from quality.runs import ensure_runs_view

    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('datapipe_quality_ops'))")
        conn.execute(OPS_DDL)
        ensure_runs_view(conn)


def heartbeat(settings: Settings, gate_run_id: object) -> runs.Beat:
    """A gate run's heartbeat (datapipe_common.runs), on its own connection."""
    return runs.Beat(lambda: psycopg.connect(settings.conninfo(), autocommit=True,
                                             application_name="datapipe-quality"),
                     "ops.gate_runs", "gate_run_id", gate_run_id)


def table_exists(conn: psycopg.Connection, schema: str, table: str) -> bool:
    row = conn.execute("select to_regclass(%s) is not null", (f"{schema}.{table}",)).fetchone()
    return bool(row and row[0])


def row_count(conn: psycopg.Connection, schema: str, table: str) -> int:
    query = sql.SQL("select count(*) from {}").format(sql.Identifier(schema, table))
    row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def published_rows_kept(conn: psycopg.Connection, schema: str, table: str, symbols: Sequence[str]) -> int:
    """The rows of a published mart its next audit is expected to keep (the gate's row-count floor):
    those of the tracked symbols (a symbol removed from DATAPIPE_SYMBOLS leaves the marts), and for
    the daily facts not a symbol's bars before an accepted history restart (ops.history_gaps)."""
    query = sql.SQL("select count(*) from {} as f where f.symbol = any(%s)").format(sql.Identifier(schema, table))
    if table in ("fct_daily_prices", "fct_technical_indicators") and table_exists(conn, "ops", "history_gaps"):
        query += sql.SQL(" and not exists (select from ops.history_gaps as g"
                         " where g.symbol = f.symbol and f.trade_date < g.restart_on)")
    row = conn.execute(query, (list(symbols),)).fetchone()
    return int(row[0]) if row else 0


# tables up to this size are fingerprinted by a scan (exact, milliseconds); larger ones by counters
SCAN_FINGERPRINT_MAX_ROWS = 100_000


def fingerprint(conn: psycopg.Connection, schema: str, tables: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Cheap identity of table contents; any dbt rebuild (full or incremental) changes it.

    Small tables: row count, physical file and newest writing transaction (a scan). Large tables
    (the daily facts, millions of rows): physical file and PostgreSQL's cumulative counters of
    inserted, updated and deleted rows (O(1); a committed write from a session that has ended is
    always counted; one from a session still open is counted within seconds). Without
    `track_counts` every table is scanned."""
    out: dict[str, dict[str, int]] = {}
    tracked = conn.execute("select current_setting('track_counts')::boolean").fetchone()
    for table in tables:
        if not table_exists(conn, schema, table):
            continue
        rel = sql.Literal(f"{schema}.{table}")
        if tracked and tracked[0] and estimated_rows(conn, schema, table) > SCAN_FINGERPRINT_MAX_ROWS:
            row = conn.execute(
                sql.SQL(
                    "select pg_relation_filenode({rel}::regclass), n_tup_ins, n_tup_upd, n_tup_del"
                    " from pg_stat_all_tables where relid = {rel}::regclass"
                ).format(rel=rel)
            ).fetchone()
            assert row is not None
            out[table] = {"filenode": int(row[0] or 0), "inserted": int(row[1]), "updated": int(row[2]),
                          "deleted": int(row[3])}
            continue
        row = conn.execute(
            sql.SQL(
                "select count(*), coalesce(max(xmin::text::bigint), 0), pg_relation_filenode({rel}::regclass) from {t}"
            ).format(rel=rel, t=sql.Identifier(schema, table))
        ).fetchone()
        assert row is not None
        out[table] = {"rows": int(row[0]), "max_xmin": int(row[1]), "filenode": int(row[2] or 0)}
    return out


def estimated_rows(conn: psycopg.Connection, schema: str, table: str) -> int:
    """The planner's row estimate (pg_class.reltuples; 0 when never analyzed): O(1), for heuristics only."""
    row = conn.execute(
        "select greatest(reltuples, 0)::bigint from pg_class where oid = to_regclass(%s)", (f"{schema}.{table}",)
    ).fetchone()
    return int(row[0]) if row and row[0] is not None else 0
