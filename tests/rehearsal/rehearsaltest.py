"""Helpers of the rehearsal suite (runs in the `airflow` venv); fixtures: conftest.py.

The DAG is built exactly as the scheduler of a release builds it: from the environment the chart
gives the Airflow containers (the DAG ConfigMap of a real `helm template`, rehearsal_release) plus
what the datapipe-airflow image adds (the dbt manifest, `DATAPIPE_DBT_PROJECT_DIR=.`).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT / "tests" / "dags"), str(ROOT / "tests" / "images")]
import dagtest  # noqa: E402  (points AIRFLOW_HOME at a private directory before Airflow is imported)
from rehearsal_pods import Image  # noqa: E402

DAGS = ROOT / "dags"
MANIFEST = ROOT / "dbt" / "target" / "manifest.json"
AIRFLOW_BIN = Path(sys.executable).parent / "airflow"
SYMBOLS = "AAPL,MSFT,IBM"
# What the datapipe-airflow image adds to the chart's environment (images/airflow/Dockerfile); the
# rehearsal's Airflow runs from the airflow venv, where the same manifest is dbt/target/manifest.json.
IMAGE_ENV = {"DATAPIPE_DBT_MANIFEST": str(MANIFEST), "DATAPIPE_DBT_PROJECT_DIR": "."}
COMPONENT_IMAGES = ("extract", "transform", "dashboard")


def rehearsal_values(tag: str, **overrides: Any) -> dict[str, Any]:
    """The release's values: every image at `tag` (the build under test), three symbols, and no
    retries (a failing pod fails its task at once instead of after backoffs)."""
    values: dict[str, Any] = {
        "images": {"tag": tag},
        "airflow": {"defaultAirflowTag": tag},
        "pipeline": {"symbols": SYMBOLS, "extraConfig": {"DATAPIPE_TASK_RETRIES": "0"}},
    }
    for key, value in overrides.items():
        values[key] = {**values.get(key, {}), **value}
    return values


def dockerfile_image(component: str, ref: str) -> Image:
    """An image's config as its Dockerfile declares it (the last WORKDIR, USER, ENTRYPOINT, CMD)."""
    text = (ROOT / "images" / component / "Dockerfile").read_text()

    def last(instruction: str) -> str:
        found = re.findall(rf"^{instruction}\s+(.+)$", text, re.M)
        return found[-1].strip() if found else ""

    def exec_form(instruction: str) -> tuple[str, ...]:
        value = last(instruction)
        return tuple(json.loads(value)) if value.startswith("[") else ()

    return Image(ref, last("USER"), last("WORKDIR"), exec_form("ENTRYPOINT"), exec_form("CMD"))


def dag_pods(env: dict[str, str], *, retries: bool = False) -> dict[str, dict[str, Any]]:
    """task_id -> the pod each task of the DAG submits on its first try (Cosmos' with its dbt command
    filled in), built in this process from `env`. The watcher's model and test tasks submit none:
    they read their node's result from the producer's pod (its dbt JSON log); with `retries`, their
    pods are included too, the `dbt run`/`dbt test` of one node each submits when retried or cleared."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from cosmos.operators.watcher_kubernetes import DbtConsumerWatcherKubernetesSensor
    from datapipe_dags.config import Settings
    from datapipe_dags.pipeline import build_market_data_daily
    from kubernetes.client import ApiClient

    dag = build_market_data_daily(Settings.from_env(env))
    api = ApiClient()
    pods = {}
    for task in dag.tasks:
        if not isinstance(task, KubernetesPodOperator):
            continue
        if isinstance(task, DbtConsumerWatcherKubernetesSensor) and not retries:
            continue
        context = dagtest.fake_context(dag, task)
        if hasattr(task, "build_kube_args"):
            task.build_kube_args(context, task.add_cmd_flags())
        pods[task.task_id] = api.sanitize_for_serialization(task.build_pod_request_obj(context, dry_run=True))
    return pods


def watcher_keys(env: dict[str, str]) -> dict[str, str]:
    """task_id -> the XCom key of the producer's result each watcher model or test task reads."""
    from cosmos.operators._watcher.aggregation import get_tests_status_xcom_key
    from cosmos.operators._watcher.state import get_status_xcom_key
    from cosmos.operators.watcher_kubernetes import DbtConsumerWatcherKubernetesSensor
    from datapipe_dags.config import Settings
    from datapipe_dags.pipeline import build_market_data_daily

    dag = build_market_data_daily(Settings.from_env(env))
    return {task.task_id: (get_tests_status_xcom_key if task.is_test_sensor else get_status_xcom_key)(
        task.model_unique_id) for task in dag.tasks if isinstance(task, DbtConsumerWatcherKubernetesSensor)}


def pod_for(pods: dict[str, dict[str, Any]], task_id: str) -> dict[str, Any]:
    assert task_id in pods, f"the DAG has no pod task {task_id!r} (it has {sorted(pods)[:8]}...)"
    return pods[task_id]


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    """A private Airflow (SQLite metadata in `home`) that reads the repository's DAGs."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(home)),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False",
        "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos"),
        "DO_NOT_TRACK": "1",
        **extra,
    }


def migrate(env: dict[str, str]) -> None:
    proc = subprocess.run([str(AIRFLOW_BIN), "db", "migrate"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"airflow db migrate failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"


def kubernetes_runtime_env(release: Any, kubeconfig: Path, home: Path, **extra: str) -> dict[str, str]:
    """The scheduler's environment in the release (no warehouse or API credentials: the pods get
    those from the Secrets), with the rehearsal's kubeconfig."""
    return airflow_env(home, **release.dag_environment(), **IMAGE_ENV, KUBECONFIG=str(kubeconfig), **extra)


def airflow_run(args: list[str], env: dict[str, str], log: Path, *, nice: int = 0) -> subprocess.Popen[bytes]:
    """Start `airflow <args>` with its output (task logs included) in `log`; `nice` lowers its CPU
    priority (and its children's), for work that should yield to the rehearsal's critical path."""
    with log.open("wb") as out:
        return subprocess.Popen([str(AIRFLOW_BIN), *args], env=env, stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=(lambda: os.nice(nice)) if nice else None)


def wait(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = -9
    return rc, log.read_text(errors="replace")


def columns(warehouse: Any, schema: str, table: str) -> list[str]:
    out = warehouse.psql("select string_agg(column_name, ',' order by ordinal_position) from information_schema.columns"
                         f" where table_schema = '{schema}' and table_name = '{table}'")
    return out.split(",") if out else []


def marts_checksums(warehouse: Any, marts: tuple[str, ...], excluded: dict[str, set[str]]) -> dict[str, Any]:
    """Per mart: row count and an md5 over its rows (every column but the excluded ones), in a
    stable order. Fails when an excluded column does not exist (the list must stay true)."""
    out: dict[str, Any] = {}
    for mart in marts:
        cols = columns(warehouse, "marts", mart)
        assert cols, f"marts.{mart} does not exist"
        missing = excluded.get(mart, set()) - set(cols)
        assert not missing, f"marts.{mart} has no column {sorted(missing)}: update the test's load-time columns"
        kept = [c for c in cols if c not in excluded.get(mart, set())]
        row = "row(" + ", ".join(f'"{c}"' for c in kept) + ")::text"
        count, digest = warehouse.psql(
            f"select count(*), md5(coalesce(string_agg({row}, '|' order by {row}), '')) from marts.{mart}").split("|")
        out[mart] = {"rows": int(count), "md5": digest, "columns": kept}
    return out
