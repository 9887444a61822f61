#!/usr/bin/env python3
"""Dashboard benchmark: 500 symbols x ~20 years published, per-page query latency and the first
full render of every page in a real headless Chromium: opened in a new tab, and reached through
the sidebar of an open dashboard.

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests" / "dashboard")]

import seed  # noqa: E402
import warehouse as warehouse_mod  # noqa: E402
from datapipe_common.calendar import nyse  # noqa: E402
from datapipe_dashboard import queries  # noqa: E402
from datapipe_dashboard.cli import streamlit_argv  # noqa: E402
from datapipe_dashboard.db import Connector  # noqa: E402
from datapipe_dashboard.settings import Settings  # noqa: E402

BENCH_DIR = ROOT / ".local" / "bench" / "dashboard-warehouse"
NOW = datetime(2026, 11, 26, 15, 0, tzinfo=UTC)
SECTORS = ["TECHNOLOGY", "HEALTHCARE", "FINANCIAL SERVICES", "ENERGY", "INDUSTRIALS", "CONSUMER CYCLICAL",
           "UTILITIES", "REAL ESTATE", "BASIC MATERIALS", "COMMUNICATION SERVICES"]
# Exactly the indexes `quality publish` gives the published marts (dim_company and
# mart_market_overview already have their primary key in seed.DDL).
PUBLISHED_INDEXES = {
    "fct_daily_prices_pkey": "alter table marts.fct_daily_prices add constraint fct_daily_prices_pkey "
                             "primary key (symbol, trade_date)",
    "fct_technical_indicators_pkey": "alter table marts.fct_technical_indicators add constraint "
                                     "fct_technical_indicators_pkey primary key (symbol, trade_date)",
    "fct_daily_prices_trade_date": "create index fct_daily_prices_trade_date on marts.fct_daily_prices (trade_date)",
    "dim_company_pkey": "alter table marts.dim_company add constraint dim_company_pkey primary key (symbol)",
    "mart_market_overview_pkey": "alter table marts.mart_market_overview add constraint mart_market_overview_pkey "
                                 "primary key (symbol)",
}


def ensure_published_indexes(conn: psycopg.Connection[Any]) -> None:
    """Make the marts carry exactly the published indexes: drop any other, create the missing ones."""
    have = {name: (table, constraint) for name, table, constraint in conn.execute(
        "select i.indexname, i.tablename, c.conname is not null from pg_indexes i "
        "left join pg_constraint c on c.conname = i.indexname and c.connamespace = 'marts'::regnamespace "
        "where i.schemaname = 'marts'").fetchall()}
    for name, (table, constraint) in have.items():
        if name not in PUBLISHED_INDEXES:
            conn.execute(f"alter table marts.{table} drop constraint {name}" if constraint
                         else f"drop index marts.{name}")
    for name, ddl in PUBLISHED_INDEXES.items():
        if name not in have:
            conn.execute(ddl)
    conn.execute("analyze marts.fct_daily_prices; analyze marts.fct_technical_indicators")


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
    days = seed.sessions_ending(nyse().latest_completed_session(NOW), int(years * 252))
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
        ensure_published_indexes(conn)
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

    def symbol(years: int | None) -> Callable[[], None]:
        def run() -> None:
            s = symbols[int(rng.integers(len(symbols)))]
            queries.market_overview(q)
            bounds = queries.price_bounds(q, s)
            first, last = bounds["first_date"].iloc[0], bounds["last_date"].iloc[0]
            start = max(first, last - timedelta(days=365 * years)) if years else first
            queries.price_history(q, s, start, last)
            queries.company(q, s)
        return run

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

    return {"market": market, "symbol (1 year, daily)": symbol(1), "symbol (5 years, weekly)": symbol(5),
            "symbol (all ~20 y, monthly)": symbol(None),
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


CHARTS_DRAWN = ("Array.from(document.querySelectorAll('[data-testid=\"stVegaLiteChart\"]'))"
                ".filter(e => e.querySelector('svg.marks .role-mark')).length")
RENDER_CHECKS = {
    # path: JS condition for "fully rendered": tables painted, charts drawn, key texts present
    "": "document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= 1 && "
        "document.body.innerText.includes('Data as of') && document.body.innerText.includes('Advancers')",
    "symbol": f"{CHARTS_DRAWN} >= 1 && document.body.innerText.includes('Company') && "
              "document.body.innerText.includes('Bars in range')",
    "portfolio": f"{CHARTS_DRAWN} >= 2 && "
                 "document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= 2 && "
                 "document.body.innerText.includes('Market value')",
    "quality": "document.querySelectorAll('[data-testid=\"stDataFrame\"] canvas').length >= 4 && "
               "document.body.innerText.includes('Freshness per symbol')",
}


REFERENCE_APP = 'import streamlit as st\n\nst.title("Hello")\n'


def serve(argv: Callable[[int], list[str]], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = warehouse_mod.free_port()
    proc = subprocess.Popen(argv(port), env={**os.environ, **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{base}/_stcore/health", timeout=1)
            return proc, base
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{argv(port)[0]} did not answer on {base}")


def time_pages(browser: Any, base: str, checks: dict[str, str], rounds: int) -> dict[str, dict[str, list[float]]]:
    """Per page: 'first' = first visit in a new browser context (round 1: also an empty server
    query cache), 'returning' = the same page again in that context, 'shell' = until Streamlit's
    page frame shows (first visits)."""
    out: dict[str, dict[str, list[float]]] = {p or "market": {"first": [], "returning": [], "shell": []}
                                              for p in checks}

    def visit(context: Any, path: str, condition: str) -> tuple[float, float]:
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/{path}", wait_until="commit")
        page.wait_for_selector('[data-testid="stMain"]', timeout=60_000)
        shell = (time.perf_counter() - t0) * 1000
        page.wait_for_function(condition, timeout=60_000, polling=25)
        full = (time.perf_counter() - t0) * 1000
        page.close()
        return shell, full

    for _ in range(rounds):
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        for path, condition in checks.items():
            shell, full = visit(context, path, condition)
            out[path or "market"]["shell"].append(shell)
            out[path or "market"]["first"].append(full)
        for path, condition in checks.items():
            out[path or "market"]["returning"].append(visit(context, path, condition)[1])
        context.close()
    return out


def time_navigation(browser: Any, base: str, rounds: int) -> dict[str, list[float]]:
    """What a user does after opening the dashboard: per round, a new browser context opens the
    market page (cold), then the sidebar links lead to each page in turn; each page is timed from
    the click until it is fully rendered (the page script reruns over the open session, the
    frontend is already loaded, the page's element modules may not be)."""
    out: dict[str, list[float]] = {"open: market (new context)": []}
    for _ in range(rounds):
        context = browser.new_context(viewport={"width": 1600, "height": 1000})
        page = context.new_page()
        t0 = time.perf_counter()
        page.goto(f"{base}/", wait_until="commit")
        page.wait_for_function(RENDER_CHECKS[""], timeout=60_000, polling=25)
        out["open: market (new context)"].append((time.perf_counter() - t0) * 1000)
        for path in ("symbol", "portfolio", "quality", ""):
            link = page.locator(f'[data-testid="stSidebarNavLink"][href$="/{path}"]')
            t0 = time.perf_counter()
            link.click()
            page.wait_for_function(RENDER_CHECKS[path], timeout=60_000, polling=25)
            out.setdefault(f"then: {path or 'market'}", []).append((time.perf_counter() - t0) * 1000)
        context.close()
    return out


def time_renders(env: dict[str, str], rounds: int) -> tuple[dict[str, dict[str, list[float]]], dict[str, list[float]]]:
    from playwright.sync_api import sync_playwright

    reference = BENCH_DIR.parent / "dashboard-reference-app.py"
    reference.write_text(REFERENCE_APP)
    bin_dir = ROOT / ".local/venvs/dashboard/bin"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-quic"])
        try:
            proc, base = serve(lambda port: [str(bin_dir / "datapipe-dashboard"), "--port", str(port)], env)
            try:
                results = time_pages(browser, base, RENDER_CHECKS, rounds)
                navigation = time_navigation(browser, base, rounds)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
            # The floor on this machine: Streamlit itself with a one-line app, same server flags.
            proc, base = serve(lambda port: [str(bin_dir / "streamlit"), "run", str(reference),
                                             *streamlit_argv("127.0.0.1", port)[3:]], {})
            try:
                results |= {"reference: one-line Streamlit app": time_pages(
                    browser, base, {"": "document.body.innerText.includes('Hello')"}, rounds)["market"]}
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        finally:
            browser.close()
    return results, navigation


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--years", type=float, default=20)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument("--skip-browser", action="store_true")
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

    with psycopg.connect(seed.conninfo(admin), autocommit=True) as conn:
        ensure_published_indexes(conn)
    load = os.getloadavg()[0]
    timings = time_queries(settings, args.iterations)
    print(f"\nqueries per page, marts with the published indexes ({args.iterations} runs each, uncached; "
          f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after):")
    print(f"  {'page':26} {'p50 ms':>8} {'p95 ms':>8}")
    for name, (p50, p95) in timings.items():
        flag = "" if p95 <= 100 else "  > 100 ms"
        print(f"  {name:26} {p50:8.1f} {p95:8.1f}{flag}")

    print(f"load average: {os.getloadavg()[0]:.1f} (2 cores, shared)")
    if args.skip_browser:
        server.stop()
        return 0
    env = {**server.env(reader=True), "DASHBOARD_NOW": NOW.isoformat()}
    load = os.getloadavg()[0]
    renders, navigation = time_renders(env, args.rounds)
    print(f"\nfull render in headless Chromium, ms, p50 of {args.rounds} rounds (load average {load:.1f} before):"
          "\n  first = first visit in a new browser context (cold = round 1, also an empty server query cache);"
          "\n  returning = same page again in that context; shell = until Streamlit's empty page frame shows")
    print(f"  {'page':34} {'first cold':>10} {'first p50':>10} {'returning':>10} {'shell p50':>10}")
    for page, samples in renders.items():
        first = statistics.median(samples["first"])
        flag = "" if first <= 2000 else "  > 2 s"
        print(f"  {page:34} {samples['first'][0]:10.0f} {first:10.0f} {statistics.median(samples['returning']):10.0f}"
              f" {statistics.median(samples['shell']):10.0f}{flag}")
    print(f"\nin-app navigation, ms, p50 of {args.rounds} rounds: a new context opens the market page, then the"
          "\n  sidebar leads to each page (click until fully rendered)")
    for step, clicks in navigation.items():
        median_ms = statistics.median(clicks)
        print(f"  {step:34} {median_ms:10.0f}{'' if median_ms <= 2000 else '  > 2 s'}")
    print(f"load average after the renders: {os.getloadavg()[0]:.1f}")
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
