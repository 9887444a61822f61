"""End to end through the real sandbox server and a real PostgreSQL: the happy path, the way `make extract`
runs it (DATAPIPE_SYMBOLS, no --symbols), with the summary table and progress lines a user sees."""

from __future__ import annotations

import re
import subprocess

from extract_testlib import EXTRACT


def test_prices_and_companies_land_in_raw_with_a_run_log(warehouse, sandbox_server):
    sandbox = sandbox_server("--as-of", "2026-11-25")
    env = {
        **warehouse.env,
        "ALPHAVANTAGE_BASE_URL": sandbox.base_url,
        "ALPHAVANTAGE_API_KEY": "SMOKEKEY123",
        "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0",
        "DATAPIPE_SYMBOLS": "IBM,AAPL",
        "PATH": "/usr/bin:/bin",
    }
    out = subprocess.run([str(EXTRACT), "prices"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.match(r"symbol\s+status\s+bars\s+req\s+reason", lines[0])
    assert re.match(r"IBM\s+succeeded\s+5031\s+1\s*$", lines[2]) and re.match(r"AAPL\s+succeeded\s+5031\s+1", lines[3])
    assert lines[-1] == "2 symbols: 2 succeeded; 10062 bars, 2 requests"
    assert re.search(r"\[2/2\] \w+ succeeded \| .* ETA 0:00", out.stderr)  # progress with ETA on stderr

    out = subprocess.run([str(EXTRACT), "companies"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert warehouse.psql("select count(*) from raw.time_series_daily where symbol in ('IBM', 'AAPL')") == "2"
    assert (
        warehouse.psql("select payload->>'Name' from raw.company_overview where symbol = 'IBM'")
        == "International Business Machines"
    )
