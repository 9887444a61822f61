"""Upgrading a warehouse whose indicator state was stored by an older version of the recursion.

The warehouse is built by the dbt project of LEGACY_COMMIT, taken from git: the last commit whose
int models stored the state as a positional `double precision[13]`. Then, with the current code:
a new trading day arrives and `dbt build` must stop at the indicator models with a message naming
the upgrade command, changing nothing; the documented command (`make refresh-indicators`) must
rebuild them; and the result must equal a fresh full build of the same data.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from chain import AS_OF, MARTS, NEXT_TRADING_DAY, SYMBOLS, Chain, start_sandbox
from conftest import ROOT, TestWarehouse, venv_bin

pytestmark = pytest.mark.slow

# main before the indicator state got named slots (issue 13): positional double precision[13]
LEGACY_COMMIT = "bad5245159f818fc1d2cf4607ec4eb6a9ae189cd"
SHARDS = ("int_daily_prices__indicators_shard_0", "int_daily_prices__indicators_shard_1")
UPGRADE_COMMAND = "make refresh-indicators"
DBT_UPGRADE_COMMAND = "dbt build --full-refresh --select tag:indicator_state+"


@pytest.fixture(scope="module")
def legacy_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The dbt project (dbt/) as of LEGACY_COMMIT, extracted from git into a temporary folder."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", LEGACY_COMMIT, "dbt"],
                             capture_output=True)
    if archive.returncode != 0:
        pytest.fail(f"this test builds a warehouse with the dbt project of commit {LEGACY_COMMIT} and needs it in"
                    f" the git history (a shallow clone lacks it: fetch it, or clone with full history)."
                    f"\n{archive.stderr.decode()}")
    dest = tmp_path_factory.mktemp("legacy")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    project = dest / "dbt"
    assert "double precision[]" in (project / "macros" / "indicators.sql").read_text(), "not the positional state"
    # publish requires dbt's recorded results (issue 14): the legacy project gets today's on-run-end hook
    # (one self-contained macro), as a deployment's dbt would have recorded them
    shutil.copy(ROOT / "dbt" / "macros" / "run_results.sql", project / "macros" / "run_results.sql")
    config = project / "dbt_project.yml"
    assert "on-run-end" not in config.read_text()
    config.write_text(config.read_text() + '\non-run-end:\n  - "{{ datapipe_record_results(results) }}"\n')
    return project


@pytest.fixture(scope="module")
def legacy(warehouse: TestWarehouse, legacy_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """A warehouse built, gated and published by the legacy dbt project as of AS_OF."""
    name = f"legacy_{uuid.uuid4().hex[:10]}"
    warehouse.psql(f"create database {name} owner pipeline", admin=True)
    warehouse.psql(f"grant connect on database {name} to dashboard", admin=True)
    chain = Chain(warehouse, name, tmp_path_factory.mktemp("upgrade"))
    sandbox = start_sandbox("--as-of", AS_OF.isoformat())
    try:
        chain.extract(sandbox)
    finally:
        sandbox.process.terminate()
        sandbox.process.wait(timeout=10)
    dbt = venv_bin("transform", "dbt")
    env = chain.env(DBT_PROFILES_DIR=".", DBT_PROJECT_DIR=".", DBT_TARGET_PATH=str(chain.workdir / "legacy_target"))
    build = subprocess.run([str(dbt), "build"], cwd=legacy_project, env=env, capture_output=True, text=True,
                           timeout=900)
    assert build.returncode == 0, f"legacy dbt build failed:\n{build.stdout[-6000:]}{build.stderr[-2000:]}"
    chain.step("quality_gate").check()
    chain.step("publish_marts").check()
    yield chain


def state_types(chain: Chain) -> set[str]:
    return {str(r[0]) for r in chain.query(
        "select format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = any(%s::regclass[]) and attname = 'indicator_state'",
        ([f"staging.{s}" for s in SHARDS],))}


def int_rows(chain: Chain) -> dict[str, tuple[object, ...]]:
    """Per indicator shard: row count and an md5 over every column but `computed_at`, in key order."""
    out = {}
    for shard in SHARDS:
        columns = [str(r[0]) for r in chain.query(
            "select column_name from information_schema.columns where table_schema = 'staging'"
            " and table_name = %s and column_name <> 'computed_at' order by ordinal_position", (shard,))]
        out[shard] = tuple(chain.query(
            f"select count(*), md5(string_agg(row({', '.join(columns)})::text, '|' order by symbol, trade_date))"
            f" from staging.{shard}")[0])
    return out


def test_an_older_state_is_refused_then_the_documented_command_upgrades_to_a_fresh_build(legacy: Chain) -> None:
    assert state_types(legacy) == {"double precision[]"}
    published = legacy.marts_state()

    # a new trading day arrives (compact re-fetch: one new bar per symbol)
    sandbox = start_sandbox("--as-of", NEXT_TRADING_DAY.isoformat())
    try:
        legacy.extract(sandbox)
    finally:
        sandbox.process.terminate()
        sandbox.process.wait(timeout=10)
    stored, audited = int_rows(legacy), legacy.marts_state("audit")

    # the current code: the indicator models refuse the old state, name the command, change nothing
    refused = legacy.step("dbt_build")
    assert refused.returncode != 0
    results = legacy.dbt_results()
    for shard in SHARDS:
        assert results[f"model.datapipe.{shard}"] == "error", results
        assert f"staging.{shard} stores the state of another version of the indicator recursion" in refused.output
    assert "column indicator_state is double precision[]" in refused.output
    assert f"`{UPGRADE_COMMAND}` locally" in refused.output
    assert f"`{DBT_UPGRADE_COMMAND}` in the datapipe-transform image" in refused.output
    assert all(s == "skipped" for u, s in results.items()
               if u.startswith(("model.datapipe.fct_", "model.datapipe.mart_"))), results
    assert int_rows(legacy) == stored, "the refused run changed the indicator models"
    downstream = ("fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
    assert {m: legacy.marts_state("audit")[m] for m in downstream} == {m: audited[m] for m in downstream}
    assert legacy.marts_state() == published
    # the documented upgrade, on this warehouse (the test database's libpq variables)
    upgrade = subprocess.run([*UPGRADE_COMMAND.split(), "-s"], cwd=ROOT, env=legacy.env(),
                             capture_output=True, text=True, timeout=900)
    assert upgrade.returncode == 0, upgrade.stdout[-6000:] + upgrade.stderr[-2000:]
    # the make target runs exactly the command the message gives for the image
    # make refresh-indicators runs the dbt_build step (which leaves out the live quotes) with the upgrade's flags
    refresh = DBT_UPGRADE_COMMAND.replace("dbt build", "dbt build --exclude tag:quotes")
    assert f"==> dbt_build: {refresh}  [transform]" in upgrade.stdout, upgrade.stdout[-3000:]
    assert state_types(legacy) != {"double precision[]"}
    (state_type,) = state_types(legacy)
    assert state_type.startswith("staging.datapipe_indicator_state_")
    # only the current version's aggregate is left
    assert legacy.query("select oid::regprocedure::text from pg_proc where proname = 'datapipe_indicators'") == [
        (f"staging.datapipe_indicators(double precision,{state_type})",)]

    # from now on the pipeline runs as usual: build (nothing new), gate, publish
    legacy.step("dbt_build").check()
    legacy.step("quality_gate").check()
    legacy.step("publish_marts").check()
    upgraded_int, upgraded = int_rows(legacy), legacy.marts_state("audit")
    assert {m: v[1:] for m, v in legacy.marts_state().items()} == {m: v[1:] for m, v in upgraded.items()}
    assert legacy.scalar("select count(*) from marts.fct_technical_indicators where trade_date = %s",
                         (NEXT_TRADING_DAY,)) == len(SYMBOLS)

    # ... and equals a fresh full build of the same data
    legacy.step("dbt_build", "--full-refresh").check()
    assert int_rows(legacy) == upgraded_int
    assert {m: v[1:] for m, v in legacy.marts_state("audit").items()} == {m: v[1:] for m, v in upgraded.items()}
    assert set(upgraded) == set(MARTS)


# -- the state's version follows the recursion ------------------------------------------------------

def compiled_state_type(project: Path, workdir: Path) -> str:
    """The state type name the project's macros give (dbt compile; no database needed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DBT_"))}
    env.update(DBT_PROFILES_DIR=".", DBT_PROJECT_DIR=".", DBT_TARGET_PATH=str(workdir / "target"),
               DBT_LOG_PATH=str(workdir / "logs"), DBT_SEND_ANONYMOUS_USAGE_STATS="false",
               PGHOST="localhost", PGPORT="5432", PGDATABASE="unused", PGUSER="unused", PGPASSWORD="unused")
    out = subprocess.run([str(venv_bin("transform", "dbt")), "compile", "--quiet", "--no-populate-cache",
                          "--inline", "{{ datapipe_indicator_state_type() }}"],
                         cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.strip()


def test_the_state_type_changes_with_the_recursion_and_only_with_it(tmp_path: Path) -> None:
    project = tmp_path / "dbt"
    shutil.copytree(ROOT / "dbt", project, ignore=shutil.ignore_patterns("target", "logs", "quality"))
    macros = project / "macros" / "indicators.sql"
    original = macros.read_text()
    current = compiled_state_type(project, tmp_path)
    assert re.fullmatch(r"staging\.datapipe_indicator_state_[0-9a-f]{8}", current), current

    edits = {
        # cosmetic: a Jinja comment and other indentation in the step function
        "comment and indentation": (
            "  s.previous_close := close_price;",
            "  {#- the next bar's change starts here #}\n      s.previous_close := close_price;",
        ),
        # the recursion: another smoothing constant, another slot, another initial state
        "constant": ("0.2 * macd + 0.8 * s.macd_signal", "0.25 * macd + 0.75 * s.macd_signal"),
        "slot": ("    avg_loss_14 double precision\n",
                 "    avg_loss_14 double precision,\n    extra double precision\n"),
        "initial state": ("row(0, 0, null, 0,", "row(0, 0, 0, 0,"),
    }
    names = {}
    for what, (old, new) in edits.items():
        assert original.count(old) == 1, what
        macros.write_text(original.replace(old, new))
        names[what] = compiled_state_type(project, tmp_path)
    assert names.pop("comment and indentation") == current
    assert len({current, *names.values()}) == 1 + len(names), names
