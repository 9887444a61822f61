"""Build the four images and run their real commands (`make images-test`).

The images are built on the machine's local stand-in for python:3.12-slim (the shared tools'
local-base-image, found at ../shared/tools beside the repository), and datapipe-airflow on a local
stand-in for apache/airflow built from images/airflow-base-local (same Airflow version from PyPI,
user 50000, /opt/airflow), with `--network host`; each image is built once per session. The
containers use `--network host` and reach the test session's embedded PostgreSQL and the sandbox
API on 127.0.0.1. The commands come from dags/datapipe_dags/steps.toml, the same definition the DAG
uses: extract from the sandbox, dbt build + quality gate + publish, then the dashboard's health
endpoint with the read-only role, and the Airflow image parses the DAG with the environment of the
chart's own DAG ConfigMap. Containers run as the images' non-root user with every capability
dropped, and the task images with a read-only root filesystem and tmpfs exactly where the DAG's
pods mount emptyDirs (dags/datapipe_dags/pods.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = "IBM,AAPL,MSFT"
# the DAG package and the shared package's stdlib-only modules (this suite runs in the tools venv)
sys.path[:0] = [str(ROOT / "dags"), str(ROOT / "common" / "src")]
from datapipe_dags.pods import IMAGE_UID, WRITABLE_DIRS  # noqa: E402  (the DAG pods' emptyDirs: one definition)
from datapipe_dags.steps import load_steps  # noqa: E402  (the steps' commands: one definition)
from imagebuild import build, docker, ensure_base_image  # noqa: E402  (the image builds: one definition)

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing (../shared/tools/dockerd-safe installs docker.io)")
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"no Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST')!r}: {proc.stderr.strip()}")


@pytest.fixture(scope="session")
def base_image(engine: None) -> str:
    return ensure_base_image()


HARDENED = ["--network", "host", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def pod_filesystem(component: str) -> list[str]:
    """A read-only root filesystem with tmpfs where the component's pods mount emptyDirs, writable by
    the pod's user as an emptyDir with the pod's fsGroup is (Docker keeps the image directory's owner
    and mode on a tmpfs mounted over it, so the owner is given explicitly)."""
    options = f"uid={IMAGE_UID},gid={IMAGE_UID},mode=1777"
    return ["--read-only", *[arg for path in WRITABLE_DIRS[component] for arg in ("--tmpfs", f"{path}:{options}")]]


def run_step(image: str, step: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one step of steps.toml exactly as its pod would: the image's WORKDIR and user, env only,
    a read-only root filesystem with the pod's writable directories."""
    definition = load_steps()[step]
    command = definition.command
    flags = [*HARDENED, *pod_filesystem(definition.component.name)]
    # `-e NAME` (no value) passes the variable from our environment: no secret on the command line.
    env_flags = [arg for name in env for arg in ("-e", name)]
    proc = docker("run", "--rm", *flags, *env_flags, image, *command, env=env, check=False)
    assert proc.returncode == 0, (
        f"{step} in {image} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 90) -> str:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.read().decode()
        except OSError as exc:
            last = str(exc)
            time.sleep(1)
    raise AssertionError(f"no answer from {url} within {timeout_s}s: {last}")


@pytest.fixture
def container_name() -> Iterator[str]:
    name = f"datapipe-test-{uuid.uuid4().hex[:8]}"
    yield name
    subprocess.run(["docker", "rm", "-f", name], capture_output=True)


@pytest.fixture(scope="module")
def sandbox(base_image: str) -> Iterator[str]:
    """The sandbox API served by the extract image itself (`extract sandbox`)."""
    image = build("extract", base_image)
    port = free_port()
    name = f"datapipe-sandbox-{uuid.uuid4().hex[:8]}"
    docker(
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        *HARDENED,
        "--read-only",
        "--tmpfs",
        "/tmp",
        image,
        "extract",
        "sandbox",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", 60)
        yield f"http://127.0.0.1:{port}/query"
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def test_extract_image_loads_raw_from_the_sandbox(warehouse, sandbox: str, base_image: str) -> None:  # type: ignore[no-untyped-def]
    image = build("extract", base_image)
    env = {
        **warehouse.env,
        "ALPHAVANTAGE_BASE_URL": sandbox,
        "ALPHAVANTAGE_API_KEY": "images-test",
        "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "600",
        "DATAPIPE_SYMBOLS": SYMBOLS,
    }
    for step in ("extract_prices", "extract_companies"):
        run_step(image, step, env)
    assert warehouse.psql("select count(distinct symbol) from raw.time_series_daily") == "3"
    assert warehouse.psql("select count(distinct symbol) from raw.company_overview") == "3"
    assert warehouse.psql("select count(*) from ops.extract_runs where status = 'succeeded'") == "2"


def test_transform_image_builds_gates_and_publishes(warehouse, base_image: str) -> None:  # type: ignore[no-untyped-def]
    if warehouse.psql("select to_regclass('raw.time_series_daily') is not null") != "t":
        pytest.fail("raw data is missing: the extract image test must run (and pass) first")
    image = build("transform", base_image)
    env = {**warehouse.env, "DATAPIPE_SYMBOLS": SYMBOLS}
    for step in ("dbt_build", "quality_gate", "publish_marts", "grant_reader"):
        run_step(image, step, env)
    assert int(warehouse.psql("select count(*) from marts.fct_daily_prices")) > 100
    assert warehouse.psql("select count(*) from marts.mart_market_overview") == "3"
    reader = {**os.environ, **warehouse.reader_env}
    out = subprocess.run(
        [str(warehouse.server.bin / "psql"), "-X", "-At", "-c", "select count(*) from marts.dim_company"],
        env=reader,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and out.stdout.strip() == "3", out.stderr


def test_dashboard_image_answers_its_health_check(warehouse, base_image: str, container_name: str) -> None:  # type: ignore[no-untyped-def]
    image = build("dashboard", base_image)
    port = free_port()
    env = dict(warehouse.reader_env)
    env_flags = [arg for name in env for arg in ("-e", name)]
    docker(
        "run",
        "-d",
        "--name",
        container_name,
        *HARDENED,
        "--read-only",
        "--tmpfs",
        "/tmp",
        *env_flags,
        image,
        "datapipe-dashboard",
        "--address",
        "127.0.0.1",
        "--port",
        str(port),
        env=env,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/_stcore/health", 120).strip() == "ok"
        page = wait_http(f"http://127.0.0.1:{port}/", 30)
        assert "<html" in page.lower()
    except AssertionError:
        logs = docker("logs", container_name, check=False)
        raise AssertionError(f"dashboard did not answer; logs:\n{logs.stdout[-3000:]}\n{logs.stderr[-3000:]}") from None
    user = docker("exec", container_name, "id", "-u").stdout.strip()
    assert user == "10001"


def chart_environment(tmp_path: Path) -> dict[str, str]:
    """The environment the chart gives every Airflow container: the DAG ConfigMap (extraEnvFrom) and
    the Airflow values' `env`, from a real `helm template` of the chart's defaults."""
    sys.path.insert(0, str(ROOT / "tests" / "chart"))
    from chart_helpers import Renderer, ensure_helm, find

    render = Renderer(ensure_helm(), tmp_path).render()
    cm = find(render.objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and render.airflow_values is not None
    env = dict(cm["data"])
    env.update({e["name"]: str(e["value"]) for e in render.airflow_values.get("env") or []})
    return env


# Run inside datapipe-airflow: each section's last line is its JSON answer. The DAG is parsed like the
# dag-processor parses its bundle (`-B dags-folder` puts the DAGs folder on sys.path).
MANIFEST_SUMMARY = (
    "import json, os; path = os.environ['DATAPIPE_DBT_MANIFEST']; m = json.load(open(path)); "
    "print(json.dumps({'path': path, 'project': m['metadata']['project_name'], "
    "'models': sum(n['resource_type'] == 'model' for n in m['nodes'].values())}))"
)
AIRFLOW_CHECK = f"""
set -eu
airflow db migrate >/dev/null 2>&1 || {{ echo "airflow db migrate failed" >&2; airflow db migrate; exit 1; }}
parse() {{ airflow dags "$1" --local -B dags-folder -o json 2>/dev/null | tail -n 1; }}
echo "=== manifest"; python -c "{MANIFEST_SUMMARY}"
echo "=== import-errors"; parse list-import-errors
echo "=== dags"; parse list
echo "=== import-errors-latest"; DATAPIPE_IMAGE_EXTRACT=datapipe-extract:latest parse list-import-errors
"""


def sections(output: str) -> dict[str, str]:
    out, name = {}, None
    for line in output.splitlines():
        if line.startswith("=== "):
            name = line[4:].strip()
        elif name is not None and line.strip():
            out[name] = line.strip()
    return out


def test_airflow_image_parses_the_dag_with_the_chart_environment(base_image: str, tmp_path: Path) -> None:
    """datapipe-airflow on the apache/airflow stand-in: the build ran `pip check` over our lock; the
    DAG file imports without error in the chart's environment (the dag-processor's bundle parse);
    the dbt manifest is where the DAG reads it. The `:latest` run proves the check can fail."""
    image = build("airflow", base_image)
    env = chart_environment(tmp_path)
    assert env["DATAPIPE_RUNTIME"] == "kubernetes" and "DATAPIPE_DBT_MANIFEST" not in env
    env_flags = [arg for name in env for arg in ("-e", name)]
    proc = docker("run", "--rm", "--network", "none", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                  *env_flags, image, "bash", "-c", AIRFLOW_CHECK, env=env, check=False)
    assert proc.returncode == 0, f"checks failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    found = sections(proc.stdout)
    assert json.loads(found["import-errors"]) == [], found["import-errors"]
    assert sorted(d["dag_id"] for d in json.loads(found["dags"])) == [
        "datapipe_health", "market_data_daily", "market_quotes_intraday"]
    manifest = json.loads(found["manifest"])
    assert manifest["path"] == "/opt/airflow/dbt/target/manifest.json"
    assert manifest["project"] == yaml.safe_load((ROOT / "dbt" / "dbt_project.yml").read_text())["name"]
    assert manifest["models"] >= 10
    errors = json.loads(found["import-errors-latest"])
    assert errors and "uses the tag 'latest'" in errors[0]["error"]
    user = docker("run", "--rm", "--network", "none", image, "id", "-u").stdout.strip()
    assert user == "50000"
