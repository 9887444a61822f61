"""End to end through the real sandbox server and a real PostgreSQL: the happy path."""

from __future__ import annotations

import subprocess

from conftest import venv_bin


def test_prices_and_companies_land_in_raw_with_a_run_log(warehouse, sandbox_server):
    sandbox = sandbox_server("--as-of", "2026-11-25")
    env = {
        **warehouse.env,
        "ALPHAVANTAGE_BASE_URL": sandbox.base_url,
        "ALPHAVANTAGE_API_KEY": "SMOKEKEY123",
        "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run(
        [str(venv_bin("extract", "extract")), "prices", "--symbols", "IBM,AAPL"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "IBM" in out.stdout and "succeeded" in out.stdout
    out = subprocess.run(
        [str(venv_bin("extract", "extract")), "companies", "--symbols", "IBM"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert warehouse.psql("select count(*) from raw.time_series_daily where symbol in ('IBM', 'AAPL')") == "2"
    assert (
        warehouse.psql("select payload->>'Name' from raw.company_overview where symbol = 'IBM'")
        == "International Business Machines"
    )
