"""`ops.pipeline_runs` (quality.runs) on a real PostgreSQL: a run log written as extract, the gate and
publish write it (extract's schema.sql, quality's tables), grouped into runs with their step
durations, rows, failed checks and freshness lag. The view over a real pipeline run is checked in
test_pipeline.py."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import ROOT, TestWarehouse
from datapipe_common.libpq import conninfo
from quality import db
from quality.grants import grant_reader
from quality.runs import COLUMNS
from quality.settings import Settings

UTC = dt.UTC
DAY1, DAY2, DAY3 = (dt.datetime(2026, 11, d, 22, 40, tzinfo=UTC) for d in (24, 25, 26))
SESSIONS = [dt.date(2026, 11, d) for d in (20, 21, 24, 25, 26)]  # Mon 23rd... kept out: not every day is one


def at(day: dt.datetime, minutes: float) -> dt.datetime:
    return day + dt.timedelta(minutes=minutes)


@pytest.fixture
def runs_db(warehouse: TestWarehouse) -> Iterator[dict[str, str]]:
    name = f"runs_{uuid.uuid4().hex[:10]}"
    warehouse.psql(f"create database {name} owner pipeline", admin=True)
    warehouse.psql(f"grant connect on database {name} to dashboard", admin=True)
    env = {**warehouse.env, "PGDATABASE": name}
    with psycopg.connect(conninfo(env), autocommit=True) as conn:
        conn.execute((ROOT / "extract" / "src" / "extract" / "schema.sql").read_text())
        for day in SESSIONS:
            close = dt.datetime.combine(day, dt.time(21), tzinfo=UTC)
            conn.execute("insert into ops.trading_sessions values (%s, %s, %s, %s, false)",
                         (day, close - dt.timedelta(hours=6, minutes=30), close, close + dt.timedelta(hours=1)))
        db.ensure_ops_tables(conn)  # quality's tables, and the view now that extract's exist
    yield env


class Log:
    """Writes the ops rows the steps write (docs/warehouse.md)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.conn = psycopg.connect(conninfo(env), autocommit=True)

    def extract(self, command: str, start: dt.datetime, seconds: float | None, status: str, bars: int = 0,
                failed: int = 0, run: str | None = None) -> None:
        self.conn.execute(
            "insert into ops.extract_runs (run_id, command, function, started_at, finished_at, status,"
            " symbols_requested, symbols_succeeded, symbols_failed, requests, bars, base_url, pipeline_run_id)"
            " values (%s, %s, %s, %s, %s, %s, 3, %s, %s, 3, %s, 'http://sandbox', %s)",
            (uuid.uuid4(), command, "TIME_SERIES_DAILY" if command == "prices" else "OVERVIEW", start,
             None if seconds is None else start + dt.timedelta(seconds=seconds), status, 3 - failed, failed, bars,
             run))

    def gate(self, start: dt.datetime, seconds: float, failed: int, newest: dt.date, expected: dt.date,
             run: str | None = None) -> uuid.UUID:
        gate_run_id = uuid.uuid4()
        self.conn.execute(
            "insert into ops.gate_runs (gate_run_id, started_at, finished_at, success, audit_schema,"
            " expectations_total, expectations_failed, run_id) values (%s, %s, %s, %s, 'audit', 40, %s, %s)",
            (gate_run_id, start, start + dt.timedelta(seconds=seconds), failed == 0, failed, run))
        # the freshness expectation as the gate stores it (GX observed value, kwargs without batch_id)
        self.conn.execute(
            "insert into ops.gate_results values (%s, 'fct_daily_prices', 'expect_column_max_to_be_between',"
            " 'trade_date', %s, %s, %s, 'observed')",
            (gate_run_id, json.dumps({"column": "trade_date", "min_value": expected.isoformat()}), newest >= expected,
             json.dumps(newest.isoformat())))
        return gate_run_id

    def publish(self, gate_run_id: uuid.UUID, when: dt.datetime, status: str, counts: dict[str, int]) -> None:
        self.conn.execute("insert into ops.publish_history (gate_run_id, published_at, status, row_counts)"
                          " values (%s, %s, %s, %s)", (gate_run_id, when, status, json.dumps(counts)))


def view(env: dict[str, str], reader_env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    with psycopg.connect(conninfo(reader_env or env), autocommit=True) as conn:
        cur = conn.execute("select * from ops.pipeline_runs order by run_started_at")
        assert [c.name for c in cur.description or []] == list(COLUMNS)
        return [dict(zip(COLUMNS, row, strict=True)) for row in cur.fetchall()]


def test_runs_group_the_log_and_report_steps_rows_checks_and_lag(runs_db: dict[str, str],
                                                                  warehouse: TestWarehouse) -> None:
    log = Log(runs_db)
    # run 1, a daily run that published: prices and companies in parallel, dbt, the gate, publish
    log.extract("prices", at(DAY1, 0), 60, "succeeded", bars=300)
    log.extract("companies", at(DAY1, 0.25), 50, "succeeded")
    gate1 = log.gate(at(DAY1, 6), 30, 0, newest=dt.date(2026, 11, 24), expected=dt.date(2026, 11, 24))
    log.publish(gate1, at(DAY1, 7), "published", {"fct_daily_prices": 15000, "dim_company": 3})
    # run 2, the next day: the extraction fails, is re-run 20 minutes later, the gate fails once on
    # stale data (a session behind), its retry passes and publishes
    log.extract("prices", at(DAY2, 0), 20, "failed", failed=3)
    log.extract("prices", at(DAY2, 20), 40, "succeeded", bars=3)
    log.gate(at(DAY2, 25), 20, 2, newest=dt.date(2026, 11, 24), expected=dt.date(2026, 11, 25))
    gate2 = log.gate(at(DAY2, 40), 10, 0, newest=dt.date(2026, 11, 25), expected=dt.date(2026, 11, 25))
    log.publish(gate2, at(DAY2, 41), "published", {"fct_daily_prices": 15003, "dim_company": 3})
    # run 3: the provider is stuck two sessions back; the gate fails, publish refuses
    log.extract("prices", at(DAY3, 0), 30, "succeeded", bars=0)
    gate3 = log.gate(at(DAY3, 5), 12, 3, newest=dt.date(2026, 11, 24), expected=dt.date(2026, 11, 26))
    log.publish(gate3, at(DAY3, 5.5), "refused: gate failed", {})
    # run 4, two hours later: an extraction still running (or killed)
    log.extract("prices", at(DAY3, 125), None, "running")

    runs = view(runs_db)
    pick = ("outcome", "extract_runs", "extract_failed", "extract_s", "transform_s", "gate_s", "publish_s", "total_s",
            "rows_loaded", "symbols_failed", "gate_runs", "gate_passed", "checks_total", "checks_failed",
            "rows_published", "newest_trade_date", "expected_trade_date", "freshness_lag_sessions")
    got = [tuple(None if r[k] is None else (float(r[k]) if k.endswith("_s") else r[k]) for k in pick) for r in runs]
    assert got == [
        ("published", 2, 0, 65.0, 295.0, 30.0, 30.0, 420.0, 300, 0, 1, True, 40, 0, 15003,
         dt.date(2026, 11, 24), dt.date(2026, 11, 24), 0),
        ("published", 2, 1, 1240.0, 260.0, 10.0, 50.0, 2460.0, 3, 3, 2, True, 40, 0, 15006,
         dt.date(2026, 11, 25), dt.date(2026, 11, 25), 0),
        ("publish refused: gate failed", 1, 0, 30.0, 270.0, 12.0, 18.0, 330.0, 0, 0, 1, False, 40, 3, None,
         dt.date(2026, 11, 24), dt.date(2026, 11, 26), 2),
        ("running: extract", 1, 0, None, None, None, None, None, 0, 0, None, None, None, None, None,
         None, None, None),
    ]
    assert [r["run_started_at"] for r in runs] == [at(DAY1, 0), at(DAY2, 0), at(DAY3, 0), at(DAY3, 125)]
    assert runs[1]["gate_run_id"] == gate2 and runs[0]["run_finished_at"] == at(DAY1, 7)

    # the dashboard's read-only role reads the view (and through it nothing it could not read anyway)
    settings = Settings.from_env(runs_db)
    assert "pipeline_runs" in grant_reader(settings)
    assert view(runs_db, {**warehouse.reader_env, "PGDATABASE": runs_db["PGDATABASE"]}) == runs

    # `quality summary --json`: the same rows, newest first, for a monitor without database tools
    proc = subprocess.run([str(ROOT / ".local" / "venvs" / "transform" / "bin" / "quality"), "summary", "--json"],
                          env={"PATH": "/usr/bin:/bin", **runs_db}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr  # nothing is published in this database: the marts are missing
    summary = json.loads(proc.stdout)
    assert [r["outcome"] for r in summary["runs"]] == [r["outcome"] for r in reversed(runs)]
    assert summary["runs"][1]["freshness_lag_sessions"] == 2 and summary["runs"][1]["checks_failed"] == 3
    assert {m["mart"]: m["latest_trade_date"] for m in summary["marts"]} == dict.fromkeys(
        ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview"))


def test_runs_with_a_pipeline_run_id_are_grouped_by_it(runs_db: dict[str, str]) -> None:
    """Backfill runs overlap in time: steps carrying DATAPIPE_RUN_ID (extract's pipeline_run_id, the
    gate's run_id) are grouped by it, not by time; steps without one (an older release, a step run
    by hand) are still grouped in time among themselves."""
    log = Log(runs_db)
    a, b = "backfill__2026-11-24T22:30:00+00:00", "backfill__2026-11-25T22:30:00+00:00"
    # two backfill runs interleaved: their extractions, then their gates, one after the other
    log.extract("prices", at(DAY1, 0), 60, "succeeded", bars=300, run=a)
    log.extract("prices", at(DAY1, 0.5), 50, "failed", failed=1, run=b)
    gate_a = log.gate(at(DAY1, 3), 30, 0, newest=dt.date(2026, 11, 24), expected=dt.date(2026, 11, 24), run=a)
    gate_b = log.gate(at(DAY1, 3.25), 30, 2, newest=dt.date(2026, 11, 24), expected=dt.date(2026, 11, 25), run=b)
    log.publish(gate_a, at(DAY1, 4), "published", {"fct_daily_prices": 100})
    log.publish(gate_b, at(DAY1, 4.5), "refused: gate failed", {})
    # a step run by hand the next day, with no run id: a run of its own, grouped in time
    log.extract("prices", at(DAY2, 0), 20, "succeeded", bars=3)
    log.extract("companies", at(DAY2, 0.1), 10, "succeeded")

    runs = view(runs_db)
    pick = ("pipeline_run_id", "outcome", "extract_runs", "extract_failed", "rows_loaded", "gate_runs",
            "checks_failed", "gate_run_id", "freshness_lag_sessions")
    assert [tuple(r[k] for k in pick) for r in runs] == [
        (a, "published", 1, 0, 300, 1, 0, gate_a, 0),
        (b, "publish refused: gate failed", 1, 1, 0, 1, 2, gate_b, 1),
        (None, "stopped before the gate", 2, 0, 3, None, None, None, None),
    ]
    assert [r["run_number"] for r in runs] == [1, 2, 3]


def test_the_view_replaces_an_older_definition(runs_db: dict[str, str]) -> None:
    """A view with other columns (an older release) is replaced, not an error."""
    with psycopg.connect(conninfo(runs_db), autocommit=True) as conn:
        conn.execute("drop view ops.pipeline_runs")
        conn.execute("create view ops.pipeline_runs as select 1 as run_number, 'old' as outcome")
        db.ensure_ops_tables(conn)
    assert view(runs_db) == []
