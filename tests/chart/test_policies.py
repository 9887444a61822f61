"""Policy assertions over every rendered object of every scenario, and checkov on the manifests."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_helpers import (
    PLANTED_SECRETS,
    ROOT,
    containers,
    pod_labels,
    pod_spec,
    secret_data,
    selector_matches,
    workloads,
)

Rendered = dict[str, list[dict[str, Any]]]


def each_pod(rendered: Rendered):
    for key, objects in rendered.items():
        for obj in workloads(objects):
            yield f"{key}: {obj['kind']}/{obj['metadata']['name']}", obj, pod_spec(obj) or {}


def test_every_pod_runs_as_non_root_with_seccomp(rendered: Rendered) -> None:
    problems = []
    for where, _, spec in each_pod(rendered):
        ctx = spec.get("securityContext", {})
        if ctx.get("runAsNonRoot") is not True or ctx.get("runAsUser", 0) == 0:
            problems.append(f"{where}: pod is not non-root: {ctx}")
        if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: pod seccomp is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: service account token is mounted")
    assert not problems, "\n".join(problems)


def test_every_container_is_locked_down_and_has_resources(rendered: Rendered) -> None:
    problems = []
    for where, _, spec in each_pod(rendered):
        for c in containers(spec):
            ctx = c.get("securityContext", {})
            name = f"{where}/{c['name']}"
            if ctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if "ALL" not in ctx.get("capabilities", {}).get("drop", []) or ctx.get("capabilities", {}).get("add"):
                problems.append(f"{name}: capabilities are not all dropped")
            if ctx.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{name}: root filesystem is writable")
            if ctx.get("privileged"):
                problems.append(f"{name}: privileged")
            for part in ("requests", "limits"):
                got = c.get("resources", {}).get(part, {})
                if not {"cpu", "memory"} <= set(got):
                    problems.append(f"{name}: resources.{part} lacks cpu/memory: {got}")
    assert not problems, "\n".join(problems)


def test_no_image_is_unpinned(rendered: Rendered) -> None:
    problems = []
    for where, _, spec in each_pod(rendered):
        for c in containers(spec):
            image = c["image"]
            tag = image.rsplit("/", 1)[-1].partition(":")[2]
            if not tag or tag == "latest":
                problems.append(f"{where}/{c['name']}: image {image!r} is not pinned")
    assert not problems, "\n".join(problems)


def collect_strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in collect_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in collect_strings(v)]
    return [str(node)] if node is not None else []


SENSITIVE_KEYS = {"PGPASSWORD", "password", "ALPHAVANTAGE_API_KEY", "connection"}


def test_no_secret_value_outside_secrets(rendered: Rendered) -> None:
    problems = []
    for key, objects in rendered.items():
        secrets = set(PLANTED_SECRETS)
        for o in objects:
            if o["kind"] != "Secret":
                continue
            for name, value in secret_data(o).items():
                if name in SENSITIVE_KEYS:
                    secrets.add(value)
                if name.startswith("AIRFLOW_CONN_"):  # JSON connections: their password
                    secrets |= {str(v) for k, v in json.loads(value).items() if k == "password"}
                if name == "passwords.json":  # the api-server's users: every password
                    secrets |= {str(v) for v in json.loads(value).values()}
        exposed: list[tuple[str, str]] = []
        for o in objects:
            where = f"{key}: {o['kind']}/{o['metadata']['name']}"
            exposed += [(where + " annotation", s) for s in collect_strings(o["metadata"].get("annotations", {}))]
            if o["kind"] == "ConfigMap":
                exposed += [(where + " data", s) for s in collect_strings(o.get("data", {}))]
            if o["kind"] in ("Pod", "Deployment", "StatefulSet", "Job", "CronJob"):
                spec = pod_spec(o) or {}
                for c in containers(spec):
                    exposed += [(f"{where}/{c['name']} env", str(e.get("value"))) for e in c.get("env", [])]
                    exposed += [(f"{where}/{c['name']} command", s) for s in c.get("command", []) + c.get("args", [])]
        for where, text in exposed:
            for secret in secrets:
                if secret in text:
                    problems.append(f"{where} contains a secret value")
    assert not problems, "\n".join(sorted(set(problems)))


def test_planted_secrets_do_reach_their_secret(rendered: Rendered) -> None:
    """The check above can fail: the planted values are really rendered (into Secrets)."""
    values = {
        v for objects in rendered.values() for o in objects if o["kind"] == "Secret" for v in secret_data(o).values()
    }
    joined = "\n".join(values)
    for planted in PLANTED_SECRETS:
        assert planted in joined


def allow_policies(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == "NetworkPolicy" and o["spec"]["podSelector"]]


def test_default_deny_covers_the_namespace(rendered: Rendered) -> None:
    for key, objects in rendered.items():
        deny = [
            o
            for o in objects
            if o["kind"] == "NetworkPolicy"
            and o["spec"]["podSelector"] == {}
            and set(o["spec"]["policyTypes"]) == {"Ingress", "Egress"}
            and not o["spec"].get("ingress")
            and not o["spec"].get("egress")
        ]
        assert len(deny) == 1, key


def test_network_policies_select_every_pod(rendered: Rendered) -> None:
    problems = []
    for key, objects in rendered.items():
        policies = allow_policies(objects)
        pods = [(f"{o['kind']}/{o['metadata']['name']}", pod_labels(o)) for o in workloads(objects)]
        # pods the chart does not template itself: KubernetesPodOperator task pods and Airflow's pods
        pods.append(("task pod", {"kubernetes_pod_operator": "True", "dag_id": "market_data_daily"}))
        if key.endswith("airflow-on"):
            pods.append(("airflow scheduler", {"tier": "airflow", "component": "scheduler", "release": "datapipe"}))
            pods.append(("statsd exporter", {"tier": "airflow", "component": "statsd", "release": "datapipe"}))
        for name, labels in pods:
            if not any(selector_matches(p["spec"]["podSelector"], labels) for p in policies):
                problems.append(f"{key}: {name} ({labels}) is selected by no allow policy")
    assert not problems, "\n".join(problems)


def test_warehouse_accepts_only_its_clients(rendered: Rendered) -> None:
    objects = rendered["defaults/airflow-on"]
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "datapipe-warehouse")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 5432, "protocol": "TCP"}]
    peers = [p["podSelector"]["matchLabels"] for p in rule["from"]]
    components = sorted(p.get("app.kubernetes.io/component", "") for p in peers if "app.kubernetes.io/component" in p)
    assert components == ["backup", "dashboard", "test", "warehouse-init"]
    assert {"kubernetes_pod_operator": "True"} in peers
    assert {"tier": "airflow", "release": "datapipe"} in peers
    sandbox = selector_matches(policy["spec"]["podSelector"], {"app.kubernetes.io/component": "sandbox"})
    assert not sandbox


CHECKOV_FAILED = re.compile(r"Failed checks: (\d+)")


def test_checkov_finds_no_failed_check(rendered: Rendered, tmp_path: Path) -> None:
    seen: set[str] = set()
    for key, objects in rendered.items():
        unique = []
        for obj in objects:  # objects identical across scenarios are scanned once
            fingerprint = json.dumps(obj, sort_keys=True)
            if fingerprint not in seen:
                seen.add(fingerprint)
                unique.append(obj)
        (tmp_path / (key.replace("/", "-") + ".yaml")).write_text(yaml.safe_dump_all(unique))
    # explicit files: checkov's directory walk skips hidden directories such as .local/
    files = [arg for f in sorted(tmp_path.glob("*.yaml")) for arg in ("--file", str(f))]
    checkov = ROOT / ".local" / "venvs" / "tools" / "bin" / "checkov"
    proc = subprocess.run(
        [
            str(checkov),
            *files,
            "--framework",
            "kubernetes",
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
    report = json.loads(proc.stdout) if proc.stdout.strip().startswith(("{", "[")) else None
    if report is None:
        pytest.fail(f"checkov produced no JSON report (exit {proc.returncode}): {proc.stderr[-2000:]}")
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{c['check_id']} {c['check_name']} on {c['resource']} ({Path(c['file_path']).name})"
        for r in reports
        for c in r.get("results", {}).get("failed_checks", [])
    ]
    passed = sum(r.get("summary", {}).get("passed", 0) for r in reports)
    assert passed > 100, f"checkov ran too few checks ({passed}); is the kubernetes framework active?"
    assert not failed, "\n".join(sorted(set(failed)))
