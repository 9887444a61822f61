"""The release the rehearsal runs: one real `helm template` of charts/datapipe, indexed.

The chart suite's renderer (tests/chart/chart_helpers.py) renders a private copy of the chart with
its stand-in for the Airflow dependency, so our own templates render exactly as shipped. The
rehearsal reads from that one render everything a cluster would take from the release: the
Secrets and ConfigMaps the pods' environment refers to, the Services that stand for the warehouse
and the sandbox, the dashboard and sandbox Deployments, and the DAG ConfigMap the scheduler reads.
"""

from __future__ import annotations

import base64
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "chart"))
from chart_helpers import NAMESPACE, RELEASE, Renderer, ensure_helm  # noqa: E402  (the chart suite's renderer)

DAG_CONFIGMAP = f"{RELEASE}-dag-config"


@dataclass(frozen=True)
class Release:
    """One `helm template` of the chart: its objects, and the values the Airflow chart received."""

    name: str
    namespace: str
    objects: tuple[dict[str, Any], ...]
    airflow_values: dict[str, Any]

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        namespace = namespace or self.namespace
        for obj in self.objects:
            meta = obj["metadata"]
            if obj["kind"] == kind and meta["name"] == name and meta.get("namespace", self.namespace) == namespace:
                return obj
        return None

    def require(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.get(kind, name)
        if obj is None:
            have = sorted(o["metadata"]["name"] for o in self.objects if o["kind"] == kind)
            raise LookupError(f"the release renders no {kind} {name!r} (it has {have})")
        return obj

    def secret_data(self, name: str, namespace: str | None = None) -> dict[str, str] | None:
        """A Secret's keys and values (`data` decoded, `stringData` as is), or None when not rendered."""
        obj = self.get("Secret", name, namespace)
        if obj is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        data.update({k: str(v) for k, v in (obj.get("stringData") or {}).items()})
        return data

    def configmap_data(self, name: str, namespace: str | None = None) -> dict[str, str] | None:
        obj = self.get("ConfigMap", name, namespace)
        return None if obj is None else {k: str(v) for k, v in (obj.get("data") or {}).items()}

    def services(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == "Service"]

    def dag_environment(self) -> dict[str, str]:
        """The environment the chart gives the Airflow containers that parse and run the DAG: the
        DAG ConfigMap (airflow.extraEnvFrom) and the Airflow values' `env`."""
        env = dict(self.configmap_data(DAG_CONFIGMAP) or {})
        if not env:
            raise LookupError(f"the release renders no ConfigMap {DAG_CONFIGMAP!r}")
        env.update({e["name"]: str(e["value"]) for e in self.airflow_values.get("env") or [] if "value" in e})
        return env


def render_release(values: dict[str, Any], workdir: Path) -> Release:
    """`helm template <release> charts/datapipe --namespace <ns>` with `values`."""
    render = Renderer(ensure_helm(), workdir).render(values)
    if render.airflow_values is None:
        raise LookupError("the release renders without Airflow (airflow.enabled): there is no DAG to rehearse")
    return Release(RELEASE, NAMESPACE, tuple(render.objects), render.airflow_values)
