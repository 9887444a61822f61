"""The Kubernetes runtime rehearsed on the local Docker engine (`make rehearse`).

One DAG run in the kubernetes runtime, exactly as the scheduler of a release runs it: the DAG built
from the chart's own DAG ConfigMap (`helm template`), every task pod submitted by its operator
(KubernetesPodOperator, Cosmos' dbt operators) to the API server stand-in (rehearsal_cluster),
which runs it from the pod object on the local engine (rehearsal_pods). The images are this
checkout's builds (tests/images/imagebuild.py, shared with `make images-test`). The sandbox API is
a pod of the rendered sandbox Deployment pinned to a fixed date (the latest NYSE session when the
rehearsal starts, so that the quality gate finds the data fresh), and the warehouse is an
embedded PostgreSQL. The same run in the local runtime, for the same date from the same sandbox,
into a warehouse of its own, must publish the same marts. Then the dashboard's pod starts from the
rendered Deployment and its probes pass. Broken pods fail with the pod's name and the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagtest import failure_report, query_metadata
from imagebuild import build_id, docker, ensure_base_image
from rehearsal_cluster import Cluster, PodRecord, running_cluster
from rehearsal_pods import LocalService
from rehearsal_release import Release, render_release
from rehearsaltest import (
    COMPONENT_IMAGES,
    DAGS,
    IMAGE_ENV,
    SYMBOLS,
    airflow_env,
    airflow_run,
    dag_pods,
    kubernetes_runtime_env,
    marts_checksums,
    migrate,
    rehearsal_values,
    wait,
    watcher_keys,
)

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DAG_ID = "market_data_daily"
MARTS = ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
# Columns whose values are the time of a load or a build, not data: two runs minutes apart differ there.
LOAD_TIME_COLUMNS = {
    "dim_company": {"updated_at"},  # the OVERVIEW payload's received_at
}
RUN_TIMEOUT_S = 2400
TASK_TIMEOUT_S = 600
# the broken variants run the task whose pod runs dbt's build: the watcher producer (Cosmos builds its pod)
DBT_TASK = "dbt.dbt_producer_watcher"
PRODUCER = "dbt.dbt_producer_watcher"
YIELD = 10  # the nice value of the work beside the kubernetes-runtime run (its pods run at normal priority)


@dataclass
class Built:
    tag: str
    ids: dict[str, str]


@pytest.fixture(scope="module")
def built() -> Iterator[Built]:
    """This checkout's images (the layers `make images-test` built are reused), tagged by content:
    the tag names exactly these builds, whatever else is built on the shared engine meanwhile."""
    proc = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"no Docker engine answers (DOCKER_HOST): {proc.stderr.strip()} — run `make rehearse`")
    base = ensure_base_image()
    ids = {name: build_id(name, base) for name in COMPONENT_IMAGES}
    tag = "rehearsal-" + hashlib.sha256(" ".join(ids[n] for n in COMPONENT_IMAGES).encode()).hexdigest()[:12]
    for name, image_id in ids.items():
        docker("tag", image_id, f"datapipe-{name}:{tag}")
    yield Built(tag, ids)
    for name in COMPONENT_IMAGES:
        docker("rmi", "--no-prune", f"datapipe-{name}:{tag}", check=False)


@pytest.fixture(scope="module")
def release(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Release:
    return render_release(rehearsal_values(built.tag), tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def as_of() -> dt.date:
    """The sandbox's fixed date: the latest NYSE session completed when the rehearsal starts."""
    from datapipe_common.calendar import nyse

    day: dt.date = nyse().latest_completed_session(dt.datetime.now(dt.UTC))
    return day


def logical_date(day: dt.date) -> str:
    """The scheduled run of `day`: 17:30 New York, in UTC."""
    from zoneinfo import ZoneInfo

    at = dt.datetime.combine(day, dt.time(17, 30), tzinfo=ZoneInfo("America/New_York"))
    return at.astimezone(dt.UTC).isoformat()


def warehouse_service(release: Release, warehouse: Any) -> LocalService:
    return LocalService(f"{release.name}-warehouse", release.namespace, 5432, int(warehouse.env["PGPORT"]),
                        "the local warehouse", {warehouse.env["PGUSER"]: warehouse.env["PGPASSWORD"],
                                                warehouse.reader_env["PGUSER"]: warehouse.reader_env["PGPASSWORD"]})


def start_sandbox(cluster: Cluster, day: dt.date) -> str:
    """The sandbox Deployment's pod, pinned to `day`; its Service now leads to it. Returns its URL."""
    pod = cluster.start_deployment(f"{cluster.release.name}-sandbox", extra_env={"SANDBOX_AS_OF": day.isoformat()})
    print("\n".join(cluster.wait_ready(pod)))
    assert pod.run is not None
    port = next(p.host_port for p in pod.run.probes if p.kind == "readiness")
    cluster.services.append(LocalService(f"{cluster.release.name}-sandbox", cluster.release.namespace, 8765, port,
                                         "the sandbox pod"))
    return f"http://127.0.0.1:{port}/query"


# -- broken pods: the rehearsal fails, naming the pod and the reason -------------------------------------------
# A DAG file that builds the real DAG after a change to the shared pod definition (its environment
# and everything else as in the release).
BROKEN_DAG = '''
"""The Airflow DAG market_data_daily, broken on purpose by tests/rehearsal: {why}"""
import os

from datapipe_dags import pods

{change}
from datapipe_dags.config import Settings
from datapipe_dags.pipeline import build_market_data_daily

dag = build_market_data_daily(Settings.from_env(os.environ), doc_md=__doc__)
'''
NO_TARGET_EMPTYDIR = """pods.WRITABLE_DIRS["transform"] = {
    path: size for path, size in pods.WRITABLE_DIRS["transform"].items() if not path.endswith("/target")}"""
INIT_CONTAINER = """_pod_kwargs = pods.pod_kwargs


def pod_kwargs(settings, component):
    from kubernetes.client import models as k8s

    return {**_pod_kwargs(settings, component),
            "init_containers": [k8s.V1Container(name="wait-for-db", image=settings.image(component.name))]}


pods.pod_kwargs = pod_kwargs
import datapipe_dags.dbt_group, datapipe_dags.pipeline  # noqa: E401
datapipe_dags.dbt_group.pod_kwargs = datapipe_dags.pipeline.pod_kwargs = pod_kwargs"""


@dataclass
class Broken:
    pod: PodRecord | None
    failures: list[str]
    log: str

    @property
    def task_failed(self) -> bool:
        return "new_state=failed" in self.log


BROKEN_CASES = {
    # the transform image's WORKDIR moved one level up (the chart points at that image)
    "workdir": {"values": {"images": {"transform": {"repository": "datapipe-transform-workdir"}}}},
    # readOnlyRootFilesystem as always, but dbt's target/ emptyDir dropped from the pod definition
    "no-target-emptydir": {"dag_change": NO_TARGET_EMPTYDIR},
    # an init container added to every pod
    "init-container": {"dag_change": INIT_CONTAINER},
}


@dataclass
class Rehearsal:
    """Everything one `make rehearse` ran, side by side on two cores: the DAG run in each runtime,
    the dashboard's pod, and one dbt task of each broken variant."""

    cluster: Cluster
    k8s: tuple[int, str]
    local: tuple[int, str]
    k8s_warehouse: Any
    local_warehouse: Any
    dashboard: PodRecord
    dashboard_probes: list[str]
    broken: dict[str, Broken]
    logs: Path


@pytest.fixture(scope="module")
def rehearsal(built: Built, release: Release, as_of: dt.date, warehouse_factory: Callable[[], Any],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    tmp = tmp_path_factory.mktemp("rehearsal")
    k8s_wh, local_wh = warehouse_factory(), warehouse_factory()
    migrate(airflow_env(tmp / "airflow"))  # one migrated metadata database, copied for each Airflow below
    date = logical_date(as_of)
    with ExitStack() as stack:
        cluster = stack.enter_context(running_cluster(release, [warehouse_service(release, k8s_wh)], tmp / "cluster"))
        sandbox = start_sandbox(cluster, as_of)
        k8s_env = kubernetes_runtime_env(release, cluster.kubeconfig, airflow_home(tmp, "k8s"))
        local_env = airflow_env(airflow_home(tmp, "local"), **local_wh.env, DATAPIPE_RUNTIME="local",
                                DATAPIPE_SYMBOLS=SYMBOLS, DATAPIPE_TASK_RETRIES="0", ALPHAVANTAGE_BASE_URL=sandbox,
                                ALPHAVANTAGE_API_KEY="rehearsal-local", ALPHAVANTAGE_REQUESTS_PER_MINUTE="6000")
        print(f"rehearsal: one {DAG_ID} run for {date} in each runtime (sandbox as of {as_of}), "
              f"and {DBT_TASK} of {len(BROKEN_CASES)} broken variants")
        # The kubernetes-runtime run is the longest: the others yield the CPU to it (two cores).
        procs = {name: airflow_run(["dags", "test", DAG_ID, date], env, tmp / f"{name}.log", nice=nice)
                 for name, env, nice in (("k8s", k8s_env, 0), ("local", local_env, YIELD))}
        broken_procs = start_broken(stack, built, release, tmp, date)
        dashboard = cluster.start_deployment(f"{release.name}-dashboard")
        try:
            probes = cluster.wait_ready(dashboard)
        except AssertionError as exc:
            probes = [f"FAILED: {exc}"]
        print("\n".join(probes))
        results = {name: wait(proc, tmp / f"{name}.log", RUN_TIMEOUT_S) for name, proc in procs.items()}
        print(cluster.report())
        broken = {}
        for case, (broken_cluster, log, proc) in broken_procs.items():
            _, text = wait(proc, log, TASK_TIMEOUT_S)
            print(f"== broken variant {case}\n{broken_cluster.report()}")
            broken[case] = Broken(broken_cluster.history[-1] if broken_cluster.history else None,
                                  broken_cluster.failures(), text)
        yield Rehearsal(cluster, results["k8s"], results["local"], k8s_wh, local_wh, dashboard, probes, broken, tmp)


def airflow_home(tmp: Path, name: str) -> Path:
    home = tmp / f"airflow-{name}"
    shutil.copytree(tmp / "airflow", home)
    return home


def start_broken(stack: ExitStack, built: Built, release: Release, tmp: Path,
                 date: str) -> dict[str, tuple[Cluster, Path, subprocess.Popen[bytes]]]:
    """Start one dbt task (`airflow tasks test`) of each broken variant, each through its own API
    server stand-in."""
    workdir_image = f"datapipe-transform-workdir:{built.tag}"
    dockerfile = f"FROM {built.ids['transform']}\nWORKDIR /opt/datapipe\n"
    proc = subprocess.run(["docker", "build", "-q", "-t", workdir_image, "-"], input=dockerfile, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    stack.callback(docker, "rmi", "--no-prune", workdir_image, check=False)
    started = {}
    for case, spec in BROKEN_CASES.items():
        values = spec.get("values")
        rel = render_release(rehearsal_values(built.tag, **values), tmp / f"helm-{case}") if values else release
        extra: dict[str, str] = {}
        if spec.get("dag_change"):
            folder = tmp / f"dags-{case}"
            folder.mkdir()
            (folder / f"{DAG_ID}.py").write_text(BROKEN_DAG.format(why=case, change=spec["dag_change"]))
            extra = {"AIRFLOW__CORE__DAGS_FOLDER": str(folder), "PYTHONPATH": str(DAGS)}
        cluster = stack.enter_context(running_cluster(rel, [], tmp / f"cluster-{case}"))
        env = kubernetes_runtime_env(rel, cluster.kubeconfig, airflow_home(tmp, case), **extra)
        log = tmp / f"{case}.log"
        started[case] = (cluster, log, airflow_run(["tasks", "test", DAG_ID, DBT_TASK, date], env, log, nice=YIELD))
    return started


def test_the_kubernetes_runtime_run_succeeds_with_every_pod_run_from_its_object(rehearsal: Rehearsal,
                                                                               release: Release) -> None:
    rc, log = rehearsal.k8s
    assert rc == 0, "the kubernetes-runtime DAG run failed:\n" + rehearsal.cluster.report() + "\n" + failure_report(
        log, rehearsal.logs / "k8s-failure.log")
    assert rehearsal.cluster.failures() == []
    pod_tasks = {pod["metadata"]["labels"]["task_id"]
                 for pod in dag_pods({**release.dag_environment(), **IMAGE_ENV}).values()}
    assert {"dbt_source_freshness", PRODUCER} <= pod_tasks
    # a task its check skipped (extract_missing_companies when every overview is there) starts no pod
    states = task_states(rehearsal.logs / "airflow-k8s" / "airflow.db")
    expected = {t for t in pod_tasks if states.get(t) != ("skipped", 0)}
    assert {t: states.get(t) for t in expected} == dict.fromkeys(expected, ("success", 1))
    task_pods = [r for r in rehearsal.cluster.history if "task_id" in (r.manifest["metadata"].get("labels") or {})]
    # one pod per pod task, each once; no model or test task of the watcher started a pod of its own
    # (it would, to run its node alone, had it not found the node's result the producer read back)
    assert sorted(r.task for r in task_pods) == sorted(expected), "one pod per pod task, each once"
    assert all(r.exit_code == 0 and r.deleted for r in task_pods), [(r.name, r.exit_code) for r in task_pods]
    # the pods' own output reached the task log through the log endpoint
    assert "[base] " in log and "Deleting pod: datapipe-publish-marts-" in log
    assert "Done. PASS=" in log  # dbt's summary, in the producer's JSON log


def test_every_model_and_test_task_reads_its_result_from_the_producers_pod_log(rehearsal: Rehearsal,
                                                                              release: Release) -> None:
    """The producer's pod log (dbt's JSON events, followed with timestamps through the stand-in) is
    where Cosmos reads each node's result; every watcher task succeeded from it, none ran dbt."""
    rc, log = rehearsal.k8s
    assert rc == 0, "the kubernetes-runtime run failed (see the first test)"
    keys = watcher_keys({**release.dag_environment(), **IMAGE_ENV})
    assert len(keys) > 10, keys
    states = task_states(rehearsal.logs / "airflow-k8s" / "airflow.db")
    assert {t: states.get(t) for t in keys} == dict.fromkeys(keys, ("success", 1))
    read = set(re.findall(rf"Pulling status from task_id '{re.escape(PRODUCER)}' via XCom key '([^']+)'", log))
    assert read == set(keys.values())


def task_states(db: Path) -> dict[str, tuple[str, int]]:
    """task_id -> (state, try_number) of the one DAG run in an Airflow metadata database."""
    rows = query_metadata(db, "select task_id, state, try_number from task_instance where dag_id = ?", (DAG_ID,))
    return {r["task_id"]: (r["state"], r["try_number"]) for r in rows}


def test_the_published_marts_equal_the_local_runtimes(rehearsal: Rehearsal) -> None:
    rc, log = rehearsal.local
    assert rc == 0, "the local-runtime DAG run failed:\n" + failure_report(log, rehearsal.logs / "local-failure.log")
    assert rehearsal.k8s[0] == 0, "the kubernetes-runtime run failed (see the test above)"
    k8s = marts_checksums(rehearsal.k8s_warehouse, MARTS, LOAD_TIME_COLUMNS)
    local = marts_checksums(rehearsal.local_warehouse, MARTS, LOAD_TIME_COLUMNS)
    print("\n".join(f"   marts.{m}: {k8s[m]['rows']} rows, md5 {k8s[m]['md5']}" for m in MARTS))
    assert all(v["rows"] > 0 for v in k8s.values()), k8s
    assert k8s == local


def test_the_dashboard_pod_of_the_rendered_deployment_becomes_ready(rehearsal: Rehearsal) -> None:
    pod = rehearsal.dashboard
    assert [d.split("Probe")[0] for d in rehearsal.dashboard_probes] == ["startup", "readiness", "liveness"], (
        rehearsal.dashboard_probes)
    assert pod.run is not None and pod.exit_code is None, "the dashboard must still run"
    port = next(p.host_port for p in pod.run.probes if p.kind == "readiness")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=10) as response:
        assert response.read().decode().strip() == "ok"
    assert pod.run.env["PGUSER"] == "dashboard" and "--read-only" in pod.run.options


def test_a_transform_image_with_another_working_directory_fails_naming_the_pod_and_the_reason(
        rehearsal: Rehearsal) -> None:
    case = rehearsal.broken["workdir"]
    assert case.task_failed, "the task must fail"
    assert case.pod is not None and len(case.failures) == 1, case.failures
    failure = case.failures[0]
    assert failure.startswith(f"pod datapipe/{case.pod.name} (task {DBT_TASK}) failed: exit code 2"), failure
    assert "in /opt/datapipe (the image's WORKDIR; the pod sets no workingDir), which holds [dbt/]" in failure, failure
    assert "it printed nothing" in failure  # dbt says nothing when it cannot find its project there
    assert f"Pod Event: Rehearsal - {failure}" in case.log  # the task log carries it too


def test_a_read_only_root_filesystem_without_dbts_emptydir_fails_naming_the_pod_and_the_reason(
        rehearsal: Rehearsal) -> None:
    case = rehearsal.broken["no-target-emptydir"]
    assert case.task_failed, "the task must fail"
    assert case.pod is not None and len(case.failures) == 1, case.failures
    failure = case.failures[0]
    assert failure.startswith(f"pod datapipe/{case.pod.name} (task {DBT_TASK}) failed: exit code 2"), failure
    assert ("/opt/datapipe/dbt/target/partial_parse.msgpack is on the read-only root filesystem "
            "(readOnlyRootFilesystem: true) and no emptyDir is mounted there") in failure, failure
    # dbt's own words (its JSON error event, read back from the pod's log), in the task log
    assert '[base] {"data": {"exc": "[Errno 30] Read-only file system' in case.log
    assert f"Pod Event: Rehearsal - {failure}" in case.log


def test_a_pod_with_an_init_container_is_refused_naming_the_field(rehearsal: Rehearsal) -> None:
    case = rehearsal.broken["init-container"]
    assert case.task_failed, "the task must fail"
    assert case.pod is None, "a refused pod never runs"
    assert len(case.failures) == 1, case.failures
    refused = "REFUSED the rehearsal cannot run pod datapipe/dbt-dbt-producer-watcher-"
    assert case.failures[0].startswith(refused), case.failures
    assert "spec.initContainers: 1 initContainers: the rehearsal runs the main container only" in case.failures[0]
    assert "ApiException: (422)" in case.log and "spec.initContainers" in case.log  # the operator's error names it
