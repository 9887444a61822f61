"""Helpers of the DAG suite (runs in the `airflow` venv, which has no dbt); fixtures: conftest.py.

Airflow reads AIRFLOW_HOME when it is first imported, so importing this module points it at a
private directory before any test imports Airflow (the one process-level setting the suite makes;
all pipeline configuration is passed as dicts to `Settings.from_env` or to subprocesses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
DBT_PROJECT = ROOT / "dbt"
# The real manifest, built by `make dbt-manifest` (a prerequisite of `make test-dags`).
MANIFEST = DBT_PROJECT / "target" / "manifest.json"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"

_HOME = Path(tempfile.mkdtemp(prefix="datapipe-airflow-test-"))
os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(DAGS)
if str(DAGS) not in sys.path:
    sys.path.insert(0, str(DAGS))  # as Airflow does for the DAGs folder


def base_env(**overrides: str) -> dict[str, str]:
    """DATAPIPE_* configuration of a test DAG: the fixture manifest unless overridden."""
    env = {
        "DATAPIPE_RUNTIME": "kubernetes",
        "DATAPIPE_NAMESPACE": "pipelines",
        "DATAPIPE_SERVICE_ACCOUNT": "datapipe-runner",
        "DATAPIPE_IMAGE_EXTRACT": "registry.example.com:5000/datapipe/extract:1.2.3",
        "DATAPIPE_IMAGE_TRANSFORM": "registry.example.com:5000/datapipe/transform:1.2.3",
        "DATAPIPE_WAREHOUSE_SECRET": "warehouse-writer",
        "DATAPIPE_API_SECRET": "alphavantage-api",
        "DATAPIPE_SYMBOLS": "AAPL,MSFT,IBM",
        "DATAPIPE_DBT_MANIFEST": str(MANIFEST),
        "DATAPIPE_DBT_PROJECT_DIR": "/opt/datapipe/dbt",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    if not MANIFEST.is_file():
        pytest.fail(f"{MANIFEST} is missing: run `make dbt-manifest` (make test-dags does it)")
    return json.loads(MANIFEST.read_text())


@pytest.fixture(scope="session")
def build_dag(manifest: dict[str, Any]) -> Callable[..., Any]:
    from datapipe_dags.config import Settings
    from datapipe_dags.pipeline import build_market_data_daily

    def build(**overrides: str) -> Any:
        return build_market_data_daily(Settings.from_env(base_env(**overrides)))

    return build


@pytest.fixture(scope="session")
def k8s_dag(build_dag: Callable[..., Any]) -> Any:
    return build_dag()


def fake_context(dag: Any, task: Any) -> dict[str, Any]:
    """The slice of an Airflow task context that pod rendering reads (a test input, not a mock)."""
    import pendulum

    logical_date = pendulum.datetime(2026, 11, 25, 22, 30, tz="UTC")
    run_id = "scheduled__2026-11-25T22:30:00+00:00"
    ti = SimpleNamespace(dag_id=dag.dag_id, task_id=task.task_id, run_id=run_id, try_number=1, map_index=-1, task=task)
    dag_run = SimpleNamespace(run_id=run_id, logical_date=logical_date, team_name=None, conf={})
    return {"dag": dag, "task": task, "ti": ti, "task_instance": ti, "dag_run": dag_run, "run_id": run_id,
            "logical_date": logical_date, "params": {}}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_airflow(args: list[str], env: dict[str, str], timeout: int = 600,
                merge_output: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the Airflow CLI of this venv; with merge_output, stderr is interleaved into stdout."""
    return subprocess.run([str(AIRFLOW_BIN), *args], env=env, text=True, timeout=timeout, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT if merge_output else subprocess.PIPE)


def failure_report(log: str, log_file: Path) -> str:
    """What went wrong in an `airflow dags test` log: failed tasks and error lines, then the tail."""
    log_file.write_text(log)
    keys = ("new_state=failed", "upstream_failed", "Task failed", "Traceback", "Error", "ERROR", "exited with code")
    lines = [line for line in log.splitlines() if any(k in line for k in keys) and "scarf" not in line]
    return f"full log: {log_file}\n" + "\n".join(lines[:60]) + "\n...\n" + log[-3000:]


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated Airflow metadata DB (SQLite) for `airflow dags test` subprocesses; yields its env."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        # no telemetry calls from Cosmos (and no waiting on DNS for them on an offline machine)
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "DO_NOT_TRACK": "1",
        "HOME": os.environ.get("HOME", str(home)),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
    }
    proc = run_airflow(["db", "migrate"], env, timeout=300)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    yield env


# --- real alert receivers: an SMTP server (aiosmtpd) and a Slack-like webhook (http.server) -------


@dataclass
class Mailbox:
    host: str
    port: int
    messages: list[Any]


@contextmanager
def smtp_mailbox() -> Iterator[Mailbox]:
    """A real SMTP server (aiosmtpd) on a free 127.0.0.1 port, collecting every message."""
    from email import message_from_bytes
    from email.policy import default as default_policy

    from aiosmtpd.controller import Controller

    box = Mailbox("127.0.0.1", 0, [])

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            msg = message_from_bytes(envelope.content, policy=default_policy)
            box.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from, "message": msg})
            return "250 Message accepted"

    controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    with smtp_mailbox() as box:
        yield box


@dataclass
class Webhook:
    url: str
    posts: list[dict[str, Any]]


@contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    """A Slack-like incoming webhook (http.server) on a free 127.0.0.1 port, collecting every POST."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    posts: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            posts.append({"path": self.path, "body": body.decode(), "content_type": self.headers.get("Content-Type")})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Webhook(f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX", posts)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def webhook_server() -> Iterator[Webhook]:
    with webhook_receiver() as hook:
        yield hook


def alert_connections(mailbox: Mailbox, webhook: Webhook) -> dict[str, str]:
    """Airflow connections (as env) pointing the SMTP and Slack notifiers at the local receivers."""
    smtp = {"conn_type": "smtp", "host": mailbox.host, "port": mailbox.port,
            "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@datapipe.test", "timeout": 10,
                      "retry_limit": 1}}
    slack = {"conn_type": "slackwebhook", "password": webhook.url}
    return {
        "AIRFLOW_CONN_SMTP_DEFAULT": json.dumps(smtp),
        "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(slack),
        "DATAPIPE_ALERT_EMAIL_TO": "oncall@datapipe.test",
        "DATAPIPE_SLACK_CONN_ID": "slack_alerts",
        "DATAPIPE_AIRFLOW_BASE_URL": "http://airflow.example:8080",
    }


def email_text(message: Any) -> str:
    """The alert's body as plain text (HTML unescaped, tags dropped)."""
    import html
    import re

    part = message.get_body(preferencelist=("html", "plain"))
    return html.unescape(re.sub(r"<[^>]+>", "\n", part.get_content()))


# --- a scheduler-driven Airflow (for backfills): scheduler + API server, torn down for sure --------


@dataclass
class AirflowServices:
    env: dict[str, str]
    logs: dict[str, Path]
    procs: dict[str, subprocess.Popen[bytes]]

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"airflow {name} exited with code {proc.returncode}:\n{self.tail(name)}")

    def tail(self, name: str, chars: int = 3000) -> str:
        text = self.logs[name].read_text(errors="replace") if self.logs[name].exists() else ""
        return f"--- {self.logs[name]} (tail) ---\n{text[-chars:]}"


def _kill_tree(procs: list[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """Stop each process group and every descendant (task runners, and the steps and dbt processes
    they start in sessions of their own): SIGTERM, then SIGKILL whatever is left after `grace_s`."""
    import signal

    import psutil

    victims: dict[int, psutil.Process] = {}
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            leader = psutil.Process(proc.pid)
            victims.update({p.pid: p for p in (leader, *leader.children(recursive=True))})

    def signal_all(sig: int, targets: list[psutil.Process]) -> None:
        for proc in procs:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        for p in targets:
            with suppress(psutil.NoSuchProcess):
                p.send_signal(sig)

    signal_all(signal.SIGTERM, list(victims.values()))
    _, alive = psutil.wait_procs(list(victims.values()), timeout=grace_s)
    signal_all(signal.SIGKILL, alive)
    for proc in procs:
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def scheduler_env(env: dict[str, str]) -> dict[str, str]:
    """`env` for a scheduler (LocalExecutor) and an API server on a free port, sharing the SQLite
    metadata DB of env's AIRFLOW_HOME (waiting up to 60 s on its write lock instead of 5). The
    scheduler creates no scheduled runs (use_job_schedule=False): only what the test creates runs."""
    port = free_port()
    return {
        **env,
        "PATH": f"{AIRFLOW_BIN.parent}{os.pathsep}{env.get('PATH', '')}",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{env['AIRFLOW_HOME']}/airflow.db?timeout=60",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
    }


@contextmanager
def airflow_services(env: dict[str, str], log_dir: Path, startup_timeout_s: float = 300, apps: str = "execution",
                     dag_processor: bool = False) -> Iterator[AirflowServices]:
    """Run the scheduler, the triggerer and the API server (`apps`: its execution API only, or `all`
    with the REST API and the UI) of `env` (from `scheduler_env`), and with `dag_processor` the dag processor
    (which parses the DAGs folder and runs DAG callbacks), until the block ends; every process they
    started is stopped on exit, even on failure."""
    import time
    import urllib.parse
    import urllib.request

    execution_api = urllib.parse.urlsplit(env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"])
    port = execution_api.port
    commands = {
        "api-server": ["api-server", "--apps", apps, "--host", "127.0.0.1", "--port", str(port),
                       "--workers", "1"],
        "scheduler": ["scheduler", "--skip-serve-logs"],
        # the dbt model and test tasks are deferrable sensors (Cosmos' watcher execution): without a
        # triggerer a task that defers never finishes (the chart and `airflow standalone` run one)
        "triggerer": ["triggerer", "--skip-serve-logs"],
    }
    if dag_processor:
        commands["dag-processor"] = ["dag-processor"]
    log_dir.mkdir(parents=True, exist_ok=True)
    services = AirflowServices(env, {}, {})
    try:
        for name, args in commands.items():
            services.logs[name] = log_dir / f"{name}.log"
            with services.logs[name].open("wb") as out:
                services.procs[name] = subprocess.Popen([str(AIRFLOW_BIN), *args], env=env, stdout=out,
                                                        stderr=subprocess.STDOUT, start_new_session=True)
        health = f"http://127.0.0.1:{port}/execution/health"
        deadline = time.monotonic() + startup_timeout_s
        while True:
            services.check_alive()
            try:
                with urllib.request.urlopen(health, timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"no answer from {health} in {startup_timeout_s}s:\n"
                                         + services.tail("api-server")) from None
                time.sleep(1)
        yield services
    finally:
        _kill_tree(list(services.procs.values()))


def query_metadata(db: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Read the metadata DB (SQLite) while the scheduler writes it: read-only, waiting on its locks."""
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql, params).fetchall()]


def wait_for_backfill(services: AirflowServices, airflow_home: Path, dag_id: str,
                      timeout_s: float) -> list[dict[str, Any]]:
    """Wait until the scheduler marks the DAG's latest backfill complete; return its runs (by logical
    date). Fails with the runs' states and the failed tasks' log tails if it does not finish in time."""
    import time

    db = airflow_home / "airflow.db"
    deadline = time.monotonic() + timeout_s
    runs: list[dict[str, Any]] = []
    while True:
        services.check_alive()
        backfill = query_metadata(db, "select id, completed_at from backfill where dag_id = ? order by id desc limit 1",
                          (dag_id,))
        if backfill:
            runs = query_metadata(db, "select run_id, logical_date, state, run_type from dag_run where backfill_id = ?"
                              " order by logical_date", (backfill[0]["id"],))
            if backfill[0]["completed_at"] is not None:
                if any(r["state"] != "success" for r in runs):
                    print(task_log_tails(airflow_home, dag_id, runs))
                return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"backfill of {dag_id} not complete after {timeout_s}s: {backfill} runs {runs}\n"
                + task_log_tails(airflow_home, dag_id, runs) + "\n" + services.tail("scheduler"))
        time.sleep(5)


def task_log_tails(airflow_home: Path, dag_id: str, runs: list[dict[str, Any]], chars: int = 2500) -> str:
    """States of the runs' unfinished or failed task instances, and the end of the failed ones' logs."""
    if not runs:
        return "(no runs)"
    db = airflow_home / "airflow.db"
    marks = ",".join("?" * len(runs))
    tis = query_metadata(db, f"select run_id, task_id, state, try_number from task_instance where dag_id = ?"
                     f" and run_id in ({marks}) and coalesce(state, '') not in ('success', 'skipped')"
                     " order by run_id, task_id", (dag_id, *[r["run_id"] for r in runs]))
    out = [f"task instances not succeeded: {[(t['run_id'], t['task_id'], t['state']) for t in tis]}"]
    for ti in tis:
        if ti["state"] != "failed":
            continue
        task_dir = airflow_home / "logs" / f"dag_id={dag_id}" / f"run_id={ti['run_id']}" / f"task_id={ti['task_id']}"
        for log in sorted(task_dir.glob("**/*.log")):
            out.append(f"--- {log} (tail) ---\n{log.read_text(errors='replace')[-chars:]}")
    return "\n".join(out)
