"""Every pod the DAG would create — our KubernetesPodOperator steps, Cosmos' producer (the run's one
`dbt build`) and the pod a retried model or test task starts — rendered
offline (`build_pod_request_obj`, after Cosmos fills the dbt command with `build_kube_args`),
validated strictly against the Kubernetes schema, and checked against the one shared definition."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dagtest import MANIFEST, ROOT, base_env, fake_context
from datapipe_dags.config import Settings
from datapipe_dags.pipeline import build_market_data_daily
from datapipe_dags.pods import API_KEYS, WAREHOUSE_KEYS

K8S_VERSION = "1.33.0"
# Secret values present in the environment the settings are read from: they must never reach a pod.
POISON = {"PGPASSWORD": "pg-secret-must-not-leak", "ALPHAVANTAGE_API_KEY": "av-key-must-not-leak",
          "PGHOST": "db.secret.internal"}
PLAIN_ENV_ALLOWED = {"DATAPIPE_SYMBOLS", "PGSSLMODE", "PGSSLROOTCERT", "DBT_PROFILES_DIR", "DBT_PROJECT_DIR",
                     "DBT_PROFILE", "DBT_TARGET", "DBT_THREADS", "DBT_FULL_REFRESH", "DATAPIPE_RUN_ID"}


@pytest.fixture(scope="module")
def rendered() -> dict[str, tuple[Any, dict[str, Any]]]:
    """task_id -> (operator, pod as the API server would receive it)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    dag = build_market_data_daily(Settings.from_env({**POISON, **base_env()}))
    api = ApiClient()
    pods = {}
    for task in dag.tasks:
        if not isinstance(task, KubernetesPodOperator):
            continue
        context = fake_context(dag, task)
        if hasattr(task, "build_kube_args"):  # Cosmos: fills cmds/arguments/env at execute time
            task.build_kube_args(context, task.add_cmd_flags())
        pod = task.build_pod_request_obj(context, dry_run=True)
        pods[task.task_id] = (task, api.sanitize_for_serialization(pod))
    return pods


def test_every_pod_task_is_rendered(rendered: dict[str, Any]) -> None:
    ids = set(rendered)
    assert {"extract_prices", "extract_companies", "dbt_source_freshness", "quality_gate", "publish_marts",
            "grant_reader", "dbt.dbt_producer_watcher"} <= ids
    assert sum(1 for t in ids if t.startswith("dbt.")) >= 10


def test_pods_validate_strictly_against_the_kubernetes_schema(rendered: dict[str, Any]) -> None:
    for task_id, (_, pod) in rendered.items():
        try:
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"pod of {task_id} is invalid: {exc.message} at {list(exc.path)}")


def test_a_broken_pod_is_caught_by_the_validator(rendered: dict[str, Any]) -> None:
    """The validator really checks: an unknown field and a wrong type are both rejected."""
    _, pod = rendered["extract_prices"]
    broken = json.loads(json.dumps(pod))
    broken["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(pod))
    broken["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"lots": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_shared_pod_definition(rendered: dict[str, Any]) -> None:
    env = base_env()
    for task_id, (task, pod) in rendered.items():
        component = "extract" if task_id.startswith("extract_") else "transform"
        image = env["DATAPIPE_IMAGE_EXTRACT"] if component == "extract" else env["DATAPIPE_IMAGE_TRANSFORM"]
        spec = pod["spec"]
        (container,) = spec["containers"]
        assert pod["metadata"]["namespace"] == "pipelines", task_id
        assert spec["serviceAccountName"] == "datapipe-runner", task_id
        assert spec["automountServiceAccountToken"] is False, task_id
        assert spec["restartPolicy"] == "Never"
        assert container["image"] == image, task_id
        assert not image.endswith(":latest") and ":" in image.rsplit("/", 1)[-1]
        res = container["resources"]
        assert set(res["requests"]) == {"cpu", "memory"} and set(res["limits"]) == {"cpu", "memory"}, task_id
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["metadata"]["labels"]["app.kubernetes.io/part-of"] == "datapipe"
        assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == component
        # operator behaviour that is not part of the pod object
        assert str(task.on_finish_action.value) == "delete_pod", task_id
        assert task.get_logs is True
        assert task.startup_timeout_seconds == 600
        assert task.retries == 3 and task.retry_exponential_backoff == 2.0


def test_credentials_come_only_from_secret_references(rendered: dict[str, Any]) -> None:
    for task_id, (_, pod) in rendered.items():
        (container,) = pod["spec"]["containers"]
        assert "envFrom" not in container or not container["envFrom"], task_id
        refs: dict[str, tuple[str, str]] = {}
        for var in container.get("env", []):
            name = var["name"]
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                refs[name] = (ref["name"], ref["key"])
            else:
                assert name in PLAIN_ENV_ALLOWED or name.startswith("AIRFLOW_CTX_"), (task_id, name)
        for key in WAREHOUSE_KEYS:
            assert refs[key] == ("warehouse-writer", key), (task_id, key)
        for key in API_KEYS:
            if task_id.startswith("extract_"):
                assert refs[key] == ("alphavantage-api", key), (task_id, key)
            else:
                assert key not in refs, (task_id, key)  # least privilege: only extract calls the API
        text = json.dumps(pod)
        for value in POISON.values():
            assert value not in text, (task_id, "secret value leaked into the pod spec")


def test_every_pod_verifies_the_server_when_told_to(rendered: dict[str, Any]) -> None:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from datapipe_dags.pods import plain_env
    from datapipe_dags.steps import load_steps
    from kubernetes.client import ApiClient

    def tls_env(pod: dict[str, Any]) -> dict[str, str]:
        (container,) = pod["spec"]["containers"]
        return {v["name"]: v.get("value") for v in container.get("env", []) if v["name"].startswith("PGSSL")}

    # by default (no DATAPIPE_PGSSLROOTCERT): none
    assert all("PGSSLROOTCERT" not in tls_env(pod) for _, pod in rendered.values())
    verified = Settings.from_env(base_env(DATAPIPE_PGSSLMODE="verify-full", DATAPIPE_PGSSLROOTCERT="system"))
    for component in load_steps().components.values():
        env = plain_env(verified, component)
        assert (env["PGSSLMODE"], env["PGSSLROOTCERT"]) == ("verify-full", "system"), component
        assert "PGSSLROOTCERT" not in plain_env(verified, component, pod=False)  # local runs inherit libpq's
    dag = build_market_data_daily(verified)
    task = next(t for t in dag.tasks if isinstance(t, KubernetesPodOperator) and t.task_id.startswith("dbt."))
    context = fake_context(dag, task)
    task.build_kube_args(context, task.add_cmd_flags())
    pod = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context, dry_run=True))
    assert tls_env(pod) == {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": "system"}


@pytest.mark.parametrize("params, expected", [({}, "False"), ({"full_refresh": True}, "True")])
def test_a_run_triggered_with_full_refresh_rebuilds_every_dbt_model(params: dict[str, Any], expected: str) -> None:
    """After `extract accept-gap` (docs/extract.md) the operator triggers {"full_refresh": true}: every dbt
    pod gets DBT_FULL_REFRESH, which `dbt run`/`dbt build` read as --full-refresh."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    dag = build_market_data_daily(Settings.from_env(base_env()))
    assert dag.params["full_refresh"] is False
    dbt_tasks = [t for t in dag.tasks if isinstance(t, KubernetesPodOperator) and t.task_id.startswith("dbt.")]
    for task in (t for t in dbt_tasks if t.task_id.endswith(".run")):
        context = {**fake_context(dag, task), "params": {**dag.params, **params}}
        task.render_template_fields(context)
        task.build_kube_args(context, task.add_cmd_flags())
        (container,) = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context, dry_run=True))[
            "spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DBT_FULL_REFRESH"] == expected, task.task_id


def test_every_pod_of_a_run_gets_the_run_id() -> None:
    """dbt's on-run-end hook records each model's and test's result under DATAPIPE_RUN_ID, and publish
    checks that run's results (issue 14): every pod, Cosmos' and ours, gets the Airflow run id."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    dag = build_market_data_daily(Settings.from_env(base_env()))
    tasks = [t for t in dag.tasks if isinstance(t, KubernetesPodOperator)]
    expected = {"dbt.dim_company.run", "dbt.dim_company.test", "quality_gate", "publish_marts"}
    assert expected <= {t.task_id for t in tasks}
    for task in tasks:
        context = fake_context(dag, task)
        task.render_template_fields(context)
        if hasattr(task, "build_kube_args"):
            task.build_kube_args(context, task.add_cmd_flags())
        (container,) = ApiClient().sanitize_for_serialization(task.build_pod_request_obj(context, dry_run=True))[
            "spec"]["containers"]
        env = [(e["name"], e.get("value")) for e in container["env"] if e["name"] == "DATAPIPE_RUN_ID"]
        assert env == [("DATAPIPE_RUN_ID", context["run_id"])], task.task_id


def test_step_pods_run_the_steps_toml_command(rendered: dict[str, Any]) -> None:
    from datapipe_dags.steps import load_steps

    steps = load_steps()
    for name in ("extract_prices", "extract_companies", "dbt_source_freshness", "quality_gate", "publish_marts",
                 "grant_reader"):
        (container,) = rendered[name][1]["spec"]["containers"]
        assert [*container["command"], *container.get("args", [])] == list(steps[name].command)


def test_the_producer_pod_runs_one_dbt_build_with_the_configured_threads(rendered: dict[str, Any]) -> None:
    task, pod = rendered["dbt.dbt_producer_watcher"]
    (container,) = pod["spec"]["containers"]
    assert container["command"] == ["dbt"]
    # the whole project but the live quotes (market_quotes_intraday's): the same scope as `make pipeline`'s
    # dbt build; JSON logs for Cosmos
    assert container["args"] == ["build", "--exclude", "tag:quotes", "--log-format", "json",
                                 "--project-dir", "/opt/datapipe/dbt"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DBT_THREADS"] == "2" and env["DBT_PROFILES_DIR"] == "."
    # Cosmos reads the node results from the pod's log
    assert task.get_logs is True and task.log_events_on_failure is True
    threads = build_market_data_daily(Settings.from_env({**base_env(), "DATAPIPE_DBT_THREADS": "6"}))
    assert {e.name: e.value for e in threads.get_task("dbt.dbt_producer_watcher").env_vars}["DBT_THREADS"] == "6"


def test_retry_pods_run_the_dbt_command_for_their_node(rendered: dict[str, Any], manifest: dict[str, Any]) -> None:
    """A model or test task starts a pod only when retried or cleared: then it runs dbt for its node."""
    # the daily build's models (the live quotes', tag `quotes`, are market_quotes_intraday's)
    models = {n["name"]: n for n in manifest["nodes"].values()
              if n["resource_type"] == "model" and "quotes" not in n["tags"]}
    seen = {"run": 0, "test": 0}
    for task_id, (_, pod) in rendered.items():
        if not task_id.startswith("dbt.") or task_id == "dbt.dbt_producer_watcher":
            continue
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["dbt"], task_id
        args = container["args"]
        assert args[-2:] == ["--project-dir", "/opt/datapipe/dbt"], task_id
        select = args[args.index("--select") + 1]
        assert not task_id.endswith(("_source", ".source")) and not select.startswith("source:"), task_id
        verb = "test" if task_id.endswith(".test") else "run"
        assert args[0] == verb, task_id
        name = task_id.removeprefix("dbt.").removesuffix(".run").removesuffix(".test").removesuffix("_run")
        # run selects the model by fqn; test selects the model's tests by its name
        assert select == ("fqn:" + ".".join(models[name]["fqn"]) if verb == "run" else name), task_id
        seen[verb] += 1
        # dbt finds its credentials through profiles.yml's env_var() in the image's project dir
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DBT_PROFILES_DIR"] == "."
    assert seen["run"] == len(models) and seen["test"] >= 4


# -- the pods the deployed DAG submits: settings from the chart's own DAG ConfigMap ---------------------
CHART_RELEASES = {
    "defaults": {},
    "cloud-example": "k8s/values-cloud.example.yaml",
}


def chart_configmap(values: dict[str, Any] | str, workdir: Path) -> dict[str, str]:
    """`data` of the DAG ConfigMap `helm template` renders for these values (chart suite's renderer)."""
    sys.path.insert(0, str(ROOT / "tests" / "chart"))
    from chart_helpers import Renderer, ensure_helm, find

    if isinstance(values, str):
        values = yaml.safe_load((ROOT / values).read_text())
    objects = Renderer(ensure_helm(), workdir).template(values)
    cm = find(objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None
    return dict(cm["data"])


@pytest.fixture(scope="module")
def chart_pods(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, tuple[Any, dict[str, Any]]]]:
    """release -> task_id -> (operator, pod): the DAG as the datapipe-airflow image parses it in the
    cluster (the ConfigMap's environment plus the image's own DATAPIPE_DBT_* variables)."""
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import ApiClient

    api = ApiClient()
    out: dict[str, dict[str, tuple[Any, dict[str, Any]]]] = {}
    for release, values in CHART_RELEASES.items():
        env = chart_configmap(values, tmp_path_factory.mktemp(f"helm-{release}"))
        env |= {"DATAPIPE_DBT_MANIFEST": str(MANIFEST), "DATAPIPE_DBT_PROJECT_DIR": "."}
        dag = build_market_data_daily(Settings.from_env(env))
        pods = {}
        for task in dag.tasks:
            if not isinstance(task, KubernetesPodOperator):
                continue
            context = fake_context(dag, task)
            if hasattr(task, "build_kube_args"):
                task.build_kube_args(context, task.add_cmd_flags())
            pod = task.build_pod_request_obj(context, dry_run=True)
            pods[task.task_id] = (task, api.sanitize_for_serialization(pod))
        out[release] = pods
    return out


def dockerfile_user(component: str) -> int:
    text = (ROOT / "images" / component / "Dockerfile").read_text()
    return int(re.findall(r"^USER\s+(\d+)", text, re.M)[-1])


def test_every_dag_pod_passes_restricted_with_a_read_only_root_filesystem(chart_pods: dict[str, Any]) -> None:
    from pod_security import read_only_violations, violations

    problems = []
    for release, pods in chart_pods.items():
        assert sum(1 for t in pods if t.startswith("dbt.")) >= 10 and "extract_prices" in pods
        for task_id, (_, pod) in pods.items():
            problems += [f"{release}: {task_id}: {v}" for v in violations(pod["spec"], "restricted")]
            problems += [f"{release}: {task_id}: {v}" for v in read_only_violations(pod["spec"])]
    assert not problems, "\n".join(problems[:40])


def test_dag_pods_run_as_the_image_user_with_scratch_dirs_where_they_write(chart_pods: dict[str, Any]) -> None:
    from datapipe_dags.pods import WRITABLE_DIRS

    workdir = re.findall(r"^WORKDIR\s+(\S+)", (ROOT / "images" / "transform" / "Dockerfile").read_text(), re.M)[-1]
    # dbt writes target/ and logs/ next to the project (the image's WORKDIR, DBT_PROJECT_DIR=.)
    assert {f"{workdir}/target", f"{workdir}/logs", "/tmp"} <= set(WRITABLE_DIRS["transform"])
    for release, pods in chart_pods.items():
        for task_id, (_, pod) in pods.items():
            component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
            spec = pod["spec"]
            uid = dockerfile_user(component)
            assert spec["securityContext"]["runAsUser"] == uid and spec["securityContext"]["runAsNonRoot"] is True
            (container,) = spec["containers"]
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert set(mounts) == set(WRITABLE_DIRS[component]), (release, task_id)
            empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
            assert set(mounts.values()) <= empty_dirs, (release, task_id)


def test_dag_pods_use_the_chart_account_and_images(chart_pods: dict[str, Any], tmp_path: Path) -> None:
    """The pods run as the chart's pipeline ServiceAccount (which carries the image pull secrets) in
    the release namespace, with the images the chart names."""
    cloud = chart_configmap(CHART_RELEASES["cloud-example"], tmp_path)
    for task_id, (_, pod) in chart_pods["cloud-example"].items():
        assert pod["spec"]["serviceAccountName"] == cloud["DATAPIPE_SERVICE_ACCOUNT"] == "datapipe-pipeline"
        assert pod["metadata"]["namespace"] == cloud["DATAPIPE_NAMESPACE"]
        (container,) = pod["spec"]["containers"]
        assert container["image"] in (cloud["DATAPIPE_IMAGE_EXTRACT"], cloud["DATAPIPE_IMAGE_TRANSFORM"]), task_id
        assert container["image"].startswith("ghcr.io/acme/")


def test_the_quotes_extract_pod_gets_the_charts_intraday_retention(tmp_path: Path) -> None:
    """pipeline.quotes.intradayRetentionDays -> the DAG ConfigMap -> datapipe_dags.config -> the quotes
    DAG's extract pod as EXTRACT_INTRADAY_RETENTION_DAYS (extract's own setting, docs/extract.md)."""
    from datapipe_dags.quotes import build_market_quotes_intraday

    def retention(values: dict[str, Any]) -> str | None:
        env = chart_configmap(values, tmp_path / str(len(list(tmp_path.iterdir()))))
        dag = build_market_quotes_intraday(Settings.from_env({**env, "DATAPIPE_DBT_MANIFEST": str(MANIFEST)}))
        task = dag.get_task("extract_quotes")
        env_vars = {e.name: e.value for e in task.env_vars}
        return env_vars.get("EXTRACT_INTRADAY_RETENTION_DAYS")

    assert retention({"pipeline": {"quotes": {"apiTier": "premium"}}}) == "7"
    assert retention({"pipeline": {"quotes": {"apiTier": "premium", "intradayRetentionDays": 30}}}) == "30"
