"""The cluster contract of a first `helm install` (and the upgrades after it), over real renders.

Three releases are rendered: the defaults, k8s/values-cloud.example.yaml, and KubernetesExecutor.
Our own objects are checked as rendered; the official Airflow chart's side is checked on the values
it receives (airflow_model.py says what it makes of them). The DAG's pods are checked in
tests/dags/test_pods.py, built from this chart's own DAG ConfigMap.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import airflow_model
import pytest
import yaml
from chart_helpers import (
    ROOT,
    Render,
    Renderer,
    containers,
    find,
    pod_spec,
    secret_data,
    workloads,
)
from pod_security import read_only_violations, violations

CLOUD_EXAMPLE = ROOT / "k8s" / "values-cloud.example.yaml"
RELEASES = {
    "defaults": {},
    "cloud-example": yaml.safe_load(CLOUD_EXAMPLE.read_text()),
    "kubernetes-executor": {"airflow": {"executor": "KubernetesExecutor"}},
}


@pytest.fixture(scope="module")
def releases(renderer: Renderer) -> dict[str, Render]:
    return {name: renderer.render(values) for name, values in RELEASES.items()}


def each_pod(releases: dict[str, Render]):
    for name, render in releases.items():
        for obj in workloads(render.objects):
            yield f"{name}: {obj['kind']}/{obj['metadata']['name']}", obj, pod_spec(obj) or {}


# -- Pod Security ---------------------------------------------------------------------------------
def test_every_pod_of_ours_passes_restricted_with_a_read_only_root_filesystem(releases: dict[str, Render]) -> None:
    problems = [
        f"{where}: {v}"
        for where, _, spec in each_pod(releases)
        for v in violations(spec, "restricted") + read_only_violations(spec)
    ]
    assert not problems, "\n".join(problems)


def test_the_airflow_chart_pods_get_restricted_security_contexts(releases: dict[str, Render]) -> None:
    problems = []
    for name, render in releases.items():
        values = render.airflow_values
        assert values is not None
        for component in airflow_model.COMPONENTS:
            spec = airflow_model.component_pod(values, component)
            problems += [f"{name}: Airflow {component}: {v}" for v in violations(spec, "restricted")]
    assert not problems, "\n".join(problems)


def test_the_restricted_check_does_fail() -> None:
    """The checker is not a pass-everything: a default pod, root, escalation and hostPath all fail."""
    assert violations({"containers": [{"name": "c"}]}, "restricted")
    assert not violations({"containers": [{"name": "c"}]}, "baseline")
    good = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [{"name": "c", "securityContext": {
            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "readOnlyRootFilesystem": True}}],
        "volumes": [{"name": "t", "emptyDir": {}}],
    }
    assert violations(good, "restricted") == [] and read_only_violations(good) == []
    for path, value in [
        ("securityContext.runAsUser", 0),
        ("containers.0.securityContext.allowPrivilegeEscalation", True),
        ("containers.0.securityContext.capabilities.add", ["NET_ADMIN"]),
        ("volumes.0.hostPath", {"path": "/"}),
        ("securityContext.seccompProfile.type", "Unconfined"),
    ]:
        bad = json.loads(json.dumps(good))
        node: Any = bad
        *parents, leaf = path.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[leaf] = value
        assert violations(bad, "restricted"), path
    assert read_only_violations({"containers": [{"name": "c", "securityContext": {}}]})


# -- storage ------------------------------------------------------------------------------------------
def started_at_install(obj: dict[str, Any]) -> bool:
    """Workloads whose pods exist once `helm install` has run (a CronJob's first pod may be hours
    away; a helm test hook runs only on `helm test`)."""
    hooks = (obj["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    return obj["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod") and not hooks


def test_every_claim_is_mounted_by_a_workload_that_starts_at_install(releases: dict[str, Render]) -> None:
    problems = []
    for name, render in releases.items():
        mounted = {
            volume["persistentVolumeClaim"]["claimName"]
            for obj in render.objects
            if started_at_install(obj)
            for volume in (pod_spec(obj) or {}).get("volumes") or []
            if "persistentVolumeClaim" in volume
        }
        for claim in (o for o in render.objects if o["kind"] == "PersistentVolumeClaim"):
            if claim["metadata"]["name"] not in mounted:
                problems.append(f"{name}: claim {claim['metadata']['name']} stays Pending on a WaitForFirstConsumer "
                                "storage class until a pod mounts it, and `helm --wait` waits for it")
        # the Airflow chart's shared logs claim (logs.persistence) is mounted by its scheduler only
        # when something starts it; its per-pod claims come from StatefulSet templates (bound at start)
        assert render.airflow_values is not None
        if airflow_model.get(render.airflow_values, "logs.persistence.enabled"):
            problems.append(f"{name}: airflow.logs.persistence creates a shared claim (ReadWriteMany)")
    assert not problems, "\n".join(problems)


def test_log_volumes_are_sized_for_logs(releases: dict[str, Render]) -> None:
    def gib(quantity: str) -> float:
        number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(Mi|Gi|Ti)", quantity).groups()  # type: ignore[union-attr]
        return float(number) * {"Mi": 1 / 1024, "Gi": 1, "Ti": 1024}[unit]

    values = releases["defaults"].airflow_values
    assert values is not None
    volumes = airflow_model.log_volumes(values)
    assert set(volumes) == {"scheduler", "triggerer"}
    assert {k: v for k, v in volumes.items() if gib(v) > 10} == {}


# -- RBAC ---------------------------------------------------------------------------------------------
def rules_problems(where: str, rules: list[dict[str, Any]]) -> list[str]:
    out = []
    for rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            if "*" in (rule.get(field) or []):
                out.append(f"{where}: wildcard in {field}: {rule}")
        if "pods/exec" in (rule.get("resources") or []) or "pods/attach" in (rule.get("resources") or []):
            out.append(f"{where}: grants {rule['resources']} (a shell in any pod, the warehouse included)")
    return out


def test_no_role_grants_exec_or_wildcards(releases: dict[str, Render]) -> None:
    problems = []
    for name, render in releases.items():
        for role in (o for o in render.objects if o["kind"] in ("Role", "ClusterRole")):
            problems += rules_problems(f"{name}: {role['kind']}/{role['metadata']['name']}", role.get("rules") or [])
        assert render.airflow_values is not None
        for role in airflow_model.roles(render.airflow_values, "datapipe"):
            problems += rules_problems(f"{name}: Airflow chart {role['metadata']['name']}", role["rules"])
            if role["kind"] == "ClusterRole":
                problems.append(f"{name}: Airflow chart {role['metadata']['name']} is cluster-wide")
    assert not problems, "\n".join(problems)
    assert rules_problems("probe", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])
    assert rules_problems("probe", [{"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}])


def test_our_pod_launching_role_is_least_privilege_and_bound_to_the_launchers(releases: dict[str, Render]) -> None:
    expected_rules = [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get", "list", "watch", "patch", "delete"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    ]
    for name, render in releases.items():
        role = find(render.objects, "Role", "datapipe-pod-launcher")
        binding = find(render.objects, "RoleBinding", "datapipe-pod-launcher")
        assert role is not None and binding is not None, name
        assert role["rules"] == expected_rules, name
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": "datapipe-pod-launcher"}
        values = render.airflow_values
        assert values is not None
        launchers = [values["scheduler"]["serviceAccount"]["name"]]
        if "KubernetesExecutor" in values["executor"]:
            launchers.append(values["workers"]["serviceAccount"]["name"])
        assert [s["name"] for s in binding["subjects"]] == launchers, name
        assert all(s["kind"] == "ServiceAccount" and s["namespace"] == "datapipe" for s in binding["subjects"])
        assert values["allowPodLaunching"] is False
    # the task pods' own account has no API access at all
    for render in releases.values():
        sa = find(render.objects, "ServiceAccount", "datapipe-pipeline")
        assert sa is not None and sa["automountServiceAccountToken"] is False
        bound = [s["name"] for o in render.objects if o["kind"] == "RoleBinding" for s in o["subjects"]]
        assert "datapipe-pipeline" not in bound


# -- registry credentials ------------------------------------------------------------------------------
def pull_secret_names(spec: dict[str, Any]) -> list[str]:
    return [s["name"] for s in spec.get("imagePullSecrets") or []]


@pytest.mark.parametrize("release", ["cloud-example", "cloud-registry"])
def test_every_pod_gets_the_pull_secrets_and_the_airflow_values_carry_them(
    releases: dict[str, Render], renderer: Renderer, release: str
) -> None:
    from chart_helpers import SCENARIOS

    if release == "cloud-example":
        values, render = RELEASES[release], releases[release]
    else:
        values = SCENARIOS[release]
        render = renderer.render(values)
    wanted = [s["name"] for s in values["images"]["pullSecrets"]]
    registry = values["images"]["registry"]
    assert wanted and registry
    problems = []
    for obj in workloads(render.objects):
        spec = pod_spec(obj) or {}
        if pull_secret_names(spec) != wanted:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: imagePullSecrets {pull_secret_names(spec)}")
    # the DAG's pods run as this account: Kubernetes adds its imagePullSecrets to them
    sa = find(render.objects, "ServiceAccount", "datapipe-pipeline")
    assert sa is not None
    if [s["name"] for s in sa.get("imagePullSecrets") or []] != wanted:
        problems.append(f"ServiceAccount/datapipe-pipeline: imagePullSecrets {sa.get('imagePullSecrets')}")
    airflow = render.airflow_values
    assert airflow is not None
    if airflow_model.pull_secret_names(airflow, "datapipe") != wanted:
        problems.append(f"Airflow chart pods: pull secrets {airflow_model.pull_secret_names(airflow, 'datapipe')}")
    for image in [airflow_model.airflow_image(airflow), *airflow_model.worker_images(airflow)]:
        if not image.startswith(f"{registry}/"):
            problems.append(f"Airflow image {image} is not pulled from {registry}")
    assert not problems, "\n".join(problems)


# -- a second deploy -------------------------------------------------------------------------------------
def deploy_commands(**make_vars: str) -> list[str]:
    """The shell commands `make deploy` would run, in order (`make -n`, continuation lines joined)."""
    args = [f"{k}={v}" for k, v in make_vars.items()]
    proc = subprocess.run(["make", "-n", "--no-print-directory", "deploy", *args], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return [line.strip() for line in proc.stdout.replace("\\\n", " ").splitlines() if line.strip()]


def helm_upgrade(commands: list[str]) -> tuple[int, list[str]]:
    """(index of the `helm upgrade` command, its value flags as `helm template` takes them)."""
    index, command = next((i, c) for i, c in enumerate(commands) if re.search(r"helm upgrade --install", c))
    words = shlex.split(command)
    flags = []
    for i, word in enumerate(words):
        if word in ("--set", "--set-string", "--values", "-f"):
            flags += [word, words[i + 1]]
    return index, flags


def deleted_jobs_before(commands: list[str], index: int) -> set[str]:
    deleted: set[str] = set()
    for command in commands[:index]:
        words = shlex.split(command)
        if words and words[0].endswith("kubectl") and "delete" in words:
            after = words[words.index("delete") + 1:]
            if after and after[0] in ("job", "jobs", "job.batch"):
                deleted |= {w for w in after[1:] if not w.startswith("-")}
    return deleted


def deploy_render(renderer: Renderer, tag: str) -> tuple[Render, set[str]]:
    commands = deploy_commands(TAG=tag, RELEASE="datapipe", NAMESPACE="datapipe")
    index, flags = helm_upgrade(commands)
    return renderer.render(extra=flags), deleted_jobs_before(commands, index)


def job_templates(render: Render) -> dict[str, Any]:
    jobs: dict[str, Any] = {o["metadata"]["name"]: o["spec"]["template"] for o in render.objects if o["kind"] == "Job"
                            and not (o["metadata"].get("annotations") or {}).get("helm.sh/hook")}
    assert render.airflow_values is not None
    jobs.update(airflow_model.fixed_name_jobs(render.airflow_values, "datapipe"))
    return jobs


def test_a_second_deploy_with_another_tag_meets_no_immutable_job(renderer: Renderer) -> None:
    """A Job's pod template cannot be changed: a Job that keeps its name while its template changes
    (the tag) fails the upgrade, unless `make deploy` deletes it before `helm upgrade`."""
    first, _ = deploy_render(renderer, "0a1b2c3d4e5f")
    second, deleted = deploy_render(renderer, "f5e4d3c2b1a0")
    before, after = job_templates(first), job_templates(second)
    assert "datapipe-run-airflow-migrations" in after  # the Airflow migration Job is part of the check
    changed = {name for name in before.keys() & after.keys() if before[name] != after[name]}
    assert changed, "the two deploys should differ in some Job template (the image tag)"
    assert changed - deleted == set(), f"Jobs whose template changes under a fixed name: {sorted(changed - deleted)}"


def test_deploy_passes_an_all_digit_tag_as_a_string(renderer: Renderer) -> None:
    """`--set images.tag=123456789012` makes a number (and drops leading zeros); deploy uses --set-string."""
    render, _ = deploy_render(renderer, "123456789012")
    cm = find(render.objects, "ConfigMap", "datapipe-dag-config")
    assert cm is not None and cm["data"]["DATAPIPE_IMAGE_EXTRACT"] == "datapipe-extract:123456789012"
    assert render.airflow_values is not None
    assert airflow_model.airflow_image(render.airflow_values) == "datapipe-airflow:123456789012"
    for obj in workloads(render.objects):
        for c in containers(pod_spec(obj) or {}):
            if c["image"].startswith("datapipe-"):
                assert c["image"].endswith(":123456789012"), c["image"]


def test_deploy_puts_the_registry_and_pull_secret_everywhere(renderer: Renderer) -> None:
    commands = deploy_commands(TAG="0a1b2c3d4e5f", REGISTRY="ghcr.io/acme", PULL_SECRET="ghcr-pull")
    _, flags = helm_upgrade(commands)
    render = renderer.render(extra=flags)
    assert render.airflow_values is not None
    for image in [airflow_model.airflow_image(render.airflow_values),
                  *airflow_model.worker_images(render.airflow_values)]:
        assert image == "ghcr.io/acme/datapipe-airflow:0a1b2c3d4e5f"
    assert airflow_model.pull_secret_names(render.airflow_values, "datapipe") == ["ghcr-pull"]
    for obj in workloads(render.objects):
        assert pull_secret_names(pod_spec(obj) or {}) == ["ghcr-pull"], obj["metadata"]["name"]


# -- secrets ----------------------------------------------------------------------------------------------
LOOKUP_STUB = """{{/* Test stub: the "live" objects of a previous release. */}}
{{- define "datapipe.lookup" -}}
{{- $live := fromYaml `%s` -}}
{{- toYaml (get $live (index . 3) | default dict) -}}
{{- end -}}
"""


def test_every_generated_secret_is_kept_by_the_next_render(renderer: Renderer) -> None:
    """Nothing random changes on an upgrade: neither our Secrets (kept with `lookup`) nor the Airflow
    chart's JWT secret and API secret key (its own templates regenerate them unless named)."""
    first = renderer.render()
    live = {o["metadata"]["name"]: o for o in first.objects if o["kind"] == "Secret"}
    chart = renderer.chart_copy(lookup_stub=LOOKUP_STUB % json.dumps(live).replace("`", ""))
    second = renderer.render(chart=chart)
    again = {o["metadata"]["name"]: o for o in second.objects if o["kind"] == "Secret"}
    assert {name: secret_data(s) for name, s in again.items()} == {name: secret_data(s) for name, s in live.items()}
    assert first.airflow_values is not None
    assert airflow_model.regenerated_secrets(first.airflow_values, "datapipe") == []
    for name, key in airflow_model.referenced_secret_names(first.airflow_values).items():
        assert key in secret_data(live.get(name) or {}), f"the Airflow chart reads {name}/{key}: not generated here"


# -- network ------------------------------------------------------------------------------------------------
NODE_LOCAL_DNS = ipaddress.ip_address("169.254.20.10")


def test_dns_egress_allows_the_node_local_cache(releases: dict[str, Render]) -> None:
    for name, render in releases.items():
        dns = find(render.objects, "NetworkPolicy", "datapipe-allow-dns")
        assert dns is not None and dns["spec"]["podSelector"] == {}, name
        allowed = {
            (port["protocol"], port["port"])
            for rule in dns["spec"]["egress"]
            if any("ipBlock" in peer and NODE_LOCAL_DNS in ipaddress.ip_network(peer["ipBlock"]["cidr"])
                   for peer in rule.get("to") or [])
            for port in rule.get("ports") or []
        }
        assert {("UDP", 53), ("TCP", 53)} <= allowed, f"{name}: no DNS egress to {NODE_LOCAL_DNS}"


def test_the_airflow_ui_can_be_opened_to_an_ingress_controller(renderer: Renderer,
                                                              releases: dict[str, Render]) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    objects = renderer.template({"airflowUi": {"extraIngressFrom": [peer]}})
    policy = find(objects, "NetworkPolicy", "datapipe-airflow-ui")
    assert policy is not None
    assert policy["spec"]["podSelector"]["matchLabels"] == {"tier": "airflow", "release": "datapipe",
                                                            "component": "api-server"}
    (rule,) = policy["spec"]["ingress"]
    assert rule == {"ports": [{"port": 8080, "protocol": "TCP"}], "from": [peer]}
    assert find(releases["defaults"].objects, "NetworkPolicy", "datapipe-airflow-ui") is None


# -- Airflow settings ------------------------------------------------------------------------------------------
def test_airflow_sends_no_usage_data_and_cosmos_no_telemetry(releases: dict[str, Render]) -> None:
    for name, render in releases.items():
        values = render.airflow_values
        assert values is not None
        assert airflow_model.get(values, "config.cosmos.enable_telemetry") == "False", name
        assert airflow_model.get(values, "config.usage_data_collection.enabled") == "False", name
        env = airflow_model.environment(values)
        assert env.get("DO_NOT_TRACK") == "1" and env.get("SCARF_ANALYTICS") == "false", name


def test_the_api_server_fits_a_small_node(releases: dict[str, Render]) -> None:
    values = releases["defaults"].airflow_values
    assert values is not None
    limit = str(values["apiServer"]["resources"]["limits"]["cpu"])
    cpus = float(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
    # one worker process per CPU of the limit (at least one)
    assert airflow_model.api_workers(values) <= max(cpus, 1)
    probe = values["apiServer"]["startupProbe"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 180, "api-server startup budget under 3 minutes"


def test_kind_nodes_are_pinned_by_digest() -> None:
    config = yaml.safe_load((ROOT / "kind-config.yaml").read_text())
    images = {node["image"] for node in config["nodes"]}
    assert len(images) == 1
    (image,) = images
    assert re.fullmatch(r"kindest/node:v1\.\d+\.\d+@sha256:[0-9a-f]{64}", image), image


def test_our_schema_keeps_unknown_keys_out(renderer: Renderer) -> None:
    err = renderer.template_error({"dns": {"cidr": ["169.254.20.10/32"]}})
    assert "cidr" in err
    err = renderer.template_error({"airflow": {"allowPodLaunching": True}})
    assert "allowPodLaunching must stay false" in err


def test_the_cloud_example_documents_its_cidrs() -> None:
    text = CLOUD_EXAMPLE.read_text()
    for key in ("kubernetesApi", "dns", "api", "alerts", "warehouse"):
        assert re.search(rf"^{key}:", text, re.M), key
    # every CIDR list in the example has a comment right above it saying what it is
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^\s*(cidrs|egressCidrs):", line):
            assert lines[i - 1].strip().startswith("#"), f"line {i + 1}: {line.strip()} has no comment"


def test_pod_security_script_is_used_by_deploy() -> None:
    commands = deploy_commands(TAG="0a1b2c3d4e5f")
    index, _ = helm_upgrade(commands)
    assert any("tools/pod-security.sh prepare" in c for c in commands[:index])
    assert any("tools/pod-security.sh settle" in c for c in commands[index + 1:])
    assert Path(ROOT / "tools" / "pod-security.sh").stat().st_mode & 0o111


def test_the_cilium_example_opens_the_api_server_to_the_airflow_pods(releases: dict[str, Render]) -> None:
    from chart_helpers import selector_matches

    (policy,) = [d for d in yaml.safe_load_all((ROOT / "k8s" / "cilium-apiserver-egress.example.yaml").read_text())
                 if d]
    assert policy["apiVersion"] == "cilium.io/v2" and policy["kind"] == "CiliumNetworkPolicy"
    airflow = find(releases["defaults"].objects, "NetworkPolicy", "datapipe-airflow")
    assert airflow is not None
    # the same pods as the chart's Airflow policy
    assert policy["spec"]["endpointSelector"] == airflow["spec"]["podSelector"]
    assert selector_matches(policy["spec"]["endpointSelector"],
                            {"tier": "airflow", "release": "datapipe", "component": "scheduler"})
    (rule,) = policy["spec"]["egress"]
    assert rule["toEntities"] == ["kube-apiserver"]
    assert {p["port"] for p in rule["toPorts"][0]["ports"]} == {"443", "6443"}
