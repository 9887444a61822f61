"""What the official Airflow chart renders from its values, for the parts our contract depends on.

The official chart cannot be downloaded here, so the chart tests cannot render it. They get the
values it would receive (merged by helm from its own defaults, our `airflow:` block and the deploy's
flags: chart_helpers.Render.airflow_values) and this module says what the chart makes of them. Each
function names the upstream template it describes (apache/airflow, chart/templates/...), as read
for the 1.2x chart line. CI's e2e job deploys the real chart on kind, which is where a drift from
this description shows.
"""

from __future__ import annotations

import copy
from typing import Any

Values = dict[str, Any]

# [api] workers when the config leaves it unset (the chart line's documented default).
DEFAULT_API_WORKERS = 4


def get(values: Values, path: str, default: Any = None) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def airflow_image(v: Values) -> str:
    """_helpers.yaml `airflow_image`: images.airflow.{repository,tag,digest} over the defaults."""
    repository = get(v, "images.airflow.repository") or v["defaultAirflowRepository"]
    digest = get(v, "images.airflow.digest") or v.get("defaultAirflowDigest")
    if digest:
        return f"{repository}@{digest}"
    return f"{repository}:{get(v, 'images.airflow.tag') or v['defaultAirflowTag']}"


def worker_images(v: Values) -> list[str]:
    """KubernetesExecutor workers: `pod_template_image` (files/pod-template-file.kubernetes-helm-yaml)
    and [kubernetes_executor] worker_container_repository/_tag (values.yaml config)."""
    template = (
        f"{get(v, 'images.pod_template.repository') or v['defaultAirflowRepository']}:"
        f"{get(v, 'images.pod_template.tag') or v['defaultAirflowTag']}"
    )
    worker = (
        f"{get(v, 'images.airflow.repository') or v['defaultAirflowRepository']}:"
        f"{get(v, 'images.airflow.tag') or v['defaultAirflowTag']}"
    )
    return [template, worker]


def pull_secret_names(v: Values, release: str) -> list[str]:
    """imagePullSecrets of every Airflow pod and of the worker pod template (`registry_secret`)."""
    if get(v, "registry.secretName"):
        return [v["registry"]["secretName"]]
    if get(v, "registry.connection"):
        return [f"{release}-registry"]
    return []


def fixed_name_jobs(v: Values, release: str) -> dict[str, dict[str, Any]]:
    """Jobs that are plain objects with a fixed name (no Helm hook): jobs/migrate-database-job.yaml and
    jobs/create-user-job.yaml with useHelmHooks false. Value: the parts of their pod template that
    change between deploys (image, args)."""
    jobs: dict[str, dict[str, Any]] = {}
    migrate = v.get("migrateDatabaseJob") or {}
    if migrate.get("enabled", True) and not migrate.get("useHelmHooks", True):
        image = (
            f"{v['defaultAirflowRepository']}:{v['defaultAirflowTag']}"
            if get(v, "images.useDefaultImageForMigration")
            else airflow_image(v)
        )
        jobs[f"{release}-run-airflow-migrations"] = {"image": image, "args": migrate.get("args")}
    create_user = v.get("createUserJob") or {}
    if get(v, "webserver.defaultUser.enabled", True) and not create_user.get("useHelmHooks", True):
        jobs[f"{release}-create-user"] = {"image": airflow_image(v), "args": create_user.get("args")}
    return jobs


def roles(v: Values, release: str) -> list[dict[str, Any]]:
    """Roles the chart creates (rbac/pod-launcher-role.yaml, job-launcher-role.yaml, pod-log-reader-role.yaml)."""
    if not get(v, "rbac.create", True):
        return []
    out = []
    kind = "ClusterRole" if v.get("multiNamespaceMode") else "Role"
    if v.get("allowPodLaunching", True):
        out.append({
            "kind": kind,
            "metadata": {"name": f"{release}-pod-launcher-role"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"],
                 "verbs": ["create", "list", "get", "patch", "watch", "delete"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create", "get"]},
                {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
            ],
        })
    if v.get("allowJobLaunching"):
        out.append({
            "kind": kind,
            "metadata": {"name": f"{release}-job-launcher-role"},
            "rules": [{"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "list", "get", "patch",
                                                                               "watch", "delete"]}],
        })
    if get(v, "apiServer.allowPodLogReading", True):
        out.append({
            "kind": kind,
            "metadata": {"name": f"{release}-pod-log-reader-role"},
            "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "get", "watch"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get", "list"]},
            ],
        })
    return out


def regenerated_secrets(v: Values, release: str) -> list[str]:
    """Secrets the chart fills with a new random value on every render (secrets/jwt-secret.yaml and
    secrets/api-secret-key-secret.yaml use randAlphaNum unless a Secret is named). The fernet key is
    a pre-install hook, generated once."""
    out = []
    if not v.get("jwtSecretName"):
        out.append(f"{release}-jwt-secret")
    if not v.get("apiSecretKeySecretName"):
        out.append(f"{release}-api-secret-key")
    return out


def referenced_secret_names(v: Values) -> dict[str, str]:
    """Secrets the chart reads but does not create when they are named: name -> key it reads."""
    out = {}
    if v.get("jwtSecretName"):
        out[v["jwtSecretName"]] = "jwt-secret"
    if v.get("apiSecretKeySecretName"):
        out[v["apiSecretKeySecretName"]] = "api-secret-key"
    if get(v, "data.metadataSecretName"):
        out[v["data"]["metadataSecretName"]] = "connection"
    return out


COMPONENTS = ("scheduler", "dagProcessor", "triggerer", "apiServer", "migrateDatabaseJob", "workers")


def pod_security_contexts(v: Values, component: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(pod, container) security context of a component (_helpers.yaml `airflowPodSecurityContext`
    and `containerSecurityContext`): the component's own, else the global ones, else uid/gid."""
    node = v.get(component) or {}
    pod = (
        get(node, "securityContexts.pod")
        or node.get("securityContext")
        or get(v, "securityContexts.pod")
        or v.get("securityContext")
        or {"runAsUser": v.get("uid", 50000), "fsGroup": v.get("gid", 0)}
    )
    container = get(node, "securityContexts.container") or get(v, "securityContexts.containers") or {}
    return copy.deepcopy(pod), copy.deepcopy(container)


def component_pod(v: Values, component: str) -> dict[str, Any]:
    """A pod spec with the security-relevant parts of a component's pods: its security contexts on
    every container (main, wait-for-migrations init container, log groomer sidecar) and the volume
    types the chart mounts (config map, secrets, empty dirs, the log claim)."""
    pod_ctx, container_ctx = pod_security_contexts(v, component)
    containers = [{"name": name, "securityContext": container_ctx} for name in ("main", "log-groomer")]
    return {
        "securityContext": pod_ctx,
        "initContainers": [{"name": "wait-for-airflow-migrations", "securityContext": container_ctx}],
        "containers": containers,
        "volumes": [
            {"name": "config", "configMap": {"name": "airflow-config"}},
            {"name": "secret", "secret": {"secretName": "s"}},
            {"name": "logs", "emptyDir": {}},
            {"name": "logs-claim", "persistentVolumeClaim": {"claimName": "logs"}},
        ],
    }


def log_volumes(v: Values) -> dict[str, str]:
    """Log volumes and their sizes: the scheduler StatefulSet's claim template with LocalExecutor and
    workers.persistence (scheduler/scheduler-deployment.yaml), the triggerer's
    (triggerer/triggerer-deployment.yaml), the shared logs claim (logs-persistent-volume-claim.yaml)."""
    out = {}
    if "LocalExecutor" in str(v.get("executor")) and get(v, "workers.persistence.enabled", True):
        out["scheduler"] = str(get(v, "workers.persistence.size"))
    if get(v, "triggerer.enabled", True) and get(v, "triggerer.persistence.enabled", True):
        out["triggerer"] = str(get(v, "triggerer.persistence.size"))
    if get(v, "logs.persistence.enabled"):
        out["logs"] = str(get(v, "logs.persistence.size"))
    return out


def api_workers(v: Values) -> int:
    """api-server worker processes ([api] workers; `airflow api-server` reads it)."""
    return int(get(v, "config.api.workers") or DEFAULT_API_WORKERS)


def environment(v: Values) -> dict[str, str]:
    """Plain variables of every Airflow container (`env`, `custom_airflow_environment`)."""
    return {e["name"]: str(e.get("value")) for e in v.get("env") or []}


# -- metrics: the StatsD exporter ---------------------------------------------------------------------

def fullname(v: Values, release: str) -> str:
    """_helpers.yaml `airflow.fullname`: fullnameOverride, else the release name when it contains the
    chart's name (`airflow`, or nameOverride), else `<release>-airflow`; 63 characters at most."""
    if v.get("fullnameOverride"):
        return str(v["fullnameOverride"])[:63].rstrip("-")
    name = v.get("nameOverride") or "airflow"
    return (release if name in release else f"{release}-{name}")[:63].rstrip("-")


def _chart_template(value: Any, v: Values, release: str) -> Any:
    """The few chart-default config templates the metrics settings use, evaluated (values.yaml
    config.metrics): `ternary "True" "False" .Values.statsd.enabled` and the statsd host."""
    if not isinstance(value, str) or "{{" not in value:
        return value
    if value == '{{ ternary "True" "False" .Values.statsd.enabled }}':
        return "True" if get(v, "statsd.enabled", True) else "False"
    if value == '{{ printf "%s-statsd" (include "airflow.fullname" .) }}':
        return f"{fullname(v, release)}-statsd"
    raise AssertionError(f"the model does not know the template {value!r}: extend airflow_model")


def metrics_config(v: Values, release: str) -> dict[str, Any]:
    """airflow.cfg [metrics] as the chart writes it (configmaps/configmap.yaml renders `config` with tpl)."""
    return {k: _chart_template(val, v, release) for k, val in (get(v, "config.metrics") or {}).items()}


def statsd_pod(v: Values, release: str) -> dict[str, Any] | None:
    """The exporter's pod as statsd/statsd-deployment.yaml renders it (None when statsd.enabled is
    false): its labels, and a pod spec with the parts policies and Pod Security look at. Security
    contexts: _helpers.yaml `localPodSecurityContext` (statsd.securityContexts.pod, else the legacy
    statsd.securityContext, else runAsUser: statsd.uid) and `externalContainerSecurityContext`
    (statsd.securityContexts.container, else no escalation and every capability dropped). The service
    account token: statsd/statsd-serviceaccount.yaml sets automountServiceAccountToken from
    statsd.serviceAccount."""
    s = v.get("statsd") or {}
    if not s.get("enabled", True):
        return None
    pod_ctx = get(s, "securityContexts.pod") or s.get("securityContext") or {"runAsUser": s.get("uid", 65534)}
    container_ctx = get(s, "securityContexts.container") or {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    labels = {"tier": "airflow", "component": "statsd", "release": release,
              **(v.get("labels") or {}), **(s.get("labels") or {})}
    ports = v.get("ports") or {}
    return {
        "labels": labels,
        "spec": {
            "automountServiceAccountToken": get(s, "serviceAccount.automountServiceAccountToken", True),
            "securityContext": copy.deepcopy(pod_ctx),
            "containers": [{
                "name": "statsd",
                "image": f"{get(v, 'images.statsd.repository')}:{get(v, 'images.statsd.tag')}",
                "securityContext": copy.deepcopy(container_ctx),
                "resources": copy.deepcopy(s.get("resources") or {}),
                "ports": [
                    {"name": "statsd-ingest", "protocol": "UDP", "containerPort": ports.get("statsdIngest", 9125)},
                    {"name": "statsd-scrape", "containerPort": ports.get("statsdScrape", 9102)},
                ],
            }],
            "volumes": [{"name": "config", "configMap": {"name": f"{release}-statsd"}}],
        },
    }


def statsd_mappings(v: Values) -> list[dict[str, Any]] | None:
    """configmaps/statsd-configmap.yaml: statsd.overrideMappings when set (they replace the chart's
    files/statsd-mappings.yml and extraMappings); None = the chart's own file, not modelled here."""
    return list(get(v, "statsd.overrideMappings") or []) or None
