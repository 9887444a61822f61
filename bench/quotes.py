#!/usr/bin/env python3
"""Benchmark of the live quotes (issue 20): prints figures, asserts nothing.

    make bench-quotes BENCH_ARGS="--interval 60 --refresh 60 --samples 3"
    (= .local/venvs/dashboard/bin/python bench/quotes.py ...: Playwright is in the dashboard's venv)

A private embedded PostgreSQL and the sandbox API (its own process, premium tier, its clock pinned on
Tuesday 2026-11-24 in the session and moved by the bench), the real commands as subprocesses:

1. One bulk poll: `extract quotes` for N symbols with ALPHAVANTAGE_BULK_QUOTES=true and
   entitlement=realtime (100 symbols a request: N/100 requests), timed as a whole process. The
   sandbox generates a symbol's walk on first use (~0.05 s each); every symbol is asked once before.
2. From a bar at the sandbox to its price in the browser. Set-up (not timed): the daily pipeline
   publishes once (`scripts/run-step --pipeline`, the 10 default symbols), one quotes poll, then the
   dashboard (`datapipe-dashboard`, DASHBOARD_LIVE_REFRESH_SECONDS=REFRESH) is opened on IBM's symbol
   page in headless Chromium and never reloaded. A poll loop stands in for market_quotes_intraday:
   every INTERVAL seconds the DAG's two steps exactly as steps.toml runs them (`scripts/run-step
   extract_quotes`, then `publish_quotes`), one poll at a time, an overrunning poll followed at once by
   the next (the DAG's max_active_runs=1). Each sample moves the sandbox clock to the first minute of
   the next 5-minute bar (the moment that bar becomes available) and times, on the wall clock, until
   the page shows the bar's label and then its price. Breakdown: the wait for the poll that fetched
   it, that poll (extract + publish), and the rest (the wait for the dashboard's next refresh, its 5 s
   query cache, the render). Goal (issue 20): at most one DAG interval + one dashboard refresh.
   Not included: the Airflow scheduler's start of a run (the poll loop starts polls itself).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchlib import EXTRACT, ROOT, RUN_STEP, get, start_sandbox, symbols, warehouse_mod

SESSION_DAY = "2026-11-24"  # a Tuesday; the daily marts end on Monday 2026-11-23
CLOCK_AT = dt.datetime.fromisoformat(f"{SESSION_DAY}T10:59")  # New York; the first sample's bar starts 11:00
DASHBOARD_NOW = "2026-11-24T17:30:00+00:00"  # 12:30 New York: in the session (the dashboard's clock)
LIVE_SYMBOLS = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "IBM")
WATCHED = "IBM"
DASHBOARD = ROOT / ".local" / "venvs" / "dashboard" / "bin" / "datapipe-dashboard"
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
LIVE_PRICE = '[data-testid="stMetric"]:has-text("Live price") [data-testid="stMetricValue"]'


def set_clock(base: str, now: dt.datetime) -> None:
    request = urllib.request.Request(f"{base}/_sandbox/clock", method="POST",
                                     data=json.dumps({"now": now.isoformat(timespec="minutes")}).encode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def timed(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.monotonic()
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    return time.monotonic() - t0, proc.returncode, proc.stdout + proc.stderr


def loads() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


@dataclass
class Poll:
    started: float  # wall clock (time.time())
    extracted: float
    ended: float
    ok: bool


class PollLoop(threading.Thread):
    """The DAG's stand-in: a poll (extract_quotes, then publish_quotes) every `interval` seconds."""

    def __init__(self, interval: float, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.interval, self.env = interval, env
        self.polls: list[Poll] = []
        self.failures: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        next_at = time.monotonic()
        while not self.stopped.wait(max(0.0, next_at - time.monotonic())):
            started = time.time()
            _, rc1, out1 = timed([str(RUN_STEP), "extract_quotes"], self.env)
            extracted = time.time()
            _, rc2, out2 = timed([str(RUN_STEP), "publish_quotes"], self.env) if rc1 == 0 else (0.0, 1, "")
            self.polls.append(Poll(started, extracted, time.time(), rc1 == 0 and rc2 == 0))
            if rc1 or rc2:
                self.failures.append((out1 if rc1 else out2)[-2000:])
            next_at = max(next_at + self.interval, time.monotonic())  # overran: the next one at once

    def fetched_by(self, fetched_at: float) -> Poll | None:
        return next((p for p in self.polls if p.started <= fetched_at <= p.extracted), None)


def bulk_poll(wh: warehouse_mod.Warehouse, base: str, env: dict[str, str], n: int) -> None:
    bulk_symbols = symbols(n, seed=5)
    t0 = time.monotonic()
    for i in range(0, len(bulk_symbols), 100):
        get(f"{base}/query?function=REALTIME_BULK_QUOTES&entitlement=realtime&apikey=bench"
            f"&symbol={','.join(bulk_symbols[i:i + 100])}", timeout=300)
    print(f"sandbox warm-up: {len(bulk_symbols)} symbols' walks in {time.monotonic() - t0:.1f} s")
    wall, rc, out = timed([str(EXTRACT), "quotes", "--symbols", ",".join(bulk_symbols)],
                          {**env, "ALPHAVANTAGE_BULK_QUOTES": "true"})
    row = wh.psql_admin("select requests, symbols_succeeded from ops.extract_runs order by started_at desc"
                        " limit 1", database="warehouse").strip()
    print(f"\n== one bulk poll: {len(bulk_symbols)} symbols, REALTIME_BULK_QUOTES, realtime")
    print(f"exit code {rc}; requests, symbols succeeded: {row}; whole process {wall:.2f} s")
    if rc != 0:
        print(out[-3000:], file=sys.stderr)


def serve_dashboard(wh: warehouse_mod.Warehouse, refresh: int) -> tuple[subprocess.Popen[bytes], str]:
    port = warehouse_mod.free_port()
    env = {**os.environ, **wh.env(reader=True), "DASHBOARD_NOW": DASHBOARD_NOW,
           "DASHBOARD_LIVE_REFRESH_SECONDS": str(refresh)}
    proc = subprocess.Popen([str(DASHBOARD), "--port", str(port), "--address", "127.0.0.1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            get(f"{base}/_stcore/health", timeout=1)
            return proc, base
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the dashboard did not start")


def bar_label(bar: dt.datetime) -> str:
    return f"{bar:%H:%M} ET, real time, not audited"  # datapipe_dashboard.live.label, realtime


def bar_to_browser(wh: warehouse_mod.Warehouse, base: str, env: dict[str, str], opts: argparse.Namespace) -> None:
    from playwright.sync_api import sync_playwright

    live = ",".join(LIVE_SYMBOLS)
    env = {**env, "DATAPIPE_SYMBOLS": live}
    print(f"\n== bar to browser: {len(LIVE_SYMBOLS)} symbols, TIME_SERIES_INTRADAY 5min, realtime; poll every"
          f" {opts.interval:g} s (the DAG), dashboard refresh every {opts.refresh} s")
    wall, rc, out = timed([str(RUN_STEP), "--pipeline"], {**env, "QUALITY_TODAY": "2026-11-23",
                                                        "EXTRACT_NOW": "2026-11-23T18:00"})
    if rc != 0:
        raise SystemExit(f"the daily pipeline failed:\n{out[-4000:]}")
    print(f"set-up: the daily pipeline published in {wall:.0f} s", end="")
    wall, rc, out = timed([str(RUN_STEP), "extract_quotes"], env)
    wall2, rc2, out2 = timed([str(RUN_STEP), "publish_quotes"], env)
    if rc or rc2:
        raise SystemExit(f"the first quotes poll failed:\n{(out if rc else out2)[-4000:]}")
    print(f"; a first poll in {wall + wall2:.0f} s (dbt parses the project once; target/ kept)")
    proc, dash = serve_dashboard(wh, opts.refresh)
    loop = PollLoop(opts.interval, env)
    rng = random.Random(7)
    rows = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{dash}/symbol?symbol={WATCHED}", wait_until="domcontentloaded")
            page.wait_for_selector(LIVE_PRICE, timeout=180_000)
            page.evaluate("window.__not_reloaded = true")
            loop.start()
            timeout_ms = int((opts.interval + opts.refresh + 300) * 1000)
            for k in range(opts.samples):
                time.sleep(rng.uniform(0, opts.refresh))  # a fresh phase against the poll and refresh timers
                bar = CLOCK_AT + dt.timedelta(minutes=1 + 5 * k)  # its start; available from its first minute
                t0 = time.time()
                set_clock(base, bar + dt.timedelta(minutes=1))
                page.wait_for_function(f"document.body.innerText.includes({json.dumps(bar_label(bar))})",
                                       timeout=timeout_ms, polling=100)
                t1 = time.time()
                shown = page.locator(LIVE_PRICE).inner_text()
                at = f"symbol = '{WATCHED}' and bar_at = timestamptz '{bar:%Y-%m-%d %H:%M} America/New_York'"
                price = wh.psql_admin(f"select price_usd::float8 from marts.fct_live_quotes where {at}",
                                      database="warehouse").strip()
                fetched = wh.psql_admin(f"select extract(epoch from min(fetched_at)) from raw.quotes where {at}",
                                        database="warehouse").strip()
                poll = loop.fetched_by(float(fetched))
                rows.append((bar, t1 - t0, poll and poll.started - t0, poll and poll.ended - poll.started,
                             poll and t1 - poll.ended, shown == f"{float(price):,.2f}"))
            reloaded = not page.evaluate("window.__not_reloaded === true")
            browser.close()
    finally:
        loop.stopped.set()
        loop.join(timeout=300)
        proc.terminate()
        proc.wait(timeout=10)
    goal = opts.interval + opts.refresh
    print(f"{'bar':>6} {'to browser':>11} {'wait poll':>10} {'poll':>6} {'to screen':>10}  price shown = published")
    for bar, total, wait, polled, rest, same in rows:
        def cell(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f}"
        print(f"{bar:%H:%M} {total:>10.1f}s {cell(wait):>9}s {cell(polled):>5}s {cell(rest):>9}s  {same}")
    worst = max(r[1] for r in rows)
    print(f"worst {worst:.1f} s, mean {sum(r[1] for r in rows) / len(rows):.1f} s against the goal one interval +"
          f" one refresh = {goal:g} s: {'within' if worst <= goal else 'OVER'}; page reloaded: {reloaded}")
    print(f"polls: {len(loop.polls)}, {sum(not p.ok for p in loop.polls)} failed; poll (extract + publish) "
          + (f"{min(p.ended - p.started for p in loop.polls):.1f}-{max(p.ended - p.started for p in loop.polls):.1f} s"
             if loop.polls else "-"))
    for failure in loop.failures[:2]:
        print(failure, file=sys.stderr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=500, help="symbols of the bulk poll")
    ap.add_argument("--interval", type=float, default=60, help="seconds between polls (the DAG's interval)")
    ap.add_argument("--refresh", type=int, default=60, help="DASHBOARD_LIVE_REFRESH_SECONDS")
    ap.add_argument("--samples", type=int, default=3, help="bars timed from the sandbox to the browser")
    ap.add_argument("--skip-bulk", action="store_true")
    opts = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-quotes-", dir=ROOT / ".local"))
    wh = warehouse_mod.Warehouse(tmp / "warehouse")
    wh.start()
    sandbox = start_sandbox("--now", CLOCK_AT.isoformat(timespec="minutes"), "--cache-bodies",
                            str(opts.symbols + 64))
    try:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **wh.env(),
               "ALPHAVANTAGE_BASE_URL": sandbox.query_url, "ALPHAVANTAGE_API_KEY": "bench",
               "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0", "ALPHAVANTAGE_ENTITLEMENT": "realtime",
               "EXTRACT_LOG_LEVEL": "WARNING", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
               "DBT_TARGET_PATH": str(tmp / "dbt_target"), "DBT_LOG_PATH": str(tmp / "dbt_logs"),
               "QUALITY_DATA_DOCS_DIR": str(tmp / "data_docs")}
        print(f"machine: {os.cpu_count()} cores, load average {loads()} (1/5/15 min) at the start")
        if not opts.skip_bulk:
            bulk_poll(wh, sandbox.base, env, opts.symbols)
        bar_to_browser(wh, sandbox.base, env, opts)
        print(f"\nload average {loads()} at the end")
    finally:
        sandbox.stop()
        wh.destroy()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
