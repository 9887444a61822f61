"""Fixtures of the dashboard suite.

- `published`: the known dataset — sandbox data run through the real pipeline (`scripts/run-step
  --pipeline`: extract, dbt build, quality gate, publish, grant-reader) into database `published`
  of the session warehouse, with the sandbox calendar pinned to the last completed trading day.
- `republish`: database `republish`, a copy of `published` taken right after the pipeline, for
  tests that run `quality publish` again while the dashboard reads.
- `dataset`: a hand-made seed (tests/dashboard/seed.py) in the default database, for what the
  pipeline cannot produce on demand: stale data, extraction failures of every kind, a used-up quota.
- `make_app`: AppTest of the real entry script on one page, with injected settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path

import datapipe_dashboard
import psycopg
import pytest
import streamlit as st
from datapipe_common.calendar import nyse
from datapipe_dashboard.settings import Settings
from streamlit.testing.v1 import AppTest

sys.path.insert(0, str(Path(__file__).parent))
import seed
from dashboard_helpers import ROOT, free_port, venv_bin, wait_http

PIPELINE_SYMBOLS = ("AAPL", "IBM", "JPM", "MSFT", "XOM")

APP = Path(datapipe_dashboard.__file__).parent / "app.py"
PAGES = {
    "market": "pages/market.py",
    "symbol": "pages/symbol.py",
    "portfolio": "pages/portfolio.py",
    "quality": "pages/quality.py",
}


@dataclass
class Dataset:
    warehouse: object
    settings: Settings
    dbname: str | None = None
    symbols: tuple[str, ...] = field(default_factory=lambda: tuple(c[0] for c in seed.COMPANIES))
    last_day: date = seed.LAST_DAY
    workdir: Path | None = None  # the pipeline's working directory (dbt target, data docs)

    def admin(self, dbname: str | None = None) -> psycopg.Connection:
        return psycopg.connect(seed.conninfo(self.warehouse.admin_env, dbname or self.dbname), autocommit=True)

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self.admin() as conn:
            return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="session")
def dataset(warehouse) -> Dataset:
    seed.seed(warehouse.admin_env)
    settings = Settings(libpq=dict(warehouse.reader_env), now_override=seed.NOW, retry_seconds=1)
    return Dataset(warehouse, settings)


def live_dataset(warehouse, dbname: str, seed_live, *, daily: bool) -> Dataset:
    """Database `dbname` for the live blocks: "now" pinned inside the session after its last day, live
    blocks refreshing every 2 s; the hand-made daily seed when `daily`, then `seed_live(conn)`."""
    warehouse.psql(f"create database {dbname} owner pipeline", admin=True)
    warehouse.psql(f"grant connect on database {dbname} to dashboard", admin=True)
    if daily:
        seed.seed(warehouse.admin_env, dbname=dbname)
    dataset = Dataset(warehouse, Settings(libpq={**warehouse.reader_env, "PGDATABASE": dbname},
                                          now_override=seed.LIVE_NOW, retry_seconds=1, live_refresh_seconds=2),
                      dbname)
    with dataset.admin() as conn:
        seed_live(conn)
    return dataset


@pytest.fixture(scope="session")
def live(warehouse) -> Dataset:
    """Database `live`: the hand-made seed plus the live tables (seed.seed_live)."""
    return live_dataset(warehouse, "live", seed.seed_live, daily=True)


@pytest.fixture(scope="session")
def live_before_daily(warehouse) -> Dataset:
    """Database `live_first`: only the live tables, published before the daily DAG's first publish
    (seed.seed_live_before_daily)."""
    return live_dataset(warehouse, "live_first", seed.seed_live_before_daily, daily=False)


def pipeline_env(warehouse, dbname: str, as_of: date, workdir: Path, **extra: str) -> dict[str, str]:
    """The environment `make pipeline` gives every step, for database `dbname` of the test warehouse."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("PG", "DATAPIPE_", "QUALITY_", "DBT_", "ALPHAVANTAGE_", "VIRTUAL_ENV"))}
    return {
        **keep,
        **warehouse.env,
        "PGDATABASE": dbname,
        "DATAPIPE_SYMBOLS": ",".join(PIPELINE_SYMBOLS),
        "EXTRACT_WORKERS": "2",
        "QUALITY_TODAY": as_of.isoformat(),
        "QUALITY_DATA_DOCS_DIR": str(workdir / "data_docs"),
        "DBT_TARGET_PATH": str(workdir / "dbt_target"),
        "DBT_LOG_PATH": str(workdir / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        **extra,
    }


def run_step(env: dict[str, str], *args: str, wait: bool = True):  # type: ignore[no-untyped-def]
    """scripts/run-step with `env`: the finished process, or the running one (wait=False)."""
    command = [sys.executable, str(ROOT / "scripts" / "run-step"), *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)


def run_pipeline(warehouse, dbname: str, as_of: date, workdir: Path) -> str:
    """The real chain, step by step exactly as `make pipeline` runs it, against the sandbox API."""
    warehouse.psql(f"create database {dbname} owner pipeline", admin=True)
    warehouse.psql(f"grant connect on database {dbname} to dashboard", admin=True)
    port = free_port()
    sandbox = subprocess.Popen(
        [str(venv_bin("extract", "extract")), "sandbox", "--port", str(port), "--as-of", as_of.isoformat()],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc=sandbox)
        env = pipeline_env(warehouse, dbname, as_of, workdir, ALPHAVANTAGE_BASE_URL=f"http://127.0.0.1:{port}/query",
                           ALPHAVANTAGE_API_KEY="sandbox", ALPHAVANTAGE_REQUESTS_PER_MINUTE="0")
        proc = run_step(env, "--pipeline")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
    output = proc.stdout + proc.stderr
    (workdir / "pipeline.log").write_text(output)
    if proc.returncode != 0:
        pytest.fail(f"`scripts/run-step --pipeline` failed ({proc.returncode}):\n{output[-6000:]}")
    return output


@pytest.fixture(scope="session")
def published(warehouse, tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    """Sandbox data through the real pipeline, as of the last completed trading day (so "today"'s
    extraction runs and a green badge are real); "now" is frozen for the session. Database
    `republish` is a copy made at once (a template needs no other session), for tests that run
    publish again (`republish` fixture)."""
    now = datetime.now(UTC)
    as_of = nyse().latest_completed_session(now)
    workdir = tmp_path_factory.mktemp("pipeline")
    run_pipeline(warehouse, "published", as_of, workdir)
    warehouse.psql("create database republish owner pipeline template published", admin=True)
    warehouse.psql("grant connect on database republish to dashboard", admin=True)
    libpq = {**warehouse.reader_env, "PGDATABASE": "published"}
    return Dataset(warehouse, Settings(libpq=libpq, now_override=now, retry_seconds=1), "published",
                   PIPELINE_SYMBOLS, as_of, workdir)


@dataclass
class Republish:
    """Database `republish` (a copy of `published`, audited and gated) and how to run its publish step."""

    dataset: Dataset
    settings: Settings

    def publish(self, **extra: str) -> subprocess.Popen[str]:
        """Start `quality publish` (scripts/run-step publish_marts) on it, with extra settings."""
        d = self.dataset
        assert d.workdir is not None
        return run_step(pipeline_env(d.warehouse, "republish", d.last_day, d.workdir, **extra), "publish_marts",
                        wait=False)


@pytest.fixture
def republish(published: Dataset) -> Republish:
    libpq = {**published.settings.libpq, "PGDATABASE": "republish"}
    return Republish(published, replace(published.settings, libpq=libpq))


@pytest.fixture
def make_app(dataset: Dataset) -> Callable[..., AppTest]:
    """AppTest of the real entry script on one page, with injected settings (fresh caches)."""

    def make(page: str = "market", settings: Settings | None = None, query: dict[str, str] | None = None) -> AppTest:
        st.cache_data.clear()
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.session_state["datapipe_settings"] = settings or dataset.settings
        if query:
            at.query_params.update(query)
        at.run()
        if page != "market":
            at.switch_page(PAGES[page]).run()
        return at

    return make
