"""Metrics on by default: the Airflow chart's StatsD exporter, the NetworkPolicy that admits exactly
the scrape, and the health DAG's read-only API user.

The official chart cannot be rendered here: what it makes of its values (the exporter's pod, Airflow's
[metrics] settings) comes from airflow_model.py, which names the upstream templates. Our own objects
(the NetworkPolicies, the Secret) are checked as rendered.
"""

from __future__ import annotations

import json

import airflow_model
import pytest
from chart_helpers import (
    Endpoint,
    Render,
    Renderer,
    find,
    pod_labels,
    secret_data,
    traffic_allowed,
    workloads,
)
from pod_security import read_only_violations, violations

RELEASE = "datapipe"
PROMETHEUS = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/instance": "kps"})
SCHEDULER = Endpoint(RELEASE, {"tier": "airflow", "component": "scheduler", "release": RELEASE})
API_SERVER = Endpoint(RELEASE, {"tier": "airflow", "component": "api-server", "release": RELEASE})
K8S_WORKER = Endpoint(RELEASE, {"tier": "airflow", "component": "worker", "release": RELEASE})
TASK_POD = Endpoint(RELEASE, {"kubernetes_pod_operator": "True", "dag_id": "market_data_daily"})


@pytest.fixture(scope="module")
def defaults(renderer: Renderer) -> Render:
    return renderer.render()


def exporter(render: Render) -> Endpoint:
    assert render.airflow_values is not None
    pod = airflow_model.statsd_pod(render.airflow_values, RELEASE)
    assert pod is not None, "the StatsD exporter is off"
    return Endpoint(RELEASE, pod["labels"])


def our_pod(render: Render, component: str) -> Endpoint:
    obj = next(o for o in workloads(render.objects) if pod_labels(o).get("app.kubernetes.io/component") == component)
    return Endpoint(RELEASE, pod_labels(obj))


def test_the_exporter_is_on_and_airflow_sends_to_it(defaults: Render) -> None:
    values = defaults.airflow_values
    assert values is not None
    assert values["statsd"]["enabled"] is True
    metrics = airflow_model.metrics_config(values, RELEASE)
    assert metrics["statsd_on"] == "True"
    assert metrics["statsd_port"] == values["ports"]["statsdIngest"] == 9125
    assert metrics["statsd_prefix"] == "airflow"  # the prefix every mapping matches
    # [metrics] statsd_host names the exporter's Service as the chart names it (both from airflow.fullname)
    assert metrics["statsd_host"] == f"{airflow_model.fullname(values, RELEASE)}-statsd"
    pod = airflow_model.statsd_pod(values, RELEASE)
    assert pod is not None
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "quay.io/prometheus/statsd-exporter:v0.28.0"  # pinned by us, not the chart
    assert {(p["name"], p.get("protocol", "TCP"), p["containerPort"]) for p in container["ports"]} == {
        ("statsd-ingest", "UDP", 9125), ("statsd-scrape", "TCP", 9102)}
    assert violations(pod["spec"], "restricted") == [] and read_only_violations(pod["spec"]) == []
    assert pod["spec"]["automountServiceAccountToken"] is False
    for part in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][part]), part


def test_the_policy_admits_the_scrape_and_nothing_more(defaults: Render, renderer: Renderer) -> None:
    for render in (defaults, renderer.render({"airflow": {"executor": "KubernetesExecutor"}})):
        objects, statsd = render.objects, exporter(render)
        # the scrape: Prometheus -> the exporter, TCP 9102
        assert traffic_allowed(objects, PROMETHEUS, statsd, 9102)
        # nothing else from Prometheus, to the exporter or anyone
        assert not traffic_allowed(objects, PROMETHEUS, statsd, 9125, "UDP")
        assert not traffic_allowed(objects, PROMETHEUS, statsd, 9125)
        for target, port in ((SCHEDULER, 8793), (API_SERVER, 8080), (our_pod(render, "warehouse"), 5432),
                             (our_pod(render, "dashboard"), 8501)):
            assert not traffic_allowed(objects, PROMETHEUS, target, port), target
        # only Prometheus: not another pod of its namespace, nor a pod with its label elsewhere
        for other in (Endpoint("monitoring", {"app.kubernetes.io/name": "grafana"}),
                      Endpoint("default", dict(PROMETHEUS.labels)), Endpoint(RELEASE, dict(PROMETHEUS.labels)),
                      Endpoint(None, {}, ip="203.0.113.7")):
            assert not traffic_allowed(objects, other, statsd, 9102), other
        # Airflow's processes send their metrics (the scheduler, KubernetesExecutor workers), task pods do not
        for sender in (SCHEDULER, API_SERVER, K8S_WORKER):
            assert traffic_allowed(objects, sender, statsd, 9125, "UDP"), sender
        assert not traffic_allowed(objects, TASK_POD, statsd, 9125, "UDP")
        # the exporter sends nothing (DNS aside, which every pod of the namespace may query)
        for target, port in ((our_pod(render, "warehouse"), 5432), (API_SERVER, 8080), (SCHEDULER, 8793)):
            assert not traffic_allowed(objects, statsd, target, port), target
        assert not traffic_allowed(objects, statsd, Endpoint(None, {}, ip="203.0.113.7"), 443)


def test_the_policy_check_can_fail(defaults: Render) -> None:
    """The evaluator is not an allow-everything: without our metrics policy the scrape is refused
    (default deny), without any policy it is allowed."""
    statsd = exporter(defaults)
    without = [o for o in defaults.objects if o["metadata"]["name"] != "datapipe-airflow-metrics"]
    assert len(without) == len(defaults.objects) - 1
    assert not traffic_allowed(without, PROMETHEUS, statsd, 9102)
    assert traffic_allowed([o for o in defaults.objects if o["kind"] != "NetworkPolicy"], PROMETHEUS, statsd, 9102)


def test_the_scrapers_are_configurable_and_can_be_none(renderer: Renderer) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    render = renderer.render({"metrics": {"scrapeFrom": [peer]}})
    statsd = exporter(render)
    assert traffic_allowed(render.objects, Endpoint("observability", {"app": "vmagent"}), statsd, 9102)
    assert not traffic_allowed(render.objects, PROMETHEUS, statsd, 9102)
    closed = renderer.render({"metrics": {"scrapeFrom": []}})
    assert not traffic_allowed(closed.objects, PROMETHEUS, exporter(closed), 9102)
    assert traffic_allowed(closed.objects, SCHEDULER, exporter(closed), 9125, "UDP")


def test_metrics_can_be_turned_off(renderer: Renderer) -> None:
    render = renderer.render({"airflow": {"statsd": {"enabled": False}}})
    assert render.airflow_values is not None
    assert airflow_model.statsd_pod(render.airflow_values, RELEASE) is None
    assert airflow_model.metrics_config(render.airflow_values, RELEASE)["statsd_on"] == "False"
    assert find(render.objects, "NetworkPolicy", "datapipe-airflow-metrics") is None


def test_the_mappings_name_what_the_alert_rules_use(defaults: Render) -> None:
    """Every series docs/kubernetes.md alerts on is produced by our mappings (test_oncall.py feeds
    them what Airflow 3.3 really sends)."""
    assert defaults.airflow_values is not None
    mappings = airflow_model.statsd_mappings(defaults.airflow_values)
    assert mappings is not None
    names = {m["name"] for m in mappings}
    assert {"airflow_scheduler_heartbeat", "airflow_triggerer_heartbeat", "airflow_dag_processing_import_errors",
            "airflow_ti_finish", "airflow_dagrun_duration", "airflow_dagrun_failed"} <= names
    for m in mappings:
        assert m["match"].startswith("airflow."), m
        stars = m["match"].count("*")
        assert sorted((m.get("labels") or {}).values()) == sorted(f"${i}" for i in range(1, stars + 1)), m


# -- the health DAG's API user (docs/airflow.md, import errors) ----------------------------------------
def test_the_health_dag_reads_the_api_as_a_viewer(defaults: Render) -> None:
    values = defaults.airflow_values
    assert values is not None
    users = dict(u.split(":") for u in values["config"]["core"]["simple_auth_manager_users"].split(","))
    assert users == {"admin": "admin", "datapipe-health": "viewer"}
    secret = secret_data(find(defaults.objects, "Secret", "datapipe-airflow-admin") or {})
    passwords = json.loads(secret["passwords.json"])
    conn = json.loads(secret["AIRFLOW_CONN_AIRFLOW_API"])
    # no host: the health DAG asks the API server its workers use ([core] execution_api_server_url)
    assert conn == {"conn_type": "http", "login": "datapipe-health", "password": passwords["datapipe-health"]}
    assert len(passwords["datapipe-health"]) >= 24 and passwords["datapipe-health"] != passwords["admin"]
    # every Airflow container gets the connection from the Secret; the api-server mounts the passwords only
    assert "name: AIRFLOW_CONN_AIRFLOW_API" in values["extraEnv"]
    assert "key: AIRFLOW_CONN_AIRFLOW_API" in values["extraEnv"]
    (volume,) = values["apiServer"]["extraVolumes"]
    assert volume["secret"]["items"] == [{"key": "passwords.json", "path": "passwords.json"}]


def test_an_upgrade_keeps_the_admin_password_and_adds_the_health_user(renderer: Renderer) -> None:
    import base64

    old = {"datapipe-airflow-admin": {"data": {
        "passwords.json": base64.b64encode(json.dumps({"admin": "kept-admin-password"}).encode()).decode()}}}
    stub = ('{{- define "datapipe.lookup" -}}{{- $live := fromYaml `' + json.dumps(old) + '` -}}'
            '{{- toYaml (get $live (index . 3) | default dict) -}}{{- end -}}')
    render = renderer.render(chart=renderer.chart_copy(lookup_stub=stub))
    secret = secret_data(find(render.objects, "Secret", "datapipe-airflow-admin") or {})
    passwords = json.loads(secret["passwords.json"])
    assert passwords["admin"] == "kept-admin-password"
    assert json.loads(secret["AIRFLOW_CONN_AIRFLOW_API"])["password"] == passwords["datapipe-health"]
