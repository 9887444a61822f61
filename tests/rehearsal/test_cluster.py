"""The API server stand-in without a Docker engine: what it answers must be what the Kubernetes
client (and so the operators) can read, and its label selectors must select as an API server does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from rehearsal_cluster import Cluster, PodRecord, _flag, _selector_matches
from rehearsal_pods import Engine
from rehearsal_release import Release
from rehearsaltest import IMAGE_ENV, dag_pods, pod_for


class _Response:
    def __init__(self, body: dict[str, Any]) -> None:
        self.data = json.dumps(body)


def deserialize(body: dict[str, Any], kind: str) -> Any:
    from kubernetes.client import ApiClient

    return ApiClient().deserialize(_Response(body), kind)


@pytest.fixture(scope="module")
def cluster(unit_release: Release, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    # no start(): nothing listens and no container runs; the engine's facts are given
    return Cluster(unit_release, [], tmp_path_factory.mktemp("cluster"), engine=Engine())


@pytest.fixture(scope="module")
def pods(unit_release: Release) -> dict[str, dict[str, Any]]:
    return dag_pods({**unit_release.dag_environment(), **IMAGE_ENV})


@pytest.fixture
def record(pods: dict[str, dict[str, Any]]) -> PodRecord:
    return PodRecord(copy.deepcopy(pod_for(pods, "dbt.dim_company.run")), "uid-1", "2026-12-02T22:30:00Z")


@pytest.mark.parametrize("state", ["pending", "waiting", "running", "succeeded", "failed"])
def test_the_client_reads_every_pod_state_the_stand_in_reports(cluster: Cluster, record: PodRecord,
                                                               state: str) -> None:
    if state == "waiting":
        record.waiting = {"reason": "ErrImagePull", "message": "not on the local engine"}
    elif state != "pending":
        record.waiting, record.container_id, record.started_at = None, "c0ffee", "2026-12-02T22:30:01Z"
        record.phase = "Running"
        if state in ("succeeded", "failed"):
            record.exit_code, record.exit_reason = (0, "Completed") if state == "succeeded" else (2, "Error")
            record.finished_at, record.phase = "2026-12-02T22:30:09Z", state.capitalize()
    pod = deserialize(cluster.pod_json(record), "V1Pod")
    assert pod.metadata.name == record.name and pod.metadata.labels["task_id"] == "dbt.dim_company.run"
    assert pod.spec.containers[0].args[:2] == ["run", "--select"]
    statuses = pod.status.container_statuses
    if state == "pending":
        assert pod.status.phase == "Pending" and statuses is None
    elif state == "waiting":
        assert statuses[0].state.waiting.reason == "ErrImagePull"
    elif state == "running":
        assert pod.status.phase == "Running" and statuses[0].state.running.started_at is not None
    else:
        terminated = statuses[0].state.terminated
        assert (pod.status.phase, terminated.exit_code) == (("Succeeded", 0) if state == "succeeded" else ("Failed", 2))
        assert terminated.finished_at is not None  # the log reader's post-termination window needs it


def test_the_client_reads_the_events_and_the_pod_list(cluster: Cluster, record: PodRecord) -> None:
    cluster._event(record, "Warning", "Rehearsal", "pod x failed")
    events = deserialize({"kind": "EventList", "apiVersion": "v1", "metadata": {}, "items": record.events},
                         "CoreV1EventList")
    assert [(e.type, e.reason) for e in events.items][-1] == ("Warning", "Rehearsal")
    assert events.items[-1].involved_object.name == record.name
    pods = deserialize({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [cluster.pod_json(record)]},
                       "V1PodList")
    assert pods.items[0].metadata.uid == "uid-1"


def test_label_selectors_select_as_an_api_server_does() -> None:
    labels = {"dag_id": "market_data_daily", "task_id": "extract_prices", "kubernetes_pod_operator": "True"}
    # what KubernetesPodOperator asks for when it looks for its pod
    assert _selector_matches("dag_id=market_data_daily,task_id=extract_prices,already_checked!=True,!airflow-worker",
                             labels)
    assert not _selector_matches("task_id=extract_companies", labels)
    assert not _selector_matches("kubernetes_pod_operator!=True", labels)
    assert not _selector_matches("!dag_id", labels)
    assert _selector_matches("dag_id", labels) and _selector_matches("task_id==extract_prices", labels)
    with pytest.raises(ValueError, match="not supported"):
        _selector_matches("tier in (a, b)", labels)


def test_boolean_query_parameters_parse_as_go_does() -> None:
    # the Python client sends follow=True; kubectl sends follow=true
    assert all(_flag({"follow": value}, "follow") for value in ("True", "true", "1"))
    assert not _flag({"follow": "False"}, "follow") and not _flag({}, "follow")


def test_the_kubeconfig_leads_to_the_stand_in(unit_release: Release, tmp_path: Path) -> None:
    cluster = Cluster(unit_release, [], tmp_path, engine=Engine()).start()
    try:
        config = json.loads(cluster.kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == f"http://127.0.0.1:{cluster.port}"
        from kubernetes import client
        from kubernetes import config as kube_config

        api = client.CoreV1Api(kube_config.new_client_from_config(str(cluster.kubeconfig)))
        assert api.list_namespaced_pod("datapipe", label_selector="dag_id=x").items == []
        with pytest.raises(client.ApiException) as missing:
            api.read_namespaced_pod("nope", "datapipe")
        assert missing.value.status == 404
        assert cluster.unhandled == []
    finally:
        cluster.stop()
