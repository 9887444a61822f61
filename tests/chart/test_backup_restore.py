"""The chart's backup and restore scripts (charts/datapipe/files/) against a real PostgreSQL.

The backup CronJob runs files/backup.sh as the backup role that files/warehouse-init.sh creates, and
the documented restore procedure runs files/restore.sh (docs/kubernetes.md); here all three run as-is
against the embedded PostgreSQL of the `warehouse` fixture, with its own psql / pg_dump / pg_dumpall
/ pg_restore on PATH. The restore drill: back up the warehouse and Airflow databases and the roles,
add a table and rows, change and delete data, break a grant, restore, and compare every table's row
checksum with the backed-up state; the dashboard role reads the marts again. The same backup also
rebuilds both databases on a new, empty server (a lost volume).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import warehouse as warehouse_mod  # scripts/warehouse.py (tests/conftest.py puts scripts/ on sys.path)
from chart_helpers import CHART, ROOT

BACKUP = CHART / "files" / "backup.sh"
RESTORE = CHART / "files" / "restore.sh"
INIT = CHART / "files" / "warehouse-init.sh"

DRILL_DB = "drill"
BACKUP_ROLE = "backup"
STAMP = "%Y%m%dT%H%M%SZ"


def run_script(script: Path, env: dict[str, str], bin_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", str(script), *args], env=full, capture_output=True, text=True)


def psql(bin_dir: Path, env: dict[str, str], sql: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(bin_dir / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
        env={**os.environ, **env}, capture_output=True, text=True, check=check,
    )


def checksums(bin_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """Every table of every non-system schema: its row count and an md5 over all its rows."""
    tables = psql(bin_dir, env, (
        "select format('%I.%I', schemaname, tablename) from pg_tables"
        " where schemaname not in ('pg_catalog', 'information_schema') order by 1"
    )).stdout.split()
    if not tables:
        return {}
    query = " union all ".join(
        f"select '{t}', count(*) || ' ' || md5(coalesce(string_agg(r::text, '|' order by r::text), '')) from {t} r"
        for t in tables
    )
    return dict(line.split("|", 1) for line in psql(bin_dir, env, query).stdout.splitlines())


@dataclass
class DrillDatabases:
    """A warehouse database and an Airflow database made by the chart's init script (with the
    backup role), with data and the grants `quality grant-reader` makes."""

    bin: Path
    pipeline: dict[str, str]  # libpq env of the owner of DRILL_DB
    reader: dict[str, str]
    airflow: dict[str, str]  # libpq env of the owner of database airflow
    backup: dict[str, str]  # libpq env of the backup role (no PGDATABASE)
    admin: dict[str, str]


@dataclass
class Drill(DrillDatabases):
    """... and one backup set of both, taken by the backup role."""

    backups: Path
    backup_set: Path
    backup_output: str
    state: dict[str, dict[str, str]]  # checksums at backup time, per database


SEED_WAREHOUSE = """
create schema raw; create schema staging; create schema audit; create schema marts; create schema ops;
create table raw.time_series_daily (payload_id bigint generated always as identity primary key,
    symbol text not null, payload jsonb not null, received_at timestamptz not null default now());
insert into raw.time_series_daily (symbol, payload)
    select 'SYM' || (i % 10), jsonb_build_object('i', i, 'close', 100 + i * 0.25) from generate_series(1, 2500) i;
create view staging.stg_prices as select symbol, (payload ->> 'close')::numeric as close from raw.time_series_daily;
create table audit.fct_daily_prices (symbol text, trade_date date, close numeric, primary key (symbol, trade_date));
create table marts.fct_daily_prices (symbol text, trade_date date, close numeric, primary key (symbol, trade_date));
insert into marts.fct_daily_prices
    select 'SYM' || s, date '2024-01-01' + d, 100 + d from generate_series(0, 9) s, generate_series(0, 199) d;
insert into audit.fct_daily_prices select * from marts.fct_daily_prices;
create table marts.dim_company (symbol text primary key, name text);
insert into marts.dim_company select 'SYM' || s, 'Company ' || s from generate_series(0, 9) s;
create table ops.extract_runs (run_id uuid primary key, status text, started_at timestamptz);
insert into ops.extract_runs select gen_random_uuid(), 'succeeded', now() - i * interval '1 day'
    from generate_series(1, 40) i;
-- the grants of `quality grant-reader`: marts now and later, the ops tables shown, nothing else
grant usage on schema marts to dashboard;
grant select on all tables in schema marts to dashboard;
alter default privileges in schema marts grant select on tables to dashboard;
grant usage on schema ops to dashboard;
grant select on ops.extract_runs to dashboard;
"""
SEED_AIRFLOW = """
create table dag_run (id serial primary key, dag_id text not null, state text, run_after timestamptz);
insert into dag_run (dag_id, state, run_after)
    select 'market_data_daily', 'success', now() - i * interval '1 day' from generate_series(1, 400) i;
create table variable (key text primary key, val text);
insert into variable values ('datapipe', 'kept');
"""


@pytest.fixture(scope="module")
def drill_databases(warehouse) -> DrillDatabases:  # type: ignore[no-untyped-def]
    bin_dir = warehouse.server.bin
    admin = warehouse.admin_env
    airflow_password, backup_password = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    init_env = {
        **admin, "POSTGRES_USER": admin["PGUSER"],
        "PIPELINE_USER": "pipeline", "PIPELINE_PASSWORD": warehouse.env["PGPASSWORD"],
        "DASHBOARD_USER": "dashboard", "DASHBOARD_PASSWORD": warehouse.reader_env["PGPASSWORD"],
        "WAREHOUSE_DB": DRILL_DB, "AIRFLOW_PASSWORD": airflow_password,
        "BACKUP_USER": BACKUP_ROLE, "BACKUP_PASSWORD": backup_password,
    }
    proc = run_script(INIT, init_env, bin_dir)
    assert proc.returncode == 0, proc.stderr
    pipeline = {**warehouse.env, "PGDATABASE": DRILL_DB}
    airflow = {**warehouse.env, "PGUSER": "airflow", "PGPASSWORD": airflow_password, "PGDATABASE": "airflow"}
    backup = {k: v for k, v in {**warehouse.env, "PGUSER": BACKUP_ROLE, "PGPASSWORD": backup_password}.items()
              if k != "PGDATABASE"}
    psql(bin_dir, pipeline, SEED_WAREHOUSE)
    psql(bin_dir, airflow, SEED_AIRFLOW)
    return DrillDatabases(bin_dir, pipeline, {**warehouse.reader_env, "PGDATABASE": DRILL_DB}, airflow, backup, admin)


@pytest.fixture(scope="module")
def drill(drill_databases: DrillDatabases, tmp_path_factory: pytest.TempPathFactory) -> Drill:
    d = drill_databases
    backups = tmp_path_factory.mktemp("drill") / "backups"
    proc = run_script(BACKUP, {**d.backup, "BACKUP_DIR": str(backups), "BACKUP_DATABASES": f"{DRILL_DB} airflow"},
                      d.bin)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (backup_set,) = backups.glob("backup-*")
    state = {DRILL_DB: checksums(d.bin, d.pipeline), "airflow": checksums(d.bin, d.airflow)}
    return Drill(d.bin, d.pipeline, d.reader, d.airflow, d.backup, d.admin, backups, backup_set, proc.stdout, state)


def test_a_backup_set_holds_both_databases_and_the_roles_verified(drill: Drill) -> None:
    files = sorted(p.name for p in drill.backup_set.iterdir())
    assert files == ["MANIFEST", "SHA256SUMS", "airflow.dump", f"{DRILL_DB}.dump", "globals.sql"]
    manifest = (drill.backup_set / "MANIFEST").read_text()
    assert f"{DRILL_DB}.dump " in manifest and "airflow.dump " in manifest and "entries" in manifest
    roles = (drill.backup_set / "globals.sql").read_text()
    for role in ("pipeline", "dashboard", "airflow", BACKUP_ROLE):
        assert f"CREATE ROLE {role};" in roles
    assert f"GRANT pg_read_all_data TO {BACKUP_ROLE}" in roles
    assert "PASSWORD" not in roles.upper() and "SCRAM-SHA-256" not in roles  # passwords stay in the Secrets
    assert f"backup verified: {drill.backup_set}" in drill.backup_output
    assert not list(drill.backups.glob(".*partial*"))


def test_the_backup_role_has_exactly_the_rights_it_needs(drill_databases: DrillDatabases) -> None:
    drill = drill_databases
    attributes = psql(drill.bin, drill.admin, (
        "select rolcanlogin, rolinherit, rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
        f" from pg_roles where rolname = '{BACKUP_ROLE}'")).stdout.strip()
    assert attributes == "t|t|f|f|f|f|f"  # login (inheriting its one membership), nothing else
    member_of = psql(drill.bin, drill.admin, (
        "select string_agg(r.rolname, ',') from pg_auth_members m join pg_roles r on r.oid = m.roleid"
        f" where m.member = '{BACKUP_ROLE}'::regrole")).stdout.strip()
    assert member_of == "pg_read_all_data"
    as_backup = {**drill.backup, "PGDATABASE": DRILL_DB}
    assert psql(drill.bin, as_backup, "select count(*) from raw.time_series_daily").stdout.strip() == "2500"
    for write in ("insert into ops.extract_runs values (gen_random_uuid(), 'x', now())",
                  "update marts.dim_company set name = 'x'", "delete from raw.time_series_daily",
                  "create table marts.evil (x int)", "drop table marts.dim_company",
                  "create schema evil", "create role evil"):
        denied = psql(drill.bin, as_backup, write, check=False)
        assert denied.returncode != 0 and ("permission denied" in denied.stderr or "must be" in denied.stderr), write
    # CONNECT only where it dumps: a database of the server it was not granted stays closed
    for sql in ("drop database if exists closed_db", "create database closed_db",
                "revoke all on database closed_db from public"):
        psql(drill.bin, drill.admin, sql)
    closed = psql(drill.bin, {**drill.backup, "PGDATABASE": "closed_db"}, "select 1", check=False)
    assert closed.returncode != 0 and "permission denied for database" in closed.stderr


def test_restore_drill_brings_back_data_grants_and_the_dashboards_access(drill: Drill) -> None:
    # the warehouse moves on after the backup: a new model and a store_failures table (objects the
    # dump does not have), new and changed and deleted rows, a grant lost
    psql(drill.bin, drill.pipeline, """
        create table marts.new_model (symbol text primary key, score numeric);
        insert into marts.new_model select 'SYM' || s, s from generate_series(0, 9) s;
        create schema dbt_test_failures;
        create table dbt_test_failures.not_null_close (symbol text);
        insert into raw.time_series_daily (symbol, payload) select 'NEW', '{}' from generate_series(1, 50);
        update marts.fct_daily_prices set close = close * 2 where symbol = 'SYM1';
        delete from ops.extract_runs where started_at < now() - interval '20 days';
        revoke select on marts.dim_company from dashboard;
    """)
    psql(drill.bin, drill.airflow, "insert into dag_run (dag_id, state) values ('market_data_daily', 'running');"
                                   " update variable set val = 'changed'")
    assert checksums(drill.bin, drill.pipeline) != drill.state[DRILL_DB]

    for env, database in ((drill.pipeline, DRILL_DB), (drill.airflow, "airflow")):
        proc = run_script(RESTORE, {**env, "BACKUP_DIR": str(drill.backups)}, drill.bin)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"restoring {drill.backup_set}/{database}.dump into database {database}" in proc.stdout
        assert checksums(drill.bin, env) == drill.state[database], f"{database} differs from the backed-up state"

    objects = psql(drill.bin, drill.pipeline, "select to_regclass('marts.new_model') is null,"
                                              " to_regnamespace('dbt_test_failures') is null").stdout.strip()
    assert objects == "t|t"  # what the dump did not have is gone
    # the dashboard role reads every mart and the ops table again, and still nothing private
    for table, rows in (("marts.fct_daily_prices", "2000"), ("marts.dim_company", "10"), ("ops.extract_runs", "40")):
        assert psql(drill.bin, drill.reader, f"select count(*) from {table}").stdout.strip() == rows
    private = psql(drill.bin, drill.reader, "select count(*) from raw.time_series_daily", check=False)
    assert private.returncode != 0 and "permission denied" in private.stderr
    # default privileges came back: a table the next publish creates is readable by the dashboard
    psql(drill.bin, drill.pipeline, "create table marts.next_publish as select 1 as one")
    assert psql(drill.bin, drill.reader, "select one from marts.next_publish").stdout.strip() == "1"
    # identity sequences continue after the restored rows; views work
    psql(drill.bin, drill.pipeline, "insert into raw.time_series_daily (symbol, payload) values ('NEXT', '{}')")
    assert psql(drill.bin, drill.pipeline, "select max(payload_id) from raw.time_series_daily").stdout.strip() == "2501"
    assert psql(drill.bin, drill.pipeline, "select count(*) from staging.stg_prices").stdout.strip() == "2501"
    psql(drill.bin, drill.pipeline,
         "drop table marts.next_publish; delete from raw.time_series_daily where symbol = 'NEXT'")


def test_a_lost_volume_is_rebuilt_on_a_new_server_from_the_roles_and_the_dumps(drill: Drill) -> None:
    """A new, empty server: the roles from globals.sql (as a superuser), the databases as the init
    Job makes them, then restore.sh for each: both databases equal the backed-up state."""
    parent = ROOT / ".local" / "test-warehouses"
    parent.mkdir(parents=True, exist_ok=True)
    server = warehouse_mod.Warehouse(Path(tempfile.mkdtemp(prefix="wh-new-", dir=parent)))
    try:
        server.start()
        admin = server.admin_env()
        # roles this server has already (postgres, pipeline, dashboard) are reported and skipped
        roles = subprocess.run(
            [str(drill.bin / "psql"), "-X", "-q", "-f", str(drill.backup_set / "globals.sql")],
            env={**os.environ, **admin, "PGDATABASE": "postgres"}, capture_output=True, text=True)
        assert roles.returncode == 0, roles.stderr
        assert psql(drill.bin, admin, f"select count(*) from pg_roles where rolname in ('airflow', '{BACKUP_ROLE}')"
                    ).stdout.strip() == "2"
        airflow_password = secrets.token_urlsafe(16)
        init_env = {**admin, "POSTGRES_USER": "postgres", "PIPELINE_USER": "pipeline",
                    "PIPELINE_PASSWORD": server.env()["PGPASSWORD"], "DASHBOARD_USER": "dashboard",
                    "DASHBOARD_PASSWORD": server.env(reader=True)["PGPASSWORD"], "WAREHOUSE_DB": DRILL_DB,
                    "AIRFLOW_PASSWORD": airflow_password}
        proc = run_script(INIT, init_env, drill.bin)
        assert proc.returncode == 0, proc.stderr
        targets = ((server.env() | {"PGDATABASE": DRILL_DB}, DRILL_DB),
                   (server.env() | {"PGUSER": "airflow", "PGPASSWORD": airflow_password, "PGDATABASE": "airflow"},
                    "airflow"))
        for env, database in targets:
            proc = run_script(RESTORE, env, drill.bin, str(drill.backup_set))
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert checksums(drill.bin, env) == drill.state[database]
        reader = server.env(reader=True) | {"PGDATABASE": DRILL_DB}
        assert psql(drill.bin, reader, "select count(*) from marts.fct_daily_prices").stdout.strip() == "2000"
    finally:
        server.destroy()


def test_restore_succeeds_when_the_live_database_has_objects_the_dump_does_not(
    drill_databases: DrillDatabases, tmp_path: Path
) -> None:
    """The common case the old `pg_restore --clean` refused: a plain dump file, restored over a
    database that gained a table in a dumped schema since."""
    drill = drill_databases
    dump = tmp_path / "plain.dump"
    subprocess.run([str(drill.bin / "pg_dump"), "--format=custom", f"--file={dump}", DRILL_DB],
                   env={**os.environ, **drill.pipeline}, check=True)
    before = checksums(drill.bin, drill.pipeline)
    psql(drill.bin, drill.pipeline, "create table marts.newer_model (x int); insert into marts.newer_model values (1);"
                                    " delete from marts.dim_company")
    proc = run_script(RESTORE, drill.pipeline, drill.bin, str(dump))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert checksums(drill.bin, drill.pipeline) == before


def test_a_failed_restore_changes_nothing(drill_databases: DrillDatabases, tmp_path: Path) -> None:
    """A dump that breaks half-way (here: a role it grants to is missing) rolls everything back,
    the objects dropped first included."""
    drill = drill_databases
    dump = tmp_path / "orphan.dump"
    psql(drill.bin, drill.admin, "drop role if exists orphan_reader; create role orphan_reader")
    psql(drill.bin, drill.pipeline, "create table marts.orphan (x int); grant select on marts.orphan to orphan_reader")
    subprocess.run([str(drill.bin / "pg_dump"), "--format=custom", f"--file={dump}", DRILL_DB],
                   env={**os.environ, **drill.pipeline}, check=True)
    psql(drill.bin, drill.pipeline, "drop table marts.orphan")
    psql(drill.bin, drill.admin, "drop role orphan_reader")
    before = checksums(drill.bin, drill.pipeline)
    proc = run_script(RESTORE, drill.pipeline, drill.bin, str(dump))
    assert proc.returncode == 1 and "rolled back" in proc.stderr, proc.stdout + proc.stderr
    assert 'role "orphan_reader" does not exist' in proc.stderr
    assert checksums(drill.bin, drill.pipeline) == before


def test_restore_refuses_a_superuser_a_stranger_and_a_damaged_set(drill: Drill, tmp_path: Path) -> None:
    env = {"BACKUP_DIR": str(drill.backups)}
    proc = run_script(RESTORE, {**drill.admin, "PGDATABASE": DRILL_DB, **env}, drill.bin)
    assert proc.returncode == 1 and "connected as a superuser" in proc.stderr
    proc = run_script(RESTORE, {**drill.reader, **env}, drill.bin)
    assert proc.returncode == 1 and "does not own database drill" in proc.stderr
    damaged = tmp_path / drill.backup_set.name
    subprocess.run(["cp", "-a", str(drill.backup_set), str(damaged)], check=True)
    with (damaged / f"{DRILL_DB}.dump").open("r+b") as f:
        f.seek(2000)
        f.write(b"\0" * 64)
    proc = run_script(RESTORE, drill.pipeline, drill.bin, str(damaged))
    assert proc.returncode == 1 and "does not match its checksum" in proc.stderr
    (damaged / "MANIFEST").unlink()
    proc = run_script(RESTORE, drill.pipeline, drill.bin, str(damaged))
    assert proc.returncode == 1 and "not a verified backup set" in proc.stderr
    proc = run_script(RESTORE, {**drill.pipeline, "BACKUP_DIR": str(tmp_path / "empty")}, drill.bin)
    assert proc.returncode == 1 and "no verified backup set" in proc.stderr
    proc = run_script(RESTORE, drill.pipeline, drill.bin, str(tmp_path / "nope.dump"))
    assert proc.returncode == 1 and "dump not found" in proc.stderr


# -- a dump counts only once verified; retention --------------------------------------------------------

def fake_set(backups: Path, when: dt.datetime, verified: bool = True) -> Path:
    path = backups / f"backup-{when.strftime(STAMP)}"
    path.mkdir(parents=True)
    (path / f"{DRILL_DB}.dump").write_bytes(b"old")
    if verified:
        (path / "MANIFEST").write_text(f"created_at {when.strftime(STAMP)}\n")
    return path


def backup_env(drill: Drill, backups: Path, **extra: str) -> dict[str, str]:
    return {**drill.backup, "BACKUP_DIR": str(backups), "BACKUP_DATABASES": DRILL_DB, **extra}


def test_retention_keeps_the_newest_verified_sets_and_removes_old_ones(drill: Drill, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    now = dt.datetime.now(dt.UTC)
    recent = [fake_set(backups, now - dt.timedelta(days=d)) for d in (1, 2, 3)]
    old = fake_set(backups, now - dt.timedelta(days=45))
    unverified = fake_set(backups, now - dt.timedelta(days=60), verified=False)  # not ours to judge: left
    stale = backups / ".backup-20200101T000000Z.partial"  # an interrupted run's leftovers
    stale.mkdir()
    legacy = backups / "warehouse-20200101T000000Z.dump"  # an older chart's dump: left alone
    legacy.write_bytes(b"legacy")
    proc = run_script(BACKUP, backup_env(drill, backups, BACKUP_KEEP="3", BACKUP_MAX_AGE_DAYS="30"), drill.bin)
    assert proc.returncode == 0, proc.stderr
    left = sorted(p.name for p in backups.iterdir())
    new = [n for n in left if n.startswith("backup-") and n > recent[0].name]
    assert len(new) == 1
    assert left == sorted([new[0], recent[0].name, recent[1].name, unverified.name, legacy.name])
    assert f"removed backup {recent[2].name} (beyond the newest 3)" in proc.stdout
    assert f"removed backup {old.name} (beyond the newest 3)" in proc.stdout
    # by age, while the count allows more
    older = fake_set(backups, now - dt.timedelta(days=31))
    proc = run_script(BACKUP, backup_env(drill, backups, BACKUP_KEEP="10", BACKUP_MAX_AGE_DAYS="30"), drill.bin)
    assert proc.returncode == 0, proc.stderr
    assert f"removed backup {older.name} (older than 30 days)" in proc.stdout
    assert (backups / recent[0].name).exists() and (backups / new[0]).exists()
    # age 0 means no age limit
    ancient = fake_set(backups, now - dt.timedelta(days=400))
    proc = run_script(BACKUP, backup_env(drill, backups, BACKUP_KEEP="10", BACKUP_MAX_AGE_DAYS="0"), drill.bin)
    assert proc.returncode == 0 and ancient.exists() and "removed" not in proc.stdout


def test_a_dump_below_the_size_floor_does_not_count_and_removes_nothing(drill: Drill, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    good = fake_set(backups, dt.datetime.now(dt.UTC) - dt.timedelta(days=90))
    for sql in ("drop database if exists empty_db", "create database empty_db",
                f"grant connect on database empty_db to {BACKUP_ROLE}"):
        psql(drill.bin, drill.admin, sql)
    # an empty database (the wrong one, or one wiped): its dump is about 1 KB, below the default floor
    proc = run_script(BACKUP, backup_env(drill, backups, BACKUP_DATABASES="empty_db", BACKUP_KEEP="1",
                                         BACKUP_MAX_AGE_DAYS="1"), drill.bin)
    assert proc.returncode == 1
    assert "empty_db.dump is" in proc.stderr and "below BACKUP_MIN_DUMP_BYTES=4096" in proc.stderr
    assert sorted(p.name for p in backups.iterdir()) == [good.name]  # nothing counted, nothing removed
    proc = run_script(BACKUP, backup_env(drill, backups, BACKUP_MIN_DUMP_BYTES="100000000"), drill.bin)
    assert proc.returncode == 1 and "below BACKUP_MIN_DUMP_BYTES=100000000" in proc.stderr
    assert sorted(p.name for p in backups.iterdir()) == [good.name]


def test_a_dump_that_does_not_read_back_does_not_count(drill: Drill, tmp_path: Path) -> None:
    """pg_dump "succeeds" but the file is cut short (a full volume, a killed copy): the archive
    check (pg_restore reads it to its end) refuses it."""
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "pg_dump").write_text(
        "#!/usr/bin/env bash\nset -e\n"
        f'"{drill.bin}/pg_dump" "$@"\n'
        'for a in "$@"; do case "$a" in --file=*) f=${a#--file=};; esac; done\n'
        'truncate -s $(( $(wc -c <"$f") * 2 / 3 )) "$f"\n'
    )
    (shim / "pg_dump").chmod(0o755)
    backups = tmp_path / "backups"
    env = {**backup_env(drill, backups), "PATH": f"{shim}{os.pathsep}{drill.bin}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run(["bash", str(BACKUP)], env={**os.environ, **env}, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"{DRILL_DB}.dump: the archive does not read back to its end" in proc.stderr
    assert list(backups.iterdir()) == []


def test_a_failed_dump_deletes_nothing(drill: Drill, tmp_path: Path) -> None:
    backups = tmp_path / "backups"
    good = fake_set(backups, dt.datetime.now(dt.UTC) - dt.timedelta(days=90))
    proc = run_script(BACKUP, backup_env(drill, backups, PGPASSWORD="wrong-password", BACKUP_KEEP="1"), drill.bin)
    assert proc.returncode != 0
    assert sorted(p.name for p in backups.iterdir()) == [good.name]


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("BACKUP_KEEP", "0", "BACKUP_KEEP must be a positive integer"),
    ("BACKUP_MAX_AGE_DAYS", "-1", "BACKUP_MAX_AGE_DAYS must be a whole number of days"),
    ("BACKUP_MIN_DUMP_BYTES", "1k", "BACKUP_MIN_DUMP_BYTES must be a whole number"),
])
def test_backup_rejects_bad_settings(drill: Drill, tmp_path: Path, variable: str, value: str, message: str) -> None:
    proc = run_script(BACKUP, backup_env(drill, tmp_path, **{variable: value}), drill.bin)
    assert proc.returncode == 2 and message in proc.stderr


# -- the init script ------------------------------------------------------------------------------------

def test_init_script_creates_roles_and_databases_idempotently(warehouse) -> None:  # type: ignore[no-untyped-def]
    admin = warehouse.admin_env
    bin_dir = warehouse.server.bin
    env = {
        **admin,
        "POSTGRES_USER": admin["PGUSER"],
        "PIPELINE_USER": "pipeline_t",
        "PIPELINE_PASSWORD": "pw-pipeline-1",
        "DASHBOARD_USER": "dashboard_t",
        "DASHBOARD_PASSWORD": "pw-dashboard-1",
        "WAREHOUSE_DB": "warehouse_t",
        "AIRFLOW_PASSWORD": "pw-airflow-1",
        "BACKUP_USER": "backup_t",
        "BACKUP_PASSWORD": "pw-backup-1",
    }
    for attempt in (1, 2):  # a second run (every upgrade) changes nothing and does not fail
        proc = run_script(INIT, env, bin_dir)
        assert proc.returncode == 0, f"run {attempt}: {proc.stderr}"
    rows = warehouse.psql(
        "select string_agg(datname || ':' || pg_get_userbyid(datdba), ',' order by datname) from pg_database"
        " where datname in ('warehouse_t', 'airflow')",
        admin=True,
    )
    assert rows == "airflow:airflow,warehouse_t:pipeline_t"
    # the generated passwords work, the reader may connect but not create
    for user, password in (("pipeline_t", "pw-pipeline-1"), ("dashboard_t", "pw-dashboard-1"),
                           ("backup_t", "pw-backup-1")):
        login = {**warehouse.env, "PGUSER": user, "PGPASSWORD": password, "PGDATABASE": "warehouse_t"}
        out = psql(bin_dir, login, "select current_user", check=False)
        assert out.stdout.strip() == user, out.stderr
    # a rotated password reaches the server on the next run
    proc = run_script(INIT, {**env, "DASHBOARD_PASSWORD": "pw-dashboard-2"}, bin_dir)
    assert proc.returncode == 0, proc.stderr
    login = {**warehouse.env, "PGUSER": "dashboard_t", "PGPASSWORD": "pw-dashboard-2", "PGDATABASE": "warehouse_t"}
    out = psql(bin_dir, login, "create table t (i int)", check=False)
    assert out.returncode != 0 and "permission denied" in out.stderr
    # without BACKUP_USER no backup role is made (the external-database and backup-off installs)
    proc = run_script(INIT, {k: v for k, v in env.items() if not k.startswith("BACKUP_")}, bin_dir)
    assert proc.returncode == 0, proc.stderr
    proc = run_script(INIT, {**env, "BACKUP_PASSWORD": ""}, bin_dir)
    assert proc.returncode != 0 and "BACKUP_PASSWORD is required with BACKUP_USER" in proc.stderr
