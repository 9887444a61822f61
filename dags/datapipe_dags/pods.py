"""The one pod definition shared by our KubernetesPodOperator tasks and Cosmos' dbt pods.

`pod_kwargs(settings, component)` returns the KubernetesPodOperator arguments every pod of a
component gets: namespace, service account, pinned image, credentials as env from Kubernetes Secrets
(`airflow.providers.cncf.kubernetes.secret.Secret`: the DAG and the pod spec carry only the
Secret's name and key, never a value), resources, security contexts that pass the `restricted` Pod
Security Standard with a read-only root filesystem (emptyDirs where the steps write), pod deletion
when the task finishes, logs streamed into the task log, and the startup timeout. `retry_kwargs`
(retries with exponential backoff) applies to every task of the DAG, pods or not.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from datapipe_common.libpq import CONNECTION_VARIABLES

from datapipe_dags.config import Settings
from datapipe_dags.steps import Component

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.secret import Secret
    from kubernetes.client import models as k8s

# The Kubernetes client is imported inside the functions: the local runtime never needs it, and it
# costs seconds of DAG parse time.

# Keys of the Secrets (the chart creates them; docs/airflow.md). Values never leave the Secret.
WAREHOUSE_KEYS = CONNECTION_VARIABLES  # PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD
API_KEYS = ("ALPHAVANTAGE_API_KEY", "ALPHAVANTAGE_BASE_URL")
# Which Secrets each component's pods receive.
COMPONENT_SECRETS = {"extract": ("warehouse", "api"), "transform": ("warehouse",)}
# The non-root user (uid = gid) of the extract and transform images (`USER` in images/*/Dockerfile).
IMAGE_UID = 10001
# Rendered per run into every step's environment (ours and, via dbt_group.DBT_TASK_ENV, Cosmos'):
# the Airflow run id is the pipeline run dbt records its results under and publish checks.
RUN_ENV = {"DATAPIPE_RUN_ID": "{{ run_id }}"}
# Where each component's steps write, as emptyDirs over a read-only root filesystem (mount path ->
# size limit): Python and GX temporary files in /tmp (HOME=/tmp); dbt's target/ (manifest, run
# results, the gate's data docs) and logs/ in the transform image's project dir (its WORKDIR).
TMP = "/tmp"  # noqa: S108 - a mount path in the pod (an emptyDir), not a temporary file here
WRITABLE_DIRS = {
    "extract": {TMP: "256Mi"},
    "transform": {TMP: "512Mi", "/opt/datapipe/dbt/target": "1Gi", "/opt/datapipe/dbt/logs": "256Mi"},
}


def secrets_for(settings: Settings, component: str) -> list[Secret]:
    from airflow.providers.cncf.kubernetes.secret import Secret

    wanted = COMPONENT_SECRETS.get(component, ("warehouse",))
    secrets: list[Secret] = []
    if "warehouse" in wanted:
        secrets += [Secret("env", key, settings.warehouse_secret, key)  # type: ignore[no-untyped-call]
                    for key in WAREHOUSE_KEYS]
    if "api" in wanted:
        secrets += [Secret("env", key, settings.api_secret, key)  # type: ignore[no-untyped-call]
                    for key in API_KEYS]
    return secrets


def plain_env(settings: Settings, component: Component, *, pod: bool = True) -> dict[str, str]:
    """Non-secret environment of a step, the same for its pod and its local run (the transform
    component's dbt also gets its thread count, DBT_THREADS, read by dbt/profiles.yml).

    A local run inherits the libpq variables (PGSSLMODE included) from the Airflow process, so only
    pods get PGSSLMODE (and PGSSLROOTCERT, to verify the server) here.
    """
    env = {"DATAPIPE_SYMBOLS": ",".join(settings.symbols), **dict(component.env)}
    if component.name == "transform":
        env["DBT_THREADS"] = str(settings.dbt_threads)  # dbt/profiles.yml reads it
    if pod:
        env["PGSSLMODE"] = settings.pgsslmode
        if settings.pgsslrootcert:
            env["PGSSLROOTCERT"] = settings.pgsslrootcert
    return env


def resources(settings: Settings, component: str) -> k8s.V1ResourceRequirements:
    from kubernetes.client import models as k8s

    spec = settings.resources.get(component) or settings.resources["transform"]
    return k8s.V1ResourceRequirements(requests=dict(spec["requests"]), limits=dict(spec["limits"]))


def scratch_volumes(component: str) -> tuple[list[k8s.V1Volume], list[k8s.V1VolumeMount]]:
    """emptyDir volumes and their mounts for the directories a component's steps write to."""
    from kubernetes.client import models as k8s

    volumes, mounts = [], []
    for path, size in WRITABLE_DIRS.get(component, {TMP: "256Mi"}).items():
        name = "scratch" + path.replace("/", "-").replace("_", "-")
        volumes.append(k8s.V1Volume(name=name, empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=size)))
        mounts.append(k8s.V1VolumeMount(name=name, mount_path=path))
    return volumes, mounts


def pod_kwargs(settings: Settings, component: Component) -> dict[str, Any]:
    """KubernetesPodOperator arguments shared by every pod of `component` (ours and Cosmos')."""
    from kubernetes.client import models as k8s

    volumes, mounts = scratch_volumes(component.name)
    return {
        "namespace": settings.namespace,
        "service_account_name": settings.service_account,
        "automount_service_account_token": False,  # the steps never call the Kubernetes API
        "image": settings.image(component.name),
        "image_pull_policy": settings.image_pull_policy,
        "secrets": secrets_for(settings, component.name),
        # A list of V1EnvVar (not a dict): Cosmos merges its own env into this list at execute time.
        "env_vars": [k8s.V1EnvVar(name=k, value=v) for k, v in plain_env(settings, component).items()],
        "container_resources": resources(settings, component.name),
        # Pod Security Standard `restricted`, plus a read-only root filesystem.
        "security_context": k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=IMAGE_UID,
            run_as_group=IMAGE_UID,
            fs_group=IMAGE_UID,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "container_security_context": k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        "volumes": volumes,
        "volume_mounts": mounts,
        "labels": {
            "app.kubernetes.io/part-of": "datapipe",
            "app.kubernetes.io/component": component.name,
        },
        "on_finish_action": "delete_pod",
        "get_logs": True,
        "log_events_on_failure": True,
        "startup_timeout_seconds": settings.pod_startup_timeout_s,
        "do_xcom_push": False,
    }


def retry_kwargs(settings: Settings) -> dict[str, Any]:
    """Retries with exponential backoff, for every task."""
    return {
        "retries": settings.retries,
        "retry_delay": timedelta(seconds=settings.retry_delay_s),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(seconds=settings.max_retry_delay_s),
    }
