"""DagBag: every DAG file imports with zero import errors, in this venv which has no dbt installed.

The DagBags load in a separate interpreter (as the dag processor does), one per deployment
environment, so the DAG file's single read of os.environ is exercised for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from typing import Any

import pytest
from dagtest import DAGS, DBT_PROJECT, MANIFEST, base_env

# Loads the DAGs folder once per environment given on stdin (a JSON list of env dicts).
PROBE = r"""
import importlib.metadata, importlib.util, json, os, sys, time
from pathlib import Path
from airflow.dag_processing.dagbag import BundleDagBag
try:
    importlib.metadata.version("dbt-core"); dbt = True
except importlib.metadata.PackageNotFoundError:
    dbt = False
base = dict(os.environ)
out = []
for env in json.load(sys.stdin):
    os.environ.clear(); os.environ.update({**base, **env})  # this interpreter plays the deployment
    started = time.monotonic()
    # as the dag processor does: the DAGs folder is the bundle, and is put on sys.path
    bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]), bundle_name="dags-folder")
    out.append({
        "dbt_installed": dbt or importlib.util.find_spec("dbt") is not None,
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "dags": {d: sorted(bag.dags[d].task_ids) for d in bag.dags},
        "files": sorted(bag.file_last_changed),
        "doc_md": {d: bag.dags[d].doc_md for d in bag.dags},
        "seconds": time.monotonic() - started,
    })
print(json.dumps(out))
"""

CASES = {
    "kubernetes": base_env(),
    "local": base_env(DATAPIPE_RUNTIME="local", DATAPIPE_DBT_PROJECT_DIR=str(DBT_PROJECT),
                      DATAPIPE_DBT_MANIFEST=str(MANIFEST)),
    "latest": base_env(DATAPIPE_IMAGE_EXTRACT="datapipe-extract:latest"),
    "no_manifest": base_env(DATAPIPE_DBT_MANIFEST="/nonexistent/manifest.json"),
}


@pytest.fixture(scope="module")
def bags(manifest: dict[str, Any]) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="dagbag-home-")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": home, "AIRFLOW_HOME": home,
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    proc = subprocess.run([sys.executable, "-c", PROBE, str(DAGS)], input=json.dumps(list(CASES.values())),
                          env=env, capture_output=True, text=True, timeout=300,
                          cwd=home)  # not the repo root, whose dbt/ folder would import as a namespace package
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(zip(CASES, json.loads(proc.stdout.strip().splitlines()[-1]), strict=True))


def test_dagbag_kubernetes_runtime_has_no_import_errors_and_no_dbt(bags: dict[str, Any]) -> None:
    bag = bags["kubernetes"]
    assert bag["dbt_installed"] is False, "dbt must not be installed in the Airflow venv"
    assert bag["import_errors"] == {}
    assert set(bag["dags"]) == {"market_data_daily", "datapipe_health"}
    # only DAG files are parsed: the datapipe_dags package is excluded by .airflowignore
    assert [os.path.basename(f) for f in bag["files"]] == ["datapipe_health.py", "market_data_daily.py"]
    assert bag["dags"]["datapipe_health"] == ["check_import_errors"]
    assert "market_data_daily" in bag["doc_md"]["market_data_daily"]  # DAG docs = module docstring
    assert any(t.startswith("dbt.") for t in bag["dags"]["market_data_daily"])


def test_dagbag_local_runtime_has_no_import_errors(bags: dict[str, Any]) -> None:
    bag = bags["local"]
    assert bag["import_errors"] == {}
    assert "dbt.dim_company.run" in bag["dags"]["market_data_daily"]
    assert set(bag["dags"]["market_data_daily"]) == set(bags["kubernetes"]["dags"]["market_data_daily"])


def test_latest_image_is_an_import_error_naming_the_variable(bags: dict[str, Any]) -> None:
    bag = bags["latest"]
    assert list(bag["dags"]) == ["datapipe_health"]  # the health DAG still imports, and reports this
    (error,) = bag["import_errors"].values()
    assert "DATAPIPE_IMAGE_EXTRACT='datapipe-extract:latest'" in error and "not allowed" in error


def test_missing_manifest_is_an_import_error_saying_what_to_do(bags: dict[str, Any]) -> None:
    assert list(bags["no_manifest"]["dags"]) == ["datapipe_health"]
    (error,) = bags["no_manifest"]["import_errors"].values()
    assert "dbt manifest not found" in error and "DATAPIPE_DBT_MANIFEST" in error


# The health DAG alone, in a fresh interpreter where the shared package and every pipeline module
# cannot be imported and every DATAPIPE_* value is invalid: it must import all the same, and import
# nothing of ours but the three stdlib + Airflow modules it is built from.
HEALTH_PROBE = r"""
import json, os, sys
from pathlib import Path
for name in ("datapipe_common", *(f"datapipe_dags.{m}" for m in (
        "config", "pipeline", "dbt_group", "pods", "steps", "local", "alerts"))):
    sys.modules[name] = None  # `import name` now raises ImportError
from airflow.dag_processing.dagbag import BundleDagBag
bag = BundleDagBag(dag_folder=sys.argv[1], bundle_path=Path(sys.argv[1]).parent, bundle_name="dags-folder")
print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()},
                  "dags": {d: sorted(bag.dags[d].task_ids) for d in bag.dags},
                  "ours": sorted(m for m in sys.modules if m.startswith("datapipe") and sys.modules[m] is not None)}))
"""


def test_health_dag_imports_when_everything_of_the_pipeline_is_broken(tmp_path: Any) -> None:
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), "AIRFLOW_HOME": str(tmp_path),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "PYTHONPATH": str(DAGS),
           **{var: "!!invalid!!" for var in ("DATAPIPE_RUNTIME", "DATAPIPE_ALERT_EMAIL_TO", "DATAPIPE_SLACK_CONN_ID",
                                             "DATAPIPE_AIRFLOW_BASE_URL", "DATAPIPE_IMAGE_EXTRACT",
                                             "DATAPIPE_DBT_MANIFEST", "DATAPIPE_TASK_RETRIES")}}
    proc = subprocess.run([sys.executable, "-c", HEALTH_PROBE, str(DAGS / "datapipe_health.py")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["import_errors"] == {}
    assert out["dags"] == {"datapipe_health": ["check_import_errors"]}
    assert out["ours"] == ["datapipe_dags", "datapipe_dags.channels", "datapipe_dags.health", "datapipe_dags.notify"]
    # the same probe on the pipeline's DAG fails: the blocking is real
    proc = subprocess.run([sys.executable, "-c", HEALTH_PROBE, str(DAGS / "market_data_daily.py")], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])["import_errors"], proc.stdout[-2000:]
