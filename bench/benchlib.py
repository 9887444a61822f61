"""What the benchmarks share: the sandbox API in its own process, synthetic symbols, plain GETs.

Stdlib (plus scripts/warehouse.py, which every component venv can import), so each bench keeps
running in its own component's virtualenv.
"""

from __future__ import annotations

import random
import string
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import warehouse as warehouse_mod  # noqa: E402

EXTRACT = ROOT / ".local" / "venvs" / "extract" / "bin" / "extract"
RUN_STEP = ROOT / "scripts" / "run-step"


def symbols(n: int, seed: int) -> list[str]:
    """`n` distinct made-up tickers (3-5 letters), the same for the same seed."""
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 5))))
    return sorted(out)


def get(url: str, timeout: float = 120) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


@dataclass
class Sandbox:
    """`extract sandbox` in its own process on a free 127.0.0.1 port."""

    process: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT

    @property
    def query_url(self) -> str:
        return f"{self.base}/query"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_sandbox(*args: str, timeout_s: float = 30) -> Sandbox:
    """Start the sandbox with `args` (eg. "--as-of", DAY) and wait until it answers /healthz."""
    port = warehouse_mod.free_port()
    proc = subprocess.Popen([str(EXTRACT), "sandbox", "--port", str(port), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sandbox = Sandbox(proc, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            get(f"{sandbox.base}/healthz", timeout=1)
            return sandbox
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise SystemExit(f"the sandbox ({' '.join(args)}) did not start") from None
            time.sleep(0.1)
