"""Static checks of images/*/Dockerfile: hadolint (warning threshold), checkov, and our conventions."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".local" / "venvs" / "tools" / "bin"
IMAGES = ["extract", "transform", "airflow", "dashboard"]
DOCKERFILES = {name: ROOT / "images" / name / "Dockerfile" for name in IMAGES}
# Test-only stand-in for apache/airflow (`make images-test` builds datapipe-airflow on it).
STAND_IN = ROOT / "images" / "airflow-base-local" / "Dockerfile"
LINTED = {**DOCKERFILES, "airflow-base-local": STAND_IN}


def tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make venvs` (the tools venv)")
    return path


def test_every_image_has_a_dockerfile() -> None:
    for name, path in LINTED.items():
        assert path.is_file(), f"{name}: {path} is missing"
    assert sorted(p.parent.name for p in (ROOT / "images").glob("*/Dockerfile")) == sorted(LINTED)


def test_hadolint_is_clean_at_warning_threshold() -> None:
    proc = subprocess.run(
        [str(tool("hadolint")), "--failure-threshold", "warning", *map(str, LINTED.values())],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_does_fail_on_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run(
        [str(tool("hadolint")), "--failure-threshold", "warning", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "DL3007" in proc.stdout


def test_checkov_finds_no_failed_check(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(tool("checkov")),
            *[arg for f in LINTED.values() for arg in ("--file", str(f))],
            "--framework",
            "dockerfile",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env={"BC_SKIP_MAPPING": "TRUE", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    if not proc.stdout.strip().startswith(("{", "[")):
        pytest.fail(f"checkov produced no JSON report (exit {proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']} in {c['file_path']}"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    assert sum(r.get("summary", {}).get("passed", 0) for r in reports) > 50
    assert not failed, "\n".join(failed)
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    for check in skipped:  # every skip is a deliberate, explained choice
        assert len(check.get("suppress_comment", "")) > 20, f"{check['check_id']} skipped without a reason"


@pytest.mark.parametrize("name", sorted(LINTED))
def test_base_images_are_pinned_build_args(name: str) -> None:
    text = LINTED[name].read_text()
    args = dict(re.findall(r"^ARG (\w*IMAGE)=(\S+)$", text, re.M))
    assert args, f"{name}: no base image build arg"
    for arg, default in args.items():
        repo, _, tag = default.rpartition(":")
        assert repo and tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
            f"{name}: {arg}={default} is not pinned"
        )
    for line in re.findall(r"^FROM\s+(\S+)", text, re.M):
        assert line.startswith("${") or line in {"build", "manifest"}, f"{name}: FROM {line} is not a build arg"


@pytest.mark.parametrize("name", IMAGES)
def test_images_run_as_non_root_with_pinned_locks(name: str) -> None:
    text = DOCKERFILES[name].read_text()
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"{name}: the final USER is root"
    assert "--require-hashes" in text, f"{name}: the lock is not installed with --require-hashes"
    lock = {"extract": "extract", "transform": "dbt", "airflow": "dags", "dashboard": "dashboard"}[name]
    assert f"COPY {lock}/requirements.lock" in text or f"{lock}/requirements.lock /tmp" in text
    assert not re.search(r"(?i)(password|secret|api_key)\s*=", text), f"{name}: looks like a secret in the Dockerfile"


def test_workdirs_match_the_step_definitions() -> None:
    """steps.toml commands run in the image's WORKDIR (the component's project directory)."""
    assert "WORKDIR /opt/datapipe/extract" in DOCKERFILES["extract"].read_text()
    transform = DOCKERFILES["transform"].read_text()
    assert "WORKDIR /opt/datapipe/dbt" in transform
    assert "DBT_PROFILES_DIR=. DBT_PROJECT_DIR=." in transform
    assert "dbt parse" in transform and "target/manifest.json" in transform


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert lines[lines.index("*")] == "*"  # allow-list: everything is excluded first
    for folder in ("extract/", "dbt/", "dags/", "dashboard/"):
        assert f"!{folder}" in lines
    for local_state in ("dbt/target/", "**/__pycache__/", "**/*.env"):
        assert local_state in lines


def test_the_airflow_image_checks_its_packages_after_the_lock() -> None:
    text = DOCKERFILES["airflow"].read_text()
    install = text.index("--require-hashes --no-deps -r /tmp/requirements.lock")
    assert "pip check" in text[install:], "pip check must run after the lock is installed over the image's packages"


def test_the_airflow_stand_in_matches_the_official_image_where_it_can() -> None:
    """Same Airflow version as the lock and the official image tag; the official image's user and home."""
    stand_in = STAND_IN.read_text()
    version = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", stand_in, re.M).group(1)  # type: ignore[union-attr]
    # the lock's Airflow may carry extras (apache-airflow[statsd]==...): the version is what must agree
    requirements = (ROOT / "dags" / "requirements.in").read_text()
    assert re.search(rf"^apache-airflow(\[[\w,]+\])?=={re.escape(version)}$", requirements, re.M)
    official = re.search(r"^ARG AIRFLOW_IMAGE=(\S+)$", DOCKERFILES["airflow"].read_text(), re.M).group(1)  # type: ignore[union-attr]
    assert official.startswith(f"apache/airflow:{version}-")
    assert "--uid 50000 --gid 0" in stand_in and "AIRFLOW_HOME=/opt/airflow" in stand_in
    assert re.findall(r"^USER\s+(\S+)", stand_in, re.M)[-1] == "50000:0"
    assert 'pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}"' in stand_in
