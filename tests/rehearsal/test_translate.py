"""The translation of pod objects into `docker run`, without a Docker engine: the pods are the real
ones (the DAG's, built by each operator from the environment of a real `helm template`; the
Deployments' templates from the same render), the images' configs are read from their Dockerfiles."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from rehearsal_pods import (
    ContainerConfigError,
    Engine,
    Image,
    LocalService,
    Refused,
    expand,
    quantity,
    translate,
)
from rehearsal_release import Release
from rehearsaltest import IMAGE_ENV, dag_pods, dockerfile_image, pod_for

WAREHOUSE_PORT, SANDBOX_PORT = 54329, 48765
PASSWORDS = {"pipeline": "local-writer-password", "dashboard": "local-reader-password"}


@pytest.fixture(scope="module")
def pods(unit_release: Release) -> dict[str, dict[str, Any]]:
    return dag_pods({**unit_release.dag_environment(), **IMAGE_ENV}, retries=True)


@pytest.fixture(scope="module")
def images(unit_release: Release) -> dict[str, Any]:
    env = unit_release.dag_environment()
    refs = {"extract": env["DATAPIPE_IMAGE_EXTRACT"], "transform": env["DATAPIPE_IMAGE_TRANSFORM"],
            "dashboard": env["DATAPIPE_IMAGE_EXTRACT"].replace("datapipe-extract", "datapipe-dashboard")}
    return {ref: dockerfile_image(component, ref) for component, ref in refs.items()}


def services(release: Release) -> list[LocalService]:
    return [LocalService(f"{release.name}-warehouse", release.namespace, 5432, WAREHOUSE_PORT, "the local warehouse",
                         PASSWORDS),
            LocalService(f"{release.name}-sandbox", release.namespace, 8765, SANDBOX_PORT, "the sandbox pod")]


def run_of(pod: dict[str, Any], release: Release, images: dict[str, Any], **kwargs: Any) -> Any:
    return translate(pod, images=images, release=release, services=services(release), api_server=("127.0.0.1", 6443),
                     **kwargs)


def option_pairs(options: list[str], flag: str) -> list[str]:
    return [options[i + 1] for i, o in enumerate(options) if o == flag]


def test_an_extract_pod_runs_hardened_with_its_secrets_and_the_local_services(
        pods: dict[str, Any], unit_release: Release, images: dict[str, Any]) -> None:
    run = run_of(pod_for(pods, "extract_prices"), unit_release, images)
    assert run.argv == ["extract", "prices"]
    assert (run.working_dir, run.working_dir_from_image) == ("/opt/datapipe/extract", True)
    o = run.options
    assert option_pairs(o, "--user") == ["10001:10001"] and option_pairs(o, "--group-add") == ["10001"]
    assert "--read-only" in o and option_pairs(o, "--cap-drop") == ["ALL"]
    assert option_pairs(o, "--security-opt") == ["no-new-privileges"]
    assert option_pairs(o, "--memory") == [str(512 * 2**20)] == option_pairs(o, "--memory-swap")
    assert option_pairs(o, "--cpus") == ["1"]
    assert {p: (e.volume, e.fs_group, oct(e.mode)) for p, e in run.empty_dirs.items()} == {
        "/tmp": ("scratch-tmp", 10001, "0o2777")}
    assert "datapipe-warehouse.datapipe.svc:127.0.0.1" in option_pairs(o, "--add-host")
    env = run.env
    # values from the rendered Secrets, the Service's port and the generated password replaced
    assert env["PGHOST"] == "datapipe-warehouse.datapipe.svc" and env["PGPORT"] == str(WAREHOUSE_PORT)
    assert env["PGUSER"] == "pipeline" and env["PGPASSWORD"] == PASSWORDS["pipeline"]
    assert env["PGDATABASE"] == "warehouse"
    api = unit_release.secret_data("datapipe-api")
    assert api is not None and env["ALPHAVANTAGE_API_KEY"] == api["ALPHAVANTAGE_API_KEY"]
    assert env["ALPHAVANTAGE_BASE_URL"] == f"http://datapipe-sandbox.datapipe.svc:{SANDBOX_PORT}/query"
    assert env["DATAPIPE_SYMBOLS"] == "AAPL,MSFT,IBM"
    # a kubelet's service links: the API server and every Service of the namespace
    assert env["KUBERNETES_SERVICE_HOST"] and env["DATAPIPE_WAREHOUSE_SERVICE_PORT"] == "5432"
    assert env["DATAPIPE_DASHBOARD_SERVICE_HOST"].startswith("192.0.2.")
    texts = [s.text for s in run.substitutions]
    assert any(t.startswith("PGPORT=5432 (Secret datapipe-pipeline-env) -> 54329") for t in texts), texts
    assert any("PGPASSWORD (Secret datapipe-pipeline-env, role pipeline): the chart's generated password" in t
               for t in texts), texts
    assert any(t.startswith("ALPHAVANTAGE_BASE_URL (Secret datapipe-api)") for t in texts), texts
    assert all(PASSWORDS["pipeline"] not in t and api["ALPHAVANTAGE_API_KEY"] not in t for t in texts)
    notes = [n.text for n in run.notes]
    assert any(n.startswith("spec.serviceAccountName=datapipe-pipeline: not rehearsed") for n in notes), notes
    assert any(".resources.requests=" in n for n in notes), notes
    assert "emptyDir sizeLimit (/tmp: 256Mi): not enforced (a kubelet evicts a pod over it)" in notes


def test_the_watcher_producer_pod_runs_the_one_dbt_build_with_json_events(pods: dict[str, Any],
                                                                          unit_release: Release,
                                                                          images: dict[str, Any]) -> None:
    run = run_of(pod_for(pods, "dbt.dbt_producer_watcher"), unit_release, images)
    # dbt's JSON events on stdout: the pod's log is where the producer reads each node's result
    # (the live quotes are market_quotes_intraday's, never the daily build's)
    assert run.argv == ["dbt", "build", "--exclude", "tag:quotes", "--log-format", "json", "--project-dir", "."]
    assert run.working_dir == "/opt/datapipe/dbt"
    assert set(run.empty_dirs) == {"/tmp", "/opt/datapipe/dbt/target", "/opt/datapipe/dbt/logs"}
    assert run.writable("/opt/datapipe/dbt/target/partial_parse.msgpack") and not run.writable("/opt/datapipe/dbt")
    assert run.env["DBT_THREADS"] == "2" and run.env["DATAPIPE_RUN_ID"]
    assert "--read-only" in run.options and option_pairs(run.options, "--cap-drop") == ["ALL"]
    freshness = run_of(pod_for(pods, "dbt_source_freshness"), unit_release, images)
    assert freshness.argv == ["dbt", "source", "freshness"] and freshness.working_dir == run.working_dir
    assert set(freshness.empty_dirs) == set(run.empty_dirs)


def test_a_retried_watcher_tasks_pod_runs_its_node_alone_where_dbt_writes(pods: dict[str, Any],
                                                                         unit_release: Release,
                                                                         images: dict[str, Any]) -> None:
    run = run_of(pod_for(pods, "dbt.dim_company.run"), unit_release, images)
    assert run.argv[:4] == ["dbt", "run", "--select", "fqn:datapipe.marts.dim_company"]
    assert run.argv[-2:] == ["--project-dir", "."]
    assert run.working_dir == "/opt/datapipe/dbt"
    assert set(run.empty_dirs) == {"/tmp", "/opt/datapipe/dbt/target", "/opt/datapipe/dbt/logs"}
    assert run.writable("/opt/datapipe/dbt/target/run_results.json") and not run.writable("/opt/datapipe/dbt")
    assert "ALPHAVANTAGE_API_KEY" not in run.env  # least privilege holds in the rehearsal too
    assert run.env["DBT_PROFILES_DIR"] == "." and run.env["HOSTNAME"] == run.pod.split("/")[1]


def test_the_dashboard_deployment_moves_its_port_and_probes_with_it(unit_release: Release,
                                                                    images: dict[str, Any]) -> None:
    deployment = unit_release.require("Deployment", "datapipe-dashboard")
    template = deployment["spec"]["template"]
    pod = {"metadata": {"name": "datapipe-dashboard-x", "namespace": "datapipe", **template["metadata"]},
           "spec": template["spec"]}
    image = next(ref for ref in images if "dashboard" in ref)
    pod["spec"]["containers"][0]["image"] = image
    run = run_of(pod, unit_release, images, host_ports={8501: 38501})
    assert run.argv == ["datapipe-dashboard", "--address", "0.0.0.0", "--port", "38501"]
    assert run.env["PGUSER"] == "dashboard" and run.env["PGPASSWORD"] == PASSWORDS["dashboard"]  # envFrom
    assert {p.kind: (p.host_port, p.path) for p in run.probes} == {
        "startup": (38501, "/_stcore/health"), "readiness": (38501, "/_stcore/health"),
        "liveness": (38501, "/_stcore/health")}
    assert any(s.text.startswith("containerPort 8501 -> host port 38501") for s in run.substitutions)
    assert any(n.text.startswith("spec.restartPolicy=Always") for n in run.notes)


@pytest.mark.parametrize(("change", "field"), [
    (lambda p: p["spec"].__setitem__("initContainers", [{"name": "wait", "image": "busybox:1.36"}]),
     "spec.initContainers"),
    (lambda p: p["spec"]["containers"].append({"name": "proxy", "image": "envoy:1.30"}),
     "spec.containers: 2 containers"),
    (lambda p: p["spec"]["volumes"].append({"name": "data", "hostPath": {"path": "/srv"}}),
     "spec.volumes[data]: volume type ['hostPath']"),
    (lambda p: p["spec"]["volumes"].append({"name": "certs", "secret": {"secretName": "x"}}),
     "spec.volumes[certs]: volume type ['secret']"),
    (lambda p: p["spec"]["containers"][0].__setitem__("lifecycle", {"preStop": {"exec": {"command": ["x"]}}}),
     "spec.containers[base].lifecycle"),
    (lambda p: p["spec"]["containers"][0].__setitem__("readinessProbe", {"exec": {"command": ["true"]}}),
     "spec.containers[base].readinessProbe.exec"),
    (lambda p: p["spec"].__setitem__("automountServiceAccountToken", True), "spec.automountServiceAccountToken"),
    (lambda p: p["spec"]["containers"][0]["securityContext"].__setitem__("privileged", True),
     "spec.containers[base].securityContext.privileged"),
    (lambda p: p["spec"]["containers"][0]["resources"]["limits"].__setitem__("ephemeral-storage", "1Gi"),
     "spec.containers[base].resources.limits.ephemeral-storage"),
    (lambda p: p["spec"]["containers"][0]["volumeMounts"][0].__setitem__("subPath", "x"),
     "spec.containers[base].volumeMounts[scratch-tmp].subPath"),
    (lambda p: p["spec"].__setitem__("shareProcessNamespace", True), "spec.shareProcessNamespace"),
])
def test_a_field_the_rehearsal_cannot_honour_is_refused_by_name(pods: dict[str, Any], unit_release: Release,
                                                                images: dict[str, Any], change: Any,
                                                                field: str) -> None:
    pod = copy.deepcopy(pod_for(pods, "extract_prices"))
    change(pod)
    with pytest.raises(Refused) as refused:
        run_of(pod, unit_release, images)
    assert any(p.startswith(field) for p in refused.value.problems), refused.value.problems
    assert pod["metadata"]["name"] in str(refused.value)


def test_limits_the_engine_cannot_enforce_are_refused(pods: dict[str, Any], unit_release: Release,
                                                      images: dict[str, Any]) -> None:
    with pytest.raises(Refused, match=r"resources.limits.memory: this Docker engine cannot enforce memory"):
        run_of(pod_for(pods, "extract_prices"), unit_release, images, engine=Engine(memory_limit=False))


def test_what_a_kubelet_refuses_to_start_is_a_container_config_error(pods: dict[str, Any], unit_release: Release,
                                                                     images: dict[str, Any]) -> None:
    pod = copy.deepcopy(pod_for(pods, "extract_prices"))
    ref = next(e for e in pod["spec"]["containers"][0]["env"] if e["name"] == "PGPASSWORD")
    ref["valueFrom"]["secretKeyRef"]["name"] = "datapipe-not-rendered"
    with pytest.raises(ContainerConfigError, match='secret "datapipe-not-rendered" not found'):
        run_of(pod, unit_release, images)
    ref["valueFrom"]["secretKeyRef"] = {"name": "datapipe-pipeline-env", "key": "PGPASSWORD_TYPO"}
    with pytest.raises(ContainerConfigError, match="couldn't find key PGPASSWORD_TYPO in Secret"):
        run_of(pod, unit_release, images)
    root = copy.deepcopy(pod_for(pods, "extract_prices"))
    root["spec"]["securityContext"].pop("runAsUser")
    root["spec"]["containers"][0]["image"] = "root-image:1"
    with pytest.raises(ContainerConfigError, match="runAsNonRoot and image will run as root"):
        run_of(root, unit_release, {**images, "root-image:1": Image("root-image:1")})  # no USER: root


def test_kubernetes_expansion_and_quantities() -> None:
    env = {"A": "x", "B": "$(A)y"}
    assert expand("$(A)-$(B)-$(C)-$$(A)-$$", env) == "x-$(A)y-$(C)-$(A)-$"
    assert quantity("500m") == 0.5 and quantity("2") == 2 and quantity("1.5") == 1.5
    assert quantity("2Gi") == 2 * 2**30 and quantity("256Mi") == 256 * 2**20 and quantity("1G") == 10**9
    assert quantity("1e3") == 1000
    with pytest.raises(ValueError):
        quantity("two")
