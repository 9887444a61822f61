#!/usr/bin/env python3
"""Benchmark of the live quotes (issue 20): prints figures, asserts nothing.

    .local/venvs/extract/bin/python bench/quotes.py [--symbols 500] [--live-symbols 10]

A private embedded PostgreSQL and the sandbox API (its own process, premium tier, its clock running
from a Tuesday 10:58 New York), then the real commands as subprocesses, timed as whole processes:

1. One bulk poll: `extract quotes` for N symbols with ALPHAVANTAGE_BULK_QUOTES=true and
   entitlement=realtime (100 symbols a request: N/100 requests). The sandbox generates a symbol's
   walk on first use (~0.05 s each); every symbol is asked once before timing.
2. Bar to dashboard: the moment a new 5-minute bar becomes visible at the sandbox (the bar starting
   11:00, with its first minute, at 11:01 on its clock), the DAG's poll runs `extract quotes`
   (intraday, realtime) then `quality publish-quotes` (dbt build --select tag:quotes + swap), and the
   dashboard's live query reads it back. Measured:
   the two steps and the query. Not measured here: the scheduler's start-up of the run (seconds) and
   the dashboard's wait for its next refresh (at most DASHBOARD_LIVE_REFRESH_SECONDS + 5 s cache).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import string
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import warehouse as warehouse_mod  # noqa: E402

EXTRACT = ROOT / ".local" / "venvs" / "extract" / "bin" / "extract"
RUN_STEP = ROOT / "scripts" / "run-step"
CLOCK_START = "2026-11-24T10:59"  # a Tuesday; the bar starting 11:00 appears at 11:01 (its first minute)
LIVE_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "IBM")


def symbols(n: int, seed: int = 5) -> list[str]:
    rng = random.Random(seed)
    out: set[str] = set()
    while len(out) < n:
        out.add("".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 5))))
    return sorted(out)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=300) as resp:
        return bytes(resp.read())


def clock(base: str) -> str:
    return str(json.loads(get(f"{base}/_sandbox/clock"))["now"])


def timed(command: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, int, str]:
    t0 = time.monotonic()
    proc = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=1800)
    return time.monotonic() - t0, proc.returncode, proc.stdout + proc.stderr


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--live-symbols", type=int, default=len(LIVE_SYMBOLS))
    opts = ap.parse_args()
    bulk_symbols = symbols(opts.symbols)
    live = list(LIVE_SYMBOLS[: opts.live_symbols])

    tmp = Path(tempfile.mkdtemp(prefix="bench-quotes-", dir=ROOT / ".local"))
    wh = warehouse_mod.Warehouse(tmp / "warehouse")
    wh.start()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sandbox = subprocess.Popen([str(EXTRACT), "sandbox", "--port", str(port), "--clock-start", CLOCK_START,
                                "--cache-bodies", str(opts.symbols + 64)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                get(f"{base}/healthz")
                break
            except OSError:
                time.sleep(0.1)
        env = {"PATH": "/usr/bin:/bin", **wh.env(), "ALPHAVANTAGE_BASE_URL": f"{base}/query",
               "ALPHAVANTAGE_API_KEY": "bench", "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0",
               "ALPHAVANTAGE_ENTITLEMENT": "realtime", "EXTRACT_LOG_LEVEL": "WARNING",
               "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DBT_TARGET_PATH": str(tmp / "dbt_target"),
               "DBT_LOG_PATH": str(tmp / "dbt_logs")}
        print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; sandbox clock {clock(base)}")

        # 1. one bulk poll of N symbols
        t0 = time.monotonic()
        for i in range(0, len(bulk_symbols), 100):
            get(f"{base}/query?function=REALTIME_BULK_QUOTES&entitlement=realtime&apikey=bench"
                f"&symbol={','.join(bulk_symbols[i:i + 100])}")
        print(f"sandbox warm-up: {len(bulk_symbols)} symbols' walks in {time.monotonic() - t0:.1f} s")
        wall, rc, out = timed([str(EXTRACT), "quotes", "--symbols", ",".join(bulk_symbols)],
                              {**env, "ALPHAVANTAGE_BULK_QUOTES": "true"})
        row = wh.psql_admin("select requests, symbols_succeeded from ops.extract_runs order by started_at desc"
                            " limit 1", database="warehouse").strip()
        print(f"\n== one bulk poll: {len(bulk_symbols)} symbols, REALTIME_BULK_QUOTES, realtime")
        print(f"exit code {rc}; requests, symbols succeeded: {row}; whole process {wall:.2f} s")
        if rc != 0:
            print(out[-3000:], file=sys.stderr)

        # 2. bar to dashboard
        # the last published closes the change is computed against (as the daily DAG leaves them)
        closes = ("create schema if not exists marts; create table if not exists marts.fct_daily_prices"
                  " (symbol text, trade_date date, close numeric); insert into marts.fct_daily_prices"
                  " select s, date '2026-11-23', 100 from unnest(string_to_array('" + ",".join(live) + "', ',')) as s")
        subprocess.run([str(wh.bin / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", closes],
                       env={**os.environ, **wh.env()}, check=True, capture_output=True)
        sym = ",".join(live)
        timed([str(RUN_STEP), "extract_quotes", "--symbols", sym], {**env, "DATAPIPE_SYMBOLS": sym})  # first load
        timed([str(RUN_STEP), "publish_quotes"], env)  # dbt parses the project once (target/ kept)
        while clock(base) < "2026-11-24T11:01:00":
            time.sleep(0.2)
        print(f"\n== bar to dashboard: {len(live)} symbols, TIME_SERIES_INTRADAY 5min, realtime")
        print(f"the bar starting 11:00 is visible at the sandbox (clock {clock(base)})")
        t_extract, rc1, out1 = timed([str(RUN_STEP), "extract_quotes"], {**env, "DATAPIPE_SYMBOLS": sym})
        t_publish, rc2, out2 = timed([str(RUN_STEP), "publish_quotes"], env)
        for rc, out in ((rc1, out1), (rc2, out2)):
            if rc != 0:
                print(out[-3000:], file=sys.stderr)
                return 1
        t0 = time.monotonic()
        seen = wh.psql_admin("select count(*) filter (where bar_at = timestamptz '2026-11-24 11:00 America/New_York')"
                             " from marts.fct_live_quotes", database="warehouse").strip()
        t_query = time.monotonic() - t0
        print(f"extract quotes          {t_extract:.2f} s (exit {rc1})")
        print(f"quality publish-quotes  {t_publish:.2f} s (exit {rc2})")
        print(f"live query (psql)       {t_query:.2f} s; symbols at the 11:00 bar: {seen}/{len(live)}")
        print(f"bar to published        {t_extract + t_publish:.1f} s; to the dashboard: + the scheduler's start-up"
              " + at most one refresh (60 s + 5 s cache)")
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        wh.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
