"""Alerts: message contents (unit) and real delivery from real Airflow task failures (`airflow dags
test`) to a real SMTP server (aiosmtpd) and a local Slack-style webhook receiver."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pendulum
import pytest
from dagtest import DAGS, alert_connections, email_text, run_airflow
from datapipe_dags.alerts import build_message, classify, redact, stale_source_details, task_log_url
from datapipe_dags.config import Settings

RUN_ID = "manual__2026-11-25T22:30:00+00:00"


def context(task_id: str, exc: Exception | None = None, try_number: int = 2) -> dict[str, Any]:
    ti = SimpleNamespace(dag_id="market_data_daily", task_id=task_id, run_id=RUN_ID, try_number=try_number,
                         map_index=-1, task=SimpleNamespace(task_id=task_id))
    return {"ti": ti, "run_id": RUN_ID, "logical_date": pendulum.datetime(2026, 11, 25, 22, 30, tz="UTC"),
            "exception": exc}


def test_task_failure_message_names_everything_on_call_needs() -> None:
    msg = build_message("task_failed", context("extract_prices", RuntimeError("step extract_prices exited 3")),
                        "https://airflow.example.com")
    text = msg.text
    assert msg.subject == "[datapipe] Task failed: market_data_daily.extract_prices (2026-11-25T22:30:00+00:00)"
    for expected in ("DAG:          market_data_daily", "Task:         extract_prices", f"Run id:       {RUN_ID}",
                     "Logical date: 2026-11-25T22:30:00+00:00", "Try number:   2",
                     "Error:        RuntimeError: step extract_prices exited 3"):
        assert expected in text
    assert ("Log:          https://airflow.example.com/dags/market_data_daily/runs/"
            "manual__2026-11-25T22%3A30%3A00%2B00%3A00/tasks/extract_prices?try_number=2") in text


def test_gate_message_lists_failing_expectations() -> None:
    msg = build_message("quality_gate_failed", context("quality_gate"), "http://x",
                        expectations=[f"fct_daily_prices: expect_{i}" for i in range(30)])
    assert "Failing expectations (30):" in msg.text
    assert "  - fct_daily_prices: expect_0" in msg.text
    assert "... and 5 more" in msg.text
    unavailable = build_message("quality_gate_failed", context("quality_gate"), "http://x", expectations_error="no db")
    assert "Failing expectations: unavailable (no db)" in unavailable.text


def test_html_is_escaped() -> None:
    msg = build_message("task_failed", context("t", RuntimeError("<script>alert(1)</script>")), "http://x")
    assert "<script>" not in msg.html and "&lt;script&gt;" in msg.html


@pytest.mark.parametrize(
    ("raw", "secret"),
    [
        ("GET https://www.alphavantage.co/query?function=X&apikey=ABCD1234SECRET failed", "ABCD1234SECRET"),
        ("could not connect to postgresql://pipeline:hunter2pw@db:5432/warehouse", "hunter2pw"),
        ("password=s3cr3t host=db", "s3cr3t"),
        ("Token: xoxb-123-456", "xoxb-123-456"),
    ],
)
def test_redaction(raw: str, secret: str) -> None:
    assert secret not in redact(raw)
    msg = build_message("task_failed", context("t", RuntimeError(raw)), "http://x")
    assert secret not in msg.text and secret not in msg.html


def test_classification() -> None:
    from cosmos.operators.base import DbtSourceMixin

    class FakeSource(DbtSourceMixin):
        task_id = "dbt.alphavantage_time_series_daily_source"

    assert classify(SimpleNamespace(task_id="quality_gate")) == "quality_gate_failed"
    assert classify(FakeSource()) == "stale_source_data"
    assert classify(SimpleNamespace(task_id="dbt.alphavantage_company_overview.source"), warning=True) == \
        "stale_source_data"
    assert classify(SimpleNamespace(task_id="dbt.dim_company.test"), warning=True) == "dbt_test_warnings"
    assert classify(SimpleNamespace(task_id="extract_prices")) == "task_failed"
    assert task_log_url("http://a/", "d", "r 1", "t", None) == "http://a/dags/d/runs/r%201/tasks/t"


def test_stale_source_message_names_table_thresholds_and_newest_load(tmp_path: Path, warehouse: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"sources": {"source.datapipe.feed.bars": {
        "source_name": "feed", "name": "bars", "schema": "stale_probe", "identifier": "bars_table",
        "loaded_at_field": "received_at",
        "freshness": {"warn_after": {"count": 3, "period": "day"}, "error_after": {"count": 1, "period": "week"}},
    }, "source.datapipe.feed.sessions": {
        "source_name": "feed", "name": "sessions", "schema": "stale_probe", "identifier": "bars_table",
        "loaded_at_query": "{{ datapipe_sessions_since_load(this) }}", "meta": {"loaded_at_column": "received_at"},
        "freshness": {"warn_after": {"count": 0, "period": "day"}, "error_after": {"count": 2, "period": "day"}},
    }}}))
    warehouse.psql("create schema stale_probe; create table stale_probe.bars_table (received_at timestamptz);"
                   " insert into stale_probe.bars_table values ('2026-11-15 12:00+00'), ('2026-11-16 09:30+00')",
                   admin=True)
    warehouse.psql("grant usage on schema stale_probe to pipeline; grant select on all tables in schema stale_probe"
                   " to pipeline", admin=True)
    for key, value in warehouse.env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(runtime="local", dbt_manifest=manifest)
    task = SimpleNamespace(task_id="dbt.feed_bars.source", select="source:feed.bars")
    now = pendulum.datetime(2026, 11, 26, 11, 30, tz="UTC")
    lines = stale_source_details(task, settings, now=now)
    assert lines == [
        "Source:       feed.bars (table stale_probe.bars_table, loaded_at_field received_at)",
        "Freshness:    warn after 3 days, error after 1 week",
        "Newest load:  2026-11-16T09:30:00+00:00 (10 days 2 hours ago)",
    ]
    assert stale_source_details(task, settings, now=pendulum.datetime(2026, 11, 17, 10, 30, tz="UTC"))[2] == \
        "Newest load:  2026-11-16T09:30:00+00:00 (1 day 1 hour ago)"
    # a source on the NYSE session clock (dbt/macros/freshness.sql): thresholds read as sessions
    on_sessions = SimpleNamespace(task_id="dbt.feed_sessions.source", select=["source:feed.sessions"])
    assert stale_source_details(on_sessions, settings, now=now) == [
        "Source:       feed.sessions (table stale_probe.bars_table, loads timed by received_at, age in NYSE sessions)",
        "Freshness:    warn after 1, error after 3 NYSE sessions without a newer load",
        "Newest load:  2026-11-16T09:30:00+00:00 (10 days 2 hours ago)",
    ]
    msg = build_message("stale_source_data", context("dbt.feed_bars.source"), "http://a", details=lines)
    assert all(line in msg.text for line in lines)
    # the warehouse unreachable: the alert still names the source and says why the load is missing
    monkeypatch.setenv("PGPORT", "1")
    assert stale_source_details(task, settings, now=now)[2].startswith("Newest load:  unavailable (OperationalError")
    # an unknown source, a manifest that cannot be read: named, never an exception
    assert stale_source_details(SimpleNamespace(select="source:feed.other"), settings)[1].startswith(
        "Freshness:    unavailable (StopIteration")
    assert stale_source_details(SimpleNamespace(select="dim_company"), settings) == []


# A throwaway DAG that fails like the pipeline's tasks do: a LocalStepOperator step exits non-zero.
# It has the pipeline's run alert too: the failed tasks alerted, so the failed run must not.
PROBE_DAG = '''
"""alerts_probe: fails two local steps so the alert notifier fires (airflow test DAG)."""
import os
from pathlib import Path
import pendulum
from airflow.sdk import DAG
from datapipe_dags.alerts import PipelineAlert, RunAlert
from datapipe_dags.config import Settings
from datapipe_dags.local import LocalStepOperator
from datapipe_dags.steps import Component, Step

settings = Settings.from_env(os.environ)
venv = Path(os.environ["PROBE_VENV"])
probe = Component(name="probe", image="probe", local_dir=".", venv=venv.name)
failing = ("python", "-c", "import sys; print('apikey=LEAKED-IN-LOG-ONLY'); sys.exit(3)")
with DAG("alerts_probe", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         on_failure_callback=[RunAlert(settings.channels)],
         default_args={"retries": 0, "on_failure_callback": [PipelineAlert(settings)]}):
    for task_id in ("extract_prices", "quality_gate"):
        LocalStepOperator(task_id=task_id, step=Step(task_id, probe, failing), repo_root=Path.cwd(),
                          venvs_dir=venv.parent, plain_env={})
'''

# Gate results as `quality gate` stores them (docs/warehouse.md), in a private database.
GATE_SQL = """
create schema ops;
create table ops.gate_runs (gate_run_id uuid primary key, started_at timestamptz, finished_at timestamptz,
  success bool, audit_schema text, expectations_total int, expectations_failed int, data_docs_path text);
create table ops.gate_results (gate_run_id uuid, mart text, expectation_type text, column_name text,
  kwargs jsonb, success bool, observed_value text, details text);
insert into ops.gate_runs values
  ('00000000-0000-0000-0000-000000000001', now() - interval '1 day', now() - interval '1 day', false, 'audit',
   3, 1, null),
  ('00000000-0000-0000-0000-000000000002', now(), now(), false, 'audit', 3, 2, null);
insert into ops.gate_results values
  ('00000000-0000-0000-0000-000000000001', 'dim_company', 'expect_old_failure', null, '{}', false, null, 'yesterday'),
  ('00000000-0000-0000-0000-000000000002', 'fct_daily_prices', 'expect_column_values_to_not_be_null', 'close',
   '{}', false, '3 nulls', 'close must be set'),
  ('00000000-0000-0000-0000-000000000002', 'mart_market_overview', 'expect_table_row_count_to_be_between', null,
   '{}', false, '7', 'every configured symbol present'),
  ('00000000-0000-0000-0000-000000000002', 'dim_company', 'expect_column_values_to_be_unique', 'symbol',
   '{}', true, null, null);
"""


@pytest.mark.slow
def test_failed_tasks_email_and_post_to_slack_for_real(tmp_path: Path, airflow_home: dict[str, str], warehouse: Any,
                                                        smtp_server: Any, webhook_server: Any) -> None:
    import sys

    warehouse.psql("create database alerts_probe owner pipeline", admin=True)
    db_env = {**warehouse.env, "PGDATABASE": "alerts_probe"}
    probe_wh = type(warehouse)(warehouse.server, db_env, warehouse.reader_env, warehouse.admin_env)
    probe_wh.psql(GATE_SQL)
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "alerts_probe.py").write_text(textwrap.dedent(PROBE_DAG))
    env = {
        **airflow_home, **db_env, **alert_connections(smtp_server, webhook_server),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "PYTHONPATH": str(DAGS),  # the datapipe_dags package
        "DATAPIPE_RUNTIME": "local",
        "PROBE_VENV": str(Path(sys.executable).parent.parent),
        "ALPHAVANTAGE_API_KEY": "AV-KEY-MUST-NOT-APPEAR",
    }
    proc = run_airflow(["dags", "test", "alerts_probe", "2026-11-25T22:30:00+00:00"], env)
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0, "a failed DAG run must exit non-zero\n" + log[-3000:]
    assert "could not deliver alert" not in log, log[-5000:]
    # the run's failure callback ran (in this process, as `dags test` runs it) and found the task alerts
    assert "already alerted by its failed task(s) extract_prices, quality_gate: no run alert" in log, log[-5000:]

    mails = {m["message"]["Subject"]: m for m in smtp_server.messages}
    assert len(mails) == 2, (list(mails), log[-4000:])
    posts = [json.loads(p["body"]) for p in webhook_server.posts]
    assert len(posts) == 2 and all(p["path"] == "/services/T000/B000/XXXX" for p in webhook_server.posts)

    run_id_line = next(line for line in email_text(next(iter(mails.values()))["message"]).splitlines()
                       if line.startswith("Run id:"))
    run_id = run_id_line.split(":", 1)[1].strip()
    assert run_id
    for task_id, title in (("extract_prices", "Task failed"), ("quality_gate", "Quality gate failed")):
        subject = f"[datapipe] {title}: alerts_probe.{task_id} (2026-11-25T22:30:00+00:00)"
        assert subject in mails, list(mails)
        mail = mails[subject]
        assert mail["to"] == ["oncall@datapipe.test"] and mail["from"] == "airflow@datapipe.test"
        body = email_text(mail["message"])
        slack = next(p["text"] for p in posts if f"alerts_probe.{task_id}" in p["text"])
        for text in (body, slack):
            assert "DAG:          alerts_probe" in text
            assert f"Task:         {task_id}" in text
            assert f"Run id:       {run_id}" in text
            assert "Logical date: 2026-11-25T22:30:00+00:00" in text
            assert "Try number:   1" in text
            assert "http://airflow.example:8080/dags/alerts_probe/runs/" in text
            assert f"/tasks/{task_id}?try_number=1" in text
            assert f"step {task_id} (python -c" in text and "exited with code 3" in text
            for secret in (warehouse.env["PGPASSWORD"], "AV-KEY-MUST-NOT-APPEAR", "LEAKED-IN-LOG-ONLY"):
                assert secret not in text
        if task_id == "quality_gate":
            for text in (body, slack):
                assert "Failing expectations (2):" in text
                assert "fct_daily_prices: expect_column_values_to_not_be_null(close) observed=3 nulls" in text
                assert "mart_market_overview: expect_table_row_count_to_be_between" in text
                assert "expect_old_failure" not in text and "expect_column_values_to_be_unique" not in text
        else:
            assert "Failing expectations" not in body


# -- the run alert and the channels (datapipe_dags.notify) --------------------------------------------


def run_context(reason: str, task_id: str | None = "extract_prices") -> dict[str, Any]:
    from datetime import timedelta

    dag = SimpleNamespace(dag_id="market_data_daily", dagrun_timeout=timedelta(hours=3))
    dag_run = SimpleNamespace(dag_id="market_data_daily", run_id=RUN_ID,
                              start_date=pendulum.datetime(2026, 11, 25, 22, 30, 5, tz="UTC"),
                              logical_date=pendulum.datetime(2026, 11, 25, 22, 30, tz="UTC"))
    ctx: dict[str, Any] = {"dag": dag, "dag_run": dag_run, "run_id": RUN_ID, "reason": reason,
                           "logical_date": dag_run.logical_date}
    if task_id:
        ctx["ti"] = SimpleNamespace(dag_id="market_data_daily", task_id=task_id, run_id=RUN_ID, try_number=1,
                                    map_index=-1)
    return ctx


def test_timed_out_run_message_has_the_task_alert_shape() -> None:
    from datapipe_dags.notify import build_run_message

    msg = build_run_message(run_context("timed_out"), "https://airflow.example.com",
                            {"check_session": "success", "extract_prices": "skipped", "quality_gate": "skipped"})
    assert msg.kind == "dag_run_timed_out"
    assert msg.subject == "[datapipe] DAG run timed out: market_data_daily (2026-11-25T22:30:00+00:00)"
    run = "https://airflow.example.com/dags/market_data_daily/runs/manual__2026-11-25T22%3A30%3A00%2B00%3A00"
    assert msg.lines == (
        "DAG run timed out in DAG market_data_daily",
        "",
        "DAG:          market_data_daily",
        f"Run id:       {RUN_ID}",
        "Logical date: 2026-11-25T22:30:00+00:00",
        "Started:      2026-11-25T22:30:05+00:00",
        "Reason:       the run exceeded its dagrun_timeout (3:00:00); Airflow stopped it and marked its unfinished"
        " tasks skipped, so no task alert went out",
        "Unfinished:   extract_prices (try 1)",
        f"Task log:     {run}/tasks/extract_prices?try_number=1",
        f"Run:          {run}",
        "Task states:  2 skipped, 1 success",
    )
    stuck = build_run_message(run_context("all_tasks_deadlocked", task_id=None), "http://a", None, "OSError: down")
    assert stuck.subject.startswith("[datapipe] DAG run stuck: market_data_daily (")
    assert "Reason:       all_tasks_deadlocked; no task of the run failed, so no task alert went out" in stuck.text
    assert "Task states:  unavailable (OSError: down)" in stuck.text


def test_run_alert_stays_silent_when_a_task_alert_covered_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed task sent its own alert: the run alert sends nothing. Otherwise it sends one.
    (Delivery itself is tested for real in test_oncall.py.)"""
    import datapipe_dags.notify as notify

    sent: list[str] = []
    monkeypatch.setattr(notify, "deliver", lambda msg, *args, **kwargs: sent.append(msg.subject) or [])
    channels = notify.Channels(email_to=("oncall@datapipe.test",))
    covered = {"extract_prices": "failed", "publish": "upstream_failed"}
    notify.RunAlert(channels, task_states=lambda dag, run: covered).notify(run_context("task_failure"))
    assert sent == []
    timed_out = {"extract_prices": "skipped"}
    notify.RunAlert(channels, task_states=lambda dag, run: timed_out).notify(run_context("timed_out"))
    assert sent == ["[datapipe] DAG run timed out: market_data_daily (2026-11-25T22:30:00+00:00)"]
    # the states cannot be read: the alert still goes out (and says so)
    notify.RunAlert(channels, task_states=lambda dag, run: 1 / 0).notify(run_context("task_failure"))
    assert sent[-1] == "[datapipe] DAG run failed: market_data_daily (2026-11-25T22:30:00+00:00)"


def test_channels_are_read_leniently() -> None:
    from datapipe_dags.notify import Channels

    channels, problems = Channels.from_env({
        "DATAPIPE_ALERT_EMAIL_TO": "oncall@x.org, nobody", "DATAPIPE_SLACK_CONN_ID": "slack alerts",
        "DATAPIPE_AIRFLOW_BASE_URL": "airflow:8080", "DATAPIPE_SMTP_CONN_ID": "mail"})
    assert channels.email_to == ("oncall@x.org",) and channels.slack_conn_id is None
    assert channels.smtp_conn_id == "mail" and channels.airflow_base_url == "http://localhost:8080"
    assert [p.split("=")[0].split(" ")[0] for p in problems] == [
        "DATAPIPE_AIRFLOW_BASE_URL", "DATAPIPE_ALERT_EMAIL_TO", "DATAPIPE_SLACK_CONN_ID"]
    assert Channels.from_env({}) == (Channels(), [])
