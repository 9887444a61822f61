"""Build the extract, transform and dashboard images and run their real commands (`make images-test`).

The images are built on the machine's local stand-in for python:3.12-slim (tools/local-base-image),
with `--network host`; the containers use `--network host` and reach the test session's embedded
PostgreSQL and the sandbox API on 127.0.0.1. The commands come from dags/datapipe/steps.toml, the
same definition the DAG uses: extract from the sandbox, dbt build + quality gate + publish, then
the dashboard's health endpoint with the read-only role. Containers run as the images' non-root
user with every capability dropped (and a read-only root filesystem where the chart sets one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import tomllib
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = tomllib.loads((ROOT / "dags" / "datapipe" / "steps.toml").read_text())
BASE_IMAGE = os.environ.get("DATAPIPE_BASE_IMAGE", "datapipe/python-base:local")
TAG = "images-test"
SYMBOLS = "IBM,AAPL,MSFT"
COMPONENT_DIRS = {"extract": "extract", "transform": "dbt", "dashboard": "dashboard"}

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def docker(
    *args: str, env: dict[str, str] | None = None, check: bool = True, timeout: float = 1800
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        pytest.fail(
            f"docker {' '.join(args[:6])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def local_base_image_script() -> Path:
    candidates = [
        os.environ.get("LOCAL_BASE_IMAGE", ""),
        str(ROOT.parent / "shared" / "tools" / "local-base-image"),
        "/work/shared/tools/local-base-image",
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    pytest.fail(f"local-base-image not found (looked at {candidates[1:]}; set LOCAL_BASE_IMAGE)")


@pytest.fixture(scope="session")
def engine() -> None:
    if shutil.which("docker") is None:
        pytest.fail("the docker CLI is missing (tools/dockerd-safe installs docker.io)")
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"no Docker engine at DOCKER_HOST={os.environ.get('DOCKER_HOST')!r}: {proc.stderr.strip()}")


@pytest.fixture(scope="session")
def base_image(engine: None) -> str:
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        proc = subprocess.run([str(local_base_image_script()), BASE_IMAGE], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"building {BASE_IMAGE} failed: {proc.stderr[-3000:]}")
    return BASE_IMAGE


_built: dict[str, str] = {}


def build(name: str, base: str) -> str:
    if name in _built:
        return _built[name]
    folder = ROOT / COMPONENT_DIRS[name]
    lock = folder / "requirements.lock"
    if not lock.exists():
        pytest.fail(
            f"cannot build datapipe-{name}: {lock.relative_to(ROOT)} is missing (is the {name} component merged?)"
        )
    image = f"datapipe-{name}:{TAG}"
    started = time.monotonic()
    docker(
        "build",
        "--network",
        "host",
        "--build-arg",
        f"BASE_IMAGE={base}",
        "-f",
        f"images/{name}/Dockerfile",
        "-t",
        image,
        str(ROOT),
    )
    print(f"built {image} in {time.monotonic() - started:.0f}s")
    _built[name] = image
    return image


HARDENED = ["--network", "host", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]


def run_step(
    image: str, step: str, env: dict[str, str], *, read_only: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run one step of steps.toml exactly as its pod would: the image's WORKDIR and user, env only."""
    command = STEPS["steps"][step]["command"]
    flags = [*HARDENED, *(["--read-only", "--tmpfs", "/tmp"] if read_only else [])]
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
        run_step(image, step, env, read_only=True)
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
