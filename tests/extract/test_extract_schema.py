"""extract's schema.sql on an older warehouse: the run-log columns added since the first release are
added once, and running the schema again alters nothing (an ALTER would lock ops.extract_runs
exclusively and deadlock with a run in progress: the backfill case)."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any

import psycopg
from datapipe_common.libpq import conninfo

SCHEMA = Path(__file__).resolve().parents[2] / "extract" / "src" / "extract" / "schema.sql"
ADDED = {"heartbeat_at": "timestamp with time zone", "reason": "text", "api_tier": "text", "pipeline_run_id": "text"}

# ops.extract_runs as the first release created it: no added column, a status check without `aborted`
FIRST_RELEASE = """
create schema ops;
create table ops.extract_runs (
    run_id uuid primary key, command text not null, function text not null,
    started_at timestamptz not null, finished_at timestamptz null,
    status text not null check (status in ('running', 'succeeded', 'failed')),
    symbols_requested int not null default 0, symbols_succeeded int not null default 0,
    symbols_failed int not null default 0, requests int not null default 0, bars int not null default 0,
    base_url text not null
);
insert into ops.extract_runs (run_id, command, function, started_at, status, base_url)
values ('00000000-0000-0000-0000-000000000001', 'prices', 'TIME_SERIES_DAILY', now(), 'succeeded', 'http://x');
"""


def test_an_older_run_log_gets_its_columns_once(warehouse: Any) -> None:
    db = f"schema_{uuid.uuid4().hex[:10]}"
    warehouse.psql(f"create database {db} owner pipeline", admin=True)
    warehouse.psql(FIRST_RELEASE, database=db)
    warehouse.psql(SCHEMA.read_text(), database=db)

    columns = warehouse.psql("select string_agg(column_name || ':' || data_type, ',' order by column_name)"
                             " from information_schema.columns where table_schema = 'ops'"
                             " and table_name = 'extract_runs' and column_name in"
                             " ('heartbeat_at', 'reason', 'api_tier', 'pipeline_run_id')", database=db)
    assert dict(c.split(":") for c in columns.split(",")) == ADDED
    assert "aborted" in warehouse.psql("select pg_get_constraintdef(oid) from pg_constraint"
                                       " where conname = 'extract_runs_status_check'", database=db)
    assert warehouse.psql("select count(*) from ops.extract_runs", database=db) == "1"  # nothing lost

    # again, during a run in progress: its open transaction holds ops.extract_runs in ROW EXCLUSIVE
    # mode; any ALTER (even `add column if not exists`) would wait for it, here up to lock_timeout
    with psycopg.connect(conninfo({**warehouse.env, "PGDATABASE": db})) as run:
        run.execute("insert into ops.extract_runs (run_id, command, function, started_at, status, base_url)"
                    " values (gen_random_uuid(), 'prices', 'TIME_SERIES_DAILY', now(), 'running', 'http://x')")
        try:
            warehouse.psql("set lock_timeout = '3s'; " + SCHEMA.read_text(), database=db)
        except subprocess.CalledProcessError as exc:  # the SQL itself is long: show psql's error only
            raise AssertionError(f"schema.sql during a run: {exc.stderr.strip()}") from None
        run.rollback()
