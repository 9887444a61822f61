"""The API server stand-in without a Docker engine: what it answers must be what the Kubernetes
client (and so the operators) can read, and its label selectors must select as an API server does."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from rehearsal_cluster import Cluster, PodRecord, _flag, _readable, _selector_matches, now
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
    return dag_pods({**unit_release.dag_environment(), **IMAGE_ENV}, retries=True)


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


class _XComs:
    """The task instance the producer's log callback pushes each node's result to."""

    def __init__(self) -> None:
        self.pushed: dict[str, Any] = {}
        self.try_number, self.task_id, self.map_index = 1, "dbt.dbt_producer_watcher", -1

    def xcom_push(self, key: str, value: Any) -> None:
        self.pushed[key] = value

    def xcom_pull(self, *args: Any, **kwargs: Any) -> Any:
        return self.pushed.get(kwargs.get("key", ""))


def test_the_producer_reads_each_nodes_result_from_the_pods_log_through_the_stand_in(
        unit_release: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher producer's own pod manager follows the pod's log (timestamps, chunked, as an API
    server streams it) and its callback turns dbt's JSON events into each node's result; the
    container's log is recorded dbt 1.11 output (fixtures/), served by a `docker logs` stand-in."""
    from cosmos.operators._watcher.aggregation import get_tests_status_xcom_key
    from cosmos.operators._watcher.state import get_status_xcom_key
    from datapipe_dags.config import Settings
    from datapipe_dags.pipeline import build_market_data_daily
    from kubernetes import client
    from kubernetes import config as kube_config

    events = (Path(__file__).parent / "fixtures" / "producer-events.jsonl").read_text().splitlines()
    log = tmp_path / "container.log"
    log.write_text("".join(f"2026-12-02T22:31:{n:02d}.000000001Z {line}\n" for n, line in enumerate(events)))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(f'#!/bin/sh\n[ "$1" = logs ] && exec cat "{log}"\nexit 1\n')
    (bin_dir / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{Path('/usr/bin')}:{Path('/bin')}")

    dag = build_market_data_daily(Settings.from_env({**unit_release.dag_environment(), **IMAGE_ENV}))
    producer = dag.get_task("dbt.dbt_producer_watcher")
    pod_obj = dag_pods({**unit_release.dag_environment(), **IMAGE_ENV})["dbt.dbt_producer_watcher"]
    cluster = Cluster(unit_release, [], tmp_path / "cluster", engine=Engine()).start()
    try:
        record = PodRecord(copy.deepcopy(pod_obj), "uid-p", "2026-12-02T22:30:00Z", phase="Succeeded",
                           container_id="c0ffee", started_at="2026-12-02T22:30:01Z", exit_code=0,
                           exit_reason="Completed", finished_at=now())
        # (the client reads a finished container's log only within 120 s of its end, as from a kubelet)
        record.done.set()
        cluster.pods[(record.namespace, record.name)] = record
        producer.__dict__["client"] = client.CoreV1Api(kube_config.new_client_from_config(str(cluster.kubeconfig)))
        ti = _XComs()
        producer._context_holder["context"] = {"ti": ti}
        pod = producer.client.read_namespaced_pod(record.name, record.namespace)
        status = producer.pod_manager.fetch_container_logs(pod, "base", follow=True)
        assert status.running is False
        assert cluster.unhandled == []
    finally:
        cluster.stop()
    model = "model.datapipe.int_tracked_symbols"
    assert ti.pushed[get_status_xcom_key(model)]["status"] == "success"
    assert ti.pushed[get_tests_status_xcom_key(model)] == "pass"  # both of its tests reported


def test_a_failed_pods_diagnosis_reads_dbts_json_events_as_text() -> None:
    error = json.dumps({"data": {}, "info": {"name": "MainEncounteredError", "level": "error", "msg":
                        "Encountered an error:\n[Errno 30] Read-only file system: './target/partial_parse.msgpack'"}})
    trace = json.dumps({"info": {"msg": "Traceback (most recent call last):\n  File \"x.py\"\nOSError: boom\n"}})
    assert _readable(error) == ("Encountered an error: [Errno 30] Read-only file system: "
                                "'./target/partial_parse.msgpack'")
    assert _readable(trace) == "Traceback (most recent call last): OSError: boom"
    assert _readable("OSError: plain text stays") == "OSError: plain text stays"
    assert _readable("{not json") == "{not json"
