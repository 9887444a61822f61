"""End to end, for real: the market_data_daily DAG in the local runtime (`airflow dags test`, every
step as its steps.toml command in its venv, Cosmos running dbt from the transform venv) against a
private embedded PostgreSQL and the sandbox Alpha Vantage API."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dagtest import DAGS, alert_connections, email_text, run_airflow

MARTS = ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
SYMBOLS = "AAPL,MSFT,IBM"
LOGICAL_DATE = "2026-11-25T22:30:00+00:00"
API_KEY = "sandbox-key-must-not-leak"

pytestmark = pytest.mark.slow


def dag_env(airflow_home: dict[str, str], warehouse: Any, sandbox: Any, tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **airflow_home,
        **warehouse.env,
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        "AIRFLOW__COSMOS__CACHE_DIR": str(tmp / "cosmos"),
        "DATAPIPE_RUNTIME": "local",
        "DATAPIPE_SYMBOLS": SYMBOLS,
        "DATAPIPE_TASK_RETRIES": "0",
        "ALPHAVANTAGE_BASE_URL": sandbox.base_url,
        "ALPHAVANTAGE_API_KEY": API_KEY,
        "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "6000",
        **extra,
    }


def dags_test(env: dict[str, str], logical_date: str = LOGICAL_DATE) -> tuple[int, str]:
    proc = run_airflow(["dags", "test", "market_data_daily", logical_date], env, timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr


def marts_checksums(warehouse: Any) -> dict[str, tuple[int, str]]:
    out = {}
    for mart in MARTS:
        count, digest = warehouse.psql(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from marts.{mart} t"
        ).split("|")
        out[mart] = (int(count), digest)
    return out


def test_local_run_publishes_marts_and_a_rerun_is_identical(airflow_home: dict[str, str], warehouse: Any,
                                                            sandbox_server: Any, tmp_path: Path) -> None:
    sandbox = sandbox_server()
    env = dag_env(airflow_home, warehouse, sandbox, tmp_path)

    rc, log = dags_test(env)
    assert rc == 0, "DAG run failed:\n" + log[-8000:]
    published = marts_checksums(warehouse)
    assert all(count > 0 for count, _ in published.values()), published
    assert published["dim_company"][0] == 3 and published["mart_market_overview"][0] == 3
    symbols = warehouse.psql("select string_agg(distinct symbol, ',' order by symbol) from marts.fct_daily_prices")
    assert symbols == "AAPL,IBM,MSFT"
    # the steps ran their steps.toml commands in their venvs; Cosmos ran dbt per model from the transform venv
    assert "running extract prices in " + str(DAGS.parent / "extract") in log
    assert "running quality gate in " + str(DAGS.parent / "dbt") in log
    dbt = str(DAGS.parent / ".local" / "venvs" / "transform" / "bin" / "dbt")
    assert f"Running command: ['{dbt}', 'run', '--select', 'fqn:datapipe.marts.dim_company'" in log
    freshness = "'source', 'freshness', '--select', 'source:alphavantage.time_series_daily'"
    assert f"Running command: ['{dbt}', {freshness}" in log
    assert warehouse.psql("select count(*) from ops.publish_history") == "1"
    gate = warehouse.psql("select success from ops.gate_runs order by started_at desc limit 1")
    assert gate == "t"

    # the same logical date again: the published marts are identical, row for row
    rc, log2 = dags_test(env)
    assert rc == 0, "rerun failed:\n" + log2[-8000:]
    assert marts_checksums(warehouse) == published
    assert warehouse.psql("select count(*) from ops.publish_history") == "2"

    # an Airflow 3 backfill of a week plans one run per weekday at 17:30 New York (22:30 UTC in November)
    proc = run_airflow(["backfill", "create", "--dag-id", "market_data_daily", "--from-date", "2026-11-20",
                        "--to-date", "2026-11-26", "--reprocess-behavior", "completed", "--dry-run"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = re.findall(r"\| (2026-11-\d\d \d\d:\d\d:\d\d\+00:00) ", proc.stdout)
    assert planned == [f"2026-11-{d} 22:30:00+00:00" for d in ("20", "23", "24", "25")], proc.stdout[-2000:]


def test_failing_run_alerts_by_email_and_slack(airflow_home: dict[str, str], warehouse: Any, sandbox_server: Any,
                                               smtp_server: Any, webhook_server: Any, tmp_path: Path) -> None:
    # The API answers every request with the daily-quota notice (which embeds the key, like the real API).
    sandbox = sandbox_server("--fault", "quota")
    env = dag_env(airflow_home, warehouse, sandbox, tmp_path, **alert_connections(smtp_server, webhook_server))
    before = marts_checksums_or_empty(warehouse)

    rc, log = dags_test(env, "2026-11-24T22:30:00+00:00")
    assert rc != 0, "a failed DAG run must exit non-zero"
    assert "could not deliver alert" not in log
    with urllib.request.urlopen(sandbox.base_url.replace("/query", "/_sandbox/requests"), timeout=5) as resp:
        assert json.load(resp), "the extractor never called the sandbox"

    subject = "[datapipe] Task failed: market_data_daily.extract_prices (2026-11-24T22:30:00+00:00)"
    mails = [m for m in smtp_server.messages if m["message"]["Subject"] == subject]
    assert len(mails) == 1, [m["message"]["Subject"] for m in smtp_server.messages]
    posts = [json.loads(p["body"])["text"] for p in webhook_server.posts]
    slack = [p for p in posts if "market_data_daily.extract_prices" in p]
    assert len(slack) == 1, posts
    for text in (email_text(mails[0]["message"]), slack[0]):
        assert "Task:         extract_prices" in text
        assert "Logical date: 2026-11-24T22:30:00+00:00" in text
        assert "Run id:       manual__" in text
        assert "Try number:   1" in text
        assert "http://airflow.example:8080/dags/market_data_daily/runs/manual__" in text
        assert "step extract_prices (extract prices) exited with code" in text
        assert API_KEY not in text and warehouse.env["PGPASSWORD"] not in text
    # nothing downstream ran, and the published marts did not move
    assert marts_checksums_or_empty(warehouse) == before


def marts_checksums_or_empty(warehouse: Any) -> dict[str, Any]:
    exists = warehouse.psql("select count(*) from information_schema.tables where table_schema = 'marts'")
    return marts_checksums(warehouse) if int(exists) == len(MARTS) else {}
