"""A pod object, field by field, as a `docker run` on the local engine — or a refusal naming the field.

`translate(pod, ...)` takes the pod exactly as the API server received it (the JSON the
KubernetesPodOperator or the Deployment template produced) and returns a `DockerRun`: every field
is either *honoured* (translated into Docker's equivalent), *not rehearsed* (a field only a cluster
acts on — scheduling, RBAC, image pulls — recorded as a `Note` so that the report lists it), or
*refused*: `Refused` names each field the rehearsal cannot honour (an unknown volume type, an init
container, a sidecar, a probe type it cannot run ...). Nothing is dropped silently: a key that is
not listed here and carries a value is refused.

What a kubelet would report as CreateContainerConfigError (a Secret or key that does not exist,
runAsNonRoot with a root image) raises `ContainerConfigError`.

Where the rehearsal stands in for the cluster it records a `Substitution`, one line each:
- a Service of the release that stands for a local server (the embedded warehouse, a pod started
  from the sandbox Deployment) resolves to 127.0.0.1 (`--add-host`), and the Service's port in the
  pod's environment (`PGPORT`, a URL's port) becomes the local server's port;
- the chart's generated warehouse password (`PGPASSWORD` beside a `PGHOST` naming that Service)
  becomes the local role's password;
- every pod shares the host's network, so a declared containerPort is moved to a free host port:
  the port number in the container's command and environment is rewritten;
- extra environment the rehearsal adds to one pod (the sandbox's fixed date).

Stdlib only; the engine facts (`Engine`) and the image's config (`Image`) are passed in, so the
translation is tested without a Docker engine (tests/rehearsal/test_translate.py).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Kubernetes defaults this translation relies on.
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
SERVICE_HOST_ADDRESS = "127.0.0.1"
# Service links of Services no local server stands for: an address that leads nowhere (TEST-NET-1).
UNREACHABLE_CLUSTER_IP = "192.0.2.{n}"
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_EXPANSION = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P|e[0-9]+)?$")
_SUFFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}

# Fields a cluster acts on and a single Docker engine cannot: accepted, listed in the report.
CLUSTER_ONLY_POD_FIELDS = {
    "serviceAccountName": "RBAC and the account's imagePullSecrets: a cluster's",
    "serviceAccount": "RBAC: a cluster's",
    "imagePullSecrets": "nothing is pulled: the images are on the local engine",
    "affinity": "scheduling: a cluster's",
    "nodeSelector": "scheduling: a cluster's",
    "tolerations": "scheduling: a cluster's",
    "priorityClassName": "scheduling: a cluster's",
    "priority": "scheduling: a cluster's",
    "schedulerName": "scheduling: a cluster's",
    "topologySpreadConstraints": "scheduling: a cluster's",
}


class Refused(Exception):
    """The rehearsal cannot honour these fields of the pod."""

    def __init__(self, pod: str, problems: list[str]) -> None:
        self.pod = pod
        self.problems = problems
        super().__init__(f"the rehearsal cannot run pod {pod}: " + "; ".join(problems))


class ContainerConfigError(Exception):
    """What a kubelet reports as CreateContainerConfigError: the pod cannot start as written."""


@dataclass(frozen=True)
class Image:
    """The parts of an image's config (`docker image inspect .Config`) a pod's container inherits."""

    ref: str
    user: str = ""
    working_dir: str = ""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()

    @classmethod
    def from_inspect(cls, ref: str, config: Mapping[str, Any]) -> Image:
        return cls(ref, str(config.get("User") or ""), str(config.get("WorkingDir") or ""),
                   tuple(config.get("Entrypoint") or ()), tuple(config.get("Cmd") or ()))


@dataclass(frozen=True)
class Engine:
    """What the local Docker engine can enforce (`docker info`)."""

    memory_limit: bool = True
    cpu_limit: bool = True
    seccomp: bool = True


@dataclass(frozen=True)
class LocalService:
    """A Service of the release that a local server stands for."""

    name: str
    namespace: str
    port: int  # the Service's port
    local_port: int  # where the local server listens on 127.0.0.1
    what: str  # e.g. "the local warehouse"
    passwords: Mapping[str, str] = field(default_factory=dict)  # role -> password, for a database

    @property
    def hosts(self) -> tuple[str, ...]:
        n, ns = self.name, self.namespace
        return (f"{n}.{ns}.svc.cluster.local", f"{n}.{ns}.svc", f"{n}.{ns}", n)


@dataclass(frozen=True)
class Substitution:
    pod: str
    text: str


@dataclass(frozen=True)
class Note:
    """A field the rehearsal accepts without acting on it (a cluster's job)."""

    pod: str
    text: str


@dataclass(frozen=True)
class EmptyDir:
    """An emptyDir as a kubelet makes it: a fresh directory, root-owned with mode 0777, or with an
    fsGroup group-owned by it with the setgid bit (mode 2777). The runtime creates it on the host and
    bind-mounts it (Docker's tmpfs mounts would take the mode of the image's directory beneath)."""

    volume: str
    fs_group: int | None

    @property
    def mode(self) -> int:
        return 0o2777 if self.fs_group is not None else 0o777


@dataclass(frozen=True)
class Probe:
    kind: str  # startup | readiness | liveness
    scheme: str  # http | https | tcp
    host_port: int
    path: str
    initial_delay_s: float
    period_s: float
    timeout_s: float
    failure_threshold: int


@dataclass
class DockerRun:
    """Everything `docker run` needs for one pod's container, and what the report says about it."""

    pod: str  # namespace/name
    container: str
    image: str
    options: list[str]  # docker run options, environment excluded
    argv: list[str]  # the process: entrypoint and arguments
    env: dict[str, str]  # the container's environment (passed through a private env file)
    working_dir: str
    working_dir_from_image: bool
    user: str
    empty_dirs: dict[str, EmptyDir]  # mount path -> the pod's emptyDir mounted there
    read_only: bool
    termination_message_path: str
    termination_message_policy: str
    grace_period_s: int
    probes: list[Probe] = field(default_factory=list)
    substitutions: list[Substitution] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)

    def writable(self, path: str) -> bool:
        """Whether `path` is writable in the container (an emptyDir covers it, or the root is writable)."""
        return not self.read_only or any(path == m or path.startswith(m.rstrip("/") + "/") for m in self.empty_dirs)


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "2Gi", "1.5", "1e3") as a number."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number, suffix = float(match[1]), match[2] or ""
    if suffix == "m":
        return number / 1000
    if suffix.startswith("e"):
        return number * 10 ** int(suffix[1:])
    return number * _SUFFIX.get(suffix, 1)


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` is a literal `$`,
    undefined references stay as written."""

    def sub(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        return env.get(match[1], match[0])

    return _EXPANSION.sub(sub, text)


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


class _Walk:
    """Collects refusals; checks that nothing but the handled keys of an object carries a value."""

    def __init__(self, pod: str) -> None:
        self.pod = pod
        self.problems: list[str] = []
        self.notes: list[Note] = []

    def refuse(self, where: str, why: str) -> None:
        self.problems.append(f"{where}: {why}")

    def note(self, text: str) -> None:
        self.notes.append(Note(self.pod, text))

    def leftovers(self, obj: Mapping[str, Any], where: str, handled: set[str]) -> None:
        for key, value in obj.items():
            if key not in handled and not _empty(value):
                self.refuse(f"{where}.{key}", "the rehearsal cannot honour this field")


@dataclass
class _Context:
    """The pod-level facts every container sees."""

    namespace: str
    name: str
    fs_group: int | None
    supplemental_groups: list[int]
    pod_security: dict[str, Any]
    volumes: dict[str, dict[str, Any]]  # name -> emptyDir source
    service_links: bool  # enableServiceLinks (default true)
    host_aliases: list[tuple[str, str]]  # (host name, address)


def translate(pod: Mapping[str, Any], *, images: Mapping[str, Image], release: Any,
              services: list[LocalService] = (), engine: Engine = Engine(),  # type: ignore[assignment]
              host_ports: Mapping[int, int] | None = None, extra_env: Mapping[str, str] | None = None,
              api_server: tuple[str, int] | None = None) -> DockerRun:
    """The pod as a `docker run`. `images` maps each image reference to its config (`Image`);
    `release` resolves Secrets, ConfigMaps and Services (rehearsal_release.Release); `host_ports`
    maps each declared containerPort to a free host port; `extra_env` is added to the container
    (printed as a substitution); `api_server` is where KUBERNETES_SERVICE_HOST/PORT lead."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    namespace, name = meta.get("namespace") or "default", meta.get("name") or ""
    walk = _Walk(f"{namespace}/{name}")
    walk.leftovers(pod, "", {"apiVersion", "kind", "metadata", "spec", "status"})
    walk.leftovers(meta, "metadata", {"name", "namespace", "labels", "annotations", "uid", "creationTimestamp",
                                      "resourceVersion", "generateName", "ownerReferences"})
    if meta.get("annotations"):
        walk.note(f"metadata.annotations {sorted(meta['annotations'])}: no local effect")
    context = _pod_level(spec, walk, namespace, name)
    containers = spec.get("containers") or []
    if len(containers) != 1:
        walk.refuse("spec.containers", f"{len(containers)} containers: the rehearsal runs exactly one (no sidecars)"
                    if containers else "no container")
    if walk.problems or not containers:
        raise Refused(walk.pod, walk.problems)
    run = _container(containers[0], context, spec, walk, images=images, release=release, services=services,
                     engine=engine, host_ports=host_ports or {}, extra_env=extra_env or {}, api_server=api_server)
    if walk.problems:
        raise Refused(walk.pod, walk.problems)
    run.notes = walk.notes
    return run


def _pod_level(spec: Mapping[str, Any], walk: _Walk, namespace: str, name: str) -> _Context:
    handled = {"containers", "initContainers", "ephemeralContainers", "volumes", "securityContext",
               "automountServiceAccountToken", "restartPolicy", "hostNetwork", "hostPID", "hostIPC",
               "terminationGracePeriodSeconds", "dnsPolicy", "enableServiceLinks", "hostAliases",
               *CLUSTER_ONLY_POD_FIELDS}
    walk.leftovers(spec, "spec", handled)
    for key in ("initContainers", "ephemeralContainers"):
        if spec.get(key):
            walk.refuse(f"spec.{key}", f"{len(spec[key])} {key}: the rehearsal runs the main container only")
    for key, why in CLUSTER_ONLY_POD_FIELDS.items():
        if not _empty(spec.get(key)):
            walk.note(f"spec.{key}={_short(spec[key])}: not rehearsed ({why})")
    if spec.get("automountServiceAccountToken") is not False:
        walk.refuse("spec.automountServiceAccountToken", "must be false: the rehearsal has no token to mount")
    policy = spec.get("restartPolicy") or "Always"
    if policy == "Always":
        walk.note("spec.restartPolicy=Always: not rehearsed (a failed container is not restarted)")
    elif policy != "Never":
        walk.refuse("spec.restartPolicy", f"{policy}: the rehearsal runs a container once")
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            walk.refuse(f"spec.{key}", "true: the rehearsal does not share host namespaces on request")
    if spec.get("dnsPolicy") not in (None, "ClusterFirst"):
        walk.refuse("spec.dnsPolicy", f"{spec['dnsPolicy']}: only ClusterFirst (Services resolve through /etc/hosts)")
    ctx = dict(spec.get("securityContext") or {})
    walk.leftovers(ctx, "spec.securityContext", {"runAsUser", "runAsGroup", "runAsNonRoot", "fsGroup",
                                                 "supplementalGroups", "seccompProfile", "fsGroupChangePolicy"})
    volumes: dict[str, dict[str, Any]] = {}
    for i, volume in enumerate(spec.get("volumes") or []):
        where = f"spec.volumes[{volume.get('name', i)}]"
        kinds = sorted(set(volume) - {"name"})
        if kinds != ["emptyDir"]:
            walk.refuse(where, f"volume type {kinds}: the rehearsal runs emptyDir volumes only")
            continue
        source = volume.get("emptyDir") or {}
        walk.leftovers(source, f"{where}.emptyDir", {"medium", "sizeLimit"})
        if source.get("medium"):
            walk.refuse(f"{where}.emptyDir.medium", f"{source['medium']}: only disk-backed emptyDirs")
        volumes[volume["name"]] = source
    aliases = []
    for i, alias in enumerate(spec.get("hostAliases") or []):
        walk.leftovers(alias, f"spec.hostAliases[{i}]", {"ip", "hostnames"})
        aliases += [(host, alias["ip"]) for host in alias.get("hostnames") or []]
    return _Context(namespace, name, ctx.get("fsGroup"), list(ctx.get("supplementalGroups") or []), ctx, volumes,
                    spec.get("enableServiceLinks") is not False, aliases)


def _container(c: Mapping[str, Any], pod: _Context, spec: Mapping[str, Any], walk: _Walk, *,
               images: Mapping[str, Image], release: Any, services: list[LocalService], engine: Engine,
               host_ports: Mapping[int, int], extra_env: Mapping[str, str],
               api_server: tuple[str, int] | None) -> DockerRun:
    cname = c.get("name") or "?"
    where = f"spec.containers[{cname}]"
    walk.leftovers(c, where, {"name", "image", "imagePullPolicy", "command", "args", "workingDir", "env", "envFrom",
                              "resources", "securityContext", "volumeMounts", "ports", "startupProbe",
                              "readinessProbe", "livenessProbe", "terminationMessagePath",
                              "terminationMessagePolicy", "stdin", "stdinOnce", "tty"})
    for key in ("stdin", "stdinOnce", "tty"):
        if c.get(key):
            walk.refuse(f"{where}.{key}", "true: the rehearsal attaches no terminal")
    image = images.get(c.get("image") or "")
    if image is None:
        raise KeyError(c.get("image"))  # the caller checks the images first (ErrImagePull)
    if c.get("imagePullPolicy") == "Always":
        walk.note(f"{where}.imagePullPolicy=Always: not rehearsed (the local image is used; nothing is pulled)")
    options: list[str] = []
    subs: list[Substitution] = []

    # -- security context: the container's settings over the pod's ---------------------------------
    sc = dict(c.get("securityContext") or {})
    walk.leftovers(sc, f"{where}.securityContext", {"runAsUser", "runAsGroup", "runAsNonRoot", "seccompProfile",
                                                    "allowPrivilegeEscalation", "readOnlyRootFilesystem",
                                                    "capabilities", "privileged", "procMount"})
    merged = {**pod.pod_security, **sc}
    if sc.get("privileged"):
        walk.refuse(f"{where}.securityContext.privileged", "true: the rehearsal never runs privileged containers")
    if sc.get("procMount") not in (None, "Default"):
        walk.refuse(f"{where}.securityContext.procMount", f"{sc['procMount']}: only Default")
    seccomp = (merged.get("seccompProfile") or {}).get("type")
    if seccomp not in (None, "RuntimeDefault"):
        walk.refuse(f"{where}.securityContext.seccompProfile", f"{seccomp}: only RuntimeDefault")
    elif seccomp == "RuntimeDefault" and not engine.seccomp:
        walk.refuse(f"{where}.securityContext.seccompProfile", "RuntimeDefault: this engine has no seccomp")
    user = _user(merged, image, where, walk)
    if user:
        options += ["--user", user]
    for gid in ([pod.fs_group] if pod.fs_group is not None else []) + pod.supplemental_groups:
        options += ["--group-add", str(gid)]
    read_only = bool(sc.get("readOnlyRootFilesystem"))
    if read_only:
        options.append("--read-only")
    caps = sc.get("capabilities") or {}
    walk.leftovers(caps, f"{where}.securityContext.capabilities", {"drop", "add"})
    for cap in caps.get("drop") or []:
        options += ["--cap-drop", cap]
    for cap in caps.get("add") or []:
        options += ["--cap-add", cap]
    if sc.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]

    # -- names: the stood-in Services and the pod's hostAliases in /etc/hosts ------------------------------
    for svc in services:
        options += [arg for host in svc.hosts for arg in ("--add-host", f"{host}:{SERVICE_HOST_ADDRESS}")]
    for host, address in pod.host_aliases:
        options += ["--add-host", f"{host}:{address}"]

    # -- emptyDirs: a fresh directory of the pod's, bind-mounted where the container mounts it ----------
    empty_dirs: dict[str, EmptyDir] = {}
    for i, mount in enumerate(c.get("volumeMounts") or []):
        mwhere = f"{where}.volumeMounts[{mount.get('name', i)}]"
        walk.leftovers(mount, mwhere, {"name", "mountPath"})
        if mount.get("readOnly"):
            walk.refuse(f"{mwhere}.readOnly", "true: a read-only emptyDir is not supported")
        source = pod.volumes.get(mount.get("name"))
        if source is None:
            if not any(mount.get("name") == v.get("name") for v in spec.get("volumes") or []):
                walk.refuse(mwhere, f"mounts volume {mount.get('name')!r}, which the pod does not declare")
            continue
        empty_dirs[mount["mountPath"]] = EmptyDir(mount["name"], pod.fs_group)
        if source.get("sizeLimit"):
            walk.note(f"emptyDir sizeLimit ({mount['mountPath']}: {source['sizeLimit']}): not enforced (a kubelet "
                      "evicts a pod over it)")

    # -- resources ---------------------------------------------------------------------------------
    resources = c.get("resources") or {}
    walk.leftovers(resources, f"{where}.resources", {"limits", "requests"})
    if resources.get("requests"):
        walk.note(f"{where}.resources.requests={_short(resources['requests'])}: not rehearsed (scheduling)")
    for key, value in (resources.get("limits") or {}).items():
        lwhere = f"{where}.resources.limits.{key}"
        try:
            amount = quantity(value)
        except ValueError as exc:
            walk.refuse(lwhere, str(exc))
            continue
        if key == "memory" and engine.memory_limit:
            options += ["--memory", str(int(amount)), "--memory-swap", str(int(amount))]  # no swap, as a kubelet
        elif key == "cpu" and engine.cpu_limit:
            options += ["--cpus", f"{amount:g}"]
        elif key in ("memory", "cpu"):
            walk.refuse(lwhere, f"this Docker engine cannot enforce {key} limits")
        else:
            walk.refuse(lwhere, "only cpu and memory limits are supported")

    # -- environment: service links, envFrom, env (with $(VAR) expansion), then the substitutions -------
    env, origin = _environment(c, pod, where, walk, release, services, api_server)
    for key, value in extra_env.items():
        env[key], origin[key] = value, "added by the rehearsal"
        subs.append(Substitution(walk.pod, f"env {key}={value} added to the container (the rehearsal's setting)"))
    subs += _substitute_services(env, origin, services, walk.pod)
    env.setdefault("HOSTNAME", pod.name)

    # -- the process: command/args over the image's ENTRYPOINT/CMD ---------------------------------------
    command = [expand(str(a), env) for a in c.get("command") or []]
    args = [expand(str(a), env) for a in c.get("args") or []]
    if command:
        argv = command + args
    elif args:
        argv = list(image.entrypoint) + args
    else:
        argv = list(image.entrypoint) + list(image.cmd)
    if not argv:
        walk.refuse(where, "no command: neither the pod nor the image names one")
    working_dir = c.get("workingDir") or image.working_dir or "/"

    # -- ports: on the host network a containerPort is a host port -------------------------------------
    port_names: dict[str, int] = {}
    for i, port in enumerate(c.get("ports") or []):
        pwhere = f"{where}.ports[{port.get('name', i)}]"
        walk.leftovers(port, pwhere, {"name", "containerPort", "protocol"})
        if port.get("protocol") not in (None, "TCP"):
            walk.refuse(f"{pwhere}.protocol", f"{port['protocol']}: only TCP")
        number = int(port["containerPort"])
        if port.get("name"):
            port_names[port["name"]] = number
        host = host_ports.get(number)
        if host is None:
            walk.refuse(pwhere, f"containerPort {number}: no host port was reserved for it")
            continue
        if host != number:
            argv, env, moved = _move_port(argv, env, number, host)
            subs.append(Substitution(walk.pod, f"containerPort {number} -> host port {host} (every pod shares the "
                                     f"host network): {moved or 'nothing names the port'}"))
    probes = [p for p in (_probe(kind, c.get(f"{kind}Probe"), f"{where}.{kind}Probe", port_names, host_ports, walk)
                          for kind in ("startup", "readiness", "liveness")) if p is not None]

    policy = c.get("terminationMessagePolicy") or "File"
    if policy not in ("File", "FallbackToLogsOnError"):
        walk.refuse(f"{where}.terminationMessagePolicy", f"{policy}: unknown")
    return DockerRun(
        pod=walk.pod, container=cname, image=image.ref, options=options, argv=argv, env=env,
        working_dir=working_dir, working_dir_from_image=not c.get("workingDir"), user=user or image.user or "0",
        empty_dirs=empty_dirs, read_only=read_only,
        termination_message_path=c.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH,
        termination_message_policy=policy, grace_period_s=int(spec.get("terminationGracePeriodSeconds") or 30),
        probes=probes, substitutions=subs,
    )


def _user(ctx: Mapping[str, Any], image: Image, where: str, walk: _Walk) -> str:
    """`--user` from runAsUser/runAsGroup (the image's user otherwise); runAsNonRoot checked as a kubelet does."""
    uid, gid = ctx.get("runAsUser"), ctx.get("runAsGroup")
    image_uid = image.user.split(":", 1)[0]
    if ctx.get("runAsNonRoot"):
        if uid is None and not image_uid.isdigit() and image_uid not in ("", "root"):
            raise ContainerConfigError(f"container has runAsNonRoot and image has non-numeric user ({image_uid}), "
                                       "cannot verify user is non-root")
        effective = uid if uid is not None else int(image_uid) if image_uid.isdigit() else 0
        if effective == 0:
            raise ContainerConfigError("container has runAsNonRoot and image will run as root")
    if uid is None and gid is None:
        return ""
    return f"{uid if uid is not None else image_uid or 0}" + (f":{gid}" if gid is not None else "")


def _environment(c: Mapping[str, Any], pod: _Context, where: str, walk: _Walk, release: Any,
                 services: list[LocalService], api_server: tuple[str, int] | None,
                 ) -> tuple[dict[str, str], dict[str, str]]:
    """The container's environment in a kubelet's order, and where each variable came from."""
    env: dict[str, str] = {}
    origin: dict[str, str] = {}
    for key, value in _service_links(release if pod.service_links else None, pod.namespace, services,
                                     api_server).items():
        env[key], origin[key] = value, "service link"
    for i, source in enumerate(c.get("envFrom") or []):
        ewhere = f"{where}.envFrom[{i}]"
        walk.leftovers(source, ewhere, {"secretRef", "configMapRef", "prefix"})
        for kind, getter in (("secretRef", release.secret_data), ("configMapRef", release.configmap_data)):
            ref = source.get(kind)
            if not ref:
                continue
            walk.leftovers(ref, f"{ewhere}.{kind}", {"name", "optional"})
            data = getter(ref["name"], pod.namespace)
            label = "Secret" if kind == "secretRef" else "ConfigMap"
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{label.lower()} "{ref["name"]}" not found')
            for key, value in data.items():
                name = f"{source.get('prefix') or ''}{key}"
                if _ENV_NAME.match(name):
                    env[name], origin[name] = value, f"{label} {ref['name']}"
    for var in c.get("env") or []:
        name = var.get("name", "")
        vwhere = f"{where}.env[{name}]"
        walk.leftovers(var, vwhere, {"name", "value", "valueFrom"})
        if "valueFrom" not in var or var["valueFrom"] is None:
            env[name], origin[name] = expand(str(var.get("value") or ""), env), "value"
            continue
        value, label = _value_from(var["valueFrom"], vwhere, walk, release, pod)
        if value is not None:
            env[name], origin[name] = value, label
    for name, value in env.items():
        if "\n" in value or "\x00" in value:
            walk.refuse(f"{where}.env[{name}]", "a value with a line break cannot be passed to docker")
    return env, origin


def _value_from(source: Mapping[str, Any], where: str, walk: _Walk, release: Any,
                pod: _Context) -> tuple[str | None, str]:
    walk.leftovers(source, f"{where}.valueFrom", {"secretKeyRef", "configMapKeyRef", "fieldRef"})
    for kind, getter, label in (("secretKeyRef", release.secret_data, "Secret"),
                                ("configMapKeyRef", release.configmap_data, "ConfigMap")):
        ref = source.get(kind)
        if not ref:
            continue
        walk.leftovers(ref, f"{where}.valueFrom.{kind}", {"name", "key", "optional"})
        data = getter(ref["name"], pod.namespace)
        if data is None or ref["key"] not in data:
            if ref.get("optional"):
                return None, label
            if data is None:
                raise ContainerConfigError(f'{label.lower()} "{ref["name"]}" not found')
            raise ContainerConfigError(f"couldn't find key {ref['key']} in {label} {pod.namespace}/{ref['name']}")
        return data[ref["key"]], f"{label} {ref['name']}"
    ref = source.get("fieldRef")
    if ref:
        path = ref.get("fieldPath", "")
        known = {"metadata.name": pod.name, "metadata.namespace": pod.namespace, "spec.nodeName": "rehearsal",
                 "status.podIP": SERVICE_HOST_ADDRESS, "status.hostIP": SERVICE_HOST_ADDRESS}
        if path in known:
            return known[path], f"fieldRef {path}"
        walk.refuse(f"{where}.valueFrom.fieldRef", f"{path}: not supported")
    return None, "?"


def _service_links(release: Any, namespace: str, services: list[LocalService],
                   api_server: tuple[str, int] | None) -> dict[str, str]:
    """The variables a kubelet gives every container for the API server and, unless the pod sets
    enableServiceLinks: false (`release` None), for each Service of its namespace: a stood-in
    Service's address is 127.0.0.1, the others' an address that leads nowhere (a cluster assigns
    their IPs)."""
    out: dict[str, str] = {}
    stood_in = {s.name for s in services}
    entries: list[tuple[str, str, list[dict[str, Any]]]] = []
    if api_server is not None:
        entries.append(("KUBERNETES", api_server[0], [{"name": "https", "port": api_server[1], "protocol": "TCP"}]))
    rendered = release.services() if release is not None else []
    for n, svc in enumerate(sorted(rendered, key=lambda s: s["metadata"]["name"]), start=1):
        if svc["metadata"].get("namespace", namespace) != namespace:
            continue
        name = svc["metadata"]["name"]
        ip = SERVICE_HOST_ADDRESS if name in stood_in else UNREACHABLE_CLUSTER_IP.format(n=n)
        entries.append((name.upper().replace("-", "_"), ip, list(svc["spec"].get("ports") or [])))
    for prefix, ip, ports in entries:
        if not ports:
            continue
        first = ports[0]
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(first["port"])
        out[f"{prefix}_PORT"] = f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}"
        for port in ports:
            proto = port.get("protocol", "TCP")
            if port.get("name"):
                out[f"{prefix}_SERVICE_PORT_{port['name'].upper().replace('-', '_')}"] = str(port["port"])
            base = f"{prefix}_PORT_{port['port']}_{proto}"
            out[base] = f"{proto.lower()}://{ip}:{port['port']}"
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(port["port"])
            out[f"{base}_ADDR"] = ip
    return out


def _substitute_services(env: dict[str, str], origin: dict[str, str], services: list[LocalService],
                         pod: str) -> list[Substitution]:
    """Service hosts to 127.0.0.1 (through /etc/hosts), their ports and a database's generated
    password to the local server's, in the variables that name them."""
    subs: list[Substitution] = []
    for svc in services:
        hosts = set(svc.hosts)
        named = False
        for key, value in list(env.items()):
            if origin.get(key) == "service link":
                continue
            if value in hosts:
                named = True
                prefix = key[: -len("HOST")] if key.endswith("HOST") else None
                port_key = f"{prefix}PORT" if prefix is not None else None
                if port_key and env.get(port_key) == str(svc.port) and svc.local_port != svc.port:
                    env[port_key] = str(svc.local_port)
                    subs.append(Substitution(pod, f"{port_key}={svc.port} ({origin.get(port_key)}) -> "
                                                  f"{svc.local_port}: {svc.what}'s port"))
                password_key, user = f"{prefix}PASSWORD", env.get(f"{prefix}USER", "")
                if (prefix is not None and password_key in env and user in svc.passwords
                        and env[password_key] != svc.passwords[user]):
                    env[password_key] = svc.passwords[user]
                    subs.append(Substitution(pod, f"{password_key} ({origin.get(password_key)}, role {user}): "
                                                  f"the chart's generated password -> {svc.what}'s password "
                                                  f"of {user}"))
                continue
            url = urllib.parse.urlsplit(value) if "://" in value else None
            if url is not None and url.hostname in hosts:
                named = True
                if (url.port or {"http": 80, "https": 443}.get(url.scheme)) == svc.port and svc.local_port != svc.port:
                    netloc = f"{url.hostname}:{svc.local_port}"
                    env[key] = urllib.parse.urlunsplit(url._replace(netloc=netloc))
                    subs.append(Substitution(pod, f"{key} ({origin.get(key)}): {value} -> {env[key]}: "
                                                  f"{svc.what}'s port"))
        if named:
            subs.append(Substitution(pod, f"Service {svc.name} ({svc.name}.{svc.namespace}.svc) resolves to "
                                          f"{SERVICE_HOST_ADDRESS}: {svc.what} (/etc/hosts)"))
    return subs


def _move_port(argv: list[str], env: dict[str, str], old: int, new: int) -> tuple[list[str], dict[str, str], str]:
    """Rewrite a port number where the container is told to listen: an argument (`--port 8501`,
    `--port=8501`, `--server.port=8501`) or a variable whose value is the number."""
    moved: list[str] = []
    out: list[str] = []
    for arg in argv:
        if arg == str(old):
            out.append(str(new))
            moved.append(f"argument {old}")
        elif re.fullmatch(rf"--[\w.-]+={old}", arg):
            out.append(arg.rsplit("=", 1)[0] + f"={new}")
            moved.append(f"argument {arg}")
        else:
            out.append(arg)
    env = dict(env)
    for key, value in env.items():
        if value == str(old):
            env[key] = str(new)
            moved.append(f"env {key}")
    return out, env, ", ".join(moved)


def _probe(kind: str, probe: Mapping[str, Any] | None, where: str, port_names: Mapping[str, int],
           host_ports: Mapping[int, int], walk: _Walk) -> Probe | None:
    if not probe:
        return None
    walk.leftovers(probe, where, {"httpGet", "tcpSocket", "initialDelaySeconds", "periodSeconds", "timeoutSeconds",
                                  "failureThreshold", "successThreshold"})
    action = probe.get("httpGet") or probe.get("tcpSocket")
    if not action:
        return None  # the leftover check refused exec/grpc
    walk.leftovers(action, where, {"path", "port", "scheme"})
    port = action.get("port")
    number = port_names.get(port) if isinstance(port, str) and not port.isdigit() else int(port)
    if number is None:
        walk.refuse(f"{where}.port", f"{port!r} names no containerPort")
        return None
    scheme = "tcp" if "tcpSocket" in probe else str(action.get("scheme") or "HTTP").lower()
    return Probe(kind, scheme, host_ports.get(number, number), str(action.get("path") or "/"),
                 float(probe.get("initialDelaySeconds") or 0), float(probe.get("periodSeconds") or 10),
                 float(probe.get("timeoutSeconds") or 1), int(probe.get("failureThreshold") or 3))


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
