"""The gate's freshness expectation and dbt's source freshness follow the shared NYSE calendar:
in each situation of calendar_cases they expect the same session as every other component."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest
from calendar_cases import CASE_IDS, CASES, NEW_YORK, CalendarCase
from chain import Chain
from conftest import ROOT, TestWarehouse, venv_bin
from datapipe_common.calendar import nyse
from quality.gate import expected_latest_session
from quality.settings import Settings

PG = {"PGHOST": "127.0.0.1", "PGDATABASE": "warehouse", "PGUSER": "pipeline"}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_gate_expects_the_latest_completed_session(case: CalendarCase) -> None:
    assert expected_latest_session(Settings.from_env(PG), case.at) == case.expected


def test_gate_expectation_with_pinned_today_lag_and_delay() -> None:
    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # ignored when today is pinned
    pinned = Settings.from_env({**PG, "QUALITY_TODAY": "2025-06-16"})
    assert expected_latest_session(pinned, now) == dt.date(2025, 6, 13)
    lagged = Settings.from_env({**PG, "QUALITY_TODAY": "2025-01-10", "QUALITY_FRESHNESS_LAG_DAYS": "1"})
    assert expected_latest_session(lagged, now) == dt.date(2025, 1, 7)  # 2025-01-09 was no session
    at = dt.datetime(2025, 6, 16, 16, 30, tzinfo=NEW_YORK)
    assert expected_latest_session(Settings.from_env(PG), at) == dt.date(2025, 6, 13)  # bar not yet due
    no_delay = Settings.from_env({**PG, "QUALITY_MARKET_CLOSE_DELAY_MINUTES": "0"})
    assert expected_latest_session(no_delay, at) == dt.date(2025, 6, 16)
    utc = dt.datetime(2025, 6, 17, 2, 0, tzinfo=dt.UTC)  # 22:00 in New York
    assert expected_latest_session(Settings.from_env(PG), utc) == dt.date(2025, 6, 16)


@pytest.fixture(scope="module")
def freshness_db(warehouse: TestWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """A database with the raw and ops tables (`extract migrate`: ops.trading_sessions included)."""
    warehouse.psql("create database freshness owner pipeline", admin=True)
    chain = Chain(warehouse, "freshness", tmp_path_factory.mktemp("freshness"))
    subprocess.run([str(venv_bin("extract", "extract")), "migrate"], env=chain.env(), check=True,
                   capture_output=True)
    return chain


def source_freshness(chain: Chain, at: dt.datetime) -> dict[str, tuple[str, float]]:
    """`dbt source freshness` with the clock pinned: {table: (status, age in sessions)}."""
    env = chain.env(PGOPTIONS=f"-c datapipe.now={at.isoformat()}")
    proc = subprocess.run([str(venv_bin("transform", "dbt")), "source", "freshness"], cwd=ROOT / "dbt",
                          env={**env, "DBT_PROFILES_DIR": ".", "DBT_PROJECT_DIR": "."}, capture_output=True,
                          text=True)
    results = json.loads((Path(env["DBT_TARGET_PATH"]) / "sources.json").read_text())["results"]
    assert results, proc.stdout + proc.stderr
    return {r["unique_id"].rsplit(".", 1)[1]: (r["status"], r["max_loaded_at_time_ago_in_s"] / 86400)
            for r in results}


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_source_freshness_counts_missed_sessions(freshness_db: Chain, case: CalendarCase) -> None:
    """Company overviews loaded just after the expected session closed are fresh (0 sessions
    missed); prices loaded just after the session before it are one session behind, a warning,
    whatever weekends, holidays or closures lie between."""
    calendar = nyse()
    fresh_load = calendar.session(case.expected).close_at + dt.timedelta(minutes=30)
    stale_load = calendar.session(case.previous).close_at + dt.timedelta(minutes=30)
    freshness_db.query("truncate raw.time_series_daily, raw.company_overview")
    insert = ("insert into raw.{} (run_id, symbol, function, request_url, requested_at, received_at,"
              " payload_sha256, payload) values (gen_random_uuid(), 'IBM', 'X', 'u', %s, %s, 'h', '{{}}')")
    freshness_db.query(insert.format("time_series_daily"), (stale_load, stale_load))
    freshness_db.query(insert.format("company_overview"), (fresh_load, fresh_load))
    assert source_freshness(freshness_db, case.at) == {
        "time_series_daily": ("warn", 1.0),
        "company_overview": ("pass", 0.0),
    }
