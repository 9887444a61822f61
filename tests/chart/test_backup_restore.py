"""The chart's backup and restore scripts (charts/datapipe/files/) against a real PostgreSQL.

The backup CronJob runs files/backup.sh and the documented restore procedure runs files/restore.sh
(docs/kubernetes.md); here both run as-is against the embedded PostgreSQL of the `warehouse` fixture,
with its own pg_dump / pg_restore on PATH: dump, drop, restore, same row counts; retention by count.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from chart_helpers import CHART

BACKUP = CHART / "files" / "backup.sh"
RESTORE = CHART / "files" / "restore.sh"
INIT = CHART / "files" / "warehouse-init.sh"

COUNTS_SQL = (
    "select (select count(*) from raw.time_series_daily) || ',' || (select count(*) from marts.fct_daily_prices)"
    " || ',' || (select count(*) from ops.extract_runs)"
)


def run_script(script: Path, env: dict[str, str], bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(script), *args], env=full, capture_output=True, text=True)


@pytest.fixture(scope="module")
def seeded(warehouse):  # type: ignore[no-untyped-def]
    """Schemas shaped like docs/warehouse.md with a few thousand rows, owned by the pipeline role."""
    warehouse.psql(
        """
        create schema if not exists raw;
        create schema if not exists marts;
        create schema if not exists ops;
        drop table if exists raw.time_series_daily, marts.fct_daily_prices, ops.extract_runs;
        create table raw.time_series_daily (payload_id bigint generated always as identity primary key,
            symbol text not null, payload jsonb not null);
        insert into raw.time_series_daily (symbol, payload)
            select 'SYM' || (i % 10), jsonb_build_object('i', i) from generate_series(1, 2500) i;
        create table marts.fct_daily_prices (symbol text, trade_date date, close numeric,
            primary key (symbol, trade_date));
        insert into marts.fct_daily_prices
            select 'SYM' || s, date '2024-01-01' + d, 100 + d from generate_series(0, 9) s, generate_series(0, 199) d;
        create table ops.extract_runs (run_id uuid primary key, status text);
        insert into ops.extract_runs select gen_random_uuid(), 'succeeded' from generate_series(1, 7);
        grant usage on schema marts to dashboard;
        grant select on all tables in schema marts to dashboard;
        """
    )
    return warehouse


def test_dump_drop_restore_gives_the_same_row_counts(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bin_dir = seeded.server.bin
    before = seeded.psql(COUNTS_SQL)
    assert before == "2500,2000,7"
    backups = tmp_path / "backups"
    env = {**seeded.env, "BACKUP_DIR": str(backups), "BACKUP_KEEP": "2"}
    proc = run_script(BACKUP, env, bin_dir)
    assert proc.returncode == 0, proc.stderr
    (dump,) = sorted(backups.glob("warehouse-*.dump"))
    assert "backup written" in proc.stdout and dump.stat().st_size > 1000

    # disaster: the data is gone
    seeded.psql("drop schema raw cascade; drop schema marts cascade; drop schema ops cascade;")
    assert (
        seeded.psql("select count(*) from information_schema.schemata where schema_name in ('raw','marts','ops')")
        == "0"
    )

    proc = run_script(RESTORE, {**seeded.env, "BACKUP_DIR": str(backups)}, bin_dir)
    assert proc.returncode == 0, proc.stderr
    assert seeded.psql(COUNTS_SQL) == before
    # the read-only role's grants come back with the dump
    reader = {**os.environ, **seeded.reader_env}
    out = subprocess.run(
        [str(bin_dir / "psql"), "-X", "-At", "-c", "select count(*) from marts.fct_daily_prices"],
        env=reader,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "2000"
    # identity sequences continue after the restored rows
    seeded.psql("insert into raw.time_series_daily (symbol, payload) values ('NEW', '{}')")
    assert seeded.psql("select max(payload_id) from raw.time_series_daily") == "2501"


def test_backup_keeps_only_the_newest_dumps(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backups = tmp_path / "backups"
    backups.mkdir()
    for old in (
        "warehouse-20200101T000000Z.dump",
        "warehouse-20200102T000000Z.dump",
        "warehouse-20200103T000000Z.dump",
    ):
        (backups / old).write_bytes(b"old")
    (backups / "notes.txt").write_text("not a dump")
    env = {**seeded.env, "BACKUP_DIR": str(backups), "BACKUP_KEEP": "2"}
    proc = run_script(BACKUP, env, seeded.server.bin)
    assert proc.returncode == 0, proc.stderr
    left = sorted(p.name for p in backups.iterdir())
    assert left[0] == "notes.txt"
    assert left[1] == "warehouse-20200103T000000Z.dump"
    assert len(left) == 3 and left[2].startswith("warehouse-2") and left[2] > left[1]
    assert proc.stdout.count("removed old backup") == 2


def test_a_failed_dump_deletes_nothing(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    backups = tmp_path / "backups"
    backups.mkdir()
    (backups / "warehouse-20200101T000000Z.dump").write_bytes(b"keep me")
    env = {**seeded.env, "PGPASSWORD": "wrong-password", "BACKUP_DIR": str(backups), "BACKUP_KEEP": "1"}
    proc = run_script(BACKUP, env, seeded.server.bin)
    assert proc.returncode != 0
    assert sorted(p.name for p in backups.iterdir()) == ["warehouse-20200101T000000Z.dump"]


def test_restore_names_a_missing_dump(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = run_script(RESTORE, {**seeded.env, "BACKUP_DIR": str(tmp_path)}, seeded.server.bin)
    assert proc.returncode == 1 and f"no warehouse-*.dump in {tmp_path}" in proc.stderr
    proc = run_script(RESTORE, seeded.env, seeded.server.bin, str(tmp_path / "nope.dump"))
    assert proc.returncode == 1 and "dump not found" in proc.stderr


def test_backup_rejects_a_bad_retention(seeded, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    proc = run_script(BACKUP, {**seeded.env, "BACKUP_DIR": str(tmp_path), "BACKUP_KEEP": "0"}, seeded.server.bin)
    assert proc.returncode == 2 and "BACKUP_KEEP must be a positive integer" in proc.stderr


def test_init_script_creates_roles_and_databases_idempotently(seeded) -> None:  # type: ignore[no-untyped-def]
    admin = seeded.admin_env
    env = {
        **admin,
        "POSTGRES_USER": admin["PGUSER"],
        "PIPELINE_USER": "pipeline_t",
        "PIPELINE_PASSWORD": "pw-pipeline-1",
        "DASHBOARD_USER": "dashboard_t",
        "DASHBOARD_PASSWORD": "pw-dashboard-1",
        "WAREHOUSE_DB": "warehouse_t",
        "AIRFLOW_PASSWORD": "pw-airflow-1",
    }
    for attempt in (1, 2):  # a second run (every upgrade) changes nothing and does not fail
        proc = run_script(INIT, env, seeded.server.bin)
        assert proc.returncode == 0, f"run {attempt}: {proc.stderr}"
    rows = seeded.psql(
        "select string_agg(datname || ':' || pg_get_userbyid(datdba), ',' order by datname) from pg_database"
        " where datname in ('warehouse_t', 'airflow')",
        admin=True,
    )
    assert rows == "airflow:airflow,warehouse_t:pipeline_t"
    # the generated passwords work, the reader may connect but not create
    for user, password in (("pipeline_t", "pw-pipeline-1"), ("dashboard_t", "pw-dashboard-1")):
        login = {**os.environ, **seeded.env, "PGUSER": user, "PGPASSWORD": password, "PGDATABASE": "warehouse_t"}
        out = subprocess.run(
            [str(seeded.server.bin / "psql"), "-X", "-At", "-c", "select current_user"],
            env=login,
            capture_output=True,
            text=True,
        )
        assert out.stdout.strip() == user, out.stderr
    # a rotated password reaches the server on the next run
    proc = run_script(INIT, {**env, "DASHBOARD_PASSWORD": "pw-dashboard-2"}, seeded.server.bin)
    assert proc.returncode == 0, proc.stderr
    login = {
        **os.environ,
        **seeded.env,
        "PGUSER": "dashboard_t",
        "PGPASSWORD": "pw-dashboard-2",
        "PGDATABASE": "warehouse_t",
    }
    out = subprocess.run(
        [str(seeded.server.bin / "psql"), "-X", "-At", "-c", "create table t (i int)"],
        env=login,
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "permission denied" in out.stderr
