"""End to end, for real: the market_quotes_intraday DAG in the local runtime (`airflow dags test`, its two
steps as their steps.toml commands in their venvs) against a private database of the embedded PostgreSQL
and the sandbox Alpha Vantage API, its clock pinned mid-session (issue 20, item 2)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from dagtest import DAGS, failure_report, run_airflow

pytestmark = pytest.mark.slow

SYMBOLS = "AAPL,MSFT,IBM"
NOW = "2025-06-16T14:37"  # a Monday, 14:37 New York
LOGICAL_DATE = "2025-06-16T18:35:00+00:00"  # 14:35 New York: a poll of the session
DATABASE = "quotes_dag"


def test_local_quotes_run_publishes_the_live_prices(airflow_home: dict[str, str], warehouse: Any,
                                                     sandbox_server: Any, tmp_path: Path) -> None:
    sandbox = sandbox_server("--now", NOW)
    warehouse.psql(f"create database {DATABASE} owner pipeline", admin=True)
    pg = {**warehouse.env, "PGDATABASE": DATABASE}
    # the last published daily close the change is computed against (what the daily DAG leaves in marts)
    for sql in ("create schema marts",
                "create table marts.fct_daily_prices (symbol text, trade_date date, close numeric)",
                "insert into marts.fct_daily_prices values ('AAPL', '2025-06-13', 196.45),"
                " ('MSFT', '2025-06-13', 474.96), ('IBM', '2025-06-13', 280.05)"):
        warehouse.psql(sql, database=DATABASE)
    env = {
        **airflow_home,
        **pg,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        "AIRFLOW__COSMOS__CACHE_DIR": str(tmp_path / "cosmos"),
        "DATAPIPE_RUNTIME": "local",
        "DATAPIPE_SYMBOLS": SYMBOLS,
        "DATAPIPE_TASK_RETRIES": "0",
        "DATAPIPE_API_TIER": "premium",
        "ALPHAVANTAGE_BASE_URL": sandbox.base_url,
        "ALPHAVANTAGE_API_KEY": "sandbox-key",
    }
    proc = run_airflow(["dags", "test", "market_quotes_intraday", LOGICAL_DATE], env, timeout=900, merge_output=True)
    log = proc.stdout
    assert proc.returncode == 0, "DAG run failed:\n" + failure_report(log, tmp_path / "quotes.log")
    assert "running extract quotes in " + str(DAGS.parent / "extract") in log
    assert "running quality publish-quotes in " + str(DAGS.parent / "dbt") in log
    assert "quotes from TIME_SERIES_INTRADAY (entitlement=realtime)" in log
    rows = warehouse.psql("select symbol, to_char(bar_at at time zone 'America/New_York', 'HH24:MI'), delay,"
                             " last_close_date from marts.fct_live_quotes order by 1", database=DATABASE)
    assert rows.splitlines() == [f"{s}|14:35|realtime|{dt.date(2025, 6, 13)}" for s in sorted(SYMBOLS.split(","))]
    bars = warehouse.psql("select count(distinct bar_at), count(distinct symbol) from marts.fct_intraday_bars",
                           database=DATABASE)
    assert bars == "62|3"  # 09:30 .. 14:35, every 5 minutes
