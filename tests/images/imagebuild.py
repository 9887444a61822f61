"""Building our images on this machine's local stand-in bases: one definition for the suites that
need them (`make images-test`, tests/images; `make rehearse`, tests/rehearsal).

Every image is built from `images/<name>/Dockerfile` with `--network host` on the shared tools'
local-base-image (a stand-in for python:3.12-slim, found at ../shared/tools beside the repository),
and datapipe-airflow on images/airflow-base-local (a stand-in for apache/airflow), tagged
`datapipe-<name>:images-test`. The engine's layer cache makes a second build of unchanged sources
a matter of seconds, so both suites build what they need and reuse each other's layers. Stdlib and
pytest only: it runs in the tools venv and in the airflow venv.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("DATAPIPE_BASE_IMAGE", "datapipe/python-base:local")
AIRFLOW_BASE_IMAGE = "datapipe/airflow-base:local"
TAG = "images-test"
COMPONENT_DIRS = {"extract": "extract", "transform": "dbt", "dashboard": "dashboard", "airflow": "dags"}


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
    candidates = [os.environ.get("LOCAL_BASE_IMAGE", ""), str(ROOT.parent / "shared" / "tools" / "local-base-image")]
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    pytest.fail(f"local-base-image not found (looked at {candidates[1]}; set LOCAL_BASE_IMAGE)")


def ensure_base_image() -> str:
    """The local stand-in for python:3.12-slim, built once on this engine (about a minute)."""
    if docker("image", "inspect", BASE_IMAGE, check=False).returncode != 0:
        proc = subprocess.run([str(local_base_image_script()), BASE_IMAGE], capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.fail(f"building {BASE_IMAGE} failed: {proc.stderr[-3000:]}")
    return BASE_IMAGE


_built: dict[str, str] = {}


def build(name: str, base: str) -> str:
    """Build images/<name>/Dockerfile once per session; returns its tag `datapipe-<name>:images-test`."""
    build_id(name, base)
    return f"datapipe-{name}:{TAG}"


def build_id(name: str, base: str) -> str:
    """Build images/<name>/Dockerfile once per session; returns the built image's ID (`sha256:...`).

    The ID names exactly this build: the shared tag may be moved by another build on the same
    engine at any time, the ID cannot."""
    if name in _built:
        return _built[name]
    folder = ROOT / COMPONENT_DIRS[name]
    lock = folder / "requirements.lock"
    if not lock.exists():
        pytest.fail(
            f"cannot build datapipe-{name}: {lock.relative_to(ROOT)} is missing (is the {name} component merged?)"
        )
    image = f"datapipe-{name}:{TAG}"
    extra = ["--build-arg", f"AIRFLOW_IMAGE={airflow_base(base)}"] if name == "airflow" else []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="datapipe-build-") as tmp:
        iidfile = Path(tmp) / "iid"
        docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}", *extra, "--iidfile", str(iidfile),
               "-f", f"images/{name}/Dockerfile", "-t", image, str(ROOT))
        image_id = iidfile.read_text().strip()
    print(f"built {image} ({image_id[:19]}) in {time.monotonic() - started:.0f}s")
    _built[name] = image_id
    return image_id


def airflow_base(base: str) -> str:
    """The local stand-in for apache/airflow (images/airflow-base-local), built once per session."""
    if "airflow-base" not in _built:
        started = time.monotonic()
        docker("build", "--network", "host", "--build-arg", f"BASE_IMAGE={base}",
               "-f", "images/airflow-base-local/Dockerfile", "-t", AIRFLOW_BASE_IMAGE, str(ROOT))
        print(f"built {AIRFLOW_BASE_IMAGE} in {time.monotonic() - started:.0f}s")
        _built["airflow-base"] = AIRFLOW_BASE_IMAGE
    return _built["airflow-base"]
