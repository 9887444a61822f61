"""Helpers of the transform suite: the real chain sandbox API -> `extract` -> raw -> dbt -> gate
-> publish, on the session's embedded PostgreSQL, with the sandbox date pinned.

Every step runs through scripts/run-step, i.e. exactly the commands of dags/datapipe_dags/steps.toml.
Scenarios that change data run on a clone of the published baseline database
(`CREATE DATABASE ... TEMPLATE`), so they cannot disturb each other.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from conftest import ROOT, Sandbox, TestWarehouse, free_port, venv_bin, wait_http
from datapipe_common.libpq import conninfo

AS_OF = dt.date(2025, 6, 13)  # a Friday; the next trading day is Monday 2025-06-16
NEXT_TRADING_DAY = dt.date(2025, 6, 16)
SYMBOLS = ("AAPL", "IBM", "JPM", "MSFT")
RUN_STEP = ROOT / "scripts" / "run-step"
MARTS = ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview")
ORDER_BY = {
    "dim_company": "symbol",
    "fct_daily_prices": "symbol, trade_date",
    "fct_technical_indicators": "symbol, trade_date",
    "mart_market_overview": "symbol",
}


@dataclass
class StepResult:
    step: str
    returncode: int
    output: str

    def check(self) -> StepResult:
        assert self.returncode == 0, f"{self.step} failed ({self.returncode}):\n{self.output[-6000:]}"
        return self


@dataclass
class Chain:
    """One database of the test warehouse plus the settings every step gets."""

    warehouse: TestWarehouse
    database: str
    workdir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    dbt_target: Path | None = None  # shared by a module's chains: dbt re-parses only what changed
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def pg_env(self) -> dict[str, str]:
        return {**self.warehouse.env, "PGDATABASE": self.database}

    def env(self, **overrides: str) -> dict[str, str]:
        prefixes = ("PG", "DATAPIPE_", "QUALITY_", "DBT_", "ALPHAVANTAGE_")
        base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
        return {
            **base,
            **self.pg_env,
            "DATAPIPE_SYMBOLS": ",".join(SYMBOLS),
            "QUALITY_TODAY": AS_OF.isoformat(),
            # the extractor's history planner reads the clock: pinned, like the sandbox's calendar
            "EXTRACT_NOW": f"{AS_OF.isoformat()}T18:00",
            "QUALITY_DATA_DOCS_DIR": str(self.workdir / "data_docs"),
            "DBT_TARGET_PATH": str(self.dbt_target or self.workdir / "dbt_target"),
            "DBT_LOG_PATH": str(self.workdir / "dbt_logs"),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            "EXTRACT_WORKERS": "2",
            **self.extra_env,
            **overrides,
        }

    def step(self, name: str, *args: str, **env: str) -> StepResult:
        proc = subprocess.run(
            [str(RUN_STEP), name, *args], env=self.env(**env), capture_output=True, text=True, timeout=900
        )
        return StepResult(name, proc.returncode, proc.stdout + proc.stderr)

    def extract_cli(self, *args: str, **env: str) -> StepResult:
        """`extract ARGS` from the extract venv (an operator command that is not a pipeline step)."""
        proc = subprocess.run([str(venv_bin("extract", "extract")), *args], env=self.env(**env),
                              capture_output=True, text=True, timeout=300)
        return StepResult(f"extract {' '.join(args)}", proc.returncode, proc.stdout + proc.stderr)

    def extract(self, sandbox: Sandbox, *args: str) -> None:
        api = {"ALPHAVANTAGE_BASE_URL": sandbox.base_url, "ALPHAVANTAGE_API_KEY": "sandbox",
               "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0"}
        self.step("extract_prices", *args, **api).check()
        self.step("extract_companies", **api).check()

    def connect(self, *, reader: bool = False, autocommit: bool = True) -> psycopg.Connection:
        env = self.warehouse.reader_env if reader else self.warehouse.env
        return psycopg.connect(conninfo({**env, "PGDATABASE": self.database}), autocommit=autocommit)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self.connect() as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, params: tuple[object, ...] = ()) -> object:
        return self.query(sql, params)[0][0]

    def marts_state(self, schema: str = "marts") -> dict[str, tuple[object, ...]]:
        """Per mart: table oid, row count and an md5 over every row in key order."""
        state = {}
        for mart in MARTS:
            state[mart] = tuple(self.query(
                f"select '{schema}.{mart}'::regclass::oid, count(*),"
                f" md5(coalesce(string_agg(t::text, '|' order by {ORDER_BY[mart]}), ''))"
                f" from {schema}.{mart} as t"
            )[0])
        return state

    def publish_count(self) -> int:
        return int(self.scalar("select count(*) from ops.publish_history where status = 'published'"))  # type: ignore[arg-type]

    def clone(self, tmp_path: Path) -> Chain:
        name = f"scenario_{uuid.uuid4().hex[:10]}"
        self.warehouse.psql(
            f"create database {name} owner pipeline template {self.database}", admin=True
        )
        self.warehouse.psql(f"grant connect on database {name} to dashboard", admin=True)
        target = self.dbt_target or self.workdir / "dbt_target"
        return Chain(self.warehouse, name, tmp_path, dict(self.extra_env), target)

    def dbt_results(self) -> dict[str, str]:
        data = json.loads(((self.dbt_target or self.workdir / "dbt_target") / "run_results.json").read_text())
        return {r["unique_id"]: r["status"] for r in data["results"]}


def start_sandbox(*args: str) -> Sandbox:
    port = free_port()
    proc = subprocess.Popen(
        [str(venv_bin("extract", "extract")), "sandbox", "--port", str(port), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    sandbox = Sandbox(f"http://127.0.0.1:{port}/query", port, proc)
    wait_http(f"http://127.0.0.1:{port}/healthz", proc=proc)
    return sandbox
