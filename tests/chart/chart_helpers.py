"""Helpers of the chart tests: render the datapipe chart with the real `helm template`.

The official Airflow chart (a declared dependency) cannot be downloaded here, and `helm template`
refuses a chart whose dependency is missing even when its condition is false. So each render uses
a temporary copy of charts/datapipe with a stand-in chart at charts/airflow (fixtures/airflow-stub)
that carries the official chart's own values.yaml and values.schema.json (fixtures/airflow-chart):
our own templates render exactly as shipped, helm validates and merges the Airflow values exactly
as it would for the real chart, and the stand-in renders one object only, the merged values, which
`Renderer.render` takes out of the objects and returns as `Render.airflow_values`.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "datapipe"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BIN = ROOT / ".local" / "bin"
RELEASE = "datapipe"
NAMESPACE = "datapipe"

# Values files for the scenarios the issue names; every scenario is rendered with Airflow on and off.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-db": {
        "warehouse": {
            "mode": "external",
            "sslMode": "verify-full",
            "sslRootCert": "system",
            "existingSecret": {"pipeline": "warehouse-pipeline-managed", "dashboard": "warehouse-dashboard-managed"},
            "external": {"port": 5432, "cidrs": ["10.20.0.0/16"]},
        },
        "airflow": {"data": {"metadataSecretName": "airflow-metadata-managed"}},
    },
    "existing-secrets": {
        "warehouse": {
            "existingSecret": {
                "admin": "warehouse-admin-managed",
                "pipeline": "warehouse-pipeline-managed",
                "dashboard": "warehouse-dashboard-managed",
            }
        },
        "api": {"existingSecret": "alphavantage-managed"},
        "alerts": {"existingSecret": "alerts-managed", "slack": {"enabled": True}},
        "backup": {"existingSecret": "warehouse-backup-managed"},
    },
    "alerts": {
        "alerts": {
            "smtp": {
                "enabled": True,
                "host": "smtp.example.com",
                "user": "alerts",
                "password": "smtp-Pa55word-never-in-a-configmap",
                "to": "oncall@example.com",
            },
            "slack": {"enabled": True, "webhookUrl": "https://hooks.slack.com/services/T000/B000/SeCrEtWeBhOoK"},
        }
    },
    "kubernetes-executor": {"airflow": {"executor": "KubernetesExecutor"}},
    "api-key": {"api": {"key": "AVKEY0123456789SECRET"}},
    "cloud-registry": {
        "images": {"registry": "ghcr.io/acme", "tag": "1a2b3c4d", "pullSecrets": [{"name": "ghcr-pull"}]},
        "airflow": {
            "defaultAirflowRepository": "ghcr.io/acme/datapipe-airflow",
            "defaultAirflowTag": "1a2b3c4d",
            "registry": {"secretName": "ghcr-pull"},
        },
        "warehouse": {"internal": {"persistence": {"storageClass": "premium-rwo"}}},
    },
}

# Secret values passed in by scenarios: they must appear only in Secrets.
PLANTED_SECRETS = [
    "smtp-Pa55word-never-in-a-configmap",
    "https://hooks.slack.com/services/T000/B000/SeCrEtWeBhOoK",
    "AVKEY0123456789SECRET",
]


def ensure_helm() -> Path:
    helm = BIN / "helm"
    if not helm.exists():
        proc = subprocess.run([sys.executable, str(ROOT / "tools" / "install-helm.py"), "--bin-dir", str(BIN)])
        if proc.returncode != 0 or not helm.exists():
            pytest.fail("helm is missing and tools/install-helm.py could not install it (see its output)")
    return helm


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class Renderer:
    """`helm template` over a private copy of the chart (with the Airflow stand-in)."""

    def __init__(self, helm: Path, workdir: Path) -> None:
        self.helm = helm
        self.workdir = workdir
        self.env = {
            "HELM_CACHE_HOME": str(workdir / "helm-cache"),
            "HELM_CONFIG_HOME": str(workdir / "helm-config"),
            "HELM_DATA_HOME": str(workdir / "helm-data"),
            "PATH": "/usr/bin:/bin",
        }
        self._copies = 0

    def chart_copy(self, lookup_stub: str | None = None) -> Path:
        self._copies += 1
        dest = self.workdir / f"chart-{self._copies}" / "datapipe"
        shutil.copytree(CHART, dest, ignore=shutil.ignore_patterns("charts"))
        shutil.copytree(FIXTURES / "airflow-stub", dest / "charts" / "airflow")
        for name in ("values.yaml", "values.schema.json"):  # the official chart's defaults and schema
            shutil.copy(FIXTURES / "airflow-chart" / name, dest / "charts" / "airflow" / name)
        if lookup_stub is not None:
            (dest / "templates" / "_lookup.tpl").write_text(lookup_stub)
        return dest

    def run(
        self,
        args: list[str],
        chart: Path | None = None,
        values: dict[str, Any] | None = None,
        check: bool = True,
        extra: list[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        chart = chart or self.default_chart
        cmd = [str(self.helm), *args, str(chart)]
        if values:
            vf = self.workdir / f"values-{abs(hash(yaml.safe_dump(values)))}.yaml"
            vf.write_text(yaml.safe_dump(values))
            cmd += ["--values", str(vf)]
        cmd += extra or []
        proc = subprocess.run(cmd, capture_output=True, text=True, env=self.env)
        if check and proc.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} failed:\n{proc.stderr}")
        return proc

    @property
    def default_chart(self) -> Path:
        if not hasattr(self, "_default"):
            self._default = self.chart_copy()
        return self._default

    def render(
        self,
        values: dict[str, Any] | None = None,
        chart: Path | None = None,
        release: str = RELEASE,
        extra: list[str] | None = None,
    ) -> Render:
        """`helm template`: our objects, and the values the Airflow chart receives (None when it is off)."""
        proc = self.run(
            ["template", release, "--namespace", NAMESPACE, "--kube-version", "1.33.0"],
            chart=chart,
            values=values,
            extra=extra,
        )
        objects, airflow_values = [], None
        for doc in yaml.safe_load_all(proc.stdout):
            if not doc:
                continue
            if (doc["metadata"].get("annotations") or {}).get(STUB_ANNOTATION) == "computed-values":
                airflow_values = json.loads(doc["data"]["values.json"])
            else:
                objects.append(doc)
        return Render(objects, airflow_values)

    def template(
        self, values: dict[str, Any] | None = None, chart: Path | None = None, release: str = RELEASE
    ) -> list[dict[str, Any]]:
        return self.render(values, chart=chart, release=release).objects

    def template_error(self, values: dict[str, Any], release: str = RELEASE) -> str:
        proc = self.run(["template", release, "--namespace", NAMESPACE], values=values, check=False)
        assert proc.returncode != 0, f"rendering {values} should have failed"
        return proc.stderr


STUB_ANNOTATION = "datapipe.test/airflow-stub"


@dataclass
class Render:
    """One `helm template`: our objects, and the merged values of the Airflow subchart."""

    objects: list[dict[str, Any]]
    airflow_values: dict[str, Any] | None


def scenario_values(name: str, airflow_enabled: bool) -> dict[str, Any]:
    return deep_merge(SCENARIOS[name], {"airflow": {"enabled": airflow_enabled}})


# -- object helpers -------------------------------------------------------------------------------
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}


def pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in POD_OWNERS:
        return obj["spec"]["template"]["spec"]
    return None


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    kind = obj["kind"]
    if kind == "Pod":
        return obj["metadata"].get("labels", {})
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def workloads(objects: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    return (o for o in objects if o["kind"] in POD_OWNERS)


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def secret_data(obj: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name), None)


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        op, key, values = expr["operator"], expr["key"], expr.get("values", [])
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True



# -- NetworkPolicy semantics (networking.k8s.io/v1), for "may A reach B on this port" -------------------
@dataclass(frozen=True)
class Endpoint:
    """A pod (its namespace and labels) or an address outside the cluster (`ip`)."""

    namespace: str | None
    labels: dict[str, str]
    ip: str | None = None


def _namespace_labels(name: str | None) -> dict[str, str]:
    return {"kubernetes.io/metadata.name": name} if name else {}  # the label every namespace carries


def _peer_matches(peer: dict[str, Any], src: Endpoint, policy_ns: str) -> bool:
    import ipaddress

    if "ipBlock" in peer:
        if src.ip is None:
            return False
        addr = ipaddress.ip_address(src.ip)
        block = peer["ipBlock"]
        return addr in ipaddress.ip_network(block["cidr"]) and not any(
            addr in ipaddress.ip_network(e) for e in block.get("except") or [])
    if src.namespace is None:
        return False
    ns_selector = peer.get("namespaceSelector")
    ns_ok = (src.namespace == policy_ns if ns_selector is None
             else selector_matches(ns_selector, _namespace_labels(src.namespace)))
    pod_selector = peer.get("podSelector")
    return ns_ok and (pod_selector is None or selector_matches(pod_selector, src.labels))


def _ports_match(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    return not ports or any(p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports)


def _direction_allowed(policies: list[dict[str, Any]], subject: Endpoint, other: Endpoint, port: int, protocol: str,
                       direction: str) -> bool:
    kind, peers_key = ("Ingress", "from") if direction == "ingress" else ("Egress", "to")
    if subject.namespace is None:
        return True  # outside the cluster: no NetworkPolicy applies to it
    selecting = [p for p in policies if p["metadata"].get("namespace", NAMESPACE) == subject.namespace
                 and kind in p["spec"].get("policyTypes", ["Ingress"])
                 and selector_matches(p["spec"]["podSelector"], subject.labels)]
    if not selecting:
        return True  # not isolated in this direction
    return any(
        _ports_match(rule.get("ports"), port, protocol)
        and (not rule.get(peers_key) or any(_peer_matches(peer, other, p["metadata"].get("namespace", NAMESPACE))
                                            for peer in rule[peers_key]))
        for p in selecting for rule in p["spec"].get(direction) or [])


def traffic_allowed(objects: list[dict[str, Any]], src: Endpoint, dst: Endpoint, port: int,
                    protocol: str = "TCP") -> bool:
    """Whether the NetworkPolicies among `objects` let `src` open `port`/`protocol` on `dst`: the
    source's egress and the destination's ingress must both allow it (a pod no policy selects in a
    direction is not isolated in it)."""
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    return (_direction_allowed(policies, src, dst, port, protocol, "egress")
            and _direction_allowed(policies, dst, src, port, protocol, "ingress"))
