"""Fixtures shared by every suite. Stdlib only: each suite runs in its own component virtualenv.

- `warehouse`: a real, private embedded PostgreSQL for the test session (not the user's
  .local warehouse), with `.env` (pipeline writer), `.reader_env` (dashboard reader) and
  `.admin_env` (superuser) libpq variables; `warehouse_factory()` starts more of them.
- `sandbox_server`: a factory that starts the sandbox Alpha Vantage API (`extract sandbox`) from
  the extract virtualenv as a real HTTP server on a free port, with optional fault settings;
  `module_sandbox_server`, the same with servers that live for the test module.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import warehouse as warehouse_mod  # noqa: E402

VENVS = ROOT / ".local" / "venvs"


def venv_bin(venv: str, exe: str) -> Path:
    """Path of an executable in a component virtualenv; fails clearly when the venv is missing."""
    path = VENVS / venv / "bin" / exe
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make venvs` (make test does it)")
    return path


@dataclass
class TestWarehouse:
    __test__ = False  # not a test class (pytest collects Test* names)
    server: warehouse_mod.Warehouse
    env: dict[str, str]
    reader_env: dict[str, str]
    admin_env: dict[str, str]

    def stop(self) -> None:
        """Stop the server (what a warehouse that goes away looks like to clients). Another pytest
        run on this machine may have reset /tmp/pytest-of-<user> to 0700 meanwhile, which hides the
        data dir from the postgres user: re-open the traversal bits first (what Warehouse.init does)."""
        self.server._make_traversable()
        self.server.stop()

    def start(self) -> None:
        """Start the stopped server again on the same port (clients keep their settings)."""
        port = self.server.credentials().port
        self.server._make_traversable()
        original = warehouse_mod.port_is_free
        warehouse_mod.port_is_free = _port_is_free_like_postgres
        try:
            self.server.start()
        finally:
            warehouse_mod.port_is_free = original
        assert self.server.credentials().port == port, "the warehouse came back on another port"

    def psql(self, sql: str, *, admin: bool = False, database: str | None = None) -> str:
        env = {**os.environ, **(self.admin_env if admin else self.env)}
        if database:
            env["PGDATABASE"] = database
        out = subprocess.run(
            [str(self.server.bin / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env=env, capture_output=True, text=True, check=True,
        )
        return out.stdout.strip()


def _port_is_free_like_postgres(port: int) -> bool:
    """PostgreSQL binds with SO_REUSEADDR, so a port whose old connections sit in TIME_WAIT after a
    stop is free for it; scripts/warehouse.py's check binds without it and would move the server to
    another port, stranding every client configured with the old one."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextmanager
def private_warehouse() -> Iterator[TestWarehouse]:
    """A real embedded PostgreSQL of its own, destroyed at the end of the block."""
    # Under .local, not pytest's /tmp/pytest-of-<user>: another pytest run resets that folder to
    # 0700, which would hide the data directory from the unprivileged postgres user.
    parent = ROOT / ".local" / "test-warehouses"
    parent.mkdir(parents=True, exist_ok=True)
    server = warehouse_mod.Warehouse(Path(tempfile.mkdtemp(prefix="wh-", dir=parent)))
    server.start()
    try:
        yield TestWarehouse(server, server.env(), server.env(reader=True), server.admin_env())
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def warehouse() -> Iterator[TestWarehouse]:
    with private_warehouse() as wh:
        yield wh


@pytest.fixture(scope="session")
def warehouse_factory() -> Iterator[Callable[[], TestWarehouse]]:
    """Starts more private warehouses on demand; each is destroyed at the end of the session."""
    with ExitStack() as stack:
        yield lambda: stack.enter_context(private_warehouse())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout_s: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no answer from {url} within {timeout_s}s")


@dataclass
class Sandbox:
    base_url: str
    port: int
    process: subprocess.Popen[bytes]


@contextmanager
def sandbox_servers() -> Iterator[Callable[..., Sandbox]]:
    """Start `extract sandbox` with extra CLI args / env; every server is stopped at the end of the block."""
    started: list[Sandbox] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Sandbox:
        port = free_port()
        proc = subprocess.Popen(
            [str(venv_bin("extract", "extract")), "sandbox", "--port", str(port), *args],
            env={**os.environ, **(env or {})},
        )
        sandbox = Sandbox(f"http://127.0.0.1:{port}/query", port, proc)
        started.append(sandbox)
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
        return sandbox

    try:
        yield start
    finally:
        for s in started:
            s.process.terminate()
            try:
                s.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                s.process.kill()


@pytest.fixture
def sandbox_server() -> Iterator[Callable[..., Sandbox]]:
    """Start `extract sandbox` with extra CLI args / env; every server is stopped at teardown."""
    with sandbox_servers() as start:
        yield start


@pytest.fixture(scope="module")
def module_sandbox_server() -> Iterator[Callable[..., Sandbox]]:
    """`sandbox_server` for servers shared by a test module (what a module-scoped fixture can use)."""
    with sandbox_servers() as start:
        yield start
