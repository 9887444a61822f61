"""End to end, for real: the market_data_daily DAG in the local runtime (`airflow dags test`, every
step as its steps.toml command in its venv, Cosmos running dbt from the transform venv) against a
private embedded PostgreSQL and the sandbox Alpha Vantage API."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from dagtest import (
    DAGS,
    airflow_services,
    alert_connections,
    email_text,
    failure_report,
    query_metadata,
    run_airflow,
    scheduler_env,
    wait_for_backfill,
)

MARTS = ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
SYMBOLS = "AAPL,MSFT,IBM"
LOGICAL_DATE = "2026-11-27T22:30:00+00:00"  # the Friday after Thanksgiving (an early close)
API_KEY = "sandbox-key-must-not-leak"
# The backfill docs/airflow.md shows (dates: the runs' logical dates at 17:30 New York = 22:30 UTC):
# Wednesday, Thanksgiving (no session) and the Friday.
BACKFILL = ["backfill", "create", "--dag-id", "market_data_daily", "--from-date", "2026-11-25", "--to-date",
            "2026-11-28", "--reprocess-behavior", "completed", "--max-active-runs", "1"]
BACKFILL_TIMEOUT_S = 2400
STALE_DATE = "2026-11-18T22:30:00+00:00"  # a Wednesday

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
    proc = run_airflow(["dags", "test", "market_data_daily", logical_date], env, timeout=1800, merge_output=True)
    return proc.returncode, proc.stdout


def marts_checksums(warehouse: Any) -> dict[str, tuple[int, str]]:
    out = {}
    for mart in MARTS:
        count, digest = warehouse.psql(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from marts.{mart} t"
        ).split("|")
        out[mart] = (int(count), digest)
    return out


def test_local_run_publishes_marts_and_a_backfill_reruns_identically(
        airflow_home: dict[str, str], warehouse: Any, sandbox_server: Any, smtp_server: Any, webhook_server: Any,
        tmp_path: Path) -> None:
    sandbox = sandbox_server()
    # Alerts configured: a healthy run must not send any (no failure, no stale source, no warning).
    env = dag_env(airflow_home, warehouse, sandbox, tmp_path, **alert_connections(smtp_server, webhook_server))

    rc, log = dags_test(env)
    assert rc == 0, "DAG run failed:\n" + failure_report(log, tmp_path / "run1.log")
    published = marts_checksums(warehouse)
    assert all(count > 0 for count, _ in published.values()), published
    assert published["dim_company"][0] == 3 and published["mart_market_overview"][0] == 3
    symbols = warehouse.psql("select string_agg(distinct symbol, ',' order by symbol) from marts.fct_daily_prices")
    assert symbols == "AAPL,IBM,MSFT"
    # the steps ran their steps.toml commands in their venvs (source freshness as one of them); Cosmos
    # ran one `dbt build` from the transform venv, and no other dbt process
    assert "running extract prices in " + str(DAGS.parent / "extract") in log
    assert "running quality gate in " + str(DAGS.parent / "dbt") in log
    assert "running dbt source freshness in " + str(DAGS.parent / "dbt") in log
    dbt = str(DAGS.parent / ".local" / "venvs" / "transform" / "bin" / "dbt")
    assert re.findall(r"Running command: \['([^']+)', '(\w+)'", log) == [(dbt, "build")]
    publishes = int(warehouse.psql("select count(*) from ops.publish_history"))
    gate = warehouse.psql("select success from ops.gate_runs order by started_at desc limit 1")
    assert gate == "t"
    assert "could not deliver alert" not in log
    assert_no_alert(smtp_server, webhook_server)

    # An Airflow 3 backfill, executed by the scheduler, exactly as docs/airflow.md tells a user:
    # Wednesday, Thanksgiving and Friday; the weekend is not a run; Thanksgiving is a run that
    # skips everything (no NYSE session: no API request, no alert); Friday is the date run above,
    # re-run (--reprocess-behavior completed): its published marts must come out identical.
    # The backfill is created before the scheduler starts (SQLite allows one writer at a time).
    home = Path(airflow_home["AIRFLOW_HOME"])
    first = query_metadata(home / "airflow.db", "select run_id from dag_run where dag_id = 'market_data_daily'"
                           " and logical_date like '2026-11-27 22:30:00%'")
    assert len(first) == 1, first
    env = scheduler_env(env)
    proc = run_airflow([*BACKFILL, "--dry-run"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = re.findall(r"\| (2026-11-\d\d \d\d:\d\d:\d\d\+00:00) ", proc.stdout)
    assert planned == ["2026-11-25 22:30:00+00:00", "2026-11-26 22:30:00+00:00", "2026-11-27 22:30:00+00:00"], (
        proc.stdout[-2000:])
    runs_by_command = "select count(*) filter (where command = 'prices'), count(*) from ops.extract_runs"
    extract_runs = [int(n) for n in warehouse.psql(runs_by_command).split("|")]
    sandbox_requests = len(requests_seen(sandbox))
    for args in (["dags", "unpause", "market_data_daily"], BACKFILL):
        proc = run_airflow(args, env)
        assert proc.returncode == 0, f"airflow {' '.join(args)} failed:\n{proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    with airflow_services(env, tmp_path / "services") as services:
        runs = wait_for_backfill(services, home, "market_data_daily", timeout_s=BACKFILL_TIMEOUT_S)

    assert [(r["logical_date"][:16], r["state"]) for r in runs] == [
        ("2026-11-25 22:30", "success"), ("2026-11-26 22:30", "success"), ("2026-11-27 22:30", "success")], runs
    assert runs[2]["run_id"] == first[0]["run_id"], "the completed run was not the one re-run"
    assert all(r["run_type"] == "backfill" for r in runs), runs
    # Thanksgiving: check_session succeeded, every other task was skipped, nothing was requested
    states = query_metadata(home / "airflow.db", "select task_id, state from task_instance where run_id = ?",
                            (runs[1]["run_id"],))
    assert {s["task_id"]: s["state"] for s in states}.pop("check_session") == "success"
    assert {s["state"] for s in states if s["task_id"] != "check_session"} == {"skipped"}, states
    prices_runs, all_runs = (int(n) for n in warehouse.psql(runs_by_command).split("|"))
    assert prices_runs == extract_runs[0] + 2  # Wednesday and Friday; none on Thanksgiving
    # one request per symbol and extraction (Wednesday also refreshed companies: no earlier success)
    assert len(requests_seen(sandbox)) == sandbox_requests + 3 * (all_runs - extract_runs[1])
    assert int(warehouse.psql("select count(*) from ops.publish_history")) == publishes + 2
    assert marts_checksums(warehouse) == published
    assert_no_alert(smtp_server, webhook_server)


def requests_seen(sandbox: Any) -> list[dict[str, Any]]:
    """The sandbox's request log (every /query request it answered)."""
    with urllib.request.urlopen(sandbox.base_url.replace("/query", "/_sandbox/requests"), timeout=5) as resp:
        return list(json.load(resp)["requests"])


def assert_no_alert(smtp_server: Any, webhook_server: Any) -> None:
    assert [m["message"]["Subject"] for m in smtp_server.messages] == []
    assert [p["body"] for p in webhook_server.posts] == []


def test_failing_run_alerts_by_email_and_slack(airflow_home: dict[str, str], warehouse: Any, sandbox_server: Any,
                                               smtp_server: Any, webhook_server: Any, tmp_path: Path) -> None:
    # The API answers every request with the daily-quota notice (which embeds the key, like the real API).
    sandbox = sandbox_server("--fault", "quota")
    env = dag_env(airflow_home, warehouse, sandbox, tmp_path, **alert_connections(smtp_server, webhook_server))
    before = marts_checksums_or_empty(warehouse)

    rc, log = dags_test(env, "2026-11-24T22:30:00+00:00")
    assert rc != 0, "a failed DAG run must exit non-zero"
    assert "could not deliver alert" not in log
    assert requests_seen(sandbox), "the extractor never called the sandbox"

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


def test_stale_source_data_alerts_by_email_and_slack(airflow_home: dict[str, str], warehouse: Any,
                                                     sandbox_server: Any, smtp_server: Any, webhook_server: Any,
                                                     tmp_path: Path) -> None:
    # The provider is stuck on an old trading day: it answers the same bodies again and again, so the
    # extractor stores nothing new (an identical payload is not stored twice, docs/extract.md) and the
    # latest load stays the one from before. Load that state, then date the loads back in NYSE sessions
    # (dbt's source freshness counts the sessions whose bar came due since the newest load): prices
    # 4 sessions (error after more than 2), company overviews 7 (warn after more than 5, error after 10).
    sandbox = sandbox_server("--as-of", "2026-11-06")
    env = dag_env(airflow_home, warehouse, sandbox, tmp_path, **alert_connections(smtp_server, webhook_server))
    extract = DAGS.parent / ".local" / "venvs" / "extract" / "bin" / "extract"
    assert extract.exists(), f"{extract} is missing: run `make venvs` (make test-dags does it)"
    # prices twice: a first load is `full`, the DAG's later ones `compact` (the body the DAG will fetch)
    for command in (["prices"], ["prices"], ["companies"]):
        proc = subprocess.run([str(extract), *command, "--symbols", SYMBOLS], env=env, cwd=DAGS.parent / "extract",
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"extract {command[0]} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
    prices_load, companies_load = (loaded_sessions_ago(4), loaded_sessions_ago(7))
    warehouse.psql(f"update raw.time_series_daily set received_at = '{prices_load.isoformat()}'", admin=True)
    warehouse.psql(f"update raw.company_overview set received_at = '{companies_load.isoformat()}'", admin=True)
    loads = "select count(*) from raw.time_series_daily"
    before_rows, before_marts = warehouse.psql(loads), marts_checksums_or_empty(warehouse)

    rc, log = dags_test(env, STALE_DATE)
    assert rc != 0, "a run on stale source data must fail"
    assert "could not deliver alert" not in log
    assert warehouse.psql(loads) == before_rows, "the run stored new price payloads: the data were not stale"

    # one freshness task checks both sources: the prices are past their error threshold (the task
    # fails), the overviews past their warning threshold; one alert, by both channels, names both
    task = "dbt_source_freshness"
    subject = f"[datapipe] Stale source data: market_data_daily.{task} ({STALE_DATE})"
    assert [m["message"]["Subject"] for m in smtp_server.messages] == [subject]
    posts = [json.loads(p["body"])["text"] for p in webhook_server.posts]
    assert len(posts) == 1 and f"*{subject}*" in posts[0], posts
    mail = smtp_server.messages[0]
    assert mail["to"] == ["oncall@datapipe.test"]
    for text in (email_text(mail["message"]), posts[0]):
        assert "Stale source data in DAG market_data_daily" in text
        assert "DAG:          market_data_daily" in text
        assert f"Task:         {task}" in text
        assert f"Logical date: {STALE_DATE}" in text
        assert "Try number:   1" in text
        run_id = re.search(r"Run id: +(manual__\S+)", text)
        assert run_id, text
        log_url = ("http://airflow.example:8080/dags/market_data_daily/runs/"
                   f"{urllib.parse.quote(run_id[1], safe='')}/tasks/{task}?try_number=1")
        assert f"Log:          {log_url}" in text
        for secret in (API_KEY, warehouse.env["PGPASSWORD"]):
            assert secret not in text
        assert "Error:" in text and f"step {task} (dbt source freshness) exited with code 1" in text, text
        prices, companies = (text.index(f"Source:       alphavantage.{t} (table raw.{t}")
                             for t in ("time_series_daily", "company_overview"))
        for start, rule, load in ((prices, "warn after 1, error after 3", prices_load),
                                  (companies, "warn after 6, error after 11", companies_load)):
            block = text[start:start + 600]
            assert f"Freshness:    {rule} NYSE sessions without a newer load" in block, block
            stamp = re.escape(load.astimezone(dt.UTC).isoformat(timespec="seconds"))
            assert re.search(rf"Newest load:  {stamp} \(\d+ days? \d+ hours? ago\)", block), block
    # dbt recorded each source's freshness result for the run (its hooks run for freshness too):
    # what the warning alert of a run that goes on reads
    recorded = warehouse.psql("select string_agg(unique_id || '=' || status, ',' order by unique_id)"
                              f" from ops.dbt_results where resource_type = 'source' and run_id = '{run_id[1]}'")
    assert recorded == ("source.datapipe.alphavantage.company_overview=warn,"
                        "source.datapipe.alphavantage.time_series_daily=error"), recorded
    # nothing after the freshness check ran: no dbt build, no model task
    assert "'build', '--log-format'" not in log
    # the stale prices stopped the run before the gate: the published marts did not move
    assert marts_checksums_or_empty(warehouse) == before_marts


def loaded_sessions_ago(sessions: int) -> dt.datetime:
    """A load time after which exactly `sessions` NYSE sessions had their bar come due by now."""
    from datapipe_common.calendar import nyse

    calendar = nyse()
    day = calendar.latest_completed_session(dt.datetime.now(dt.UTC))
    for _ in range(sessions):
        day = calendar.previous_session(day)
    return calendar.session(day).close_at + dt.timedelta(minutes=30)


def marts_checksums_or_empty(warehouse: Any) -> dict[str, Any]:
    exists = warehouse.psql("select count(*) from information_schema.tables where table_schema = 'marts'")
    return marts_checksums(warehouse) if int(exists) == len(MARTS) else {}
