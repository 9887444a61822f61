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
    from datapipe.config import Settings
    from datapipe.pipeline import build_market_data_daily

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


def run_airflow(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(AIRFLOW_BIN), *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A migrated Airflow metadata DB (SQLite) for `airflow dags test` subprocesses; yields its env."""
    home = tmp_path_factory.mktemp("airflow-home")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
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


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
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


@dataclass
class Webhook:
    url: str
    posts: list[dict[str, Any]]


@pytest.fixture
def webhook_server() -> Iterator[Webhook]:
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
