"""Fixtures of the DAG suite (runs in the `airflow` venv, which has no dbt).

Airflow reads AIRFLOW_HOME when it is first imported, so this file points it at a private
directory before any test imports Airflow (the one process-level setting the suite makes; all
pipeline configuration is passed as dicts to `Settings.from_env` or to subprocesses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FIXTURE_MANIFEST = FIXTURES / "manifest.json"  # TEST FIXTURE from fixtures/mini_dbt (see its README)
FIXTURE_PROJECT = FIXTURES / "mini_dbt"
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
        "DATAPIPE_DBT_MANIFEST": str(FIXTURE_MANIFEST),
        "DATAPIPE_DBT_PROJECT_DIR": "/opt/datapipe/dbt",
    }
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def manifest() -> dict[str, Any]:
    return json.loads(FIXTURE_MANIFEST.read_text())


@pytest.fixture(scope="session")
def build_dag() -> Callable[..., Any]:
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
