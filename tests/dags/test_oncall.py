"""On-call signals, for real: a scheduler (LocalExecutor), the dag processor (which runs DAG callbacks)
and the API server (execution API, REST API with the simple auth manager) against a private metadata
database, a real SMTP server (aiosmtpd), a Slack-like webhook and a StatsD listener.

- a run stopped by its `dagrun_timeout` alerts once, by both channels, in the task alerts' format
  (its running task is marked skipped: no task callback fires, apache/airflow#30264);
- a run failed by a task alerts once: the task's alert, and no run alert on top;
- the `datapipe_health` DAG alerts once per distinct import error of `market_data_daily` (broken by
  a deliberately bad setting: a dbt manifest that is missing, then one that is not a manifest);
- the StatsD names Airflow 3.3 really sends map, through the chart's statsd-exporter mappings, onto
  the Prometheus series docs/kubernetes.md alerts on.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import socket
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagtest import (
    DAGS,
    ROOT,
    AirflowServices,
    Mailbox,
    Webhook,
    airflow_services,
    alert_connections,
    email_text,
    query_metadata,
    run_airflow,
    scheduler_env,
    smtp_mailbox,
    webhook_receiver,
)

pytestmark = pytest.mark.slow

PROBE_TIMEOUT_S = 30
WAIT_S = 600  # upper bound for each awaited event; the assertions never depend on how fast it comes

# A run whose one task outlives the run's dagrun_timeout, and a run whose one task fails; both with the
# pipeline's callbacks (PipelineAlert on tasks, RunAlert on the DAG), their tasks run as the pipeline's do.
PROBES = '''
"""{dag_id}: an on-call probe (tests/dags/test_oncall.py)."""
import os
import sys
from datetime import timedelta
import pendulum
from airflow.sdk import DAG
from datapipe_dags.alerts import PipelineAlert, RunAlert
from datapipe_dags.config import Settings
from datapipe_dags.local import LocalStepOperator
from datapipe_dags.steps import Component, Step
from pathlib import Path

settings = Settings.from_env(os.environ)
venv = Path(os.environ["PROBE_VENV"])
probe = Component(name="probe", image="probe", local_dir=".", venv=venv.name)
with DAG("{dag_id}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
         dagrun_timeout={timeout}, on_failure_callback=[RunAlert(settings.channels)],
         default_args={{"retries": 0, "on_failure_callback": [PipelineAlert(settings)]}}):
    LocalStepOperator(task_id="{task_id}", step=Step("{task_id}", probe, ("python", "-c", {code!r})),
                      repo_root=Path(os.getcwd()), venvs_dir=venv.parent, plain_env={{}})
'''


@dataclass
class StatsdListener:
    """A UDP socket collecting StatsD lines (`name:value|type`)."""

    port: int
    lines: list[str] = field(default_factory=list)

    def names(self) -> set[str]:
        return {line.split(":", 1)[0] for line in self.lines}


@pytest.fixture(scope="module")
def statsd() -> Iterator[StatsdListener]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.5)
    listener = StatsdListener(sock.getsockname()[1])
    stop = threading.Event()

    def receive() -> None:
        while not stop.is_set():
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            listener.lines += [line for line in data.decode(errors="replace").splitlines() if line]

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield listener
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


@dataclass
class OnCall:
    services: AirflowServices
    home: Path
    manifest: Path
    mailbox: Mailbox
    webhook: Webhook
    env: dict[str, str]

    def trigger(self, dag_id: str) -> str:
        run_id = f"manual__oncall_{dag_id}_{secrets.token_hex(4)}"
        proc = run_airflow(["dags", "trigger", dag_id, "--run-id", run_id], self.env)
        assert proc.returncode == 0, f"trigger {dag_id} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return run_id

    def wait(self, what: str, check: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + WAIT_S
        while True:
            self.services.check_alive()
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"waited {WAIT_S}s for {what}\n" + "\n".join(
                    self.services.tail(name) for name in self.services.procs))
            time.sleep(2)

    def run_state(self, run_id: str) -> str | None:
        rows = query_metadata(self.home / "airflow.db", "select state from dag_run where run_id = ?", (run_id,))
        return rows[0]["state"] if rows else None

    def wait_for_run(self, run_id: str, states: tuple[str, ...] = ("success", "failed")) -> str:
        return str(self.wait(f"run {run_id} to end", lambda: (s := self.run_state(run_id)) in states and s))

    def import_errors(self) -> list[dict[str, Any]]:
        return query_metadata(self.home / "airflow.db", "select filename, stacktrace from import_error")

    def alerts(self) -> list[tuple[str, str, str]]:
        """(subject, email text, Slack text) of every alert so far: the n-th email of a subject paired
        with the n-th Slack post of that subject (`<n> posts` when that post has not come)."""
        posts: dict[str, list[str]] = {}
        for post in list(self.webhook.posts):
            text = json.loads(post["body"])["text"]
            posts.setdefault(text.split("*")[1] if text.startswith("*") else "", []).append(text)
        out, seen = [], {}
        for mail in list(self.mailbox.messages):
            subject = mail["message"]["Subject"]
            n = seen[subject] = seen.get(subject, 0) + 1
            slack = posts.get(subject, [])
            text = slack[n - 1] if len(slack) >= n else f"{len(slack)} posts"
            out.append((subject, email_text(mail["message"]), text))
        return out

    def assert_one_post_per_email(self) -> None:
        assert len(self.webhook.posts) == len(self.mailbox.messages), (
            [m["message"]["Subject"] for m in self.mailbox.messages], [p["body"][:80] for p in self.webhook.posts])

    def wait_for_alert(self, subject_prefix: str) -> None:
        """Until an alert with this subject has arrived by both channels (email first, then Slack)."""
        self.wait(f"an alert {subject_prefix!r} by email and Slack", lambda: any(
            a[0].startswith(subject_prefix) and not a[2].endswith(" posts") for a in self.alerts()))


@pytest.fixture(scope="module")
def oncall(tmp_path_factory: pytest.TempPathFactory, statsd: StatsdListener) -> Iterator[OnCall]:
    base = tmp_path_factory.mktemp("oncall")
    home, dags = base / "airflow-home", base / "dags"
    home.mkdir()
    dags.mkdir()
    # the deployment's DAG files as they are, plus the probes; datapipe_dags comes from PYTHONPATH
    for name in ("market_data_daily.py", "datapipe_health.py", ".airflowignore"):
        shutil.copy(DAGS / name, dags / name)
    (dags / "timeout_probe.py").write_text(PROBES.format(
        dag_id="timeout_probe", timeout=f"timedelta(seconds={PROBE_TIMEOUT_S})", task_id="hang",
        code="import time; time.sleep(3600)"))
    (dags / "failure_probe.py").write_text(PROBES.format(
        dag_id="failure_probe", timeout="None", task_id="boom", code="import sys; sys.exit(3)"))
    password = secrets.token_urlsafe(16)
    (home / "passwords.json").write_text(json.dumps({"oncall-reader": password}))
    manifest = base / "manifest.json"  # the deliberately broken setting: no dbt manifest there yet
    with smtp_mailbox() as mailbox, webhook_receiver() as webhook:
        env = scheduler_env({
            "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
            "HOME": str(home),
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
            "DO_NOT_TRACK": "1",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
            # the REST API's users: one reader for the health DAG, its password in a file (as the chart does)
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "oncall-reader:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # metrics: what the chart turns on ([metrics] statsd_*), sent to the listener
            "AIRFLOW__METRICS__STATSD_ON": "True",
            "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
            "AIRFLOW__METRICS__STATSD_PORT": str(statsd.port),
            "AIRFLOW__METRICS__STATSD_PREFIX": "airflow",
            "PYTHONPATH": str(DAGS),
            "PROBE_VENV": str(Path(sys.executable).parent.parent),
            "DATAPIPE_RUNTIME": "local",
            "DATAPIPE_DBT_MANIFEST": str(manifest),
            **alert_connections(mailbox, webhook),
        })
        # as the chart gives it: no host, the health DAG asks the API server its workers use
        env["AIRFLOW_CONN_AIRFLOW_API"] = json.dumps(
            {"conn_type": "http", "login": "oncall-reader", "password": password})
        proc = run_airflow(["db", "migrate"], env, timeout=300)
        assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        with airflow_services(env, base / "services", apps="all", dag_processor=True) as services:
            oncall = OnCall(services, home, manifest, mailbox, webhook, env)
            wanted = {"timeout_probe", "failure_probe", "datapipe_health"}
            oncall.wait("the dag processor to parse the DAGs", lambda: wanted <= {
                r["dag_id"] for r in query_metadata(home / "airflow.db", "select dag_id from dag")})
            yield oncall


def test_a_timed_out_run_alerts_once_in_the_task_alert_format(oncall: OnCall) -> None:
    before = len(oncall.alerts())
    run_id = oncall.trigger("timeout_probe")
    assert oncall.wait_for_run(run_id) == "failed"
    states = query_metadata(oncall.home / "airflow.db", "select task_id, state from task_instance where run_id = ?",
                            (run_id,))
    assert states == [{"task_id": "hang", "state": "skipped"}], states  # what #30264 is about: no task failed
    subject = "[datapipe] DAG run timed out: timeout_probe ("
    oncall.wait_for_alert(subject)
    alerts = oncall.alerts()[before:]
    assert len(alerts) == 1 and alerts[0][0].startswith(subject), alerts
    _, mail, slack = alerts[0]
    for text in (mail, slack):
        assert "DAG run timed out in DAG timeout_probe" in text
        assert "DAG:          timeout_probe" in text
        assert f"Run id:       {run_id}" in text
        assert "Reason:       the run exceeded its dagrun_timeout (0:00:30)" in text
        assert "Unfinished:   hang (try " in text
        assert f"Run:          http://airflow.example:8080/dags/timeout_probe/runs/{run_id}" in text
        assert f"Task log:     http://airflow.example:8080/dags/timeout_probe/runs/{run_id}/tasks/hang" in text
        assert "Task states:  1 skipped" in text
    oncall.assert_one_post_per_email()


def test_a_failed_task_pages_once_not_twice(oncall: OnCall) -> None:
    before = len(oncall.alerts())
    run_id = oncall.trigger("failure_probe")
    assert oncall.wait_for_run(run_id) == "failed"
    task_subject = "[datapipe] Task failed: failure_probe.boom ("
    oncall.wait_for_alert(task_subject)
    # the run's failure callback ran in the dag processor and found the task alert: wait for its word
    oncall.wait("the run callback to stand down", lambda: dag_processor_logged(
        oncall.home, f"run {run_id} failed (task_failure); already alerted by its failed task(s) boom"))
    alerts = oncall.alerts()[before:]
    assert len(alerts) == 1 and alerts[0][0].startswith(task_subject), alerts
    assert "step boom (python -c import sys; sys.exit(3)) exited with code 3" in alerts[0][1]
    oncall.assert_one_post_per_email()


def test_import_errors_alert_once_per_distinct_error(oncall: OnCall) -> None:
    # market_data_daily does not import: its manifest setting names a file that does not exist
    error = oncall.wait("the import error of market_data_daily.py", lambda: [
        e for e in oncall.import_errors() if e["filename"].endswith("market_data_daily.py")])
    assert "dbt manifest not found" in error[0]["stacktrace"], error
    before = len(oncall.alerts())

    assert oncall.wait_for_run(oncall.trigger("datapipe_health")) == "success"
    subject = "[datapipe] DAG import error: market_data_daily.py"
    oncall.wait_for_alert(subject)  # sent before the task ended: here at once
    alerts = oncall.alerts()[before:]
    assert [a[0] for a in alerts] == [subject], alerts
    _, mail, slack = alerts[0]
    for text in (mail, slack):
        assert "DAG import error in dags-folder/market_data_daily.py" in text
        assert "File:         market_data_daily.py" in text
        assert "Bundle:       dags-folder" in text
        assert f"ConfigError: dbt manifest not found at {oncall.manifest}" in text
        assert "Errors page:  http://airflow.example:8080/dags" in text
        assert "Traceback (last " in text and "DATAPIPE_DBT_MANIFEST" in text

    # the same error again: nothing new
    assert oncall.wait_for_run(oncall.trigger("datapipe_health")) == "success"
    assert len(oncall.alerts()) == before + 1, oncall.alerts()[before:]

    # a different error in the same file (the manifest now exists but is not one): alerted, once
    oncall.manifest.write_text("{}")
    oncall.wait("the new import error", lambda: any(
        "is not a dbt manifest" in e["stacktrace"] for e in oncall.import_errors()))
    for _ in range(2):
        assert oncall.wait_for_run(oncall.trigger("datapipe_health")) == "success"
    oncall.wait("the second alert by both channels", lambda: len(oncall.alerts()) > before + 1 and not any(
        a[2].endswith(" posts") for a in oncall.alerts()))
    alerts = oncall.alerts()[before + 1:]
    assert [a[0] for a in alerts] == [subject], alerts
    assert "is not a dbt manifest (metadata.project_name missing)" in alerts[0][1]
    proc = run_airflow(["variables", "get", "datapipe_health_import_errors"], oncall.env)  # stored encrypted
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert list(json.loads(proc.stdout.strip().splitlines()[-1])) == ["dags-folder/market_data_daily.py"], proc.stdout
    oncall.assert_one_post_per_email()


def test_airflow_metrics_map_onto_the_series_the_docs_alert_on(oncall: OnCall, statsd: StatsdListener) -> None:
    """Run after the scenarios above (they produce the failed runs, task failures and import errors)."""
    oncall.wait("a scheduler heartbeat and the import-error gauge", lambda: {
        "airflow.scheduler_heartbeat", "airflow.dag_processing.import_errors"} <= statsd.names())
    values = yaml.safe_load((ROOT / "charts" / "datapipe" / "values.yaml").read_text())
    mappings = values["airflow"]["statsd"]["overrideMappings"]
    series = {mapped for name in statsd.names() if (mapped := map_statsd(mappings, name))}
    for expected in (
        ("airflow_scheduler_heartbeat", ()),
        ("airflow_dag_processing_import_errors", ()),
        ("airflow_dagrun_failed", (("dag_id", "timeout_probe"),)),
        ("airflow_ti_finish", (("dag_id", "failure_probe"), ("state", "failed"), ("task_id", "boom"))),
    ):
        assert expected in series, sorted(series)
    gauge = [line for line in statsd.lines if line.startswith("airflow.dag_processing.import_errors:")]
    assert any(int(float(line.split(":")[1].split("|")[0])) >= 1 for line in gauge), gauge[-5:]
    # every series docs/kubernetes.md alerts on is one these mappings produce
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    rules = docs[docs.index("<!-- alert rules: begin -->"):docs.index("<!-- alert rules: end -->")]
    exprs = rules.split("expr:")[1:]
    assert len(exprs) >= 6, rules
    used = {name for expr in exprs for name in re.findall(
        r"\b(airflow_[a-z_]+?)(?:_sum|_count)?\b(?=[{\[\s)])", expr.split("labels:")[0])}
    produced = {m["name"] for m in mappings}
    assert used and used <= produced, (used, produced)


def map_statsd(mappings: list[dict[str, Any]], name: str) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What statsd_exporter makes of a StatsD name with glob mappings: `*` matches one dot-free part;
    the first matching mapping wins; $1.. are the parts `*` matched (its documented behaviour)."""
    for mapping in mappings:
        pattern = "^" + re.escape(mapping["match"]).replace(r"\*", "([^.]+)") + "$"
        if match := re.match(pattern, name):
            labels = {k: re.sub(r"\$(\d+)", lambda g: match[int(g[1])], str(v))
                      for k, v in (mapping.get("labels") or {}).items()}
            return mapping["name"], tuple(sorted(labels.items()))
    return None


def dag_processor_logged(home: Path, text: str) -> bool:
    logs = home / "logs" / "dag_processor"
    return any(text in p.read_text(errors="replace") for p in logs.glob("**/*.log")) if logs.exists() else False


def test_probe_source_is_valid_python() -> None:
    """The probe template renders to valid Python (a typo would only show as a missing DAG)."""
    compile(textwrap.dedent(PROBES.format(dag_id="x", timeout="None", task_id="t", code="pass")), "probe", "exec")
