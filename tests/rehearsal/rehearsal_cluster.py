"""A stand-in for the Kubernetes API server whose pods run on the local Docker engine.

The one mock of the rehearsal is the API server itself: `Cluster` serves the part of the core/v1
REST API that KubernetesPodOperator's pod manager (and so every operator built on it: Cosmos'
Kubernetes operators, the watcher producer) talks to — create, read, list by label, patch, delete
a pod, read its log (followed, with timestamps), list its events — over plain HTTP on 127.0.0.1,
found through a throwaway kubeconfig. Airflow runs unmodified: the pod object a POST carries is
exactly the one a cluster would receive, and `rehearsal_pods.translate` turns it into a
`docker run` field by field (or refuses it, naming the fields: HTTP 422, as an admission webhook
would). The container's log is the pod's log; its exit code the pod's phase; events follow a
kubelet's (Scheduled, Pulled, Created, Started), and a failed pod gets a `Rehearsal` event with a
diagnosis, which the operator writes into the task log (log_events_on_failure).

Deployments are started the same way (`start_deployment`): one pod from the rendered template,
its probes run against it. `report()` lists every pod, every substitution, every field left to a
cluster, and each failure with the pod's name and the reason.
"""

from __future__ import annotations

import copy
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tarfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

from rehearsal_pods import ContainerConfigError, DockerRun, Engine, Image, LocalService, Probe, Refused, translate

LABEL = "datapipe.rehearsal"
_POD = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods(?:/(?P<name>[^/]+)(?:/(?P<sub>log))?)?$")
_EVENTS = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/events$")
_READ_ONLY = re.compile(r"Read-only file system: '([^']+)'")


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker(*args: str, timeout: float = 600, check: bool = False) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args[:4])} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc


def engine_facts() -> Engine:
    """What the engine can enforce; fails when no engine answers."""
    info = json.loads(docker("info", "--format", "{{json .}}", check=True).stdout)
    return Engine(memory_limit=bool(info.get("MemoryLimit")), cpu_limit=bool(info.get("CpuCfsQuota")),
                  seccomp=any("seccomp" in str(o) for o in info.get("SecurityOptions") or []))


@dataclass
class PodRecord:
    manifest: dict[str, Any]
    uid: str
    created: str
    version: int = 1
    phase: str = "Pending"
    reason: str | None = None
    message: str | None = None
    waiting: dict[str, str] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    exit_reason: str | None = None
    termination_message: str | None = None
    image_id: str = ""
    container_id: str | None = None
    run: DockerRun | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""  # the container's output, timestamps stripped (kept for the report)
    diagnosis: str | None = None
    deleted: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    began: float = field(default_factory=time.monotonic)
    ended: float | None = None

    @property
    def name(self) -> str:
        return str(self.manifest["metadata"]["name"])

    @property
    def namespace(self) -> str:
        return str(self.manifest["metadata"]["namespace"])

    @property
    def task(self) -> str:
        labels = self.manifest["metadata"].get("labels") or {}
        return str(labels.get("task_id") or labels.get("app.kubernetes.io/component") or "?")

    @property
    def container_name(self) -> str:
        return str(self.manifest["spec"]["containers"][0].get("name") or "base")


class Cluster:
    """The API server stand-in and its pods (one per rehearsed release)."""

    def __init__(self, release: Any, services: list[LocalService], workdir: Path, *, engine: Engine | None = None,
                 log: Any = print) -> None:
        self.release = release
        self.services = services
        self.workdir = workdir
        self.engine = engine or engine_facts()
        self.log = log
        self.session = secrets.token_hex(4)
        self.pods: dict[tuple[str, str], PodRecord] = {}
        self.history: list[PodRecord] = []
        self.refusals: list[Refused] = []
        self.unhandled: list[str] = []
        self._lock = threading.Lock()
        self._images: dict[str, tuple[Image, str] | None] = {}
        self._seen: set[str] = set()
        self._server: ThreadingHTTPServer | None = None
        self._stopping = False
        self.port = 0

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Cluster:
        handler = type("Handler", (_Handler,), {"cluster": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True, name="rehearsal-api").start()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "rehearsal",
            "clusters": [{"name": "rehearsal", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "rehearsal", "user": {"token": "rehearsal"}}],
            "contexts": [{"name": "rehearsal", "context": {"cluster": "rehearsal", "user": "rehearsal",
                                                            "namespace": self.release.namespace}}],
        }))
        self.log(f"rehearsal: API server stand-in on http://127.0.0.1:{self.port} (kubeconfig {self.kubeconfig})")
        return self

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    def stop(self) -> None:
        self._stopping = True  # the containers removed now did not fail
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        left = [r.container_id for r in self.history if r.container_id and not (r.deleted and r.done.is_set())]
        if left:
            docker("rm", "-f", *left)

    # -- pods --------------------------------------------------------------------------------------------
    def create_pod(self, manifest: dict[str, Any], extra_env: Mapping[str, str] | None = None) -> PodRecord:
        """What a POST to .../pods does: admit the pod (or raise Refused), then start its container."""
        meta = manifest.setdefault("metadata", {})
        key = (meta.get("namespace") or "", meta.get("name") or "")
        with self._lock:
            if key in self.pods:
                raise FileExistsError(f'pods "{key[1]}" already exists')
        ports = {int(p["containerPort"]) for c in manifest.get("spec", {}).get("containers") or []
                 for p in c.get("ports") or [] if "containerPort" in p}
        record = PodRecord(manifest, secrets.token_hex(16), now())
        image_ref = next(iter(c.get("image", "") for c in manifest.get("spec", {}).get("containers") or []), "")
        image = self._image(image_ref) if image_ref else None
        run = None
        try:
            if not key[1]:
                raise Refused(f"{key[0]}/?", ["metadata.name: required (generateName is not supported)"])
            if image is not None or not image_ref:  # a missing image stops the pod before anything else
                run = translate(manifest, images={image_ref: image[0]} if image else {},
                                release=self.release, services=self.services, engine=self.engine,
                                host_ports={p: free_port() for p in ports}, extra_env=extra_env,
                                api_server=("127.0.0.1", self.port))
        except Refused as exc:
            self.refusals.append(exc)
            self.log(f"rehearsal: REFUSED pod {exc.pod}: " + "; ".join(exc.problems))
            raise
        except ContainerConfigError as exc:
            record.phase, record.reason, record.message = "Failed", "CreateContainerConfigError", str(exc)
            self._event(record, "Warning", "Failed", f"Error: {exc}")
        with self._lock:
            self.pods[key] = record
            self.history.append(record)
        self._event(record, "Normal", "Scheduled",
                    f"Successfully assigned {key[0]}/{key[1]} to the local Docker engine (rehearsal)")
        if image is None:
            policy = manifest["spec"]["containers"][0].get("imagePullPolicy")
            record.waiting = {"reason": "ErrImageNeverPull" if policy == "Never" else "ErrImagePull",
                              "message": f"image {image_ref} is not on the local Docker engine and the rehearsal "
                                         "pulls nothing (build it: make images-test)"}
            self._event(record, "Warning", "Failed", record.waiting["message"])
            self._finish_early(record)
        elif run is not None:
            record.run, record.image_id = run, image[1]
            for sub in run.substitutions + run.notes:
                if sub.text not in self._seen:
                    self._seen.add(sub.text)
                    kind = "substitution" if sub in run.substitutions else "not rehearsed"
                    self.log(f"rehearsal: {kind}: {sub.text}")
            self._start(record)
        else:
            self._finish_early(record)
        return record

    def _image(self, ref: str) -> tuple[Image, str] | None:
        if ref not in self._images:
            proc = docker("image", "inspect", ref)
            if proc.returncode != 0:
                self._images[ref] = None
            else:
                info = json.loads(proc.stdout)[0]
                self._images[ref] = (Image.from_inspect(ref, info.get("Config") or {}), info["Id"])
        return self._images[ref]

    def _start(self, record: PodRecord) -> None:
        run = record.run
        assert run is not None
        pod_dir = self.workdir / "pods" / record.name
        pod_dir.mkdir(parents=True, exist_ok=True)
        env_file = pod_dir / "env"
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{k}={v}\n" for k, v in run.env.items()))
        term = pod_dir / "termination-log"
        term.write_text("")
        term.chmod(0o666)  # the container's user writes it, as into a kubelet's file
        mounts = []
        for path, empty in run.empty_dirs.items():
            host = pod_dir / "volumes" / empty.volume
            host.mkdir(parents=True, exist_ok=True)
            os.chown(host, 0, empty.fs_group or 0)
            host.chmod(empty.mode)
            mounts += ["--mount", f"type=bind,src={host},dst={path}"]
        name = f"rehearsal-{self.session}-{record.name}"[:200]
        argv = ["run", "-d", "--name", name, "--label", f"{LABEL}={self.session}",
                "--label", f"io.kubernetes.pod.name={record.name}", "--network", "host", *run.options, *mounts,
                "--env-file", str(env_file), "--workdir", run.working_dir,
                "--mount", f"type=bind,src={term},dst={run.termination_message_path}",
                "--entrypoint", run.argv[0], run.image, *run.argv[1:]]
        proc = docker(*argv)
        env_file.unlink(missing_ok=True)  # secrets stay only in the container's config
        if proc.returncode != 0:
            record.phase, record.reason = "Failed", "RunContainerError"
            record.message = proc.stderr.strip()[-1500:]
            self._event(record, "Warning", "Failed", f"Error: {record.message}")
            self._finish_early(record)
            return
        record.container_id = proc.stdout.strip()
        record.phase, record.started_at = "Running", now()
        for reason, message in (("Pulled", f'Container image "{run.image}" already present on machine'),
                                ("Created", f"Created container {run.container}"),
                                ("Started", f"Started container {run.container}")):
            self._event(record, "Normal", reason, message)
        threading.Thread(target=self._wait, args=(record, term), daemon=True,
                         name=f"rehearsal-wait-{record.name}").start()

    def _wait(self, record: PodRecord, term: Path) -> None:
        cid = record.container_id
        assert cid is not None and record.run is not None
        waited = docker("wait", cid, timeout=24 * 3600)
        info = (json.loads(docker("inspect", cid).stdout or "[]") or [{}])[0].get("State") or {}
        code = int(info.get("ExitCode", waited.stdout.strip() or -1)) if waited.returncode == 0 else -1
        logs = docker("logs", cid)
        record.output = logs.stdout + logs.stderr
        message = term.read_text(errors="replace")[:4096] if term.exists() else ""
        if not message and code != 0 and record.run.termination_message_policy == "FallbackToLogsOnError":
            message = "\n".join(record.output.splitlines()[-80:])[-2048:]
        record.termination_message = message or None
        if self._stopping:
            record.exit_reason = "Stopped"
        elif waited.returncode != 0:
            record.exit_reason = "EngineLost"
            record.diagnosis = (f"pod {record.namespace}/{record.name} (task {record.task}): the Docker engine stopped "
                                f"answering while the container ran ({waited.stderr.strip()[-300:]}); "
                                "was it stopped by another process? Run make rehearse again")
        else:
            record.exit_reason = "OOMKilled" if info.get("OOMKilled") else "Completed" if code == 0 else "Error"
            if code != 0:
                record.diagnosis = self._diagnose(record, code)
        if record.diagnosis:
            self._event(record, "Warning", "Rehearsal", record.diagnosis)
            self.log(f"rehearsal: FAILED {record.diagnosis}")
        record.exit_code, record.finished_at = code, now()
        record.phase = "Succeeded" if code == 0 else "Failed"
        record.ended = time.monotonic()
        record.version += 1
        record.done.set()
        if record.deleted:
            docker("rm", "-f", cid)

    def _finish_early(self, record: PodRecord) -> None:
        record.ended = time.monotonic()
        record.diagnosis = (f"pod {record.namespace}/{record.name} (task {record.task}) did not start: "
                            f"{(record.waiting or {}).get('message') or record.message}")
        self.log(f"rehearsal: FAILED {record.diagnosis}")
        record.done.set()

    def delete_pod(self, record: PodRecord) -> None:
        record.deleted = True
        with self._lock:
            self.pods.pop((record.namespace, record.name), None)
        if record.container_id and not record.done.is_set():
            grace = record.run.grace_period_s if record.run else 30
            docker("stop", "-t", str(min(grace, 30)), record.container_id)
            record.done.wait(60)
        if record.container_id and record.done.is_set():
            docker("rm", "-f", record.container_id)
        shutil.rmtree(self.workdir / "pods" / record.name / "volumes", ignore_errors=True)  # an emptyDir ends here

    def _event(self, record: PodRecord, kind: str, reason: str, message: str) -> None:
        n = len(record.events) + 1
        record.events.append({
            "apiVersion": "v1", "kind": "Event", "type": kind, "reason": reason, "message": message, "count": 1,
            "metadata": {"name": f"{record.name}.{n}", "namespace": record.namespace, "uid": f"{record.uid}-{n}",
                         "resourceVersion": str(n)},
            "involvedObject": {"kind": "Pod", "name": record.name, "namespace": record.namespace, "uid": record.uid,
                               "fieldPath": f"spec.containers{{{record.container_name}}}"},
            "firstTimestamp": now(), "lastTimestamp": now(), "source": {"component": "rehearsal"},
        })

    # -- what the operator reads back ----------------------------------------------------------------------
    def pod_json(self, record: PodRecord) -> dict[str, Any]:
        obj = copy.deepcopy(record.manifest)
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "Pod")
        obj["metadata"].update(uid=record.uid, creationTimestamp=record.created, resourceVersion=str(record.version))
        obj["spec"]["nodeName"] = "rehearsal"
        status: dict[str, Any] = {"phase": record.phase, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
                                  "startTime": record.created,
                                  "conditions": [{"type": "PodScheduled", "status": "True"}]}
        if record.reason:
            status["reason"], status["message"] = record.reason, record.message
        state: dict[str, Any] | None = None
        if record.waiting:
            state = {"waiting": record.waiting}
        elif record.exit_code is not None:
            state = {"terminated": {"exitCode": record.exit_code, "reason": record.exit_reason,
                                    "startedAt": record.started_at, "finishedAt": record.finished_at,
                                    "message": record.termination_message,
                                    "containerID": f"docker://{record.container_id}"}}
        elif record.container_id:
            state = {"running": {"startedAt": record.started_at}}
        if state is not None:
            status["containerStatuses"] = [{
                "name": record.container_name, "image": record.manifest["spec"]["containers"][0].get("image"),
                "imageID": record.image_id, "containerID": f"docker://{record.container_id or ''}",
                "ready": "running" in state, "restartCount": 0, "started": "running" in state, "state": state,
            }]
        obj["status"] = status
        return obj

    def stream_log(self, record: PodRecord, query: Mapping[str, str], write: Any) -> None:
        """The container's log as the API server gives it: followed until the container ends, with
        RFC 3339 timestamps on request, since N seconds, the last N lines."""
        args = ["logs"]
        if _flag(query, "timestamps"):
            args.append("--timestamps")
        if query.get("sinceSeconds"):
            args += ["--since", f"{int(query['sinceSeconds'])}s"]
        if query.get("tailLines"):
            args += ["--tail", str(int(query["tailLines"]))]
        follow = _flag(query, "follow") and not record.done.is_set()
        if follow:
            args.append("--follow")
        proc = subprocess.Popen(["docker", *args, str(record.container_id)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            while chunk := os.read(proc.stdout.fileno(), 65536):
                write(chunk)
        finally:
            proc.stdout.close()
            proc.wait()
        if follow:  # the stream ends with the container: its status is final before the reader asks
            record.done.wait(30)

    # -- deployments ---------------------------------------------------------------------------------------
    def start_deployment(self, name: str, extra_env: Mapping[str, str] | None = None) -> PodRecord:
        """One pod of a rendered Deployment, as its ReplicaSet would create it."""
        deployment = self.release.require("Deployment", name)
        template = copy.deepcopy(deployment["spec"]["template"])
        manifest = {"apiVersion": "v1", "kind": "Pod",
                    "metadata": {**(template.get("metadata") or {}), "namespace": self.release.namespace,
                                 "name": f"{name}-{secrets.token_hex(3)}"},
                    "spec": template["spec"]}
        return self.create_pod(manifest, extra_env)

    def wait_ready(self, record: PodRecord, timeout_s: float = 300) -> list[str]:
        """Run the pod's probes as a kubelet would (startup, then readiness, then liveness once);
        returns what each did. Raises AssertionError with the pod's output when one fails."""
        if record.run is None or record.container_id is None:
            raise AssertionError(record.diagnosis or f"pod {record.name} did not start")
        probes = {p.kind: p for p in record.run.probes}
        if "readiness" not in probes:
            raise AssertionError(f"pod {record.name} has no readinessProbe to pass")
        done: list[str] = []
        deadline = time.monotonic() + timeout_s
        for kind in ("startup", "readiness", "liveness"):
            probe = probes.get(kind)
            if probe is None:
                continue
            attempts = probe.failure_threshold if kind != "readiness" else 10**6
            time.sleep(probe.initial_delay_s)
            for attempt in range(1, attempts + 1):
                ok, detail = _probe_once(probe)
                if ok:
                    done.append(f"{kind}Probe {probe.scheme} :{probe.host_port}{probe.path} passed "
                                f"(attempt {attempt}: {detail})")
                    break
                if record.done.is_set():
                    raise AssertionError(f"pod {record.name} exited ({record.exit_code}) before its {kind}Probe "
                                         f"passed: {record.diagnosis}\n{record.output[-3000:]}")
                if attempt == attempts or time.monotonic() > deadline:
                    raise AssertionError(f"pod {record.name}: {kind}Probe failed {attempt} times (last: {detail})"
                                         f"\n{docker('logs', str(record.container_id)).stderr[-3000:]}")
                time.sleep(probe.period_s)
        return done

    # -- diagnosis and report ------------------------------------------------------------------------------
    def _diagnose(self, record: PodRecord, code: int) -> str:
        run = record.run
        assert run is not None
        lines = [_readable(line) for line in _plain(record.output).splitlines() if line.strip()]
        origin = ("the image's WORKDIR; the pod sets no workingDir" if run.working_dir_from_image
                  else "the pod's workingDir")
        parts = [f"pod {record.namespace}/{record.name} (task {record.task}) failed: exit code {code}"
                 + (" (OOMKilled: over its memory limit)" if record.exit_reason == "OOMKilled" else ""),
                 f"it ran {_shell(run.argv)} as {run.user} in {run.working_dir} ({origin}), which holds "
                 f"{self._listing(record, run.working_dir)}"
                 + ("" if run.writable(run.working_dir) else "; not writable: read-only root filesystem, no emptyDir")]
        for path in dict.fromkeys(_READ_ONLY.findall(record.output)):
            absolute = str(PurePosixPath(run.working_dir, path)).replace("/./", "/")
            absolute = os.path.normpath(absolute)
            mounts = ", ".join(sorted(run.empty_dirs)) or "none"
            parts.append(f"{absolute} is on the read-only root filesystem (readOnlyRootFilesystem: true) and no "
                         f"emptyDir is mounted there (emptyDirs: {mounts})")
        parts.append("its output ends: " + " | ".join(lines[-8:]) if lines else "it printed nothing")
        return "; ".join(parts)

    def _listing(self, record: PodRecord, path: str, most: int = 5000) -> str:
        """The top level of `path` in the stopped container (`docker cp` streams it as a tar; at
        most `most` entries are read, so a working directory of `/` stays cheap)."""
        proc = subprocess.Popen(["docker", "cp", f"{record.container_id}:{path}", "-"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        names: list[str] = []
        complete = False
        with suppress(tarfile.TarError, OSError), tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for n, member in enumerate(tar):
                if n >= most:
                    break
                parts = PurePosixPath(member.name).parts
                if len(parts) == 2:
                    names.append(parts[1] + ("/" if member.isdir() else ""))
            else:
                complete = True
        proc.kill()
        _, err = proc.communicate()
        if not names and proc.returncode not in (0, -9):
            return f"nothing readable ({err.decode(errors='replace').strip()[-200:]})"
        listed = ", ".join(sorted(names)) + ("" if complete else ", ...")
        return f"[{listed}]" if names else "nothing"

    def failures(self) -> list[str]:
        return [f"REFUSED {r}" for r in self.refusals] + [r.diagnosis for r in self.history if r.diagnosis] + [
            f"unhandled API request: {u}" for u in self.unhandled]

    def report(self) -> str:
        subs = sorted({s.text for r in self.history if r.run for s in r.run.substitutions})
        notes = sorted({n.text for r in self.history if r.run for n in r.run.notes})
        ok = sum(1 for r in self.history if r.exit_code == 0)
        out = [f"== rehearsal: {len(self.history)} pods on the local Docker engine ({ok} succeeded), "
               f"{len(self.refusals)} refused"]
        for r in self.history:
            took = f"{r.ended - r.began:.1f}s" if r.ended else "running"
            code = r.exit_code if r.exit_code is not None else "-"
            out.append(f"   {r.name:<58} {r.task:<52} exit {code:>3}  {took}")
        out.append(f"== substitutions ({len(subs)})")
        out += [f"   {s}" for s in subs]
        out.append(f"== not rehearsed: a cluster's job ({len(notes)})")
        out += [f"   {n}" for n in notes]
        problems = self.failures()
        out.append(f"== failures ({len(problems)})")
        out += [f"   {p}" for p in problems]
        return "\n".join(out)


def _flag(query: Mapping[str, str], key: str) -> bool:
    """A boolean query parameter as the API server parses it (Go's strconv.ParseBool)."""
    return query.get(key, "").lower() in ("1", "t", "true")


def _probe_once(probe: Probe) -> tuple[bool, str]:
    try:
        if probe.scheme == "tcp":
            with socket.create_connection(("127.0.0.1", probe.host_port), timeout=probe.timeout_s):
                return True, "connected"
        url = f"{probe.scheme}://127.0.0.1:{probe.host_port}{probe.path}"
        with urllib.request.urlopen(url, timeout=max(probe.timeout_s, 1)) as response:
            return 200 <= response.status < 400, f"HTTP {response.status}"
    except OSError as exc:
        return False, str(exc)


def _plain(output: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", output)


def _readable(line: str) -> str:
    """A line of output as a person reads it: a dbt JSON log event (`--log-format json`, what the
    watcher producer runs) becomes its message (first and last line of a multi-line one)."""
    if line.startswith("{"):
        with suppress(ValueError, KeyError, TypeError):
            msg = [part.strip() for part in str(json.loads(line)["info"]["msg"]).splitlines() if part.strip()]
            return " ".join(dict.fromkeys([msg[0], msg[-1]])) if msg else ""
    return line


def _shell(argv: list[str]) -> str:
    return " ".join(a if re.fullmatch(r"[\w./:=@,+-]+", a) else repr(a) for a in argv)


def _selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("==", 1) if "==" in term else term.split("=", 1)
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif re.fullmatch(r"[\w./-]+", term):
            if term not in labels:
                return False
        else:
            raise ValueError(f"label selector term {term!r} is not supported")
    return True


class _Handler(BaseHTTPRequestHandler):
    cluster: Cluster
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason, "code": code})

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def _route(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        cluster = self.cluster
        try:
            if match := _POD.match(url.path):
                self._pods(method, match["ns"], match["name"], match["sub"], query)
            elif (match := _EVENTS.match(url.path)) and method == "GET":
                self._events(match["ns"], query)
            else:
                cluster.unhandled.append(f"{method} {self.path}")
                self._status(404, "NotFound", f"the rehearsal does not serve {method} {url.path}")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PATCH(self) -> None:
        self._route("PATCH")

    def do_DELETE(self) -> None:
        self._route("DELETE")

    def _pods(self, method: str, ns: str, name: str | None, sub: str | None, query: Mapping[str, str]) -> None:
        cluster = self.cluster
        if name is None:
            if method == "POST":
                manifest = self._body()
                manifest.setdefault("metadata", {}).setdefault("namespace", ns)
                if manifest["metadata"]["namespace"] != ns:
                    self._status(400, "BadRequest", "the namespace of the pod does not match the request")
                    return
                try:
                    record = cluster.create_pod(manifest)
                except Refused as exc:
                    self._status(422, "Invalid", str(exc))
                    return
                except FileExistsError as exc:
                    self._status(409, "AlreadyExists", str(exc))
                    return
                self._send(201, cluster.pod_json(record))
            elif method == "GET":
                try:
                    items = [cluster.pod_json(r) for (pns, _), r in list(cluster.pods.items())
                             if pns == ns and _selector_matches(query.get("labelSelector", ""),
                                                                r.manifest["metadata"].get("labels") or {})]
                except ValueError as exc:
                    cluster.unhandled.append(f"GET {self.path}: {exc}")
                    self._status(400, "BadRequest", str(exc))
                    return
                self._send(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
                                 "items": items})
            else:
                cluster.unhandled.append(f"{method} {self.path}")
                self._status(405, "MethodNotAllowed", method)
            return
        record = cluster.pods.get((ns, name))
        if record is None:
            self._status(404, "NotFound", f'pods "{name}" not found')
            return
        if sub == "log" and method == "GET":
            self._log(record, query)
        elif sub is None and method == "GET":
            self._send(200, cluster.pod_json(record))
        elif sub is None and method == "PATCH":
            patch = self._body().get("metadata") or {}
            for key in ("labels", "annotations"):
                if patch.get(key):
                    record.manifest["metadata"].setdefault(key, {}).update(patch[key])
            record.version += 1
            self._send(200, cluster.pod_json(record))
        elif sub is None and method == "DELETE":
            body = cluster.pod_json(record)
            cluster.delete_pod(record)
            self._send(200, body)
        else:
            cluster.unhandled.append(f"{method} {self.path}")
            self._status(405, "MethodNotAllowed", method)

    def _log(self, record: PodRecord, query: Mapping[str, str]) -> None:
        container = query.get("container") or record.container_name
        if container != record.container_name:
            self._status(400, "BadRequest", f"container {container} is not valid for pod {record.name}")
            return
        if record.container_id is None:
            why = (record.waiting or {}).get("reason") or record.reason or "ContainerCreating"
            self._status(400, "BadRequest",
                         f'container "{container}" in pod "{record.name}" is waiting to start: {why}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(chunk: bytes) -> None:
            self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            self.wfile.flush()

        try:
            self.cluster.stream_log(record, query, write)
        finally:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _events(self, ns: str, query: Mapping[str, str]) -> None:
        wanted = None
        for term in (query.get("fieldSelector") or "").split(","):
            if term.startswith("involvedObject.name="):
                wanted = term.split("=", 1)[1]
        items = [e for r in self.cluster.history if r.namespace == ns and (wanted is None or r.name == wanted)
                 for e in r.events]
        self._send(200, {"kind": "EventList", "apiVersion": "v1", "metadata": {"resourceVersion": str(len(items))},
                         "items": items})


@contextmanager
def running_cluster(release: Any, services: list[LocalService], workdir: Path, log: Any = print) -> Iterator[Cluster]:
    cluster = Cluster(release, services, workdir, log=log).start()
    try:
        yield cluster
    finally:
        cluster.stop()
