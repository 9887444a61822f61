"""The Kubernetes Pod Security Standards, `baseline` and `restricted` levels, as checks on a pod spec.

Written from the standard's published policy table (kubernetes.io/docs/concepts/security/
pod-security-standards, the controls as of Kubernetes 1.33) so that tests can check pods a cluster
would admit into a namespace labelled `pod-security.kubernetes.io/enforce: restricted`, without a
cluster. `violations(spec, level)` returns one line per failed control (empty: the pod passes).
`read_only_violations(spec)` adds this project's own rule: every container's root filesystem is
read-only. Stdlib only: the chart suite (tools venv) and the DAG suite (airflow venv) both use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

# Capabilities `baseline` lets a container add; `restricted` allows only NET_BIND_SERVICE.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
    "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# Volume types `restricted` allows (everything but hostPath is allowed by `baseline`).
RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}
VOLUME_META_KEYS = {"name"}


def all_containers(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            yield f"{key}[{container.get('name', '?')}]", container


def _baseline(spec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    pod_ctx = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(f"host namespaces: {key} is true")
    if (pod_ctx.get("windowsOptions") or {}).get("hostProcess"):
        out.append("pod: windowsOptions.hostProcess is true")
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            out.append(f"volume {volume.get('name')}: hostPath")
    for sysctl in pod_ctx.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            out.append(f"pod: unsafe sysctl {sysctl.get('name')}")
    contexts = [("pod", pod_ctx)]
    for where, container in all_containers(spec):
        ctx = container.get("securityContext") or {}
        contexts.append((where, ctx))
        if ctx.get("privileged"):
            out.append(f"{where}: privileged")
        if (ctx.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"{where}: windowsOptions.hostProcess is true")
        added = set((ctx.get("capabilities") or {}).get("add") or [])
        if added - BASELINE_CAPABILITIES:
            out.append(f"{where}: adds capabilities {sorted(added - BASELINE_CAPABILITIES)}")
        for port in container.get("ports") or []:
            if port.get("hostPort"):
                out.append(f"{where}: hostPort {port['hostPort']}")
        if ctx.get("procMount", "Default") != "Default":
            out.append(f"{where}: procMount {ctx['procMount']}")
    for where, ctx in contexts:
        apparmor = (ctx.get("appArmorProfile") or {}).get("type")
        if apparmor not in (None, "RuntimeDefault", "Localhost"):
            out.append(f"{where}: appArmorProfile {apparmor}")
        selinux = ctx.get("seLinuxOptions") or {}
        if selinux.get("type", "") not in SELINUX_TYPES or selinux.get("user") or selinux.get("role"):
            out.append(f"{where}: seLinuxOptions {selinux}")
        if (ctx.get("seccompProfile") or {}).get("type") == "Unconfined":
            out.append(f"{where}: seccompProfile Unconfined")
    return out


def _restricted(spec: dict[str, Any]) -> list[str]:
    out: list[str] = []
    pod_ctx = spec.get("securityContext") or {}
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - VOLUME_META_KEYS
        if not kinds <= RESTRICTED_VOLUMES:
            out.append(f"volume {volume.get('name')}: type {sorted(kinds - RESTRICTED_VOLUMES)} not allowed")
    pod_non_root = pod_ctx.get("runAsNonRoot") is True
    pod_seccomp = (pod_ctx.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    if pod_ctx.get("runAsUser") == 0:
        out.append("pod: runAsUser 0")
    for where, container in all_containers(spec):
        ctx = container.get("securityContext") or {}
        if ctx.get("allowPrivilegeEscalation") is not False:
            out.append(f"{where}: allowPrivilegeEscalation is not false")
        non_root = ctx.get("runAsNonRoot")
        if non_root is False or (non_root is None and not pod_non_root):
            out.append(f"{where}: runAsNonRoot is not true (pod or container)")
        if ctx.get("runAsUser") == 0:
            out.append(f"{where}: runAsUser 0")
        seccomp = (ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost") and not (seccomp is None and pod_seccomp):
            out.append(f"{where}: seccompProfile is not RuntimeDefault/Localhost (pod or container)")
        caps = ctx.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"{where}: capabilities do not drop ALL")
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append(f"{where}: adds capabilities other than NET_BIND_SERVICE")
    return out


def violations(spec: dict[str, Any], level: str = "restricted") -> list[str]:
    """Failed controls of a pod spec at `level` (`baseline` or `restricted`, which includes baseline)."""
    if level not in ("baseline", "restricted"):
        raise ValueError(f"unknown Pod Security level {level!r}")
    found = _baseline(spec)
    if level == "restricted":
        found += _restricted(spec)
    return found


def read_only_violations(spec: dict[str, Any]) -> list[str]:
    """Containers whose root filesystem is writable (this project's rule for its own pods)."""
    return [
        f"{where}: readOnlyRootFilesystem is not true"
        for where, container in all_containers(spec)
        if (container.get("securityContext") or {}).get("readOnlyRootFilesystem") is not True
    ]
