#!/usr/bin/env python3
"""Dashboard benchmark: 500 symbols x ~20 years published, per-page query latency and the first
full render of every page in a real headless Chromium.

    .local/venvs/dashboard/bin/python bench/dashboard.py [--symbols 500] [--years 20] [--rebuild]
    make bench-dashboard

A private embedded warehouse in .local/bench/dashboard-warehouse is seeded once (generated data
loaded with COPY, not the pipeline) and reused by later runs. The marts are measured twice: as dbt
builds them (no index) and with the indexes recommended for the dbt marts.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests" / "dashboard")]

import seed  # noqa: E402
import warehouse as warehouse_mod  # noqa: E402
from datapipe_dashboard import queries  # noqa: E402
from datapipe_dashboard.db import Connector  # noqa: E402
from datapipe_dashboard.settings import Settings  # noqa: E402
from datapipe_dashboard.trading_calendar import last_completed_trading_day  # noqa: E402

BENCH_DIR = ROOT / ".local" / "bench" / "dashboard-warehouse"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
SECTORS = ["TECHNOLOGY", "HEALTHCARE", "FINANCIAL SERVICES", "ENERGY", "INDUSTRIALS", "CONSUMER CYCLICAL",
           "UTILITIES", "REAL ESTATE", "BASIC MATERIALS", "COMMUNICATION SERVICES"]
# The indexes the dbt marts should carry (dbt-postgres `indexes` config), measured here.
RECOMMENDED_INDEXES = [
    "create unique index if not exists fct_daily_prices_symbol_date on marts.fct_daily_prices (symbol, trade_date)",
    "create index if not exists fct_daily_prices_date on marts.fct_daily_prices (trade_date)",
    "create unique index if not exists fct_technical_indicators_symbol_date "
    "on marts.fct_technical_indicators (symbol, trade_date)",
]
INDEX_NAMES = ["marts.fct_daily_prices_symbol_date", "marts.fct_daily_prices_date",
               "marts.fct_technical_indicators_symbol_date"]

BARE_DDL = seed.DDL.replace(", primary key (symbol, trade_date)", "")  # dbt tables have no constraints


def symbol_names(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [letters[i // 676 % 26] + letters[i // 26 % 26] + letters[i % 26] + "X" for i in range(n)]


def copy_frame(conn: psycopg.Connection[Any], table: str, frame: pd.DataFrame) -> None:
    buf = io.StringIO()
    frame.to_csv(buf, index=False, header=False)
    cols = ", ".join(frame.columns)
    with conn.cursor() as cur, cur.copy(f"copy {table} ({cols}) from stdin with (format csv)") as copy:
        copy.write(buf.getvalue())


def build(admin: dict[str, str], n_symbols: int, years: int) -> None:
    started = time.monotonic()
    days = seed.trading_days(last_completed_trading_day(NOW), int(years * 252))
    rng = np.random.default_rng(500)
    with psycopg.connect(seed.conninfo(admin), autocommit=True) as conn:
        conn.execute("drop schema if exists marts cascade; drop schema if exists ops cascade")
        conn.execute(BARE_DDL)
        overview, companies = [], []
        for i, symbol in enumerate(symbol_names(n_symbols)):
            sector = SECTORS[i % len(SECTORS)]
            prices = seed.generate_prices(symbol, float(rng.uniform(10, 500)), days, rng)
            ind = seed.indicators(prices)
            copy_frame(conn, "marts.fct_daily_prices", prices)
            copy_frame(conn, "marts.fct_technical_indicators", ind)
            company = (symbol, f"{symbol} Holdings Inc", sector, f"{sector} INDUSTRY", "NYSE", "USD", 0.0)
            overview.append(seed.overview_rows(prices, ind, company))
            companies.append({"symbol": symbol, "name": company[1], "description": f"Generated company {symbol}.",
                              "asset_type": "Common Stock", "exchange": "NYSE", "currency": "USD", "country": "USA",
                              "sector": sector, "industry": company[3], "market_capitalization": 10**10 + i,
                              "pe_ratio": 20.0, "dividend_yield": 0.015, "beta": 1.0, "updated_at": NOW.isoformat()})
            if (i + 1) % 100 == 0:
                print(f"  seeded {i + 1}/{n_symbols} symbols ({time.monotonic() - started:.0f} s)", flush=True)
        copy_frame(conn, "marts.mart_market_overview", pd.DataFrame(overview))
        copy_frame(conn, "marts.dim_company", pd.DataFrame(companies))
        seed.seed_ops(conn, NOW)
        seed.grant_reader(conn)
        conn.execute("analyze")
        rows = conn.execute("select count(*) from marts.fct_daily_prices").fetchone()[0]
    print(f"seeded {n_symbols} symbols x {len(days)} trading days = {rows:,} price rows "
          f"in {time.monotonic() - started:.0f} s")


def page_queries(q: queries.Query, ov: pd.DataFrame, rng: np.random.Generator) -> dict[str, Callable[[], Any]]:
    """Each page's queries exactly as the page runs them (one random symbol / portfolio per call)."""
    latest = pd.Timestamp(ov["trade_date"].max()).date()
    symbols = list(ov["symbol"])
    start, end = NOW.replace(hour=0) - timedelta(days=1), NOW.replace(hour=0) + timedelta(days=1)

    def market() -> None:
        queries.market_overview(q)
        queries.sparklines(q, latest)

    def symbol() -> None:
        s = symbols[int(rng.integers(len(symbols)))]
        queries.market_overview(q)
        queries.price_bounds(q, s)
        queries.price_history(q, s, latest - timedelta(days=365), latest)
        queries.company(q, s)

    def symbol_20y() -> None:
        s = symbols[int(rng.integers(len(symbols)))]
        queries.price_history(q, s, date(1990, 1, 1), latest)

    def portfolio() -> None:
        picks = [symbols[int(i)] for i in rng.choice(len(symbols), 10, replace=False)]
        queries.market_overview(q)
        queries.closes(q, picks, latest - timedelta(days=365))

    def quality() -> None:
        queries.market_overview(q)
        queries.api_requests(q, start, end)
        queries.failures_by_reason(q, start, end)
        queries.failures_by_reason(q, start - timedelta(days=6), end)
        queries.extract_runs(q)
        gate = queries.last_gate_run(q)
        queries.gate_results(q, gate["gate_run_id"].iloc[0])
        queries.publish_history(q)
        queries.last_extract_per_symbol(q)

    return {"market": market, "symbol (1 year)": symbol, "symbol (20 years)": symbol_20y,
            "portfolio (10 holdings)": portfolio, "quality": quality}


def time_queries(settings: Settings, iterations: int) -> dict[str, tuple[float, float]]:
    conn = Connector(settings.conninfo)
    q: queries.Query = conn.query
    ov = queries.market_overview(q)
    rng = np.random.default_rng(7)
    out = {}
    for name, fn in page_queries(q, ov, rng).items():
        fn()  # warm-up
        samples = []
        for _ in range(iterations):
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        out[name] = (statistics.median(samples), samples[max(0, round(0.95 * len(samples)) - 1)])
    conn.close()
    return out


RENDER_CHECKS = {
    # path: JS condition for "fully rendered"
    "": "document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= 1 && "
        "document.body.innerText.includes('Data as of')",
    "symbol": "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 1 && "
              "document.body.innerText.includes('Company')",
    "portfolio": "document.querySelectorAll('.js-plotly-plot .main-svg').length >= 2",
    "quality": "document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= 4 && "
               "document.body.innerText.includes('Freshness per symbol')",
}


def time_renders(env: dict[str, str], rounds: int) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    port = warehouse_mod.free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".local/venvs/dashboard/bin/datapipe-dashboard"), "--port", str(port)],
        env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        results: dict[str, list[float]] = {p or "market": [] for p in RENDER_CHECKS}
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
            for _ in range(rounds):  # round 1 is cold (nothing cached in the server), later rounds warm
                for path, condition in RENDER_CHECKS.items():
                    context = browser.new_context(viewport={"width": 1600, "height": 1000})
                    page = context.new_page()
                    t0 = time.perf_counter()
                    page.goto(f"{base}/{path}", wait_until="commit")
                    page.wait_for_function(condition, timeout=60_000, polling=25)
                    results[path or "market"].append((time.perf_counter() - t0) * 1000)
                    context.close()
            browser.close()
        return results
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=float, default=20)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()

    server = warehouse_mod.Warehouse(BENCH_DIR)
    server.start()
    admin = server.admin_env()
    with psycopg.connect(seed.conninfo(admin), autocommit=True) as conn:
        have = conn.execute("select count(*) from pg_tables where schemaname = 'marts'").fetchone()[0]
        symbols = conn.execute("select count(*) from marts.mart_market_overview").fetchone()[0] if have else 0
    if args.rebuild or symbols != args.symbols:
        build(admin, args.symbols, args.years)
    settings = Settings(libpq=server.env(reader=True))
    with psycopg.connect(seed.conninfo(admin), autocommit=True) as conn:
        rows = conn.execute("select count(*), min(trade_date), max(trade_date) from marts.fct_daily_prices").fetchone()
        size = conn.execute("select pg_size_pretty(pg_total_relation_size('marts.fct_daily_prices') + "
                            "pg_total_relation_size('marts.fct_technical_indicators'))").fetchone()[0]
    print(f"dataset: {args.symbols} symbols, {rows[0]:,} daily rows {rows[1]} .. {rows[2]}, prices+indicators {size}")

    report: dict[str, dict[str, tuple[float, float]]] = {}
    for label, ddl in (("no indexes (dbt default)", [f"drop index if exists {n}" for n in INDEX_NAMES]),
                       ("recommended indexes", RECOMMENDED_INDEXES)):
        with psycopg.connect(seed.conninfo(admin), autocommit=True) as conn:
            for stmt in ddl:
                conn.execute(stmt)
            conn.execute("analyze marts.fct_daily_prices; analyze marts.fct_technical_indicators")
        iterations = args.iterations if label == "recommended indexes" else max(5, args.iterations // 4)
        report[label] = time_queries(settings, iterations)
        print(f"\nqueries per page, {label} ({iterations} runs each, uncached):")
        print(f"  {'page':26} {'p50 ms':>8} {'p95 ms':>8}")
        for name, (p50, p95) in report[label].items():
            flag = "" if p95 <= 100 else "  > 100 ms"
            print(f"  {name:26} {p50:8.1f} {p95:8.1f}{flag}")

    env = {**server.env(reader=True), "DASHBOARD_NOW": NOW.isoformat()}
    renders = time_renders(env, args.rounds)
    print("\nfirst full render in headless Chromium (ms; new browser context per visit; "
          "round 1 cold server cache, then warm; recommended indexes):")
    print(f"  {'page':12} {'cold':>8} {'warm p50':>9}")
    for page, samples in renders.items():
        warm = statistics.median(samples[1:]) if len(samples) > 1 else float("nan")
        flag = "" if max(samples) <= 2000 else "  > 2 s"
        print(f"  {page:12} {samples[0]:8.0f} {warm:9.0f}{flag}")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
