"""The embedded warehouse behind `make db-up`: real PostgreSQL, idempotent, roles and passwords."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import warehouse as wh  # noqa: E402


def psql(server: wh.Warehouse, env: dict[str, str], sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(server.bin / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env={**os.environ, **env}, capture_output=True, text=True,
    )


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    script = ROOT / "scripts" / "warehouse.py"
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True)


@pytest.fixture
def server(tmp_path: Path):
    s = wh.Warehouse(tmp_path / "wh")
    yield s
    s.destroy()


def test_up_is_idempotent_and_keeps_port_and_passwords(server: wh.Warehouse) -> None:
    first = server.start()
    second = server.start()
    assert first == second
    assert server.is_running()
    assert psql(server, server.env(), "select current_user").stdout.strip() == "pipeline"


def test_writer_owns_the_database_and_reader_cannot_create(server: wh.Warehouse) -> None:
    server.start()
    created = psql(server, server.env(), "create schema raw; create table raw.t (x int); insert into raw.t values (1)")
    assert created.returncode == 0, created.stderr
    denied = psql(server, server.env(reader=True), "create schema sneaky")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    denied = psql(server, server.env(reader=True), "create table public.sneaky (x int)")
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    denied = psql(server, server.env(reader=True), "select * from raw.t")
    assert denied.returncode != 0 and "permission denied" in denied.stderr


def test_password_is_required_over_tcp(server: wh.Warehouse) -> None:
    server.start()
    wrong = psql(server, {**server.env(), "PGPASSWORD": "not-the-password"}, "select 1")
    assert wrong.returncode != 0 and "password authentication failed" in wrong.stderr


def test_data_survives_down_and_up(server: wh.Warehouse) -> None:
    server.start()
    assert psql(server, server.env(), "create table kept (x int); insert into kept values (42)").returncode == 0
    server.stop()
    assert not server.is_running()
    server.start()
    assert psql(server, server.env(), "select x from kept").stdout.strip() == "42"


def test_busy_port_moves_to_a_free_one(server: wh.Warehouse) -> None:
    port = server.start().port
    server.stop()
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        new_port = server.start().port
    assert new_port != port
    assert server.env()["PGPORT"] == str(new_port)
    assert psql(server, server.env(), "select 1").stdout.strip() == "1"


def test_cli_writes_private_env_files_and_reports_status(tmp_path: Path) -> None:
    data, env_file = tmp_path / "wh", tmp_path / "warehouse.env"
    try:
        up = cli("up", "--dir", str(data), "--env-file", str(env_file))
        assert up.returncode == 0, up.stderr
        assert cli("up", "--dir", str(data), "--env-file", str(env_file)).returncode == 0
        for path, user in ((env_file, "pipeline"), (tmp_path / "dashboard.env", "dashboard")):
            text = path.read_text()
            assert f"export PGUSER={user}\n" in text and "export PGPASSWORD=" in text
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert cli("status", "--dir", str(data)).returncode == 0
        assert cli("down", "--dir", str(data)).returncode == 0
        stopped = cli("status", "--dir", str(data))
        assert stopped.returncode == 3 and "stopped" in stopped.stdout
    finally:
        cli("destroy", "--dir", str(data))


def test_status_without_a_warehouse_is_a_clear_error(tmp_path: Path) -> None:
    result = cli("status", "--dir", str(tmp_path / "nothing"))
    assert result.returncode != 0
    assert "make db-up" in result.stderr or "stopped" in result.stdout
