"""Helpers for the extract suite: run the real `extract` CLI, steer the sandbox over HTTP, read the run log."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EXTRACT = ROOT / ".local" / "venvs" / "extract" / "bin" / "extract"
AS_OF = "2026-11-25"  # pinned calendar: every test sees the same bars
TEST_KEY = "TESTKEY-7f3a9c21"

# Fast, bounded retries so fault tests take milliseconds per retry.
FAST = {
    "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0",
    "ALPHAVANTAGE_MAX_RETRIES": "2",
    "ALPHAVANTAGE_BACKOFF_S": "0.01",
    "ALPHAVANTAGE_BACKOFF_MAX_S": "0.05",
    "ALPHAVANTAGE_THROTTLE_WAIT_S": "0.01",
    "ALPHAVANTAGE_TIMEOUT_S": "5",
    "EXTRACT_WORKERS": "2",
    "EXTRACT_PARSE_PROCESSES": "0",  # inline validation: cheaper for tiny runs (a few cases turn helpers on)
    # the history planner's clock agrees with the sandbox's pinned calendar (whatever today is)
    "EXTRACT_NOW": f"{AS_OF}T18:00",
}


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    run_id: str | None


def extract_env(warehouse: Any, base_url: str, key: str | None = TEST_KEY, **env: str) -> dict[str, str]:
    """The environment of an `extract` run: only the variables it documents (plus PATH/HOME)."""
    assert EXTRACT.exists(), f"{EXTRACT} is missing: run `make venvs`"
    full_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        **warehouse.env,
        **FAST,
        "ALPHAVANTAGE_BASE_URL": base_url,
        **env,
    }
    if key is not None:
        full_env["ALPHAVANTAGE_API_KEY"] = key
    return full_env


def run_extract(
    warehouse: Any, base_url: str, *args: str, key: str | None = TEST_KEY, timeout: float = 180, **env: str
) -> Result:
    """`extract ARGS` as a subprocess, to its end, with `extract_env`."""
    full_env = extract_env(warehouse, base_url, key, **env)
    out = subprocess.run([str(EXTRACT), *args], env=full_env, capture_output=True, text=True, timeout=timeout)
    run_id = warehouse.psql("select run_id from ops.extract_runs order by started_at desc limit 1") or None
    return Result(out.returncode, out.stdout, out.stderr, run_id)


def http(method: str, url: str, body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def admin_url(base_url: str, path: str) -> str:
    return base_url.rsplit("/query", 1)[0] + path


def set_faults(base_url: str, faults: list[str], unknown: list[str] | None = None) -> None:
    """Replace the sandbox's faults and restart its request counter and log."""
    body: dict[str, Any] = {"faults": faults}
    if unknown is not None:
        body["unknown_symbols"] = unknown
    http("POST", admin_url(base_url, "/_sandbox/faults"), body)
    http("DELETE", admin_url(base_url, "/_sandbox/requests"))


def requests_seen(base_url: str) -> list[dict[str, Any]]:
    return list(http("GET", admin_url(base_url, "/_sandbox/requests"))["requests"])


def query_json(warehouse: Any, sql: str) -> Any:
    """Rows of `sql` as a list of dicts (through json_agg, so any text survives)."""
    out = warehouse.psql(f"select coalesce(json_agg(t), '[]'::json) from ({sql}) t")
    return json.loads(out)


def symbol_rows(warehouse: Any, run_id: str | None) -> dict[str, dict[str, Any]]:
    assert run_id, "no run recorded in ops.extract_runs"
    rows = query_json(
        warehouse,
        f"select symbol, status, bars, requests, reason_code, reason, output_size from ops.extract_run_symbols"
        f" where run_id = '{run_id}'",
    )
    return {r["symbol"]: r for r in rows}


def stored_symbols(warehouse: Any, run_id: str | None, table: str = "raw.time_series_daily") -> list[str]:
    out = warehouse.psql(f"select symbol from {table} where run_id = '{run_id}' order by symbol")
    return out.split() if out else []
