"""The guarantees of Cosmos' watcher execution, for real: the market_data_daily DAG in the local
runtime (`airflow dags test`; one `dbt build`, one task per model reading its result) against the
suite's embedded PostgreSQL and the sandbox API, with a probe copy of the dbt project that adds
two singular tests on `dim_company`:

- `probe_fails_first_try` (severity error) fails the first time it runs in a pipeline run and passes
  on a retry (it looks for its own earlier result in ops.dbt_results);
- `probe_warns` (severity warn) always warns (one row).

Freshness stopping the build is test_local_run.py's stale-source test."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from dagtest import DAGS, DBT_PROJECT, alert_connections, email_text, failure_report, query_metadata
from test_local_run import dag_env, dags_test, marts_checksums_or_empty

pytestmark = pytest.mark.slow

TRANSFORM_BIN = DAGS.parent / ".local" / "venvs" / "transform" / "bin"
PROBE_TEST = "probe_fails_first_try"
PROBE_WARNING = "probe_warns"
TEST_TASK = "dbt.dim_company.test"
PRODUCER = "dbt.dbt_producer_watcher"
BLOCKED = ("dbt.mart_market_overview.run", "quality_gate", "publish_marts", "grant_reader")
PROBE_TESTS = {
    f"{PROBE_TEST}.sql": """
-- fails (one row) the first time it runs in a pipeline run, passes on a retry
-- depends_on: {{ ref('dim_company') }}
select 1 as first_try
where not exists (
    select from ops.dbt_results
    where run_id = '{{ env_var("DATAPIPE_RUN_ID", "") }}' and unique_id like 'test.datapipe.probe_fails_first_try%'
)
""",
    f"{PROBE_WARNING}.sql": """
{{ config(severity='warn') }}
-- always one row: a warning, never a failure
select symbol from {{ ref('dim_company') }} limit 1
""",
}


@pytest.fixture(scope="module")
def probe_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of dbt/ with the probe tests, and its manifest (`dbt parse`, as `make dbt-manifest`)."""
    project = tmp_path_factory.mktemp("probe") / "dbt"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "quality", ".user.yml"))
    (project / "tests").mkdir(exist_ok=True)
    for name, sql in PROBE_TESTS.items():
        (project / "tests" / name).write_text(sql.lstrip())
    env = {"PATH": "/usr/bin:/bin", "DBT_PROFILES_DIR": ".", "DBT_PROJECT_DIR": ".", "PGHOST": "localhost",
           "PGDATABASE": "warehouse", "PGUSER": "pipeline", "PGPASSWORD": "unused",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "0"}
    proc = subprocess.run([str(TRANSFORM_BIN / "dbt"), "parse", "--quiet", "--no-partial-parse"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"dbt parse of the probe project failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    nodes = json.loads((project / "target" / "manifest.json").read_text())["nodes"]
    assert {n["name"] for n in nodes.values()} >= {PROBE_TEST, PROBE_WARNING}
    return project


def probe_env(airflow_home: dict[str, str], warehouse: Any, sandbox: Any, tmp: Path, project: Path,
              smtp_server: Any, webhook_server: Any, **extra: str) -> dict[str, str]:
    return dag_env(airflow_home, warehouse, sandbox, tmp, **alert_connections(smtp_server, webhook_server),
                   DATAPIPE_DBT_PROJECT_DIR=str(project),
                   DATAPIPE_DBT_MANIFEST=str(project / "target" / "manifest.json"), **extra)


def task_states(airflow_home: dict[str, str], logical_date: str) -> tuple[str, dict[str, tuple[str, int]]]:
    db = Path(airflow_home["AIRFLOW_HOME"]) / "airflow.db"
    day = logical_date[:10]
    runs = query_metadata(db, "select run_id from dag_run where dag_id = 'market_data_daily' and logical_date like ?",
                          (f"{day} 22:30:00%",))
    assert len(runs) == 1, runs
    run_id = runs[0]["run_id"]
    rows = query_metadata(db, "select task_id, state, try_number from task_instance where run_id = ?", (run_id,))
    return run_id, {r["task_id"]: (r["state"], r["try_number"]) for r in rows}


def dbt_commands(log: str) -> list[tuple[str, ...]]:
    """The dbt processes Cosmos started, as (command, --select value or '')."""
    found = []
    for match in re.finditer(r"Running command: (\[[^\]]*\])", log):
        argv = re.findall(r"'([^']*)'", match[1])
        select = argv[argv.index("--select") + 1] if "--select" in argv else ""
        found.append((argv[1], select))
    return found


def published(warehouse: Any) -> int:
    """How many publishes succeeded (0 on a warehouse no publish has run on)."""
    if warehouse.psql("select to_regclass('ops.publish_history') is null") == "t":
        return 0
    return int(warehouse.psql("select count(*) from ops.publish_history where status = 'published'"))


def warning_alerts(smtp_server: Any, webhook_server: Any, date: str) -> tuple[list[str], list[str]]:
    subject = f"[datapipe] dbt test warnings: market_data_daily.{PRODUCER} ({date})"
    mails = [email_text(m["message"]) for m in smtp_server.messages if m["message"]["Subject"] == subject]
    posts = [text for p in webhook_server.posts if f"*{subject}*" in (text := json.loads(p["body"])["text"])]
    return mails, posts


def assert_warning_alert(text: str, date: str) -> None:
    assert "dbt test warnings in DAG market_data_daily" in text
    assert f"Task:         {PRODUCER}" in text
    assert f"Logical date: {date}" in text
    assert f"Warnings:     {PROBE_WARNING} (1 failing row)" in text, text


def test_a_failing_dbt_test_fails_its_task_and_blocks_downstream_the_gate_and_publish(
        airflow_home: dict[str, str], warehouse: Any, sandbox_server: Any, smtp_server: Any, webhook_server: Any,
        probe_project: Path, tmp_path: Path) -> None:
    date = "2026-11-24T22:30:00+00:00"
    env = probe_env(airflow_home, warehouse, sandbox_server(), tmp_path, probe_project, smtp_server, webhook_server)
    before = marts_checksums_or_empty(warehouse)

    rc, log = dags_test(env, date)
    assert rc != 0, "a run whose dbt test failed must fail"
    (tmp_path / "run.log").write_text(log)
    run_id, states = task_states(airflow_home, date)
    # one build; its failed test fails its own task, and only what depends on it is blocked
    assert dbt_commands(log) == [("build", "")], dbt_commands(log)
    assert states[PRODUCER][0] == "skipped", states[PRODUCER]  # dbt exit 1: nodes failed, the build ran through
    assert states[TEST_TASK] == ("failed", 1), states[TEST_TASK]
    for task in BLOCKED:
        assert states[task][0] == "upstream_failed", (task, states[task])
    assert states["dbt.dim_company.run"][0] == "success", states["dbt.dim_company.run"]
    assert states["dbt.fct_daily_prices.test"][0] == "success", states["dbt.fct_daily_prices.test"]
    failed = sorted(t for t, (s, _) in states.items() if s == "failed")
    assert failed == [TEST_TASK], failed
    # dbt recorded the failure for the run; nothing was published
    status = warehouse.psql(f"select status from ops.dbt_results where run_id = '{run_id}'"
                            f" and unique_id like 'test.datapipe.{PROBE_TEST}%' order by result_id")
    assert status == "fail", status
    assert marts_checksums_or_empty(warehouse) == before
    # alerts: the failed test task, and the build's warning (once); no run alert (a task alert covered it)
    subjects = sorted(m["message"]["Subject"] for m in smtp_server.messages)
    assert subjects == sorted([f"[datapipe] Task failed: market_data_daily.{TEST_TASK} ({date})",
                               f"[datapipe] dbt test warnings: market_data_daily.{PRODUCER} ({date})"]), subjects
    assert len(webhook_server.posts) == 2
    mails, posts = warning_alerts(smtp_server, webhook_server, date)
    assert len(mails) == 1 and len(posts) == 1
    for text in (*mails, *posts):
        assert_warning_alert(text, date)


def test_a_retried_test_reruns_alone_and_publish_accepts_the_run(
        airflow_home: dict[str, str], warehouse: Any, sandbox_server: Any, smtp_server: Any, webhook_server: Any,
        probe_project: Path, tmp_path: Path) -> None:
    date = "2026-11-25T22:30:00+00:00"
    env = probe_env(airflow_home, warehouse, sandbox_server(), tmp_path, probe_project, smtp_server, webhook_server,
                    DATAPIPE_TASK_RETRIES="1", DATAPIPE_RETRY_DELAY_SECONDS="1", DATAPIPE_MAX_RETRY_DELAY_SECONDS="2")
    publishes = published(warehouse)

    rc, log = dags_test(env, date)
    assert rc == 0, "DAG run failed:\n" + failure_report(log, tmp_path / "run.log")
    run_id, states = task_states(airflow_home, date)
    # the failed test's task failed once, then its retry ran `dbt test` of its model alone and passed;
    # the model the build skipped after it (mart_market_overview) ran alone on its task's retry
    assert states[TEST_TASK] == ("success", 2), states[TEST_TASK]
    commands = dbt_commands(log)
    assert commands[0] == ("build", "") and commands.count(("build", "")) == 1, commands
    assert ("test", "dim_company") in commands, commands
    assert all(select for _, select in commands[1:]), commands  # every retry selected its own node
    retried = {t for t, (_, tries) in states.items() if tries > 1}
    assert retried <= {TEST_TASK, *(t for t in states if "mart_market_overview" in t)}, retried
    results = warehouse.psql(f"select string_agg(status, ',' order by result_id) from ops.dbt_results"
                             f" where run_id = '{run_id}' and unique_id like 'test.datapipe.{PROBE_TEST}%'")
    assert results == "fail,pass", results
    # publish judged the run by each node's latest result, and published
    assert states["publish_marts"][0] == "success"
    row = warehouse.psql("select status, run_id from ops.publish_history order by publish_id desc limit 1")
    assert row == f"published|{run_id}", row
    assert published(warehouse) == publishes + 1
    # the one alert of the run: the build's test warning, once by each channel (a retry that passes pages nobody)
    assert "could not deliver alert" not in log
    mails, posts = warning_alerts(smtp_server, webhook_server, date)
    assert len(smtp_server.messages) == 1 and len(mails) == 1, [m["message"]["Subject"] for m in smtp_server.messages]
    assert len(webhook_server.posts) == 1 and len(posts) == 1
    for text in (*mails, *posts):
        assert_warning_alert(text, date)

