"""`helm lint` and `helm template` of every scenario, with strict Kubernetes schema validation."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import kubernetes_validate
import pytest
import yaml
from chart_helpers import (
    CHART,
    NAMESPACE,
    SCENARIOS,
    Renderer,
    find,
    pod_spec,
    scenario_values,
    secret_data,
)

KUBE_VERSIONS = ["1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"]

# kubernetes-validate re-reads and parses its (large) schema files on every call; the files never
# change during a run, so memoise the loader. Validation itself is unchanged.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(kubernetes_validate.utils.schema_contents)


@pytest.mark.parametrize("airflow", [True, False], ids=["airflow-on", "airflow-off"])
def test_helm_lint_strict(renderer: Renderer, airflow: bool) -> None:
    # helm lint renders with release name "release-name"; the Airflow metadata Secret follows it.
    values = {"airflow": {"enabled": airflow, "data": {"metadataSecretName": "release-name-airflow-metadata"}}}
    proc = renderer.run(["lint", "--strict", "--namespace", NAMESPACE], values=values, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_every_scenario_renders_objects(rendered: dict[str, list[dict[str, Any]]]) -> None:
    for key, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert {"ConfigMap", "Deployment", "NetworkPolicy", "Service", "ServiceAccount"} <= kinds, key


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_passes_strict_schema_validation(rendered: dict[str, list[dict[str, Any]]], version: str) -> None:
    errors = []
    seen: set[str] = set()
    for key, objects in rendered.items():
        for obj in objects:
            fingerprint = json.dumps(obj, sort_keys=True)
            if fingerprint in seen:  # identical objects across scenarios are validated once
                continue
            seen.add(fingerprint)
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{key}: {obj['kind']}/{obj['metadata']['name']}: {exc.message} at {list(exc.path)}")
    assert not errors, "\n".join(errors)


def test_strict_validation_catches_an_unknown_field(rendered: dict[str, list[dict[str, Any]]]) -> None:
    deployment = copy.deepcopy(find(rendered["defaults/airflow-on"], "Deployment", "datapipe-dashboard"))
    assert deployment is not None
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.33.0", strict=True)


def test_defaults_deploy_the_internal_warehouse_and_the_sandbox(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["defaults/airflow-on"]
    sts = find(objects, "StatefulSet", "datapipe-warehouse")
    assert sts is not None
    image = sts["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.startswith("postgres:") and image != "postgres:latest"
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert find(objects, "Deployment", "datapipe-sandbox") is not None
    api = secret_data(find(objects, "Secret", "datapipe-api") or {})
    assert api["ALPHAVANTAGE_BASE_URL"] == "http://datapipe-sandbox.datapipe.svc:8765/query"
    pipeline = secret_data(find(objects, "Secret", "datapipe-pipeline-env") or {})
    assert pipeline["PGHOST"] == "datapipe-warehouse.datapipe.svc"
    assert pipeline["PGUSER"] == "pipeline" and pipeline["PGSSLMODE"] == "disable"
    assert len(pipeline["PGPASSWORD"]) >= 32
    dashboard = secret_data(find(objects, "Secret", "datapipe-dashboard-env") or {})
    assert dashboard["PGUSER"] == "dashboard" and dashboard["PGPASSWORD"] != pipeline["PGPASSWORD"]
    metadata = secret_data(find(objects, "Secret", "datapipe-airflow-metadata") or {})
    assert metadata["connection"] == (
        f"postgresql://airflow:{metadata['password']}@datapipe-warehouse.datapipe.svc:5432/airflow?sslmode=disable"
    )


def test_dag_configmap_carries_the_contract_names(rendered: dict[str, list[dict[str, Any]]]) -> None:
    cm = find(rendered["defaults/airflow-on"], "ConfigMap", "datapipe-dag-config")
    assert cm is not None
    data = cm["data"]
    assert data["DATAPIPE_NAMESPACE"] == NAMESPACE
    assert data["DATAPIPE_IMAGE_EXTRACT"] == "datapipe-extract:0.1.0"
    assert data["DATAPIPE_IMAGE_TRANSFORM"] == "datapipe-transform:0.1.0"
    assert data["DATAPIPE_SERVICE_ACCOUNT"] == "datapipe-pipeline"
    assert data["DATAPIPE_WAREHOUSE_SECRET"] == "datapipe-pipeline-env"
    assert data["DATAPIPE_API_SECRET"] == "datapipe-api"
    assert data["DATAPIPE_SYMBOLS"].split(",")[0] == "AAPL"
    assert data["DATAPIPE_PGSSLMODE"] == "disable"
    assert "DATAPIPE_PGSSLROOTCERT" not in data
    assert "DATAPIPE_POD_RESOURCES" not in data
    names = {(o["kind"], o["metadata"]["name"]) for o in rendered["defaults/airflow-on"]}
    assert ("ServiceAccount", data["DATAPIPE_SERVICE_ACCOUNT"]) in names
    assert ("Secret", data["DATAPIPE_WAREHOUSE_SECRET"]) in names
    assert ("Secret", data["DATAPIPE_API_SECRET"]) in names


def test_external_database_runs_no_warehouse_and_uses_the_managed_secrets(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objects = rendered["external-db/airflow-on"]
    assert not [o for o in objects if o["kind"] == "StatefulSet"]
    assert find(objects, "Service", "datapipe-warehouse") is None
    assert not [o for o in objects if o["kind"] == "Secret" and "warehouse" in o["metadata"]["name"]]
    assert find(objects, "Secret", "datapipe-airflow-metadata") is None
    dashboard = find(objects, "Deployment", "datapipe-dashboard")
    assert dashboard is not None
    env_from = dashboard["spec"]["template"]["spec"]["containers"][0]["envFrom"]
    assert env_from == [{"secretRef": {"name": "warehouse-dashboard-managed"}}]
    cm = find(objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and cm["data"]["DATAPIPE_WAREHOUSE_SECRET"] == "warehouse-pipeline-managed"
    assert cm["data"]["DATAPIPE_PGSSLMODE"] == "verify-full"
    # the task pods verify the server too: the DAG gives them PGSSLROOTCERT
    assert cm["data"]["DATAPIPE_PGSSLROOTCERT"] == "system"
    egress_peers = [
        peer
        for o in objects
        if o["kind"] == "NetworkPolicy"
        for rule in o["spec"].get("egress") or []
        for peer in rule.get("to") or []
    ]
    assert {"ipBlock": {"cidr": "10.20.0.0/16"}} in egress_peers


def test_existing_secrets_are_referenced_and_not_generated(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["existing-secrets/airflow-on"]
    generated = {o["metadata"]["name"] for o in objects if o["kind"] == "Secret"}
    assert generated == {
        "datapipe-airflow-metadata",
        "datapipe-airflow-admin",
        "datapipe-airflow-jwt",
        "datapipe-airflow-api-secret-key",
    }
    sts = find(objects, "StatefulSet", "datapipe-warehouse")
    assert sts is not None
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]
        if "valueFrom" in e
    }
    assert refs["POSTGRES_PASSWORD"] == "warehouse-admin-managed"
    assert refs["PIPELINE_PASSWORD"] == "warehouse-pipeline-managed"
    assert refs["DASHBOARD_PASSWORD"] == "warehouse-dashboard-managed"
    cm = find(objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and cm["data"]["DATAPIPE_API_SECRET"] == "alphavantage-managed"
    # the backup role's password: set by the init Job, used by the CronJob, both from the managed Secret
    init = next(o for o in objects if o["kind"] == "Job"
                and o["metadata"]["name"].startswith("datapipe-warehouse-init"))
    init_refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
                 for e in pod_spec(init)["containers"][0]["env"] if "valueFrom" in e}  # type: ignore[index]
    assert init_refs["BACKUP_PASSWORD"] == "warehouse-backup-managed"
    cronjob = find(objects, "CronJob", "datapipe-backup")
    assert cronjob is not None
    backup = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert backup["envFrom"] == [{"secretRef": {"name": "warehouse-backup-managed"}}]
    # an existing API secret means a real key: no sandbox
    assert find(objects, "Deployment", "datapipe-sandbox") is None


def test_alerts_become_airflow_connections_in_a_secret(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["alerts/airflow-on"]
    data = secret_data(find(objects, "Secret", "datapipe-alerts") or {})
    assert set(data) == {"AIRFLOW_CONN_SMTP_DEFAULT", "AIRFLOW_CONN_SLACK_ALERTS"}
    smtp = json.loads(data["AIRFLOW_CONN_SMTP_DEFAULT"])
    assert smtp["conn_type"] == "smtp" and smtp["host"] == "smtp.example.com" and smtp["port"] == 587
    slack = json.loads(data["AIRFLOW_CONN_SLACK_ALERTS"])
    assert slack == {"conn_type": "slackwebhook", "password": SCENARIOS["alerts"]["alerts"]["slack"]["webhookUrl"]}
    cm = find(objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and cm["data"]["DATAPIPE_ALERT_EMAIL_TO"] == "oncall@example.com"
    assert cm["data"]["DATAPIPE_SLACK_CONN_ID"] == "slack_alerts"
    assert cm["data"]["DATAPIPE_SMTP_CONN_ID"] == "smtp_default"
    assert find(rendered["defaults/airflow-on"], "Secret", "datapipe-alerts") is None


def test_api_key_turns_the_sandbox_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["api-key/airflow-on"]
    assert find(objects, "Deployment", "datapipe-sandbox") is None
    assert find(objects, "Service", "datapipe-sandbox") is None
    api = secret_data(find(objects, "Secret", "datapipe-api") or {})
    assert api == {
        "ALPHAVANTAGE_API_KEY": "AVKEY0123456789SECRET",
        "ALPHAVANTAGE_BASE_URL": "https://www.alphavantage.co/query",
    }
    tasks = find(objects, "NetworkPolicy", "datapipe-pipeline-tasks")
    assert tasks is not None
    assert any(p["port"] == 443 for rule in tasks["spec"]["egress"] for p in rule["ports"])


def test_cloud_registry_prefixes_every_image(rendered: dict[str, list[dict[str, Any]]]) -> None:
    objects = rendered["cloud-registry/airflow-on"]
    cm = find(objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and cm["data"]["DATAPIPE_IMAGE_EXTRACT"] == "ghcr.io/acme/datapipe-extract:1a2b3c4d"
    dashboard = find(objects, "Deployment", "datapipe-dashboard")
    assert dashboard is not None
    spec = pod_spec(dashboard) or {}
    assert spec["containers"][0]["image"] == "ghcr.io/acme/datapipe-dashboard:1a2b3c4d"
    assert spec["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    sts = find(objects, "StatefulSet", "datapipe-warehouse")
    assert sts is not None and sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "premium-rwo"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"images": {"tag": "latest"}}, "/images/tag"),
        ({"warehouse": {"internal": {"image": {"tag": "latest"}}}}, "/warehouse/internal/image/tag"),
        ({"warehouse": {"mode": "external"}}, "warehouse.mode=external needs warehouse.existingSecret.pipeline"),
        ({"api": {"key": "k", "existingSecret": "s"}}, "either api.key or api.existingSecret"),
        ({"alerts": {"smtp": {"enabled": True}}}, "alerts.smtp.enabled needs alerts.smtp.host"),
        ({"alerts": {"slack": {"enabled": True}}}, "alerts.slack.enabled needs alerts.slack.webhookUrl"),
        ({"images": {"tag": "abc123"}}, "airflow.defaultAirflowTag (0.1.0) must equal images.tag (abc123)"),
        (
            {"images": {"tag": "abc123"},
             "airflow": {"defaultAirflowTag": "abc123", "images": {"airflow": {"tag": "x"}}}},
            "airflow.images.airflow.tag (x) must equal images.tag (abc123)",
        ),
        ({"images": {"registry": "ghcr.io/acme"}}, "airflow.defaultAirflowRepository (datapipe-airflow) must start"),
        ({"images": {"pullSecrets": [{"name": "pull"}]}}, "airflow.registry.secretName must name one of"),
        ({"airflow": {"registry": {"secretName": "pull"}}}, "airflow.registry.secretName (pull) must also be in"),
        ({"airflow": {"allowPodLaunching": True}}, "airflow.allowPodLaunching must stay false"),
        ({"airflow": {"jwtSecretName": ""}}, "airflow.jwtSecretName must be set"),
        (
            {"airflow": {"executor": "KubernetesExecutor", "workers": {"serviceAccount": {"name": ""}}}},
            "airflow.workers.serviceAccount.name must be set with KubernetesExecutor",
        ),
        ({"warehouse": {"mode": "elsewhere"}}, "at '/warehouse/mode': value must be one of"),
        ({"warehouse": {"databse": "typo"}}, "databse"),
        ({"dashboard": {"liveRefreshSeconds": 0}}, "/dashboard/liveRefreshSeconds"),
        ({"pipeline": {"quotes": {"intradayRetentionDays": -1}}}, "/pipeline/quotes/intradayRetentionDays"),
    ],
)
def test_contradictory_or_unknown_values_are_refused(renderer: Renderer, values: dict[str, Any], message: str) -> None:
    assert message in renderer.template_error(values)


def test_other_release_names_must_name_the_airflow_metadata_secret(renderer: Renderer) -> None:
    err = renderer.template_error({}, release="prod")
    assert 'airflow.data.metadataSecretName must be "prod-airflow-metadata"' in err
    objects = renderer.template({"airflow": {"data": {"metadataSecretName": "prod-airflow-metadata"}}}, release="prod")
    assert find(objects, "Secret", "prod-airflow-metadata") is not None


def test_scenarios_cover_airflow_on_and_off(rendered: dict[str, list[dict[str, Any]]]) -> None:
    on = {o["metadata"]["name"] for o in rendered["defaults/airflow-on"]}
    off = {o["metadata"]["name"] for o in rendered["defaults/airflow-off"]}
    assert on - off == {
        "datapipe-airflow-metadata",
        "datapipe-airflow-admin",
        "datapipe-airflow",
        "datapipe-airflow-jwt",
        "datapipe-airflow-api-secret-key",
        "datapipe-pod-launcher",
        "datapipe-airflow-metrics",
    }
    assert scenario_values("defaults", False) == {"airflow": {"enabled": False}}


def test_the_cloud_values_example_renders_and_validates(renderer: Renderer) -> None:
    values = yaml.safe_load((CHART.parents[1] / "k8s" / "values-cloud.example.yaml").read_text())
    objects = renderer.template(values)
    assert find(objects, "StatefulSet", "datapipe-warehouse") is None
    cm = find(objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and cm["data"]["DATAPIPE_IMAGE_TRANSFORM"] == "ghcr.io/acme/datapipe-transform:0123456789ab"
    for obj in objects:
        kubernetes_validate.validate(obj, "1.33.0", strict=True)


def test_the_external_secret_examples_are_valid_objects() -> None:
    docs = [
        d for d in yaml.safe_load_all((CHART.parents[1] / "k8s" / "external-secrets.example.yaml").read_text()) if d
    ]
    assert {d["metadata"]["name"] for d in docs} >= {"datapipe-warehouse-pipeline", "datapipe-warehouse-dashboard"}
    for doc in docs:
        kubernetes_validate.validate(doc, "1.33.0", strict=True)
        assert all(
            v == "CHANGE-ME" or "CHANGE-ME" in v or k not in ("PGPASSWORD", "ALPHAVANTAGE_API_KEY")
            for k, v in doc["stringData"].items()
        )


def test_notes_print_port_forwards_and_how_to_read_the_passwords(renderer: Renderer) -> None:
    proc = renderer.run(["install", "datapipe", "--namespace", NAMESPACE, "--dry-run=client"])
    notes = proc.stdout[proc.stdout.index("NOTES:") :]
    assert "port-forward service/datapipe-dashboard 8501:8501" in notes
    assert "port-forward service/datapipe-api-server 8080:8080" in notes
    for secret in (
        "datapipe-airflow-admin",
        "datapipe-pipeline-env",
        "datapipe-dashboard-env",
        "datapipe-warehouse-admin",
    ):
        assert f"get secret {secret} -o jsonpath=" in notes
    assert "sandbox API" in notes
    # no generated value is printed, only the commands that read them
    rendered = [
        secret_data(o)
        for o in yaml.safe_load_all(proc.stdout[: proc.stdout.index("NOTES:")])
        if o and o.get("kind") == "Secret"
    ]
    assert rendered and not any(v in notes for data in rendered for k, v in data.items() if "PASSWORD" in k.upper())


def test_helm_test_hook_checks_the_warehouse_and_the_dashboard(rendered: dict[str, list[dict[str, Any]]]) -> None:
    pod = find(rendered["defaults/airflow-on"], "Pod", "datapipe-test")
    assert pod is not None and pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    by_name = {c["name"]: c for c in pod["spec"]["containers"]}
    assert by_name["warehouse"]["envFrom"] == [{"secretRef": {"name": "datapipe-dashboard-env"}}]
    assert "psql" in " ".join(by_name["warehouse"]["command"])
    assert "http://datapipe-dashboard:8501/_stcore/health" in " ".join(by_name["dashboard"]["command"])
    assert pod["spec"]["restartPolicy"] == "Never"


def test_the_dashboard_runs_its_entry_point_on_the_configured_port(renderer: Renderer) -> None:
    """Streamlit's options are set in one place, the image's entry point (cli.py: uploads over 1 MB
    refused by the server, XSRF, headless); the chart passes only the address and its port, and no
    STREAMLIT_* variable that could disagree."""
    objects = renderer.template({"dashboard": {"port": 9000}})
    deployment = find(objects, "Deployment", "datapipe-dashboard")
    assert deployment is not None
    container = pod_spec(deployment)["containers"][0]  # type: ignore[index]
    assert container["command"] == ["datapipe-dashboard"]
    assert container["args"] == ["--address", "0.0.0.0", "--port", "9000"]
    assert container["ports"][0]["containerPort"] == 9000
    assert not [e["name"] for e in container.get("env", []) if e["name"].startswith("STREAMLIT_")]


def test_the_live_quote_settings_are_chart_values(renderer: Renderer) -> None:
    """dashboard.liveRefreshSeconds is the dashboard container's DASHBOARD_LIVE_REFRESH_SECONDS;
    pipeline.quotes.intradayRetentionDays reaches the DAG ConfigMap as DATAPIPE_QUOTES_INTRADAY_RETENTION_DAYS,
    which the quotes DAG gives its extract pod as EXTRACT_INTRADAY_RETENTION_DAYS (tests/dags/test_pods.py).
    The defaults are the components' own (60 s, 7 days)."""

    def settings(values: dict[str, Any]) -> tuple[str | None, str | None]:
        objects = renderer.template(values)
        deployment = find(objects, "Deployment", "datapipe-dashboard")
        cm = find(objects, "ConfigMap", "datapipe-dag-config")
        assert deployment is not None and cm is not None
        env = {e["name"]: e.get("value") for e in pod_spec(deployment)["containers"][0].get("env", [])}  # type: ignore[index]
        return env.get("DASHBOARD_LIVE_REFRESH_SECONDS"), cm["data"].get("DATAPIPE_QUOTES_INTRADAY_RETENTION_DAYS")

    assert settings({}) == ("60", "7")
    assert settings({"dashboard": {"liveRefreshSeconds": 15},
                     "pipeline": {"quotes": {"intradayRetentionDays": 0}}}) == ("15", "0")


@pytest.mark.parametrize("airflow", [True, False], ids=["airflow-on", "airflow-off"])
def test_backups_run_as_the_backup_role_on_the_in_cluster_warehouse(
    rendered: dict[str, list[dict[str, Any]]], airflow: bool
) -> None:
    objects = rendered[f"defaults/airflow-{'on' if airflow else 'off'}"]
    cronjob = find(objects, "CronJob", "datapipe-backup")
    assert cronjob is not None
    container = pod_spec(cronjob)["containers"][0]  # type: ignore[index]
    assert container["envFrom"] == [{"secretRef": {"name": "datapipe-backup-env"}}]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["BACKUP_DATABASES"] == ("warehouse airflow" if airflow else "warehouse")
    assert (env["BACKUP_KEEP"], env["BACKUP_MAX_AGE_DAYS"], env["BACKUP_MIN_DUMP_BYTES"]) == ("7", "30", "4096")
    secret = secret_data(find(objects, "Secret", "datapipe-backup-env") or {})
    assert secret["PGUSER"] == "backup" and secret["PGDATABASE"] == "warehouse" and len(secret["PGPASSWORD"]) >= 32
    init = next(o for o in objects if o["kind"] == "Job"
                and o["metadata"]["name"].startswith("datapipe-warehouse-init"))
    init_env = {e["name"]: e for e in pod_spec(init)["containers"][0]["env"]}  # type: ignore[index]
    assert init_env["BACKUP_USER"]["value"] == "backup"
    assert init_env["BACKUP_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "datapipe-backup-env",
                                                                        "key": "PGPASSWORD"}
    # the warehouse itself does not get them: its pod is not restarted for the backup role
    sts = find(objects, "StatefulSet", "datapipe-warehouse")
    assert sts is not None and not [e for e in pod_spec(sts)["containers"][0]["env"] if e["name"].startswith("BACKUP_")]  # type: ignore[index]


def test_an_external_database_gets_no_backup_objects_and_a_note(renderer: Renderer) -> None:
    objects = renderer.template(scenario_values("external-db", True))
    backup = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if "backup" in o["metadata"]["name"]]
    assert backup == []
    proc = renderer.run(["install", "datapipe", "--namespace", NAMESPACE, "--dry-run=client"],
                        values=scenario_values("external-db", True))
    assert "the chart backs up nothing with an external database" in proc.stdout
