#!/usr/bin/env python3
"""Benchmark of the transform component (prints figures; not a test).

500 symbols x ~20 years (~2.5 M bars) from the sandbox API, loaded by `extract` (limiter off,
workers), into a private embedded PostgreSQL. Then, timed:
  full:        dbt build + quality gate + quality publish   (first build: everything from raw)
  incremental: the sandbox advances one trading day, `extract prices` (compact) loads one new bar
               per symbol, then dbt build + quality gate + quality publish again.
Every step runs through scripts/run-step (the commands of dags/datapipe_dags/steps.toml).

With --compare REF, the same figures for two dbt projects side by side in one run: "before" = the
dbt/ folder of git commit REF (git archive), "after" = this working tree's dbt/. The loaded data is
copied into one database per project (CREATE DATABASE ... TEMPLATE), both are built (full, then
the same new day incrementally; the order alternates: full before/after, incremental after/before),
and the audited facts of both are compared value by value (md5 per symbol). dbt runs from the
venv in each project folder (`dbt build`, what the dbt_build step runs); gate and publish through
scripts/run-step. --repeat N then rebuilds only the indicator models (`dbt run --full-refresh` of
the two shards and their view) N more times per project, alternating, and prints the median of
dbt's node times: the models that differ, measured with less noise on a shared machine.

    .local/venvs/transform/bin/python bench/transform.py [--symbols 500] [--as-of 2026-11-20] [--keep]
    .local/venvs/transform/bin/python bench/transform.py --compare main [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import string
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "dbt" / "quality" / "src"))

import benchlib  # noqa: E402
import warehouse as warehouse_mod  # noqa: E402
from datapipe_common.calendar import nyse  # noqa: E402

TRANSFORM_BIN = ROOT / ".local" / "venvs" / "transform" / "bin"
RUN_STEP = ROOT / "scripts" / "run-step"
STEPS = ("dbt_build", "quality_gate", "publish_marts")
INDICATOR_SHARDS = ("int_daily_prices__indicators_shard_0", "int_daily_prices__indicators_shard_1")


def start_sandbox(as_of: dt.date, symbols: int) -> tuple[subprocess.Popen[bytes], str]:
    sandbox = benchlib.start_sandbox("--as-of", as_of.isoformat(), "--cache-symbols", "8")
    return sandbox.process, sandbox.query_url


def run(step: str, env: dict[str, str], *args: str) -> float:
    started = time.monotonic()
    proc = subprocess.run([str(RUN_STEP), step, *args], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        raise SystemExit(f"{step} failed ({proc.returncode})")
    return elapsed


def run_dbt_build(project: Path, env: dict[str, str], *args: str) -> float:
    """`dbt build` (or `args`) in a dbt project folder, as the dbt_build step runs it in dbt/."""
    started = time.monotonic()
    proc = subprocess.run(
        [str(TRANSFORM_BIN / "dbt"), *(args or ("build",))], cwd=project, capture_output=True, text=True,
        env={**env, "DBT_PROFILES_DIR": ".", "DBT_PROJECT_DIR": ".",
             "PATH": f"{TRANSFORM_BIN}{os.pathsep}{env.get('PATH', '')}"},
    )
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        raise SystemExit(f"dbt {' '.join(args or ('build',))} in {project} failed ({proc.returncode})")
    return elapsed


def node_time(target: Path, name: str) -> float:
    import json

    results = json.loads((target / "run_results.json").read_text())["results"]
    return float(next(r["execution_time"] for r in results if r["unique_id"] == f"model.datapipe.{name}"))


def slowest_nodes(target: Path, n: int = 5) -> str:
    """dbt's own timings of the last build: the n slowest nodes."""
    import json

    results = json.loads((target / "run_results.json").read_text())["results"]
    top = sorted(results, key=lambda r: -r["execution_time"])[:n]
    return ", ".join(f"{r['unique_id'].split('.')[-1 if r['unique_id'].startswith('model') else -2][:40]}"
                     f" {r['execution_time']:.1f} s" for r in top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbols", type=int, default=500)
    parser.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2026, 11, 20))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--keep", action="store_true", help="keep the bench warehouse (.local/bench-transform)")
    parser.add_argument("--compare", metavar="REF", help="also build the dbt project of git commit REF, side by side")
    parser.add_argument("--repeat", type=int, default=0,
                        help="with --compare: rebuild the indicator models N more times per project, alternating")
    args = parser.parse_args()

    root = ROOT / ".local" / "bench-transform"
    shutil.rmtree(root, ignore_errors=True)
    wh = warehouse_mod.Warehouse(root / "warehouse")
    wh.start()
    work = root / "work"
    work.mkdir(parents=True)
    # the sandbox knows symbols of 1-5 letters: QAAA, QAAB, ...
    abc = string.ascii_uppercase
    symbols = [f"Q{abc[i // 676 % 26]}{abc[i // 26 % 26]}{abc[i % 26]}" for i in range(args.symbols)]
    prefixes = ("PG", "DATAPIPE_", "QUALITY_", "DBT_", "ALPHAVANTAGE_")
    base = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env = {
        **base, **wh.env(),
        "DATAPIPE_SYMBOLS": ",".join(symbols),
        "ALPHAVANTAGE_API_KEY": "sandbox", "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0",
        "EXTRACT_WORKERS": str(args.workers), "EXTRACT_LOG_LEVEL": "WARNING",
        "QUALITY_DATA_DOCS_DIR": str(work / "data_docs"),
        "DBT_TARGET_PATH": str(work / "dbt_target"), "DBT_LOG_PATH": str(work / "dbt_logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    figures: list[tuple[str, str]] = [("load average at the start", " ".join(f"{x:.1f}" for x in os.getloadavg()))]
    sandbox: subprocess.Popen[bytes] | None = None
    try:
        sandbox, url = start_sandbox(args.as_of, args.symbols)
        env_day0 = {**env, "ALPHAVANTAGE_BASE_URL": url, "QUALITY_TODAY": nyse().next_session(args.as_of).isoformat(),
                    "EXTRACT_NOW": f"{args.as_of.isoformat()}T18:00"}
        t_extract = run("extract_prices", env_day0) + run("extract_companies", env_day0)
        sandbox.terminate()
        sandbox.wait()
        bars = wh.psql_admin(
            "select count(*) from raw.time_series_daily t, jsonb_object_keys(t.payload -> 'Time Series (Daily)')",
            database="warehouse").strip()
        figures.append(("bars loaded (full history)", f"{int(bars):,} for {args.symbols} symbols"))
        figures.append(("extract prices + companies (not part of the target)", f"{t_extract:.1f} s"))
        if args.compare:
            compare(args, wh, env, env_day0, work, figures)
            return 0

        full = {}
        for step in ("dbt_build", "quality_gate", "publish_marts"):
            full[step] = run(step, env_day0)
            if step == "dbt_build":
                figures.append(("full: slowest dbt nodes", slowest_nodes(work / "dbt_target")))
        total_full = sum(full.values())

        day1 = nyse().next_session(args.as_of)
        sandbox, url = start_sandbox(day1, args.symbols)
        env_day1 = {**env, "ALPHAVANTAGE_BASE_URL": url, "QUALITY_TODAY": nyse().next_session(day1).isoformat(),
                    "EXTRACT_NOW": f"{day1.isoformat()}T18:00"}
        t_extract1 = run("extract_prices", env_day1)
        sandbox.terminate()
        sandbox.wait()
        incr = {}
        for step in ("dbt_build", "quality_gate", "publish_marts"):
            incr[step] = run(step, env_day1)
            if step == "dbt_build":
                figures.append(("incremental: slowest dbt nodes", slowest_nodes(work / "dbt_target")))
        total_incr = sum(incr.values())
        modes = wh.psql_admin("select mode from ops.publish_history order by publish_id", database="warehouse")
        figures.append(("publish modes (full, incremental)", " / ".join(modes.splitlines())[:200]))
        rows = wh.psql_admin("select count(*) from marts.fct_daily_prices", database="warehouse").strip()
        figures.append(("daily extract prices, compact (not part of the target)", f"{t_extract1:.1f} s"))
        for name, t in full.items():
            figures.append((f"full: {name}", f"{t:.1f} s"))
        figures.append(("FULL dbt build + gate + publish", f"{total_full:.1f} s (target <= 120 s)"))
        for name, t in incr.items():
            figures.append((f"incremental: {name}", f"{t:.1f} s"))
        figures.append(("INCREMENTAL dbt build + gate + publish",
                        f"{total_incr:.1f} s = {100 * total_incr / total_full:.0f} % of full (target <= 10 %)"))
        figures.append(("published fct_daily_prices rows", f"{int(rows):,}"))
    finally:
        if sandbox is not None and sandbox.poll() is None:
            sandbox.terminate()
            sandbox.wait()
        if not args.keep:
            wh.destroy()
        print(f"\ntransform benchmark ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f} at the end)")
        width = max(len(k) for k, _ in figures)
        for key, value in figures:
            print(f"  {key.ljust(width)}  {value}")
    return 0


def compare(args: argparse.Namespace, wh: warehouse_mod.Warehouse, env: dict[str, str], env_day0: dict[str, str],
            work: Path, figures: list[tuple[str, str]]) -> None:
    """Both dbt projects on copies of the loaded database: full build, then one new day (module doc)."""
    import io
    import tarfile

    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", args.compare, "dbt"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(work / "before", filter="data")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.compare],
                            capture_output=True, text=True, check=True).stdout.strip()
    projects = {"before": work / "before" / "dbt", "after": ROOT / "dbt"}
    figures.append(("before / after", f"dbt/ of {args.compare} ({commit}) / dbt/ of this working tree"))
    for name in projects:
        wh.psql_admin(f"create database bench_{name} owner pipeline template warehouse strategy file_copy")

    def variant_env(name: str, day_env: dict[str, str]) -> dict[str, str]:
        return {**day_env, "PGDATABASE": f"bench_{name}", "DBT_TARGET_PATH": str(work / f"target_{name}"),
                "QUALITY_DATA_DOCS_DIR": str(work / f"data_docs_{name}")}

    times: dict[str, dict[str, float]] = {name: {} for name in projects}

    def build(name: str, phase: str, day_env: dict[str, str]) -> None:
        venv = variant_env(name, day_env)
        times[name][f"{phase}: dbt_build"] = run_dbt_build(projects[name], venv)
        for shard in INDICATOR_SHARDS:
            times[name][f"{phase}:   {shard[-7:]} (dbt node)"] = node_time(work / f"target_{name}", shard)
        times[name][f"{phase}: quality_gate"] = run("quality_gate", venv)
        times[name][f"{phase}: publish_marts"] = run("publish_marts", venv)
        times[name][f"{phase.upper()} dbt build + gate + publish"] = sum(
            times[name][f"{phase}: {step}"] for step in STEPS)

    for name in ("before", "after"):
        build(name, "full", env_day0)
    day1 = nyse().next_session(args.as_of)
    sandbox, url = start_sandbox(day1, args.symbols)
    env_day1 = {**env, "ALPHAVANTAGE_BASE_URL": url, "QUALITY_TODAY": nyse().next_session(day1).isoformat()}
    try:
        for name in projects:
            run("extract_prices", variant_env(name, env_day1))
    finally:
        sandbox.terminate()
        sandbox.wait()
    for name in ("after", "before"):
        build(name, "incremental", env_day1)

    def per_symbol(name: str, sql: str) -> str:
        return wh.psql_admin(sql, database=f"bench_{name}")

    facts = ("select symbol, md5(string_agg(t::text, '|' order by trade_date)) from audit.{} as t"
             " group by symbol order by symbol")
    for fact in ("fct_technical_indicators", "fct_daily_prices"):
        hashes = {name: per_symbol(name, facts.format(fact)) for name in projects}
        same = hashes["before"] == hashes["after"] and len(hashes["after"].splitlines()) == args.symbols
        figures.append((f"audited {fact}, before = after", f"{'yes' if same else 'NO'}: md5 per symbol, "
                                                            f"{len(hashes['after'].splitlines())} symbols"))
    sizes = {name: int(per_symbol(name, "select sum(pg_total_relation_size(format('staging.%I', s)))"
                                        f" from unnest(array{list(INDICATOR_SHARDS)}) as s").strip())
             for name in projects}
    figures.append(("indicator shards on disk (before / after)",
                    f"{sizes['before'] / 2**20:,.0f} / {sizes['after'] / 2**20:,.0f} MiB"))
    figures.append(("", "before      after   after/before   (seconds; full: before ran first, incremental: after)"))
    for key in times["after"]:
        b, a = times["before"][key], times["after"][key]
        figures.append((key, f"{b:6.1f}   {a:8.1f}   {a / b:12.2f}"))
    if args.repeat:
        import statistics

        shards: dict[str, list[float]] = {name: [] for name in projects}
        select = ("--select", *INDICATOR_SHARDS, "int_daily_prices__indicators")
        for round_ in range(args.repeat):
            for name in (("before", "after") if round_ % 2 == 0 else ("after", "before")):
                run_dbt_build(projects[name], variant_env(name, env_day1), "run", "--full-refresh", *select)
                shards[name].append(sum(node_time(work / f"target_{name}", s) for s in INDICATOR_SHARDS))
        b, a = statistics.median(shards["before"]), statistics.median(shards["after"])

        def fmt(values: list[float]) -> str:
            return ", ".join(f"{v:.1f}" for v in values)

        figures.append((f"indicator shards rebuilt x{args.repeat}, median of the 2 nodes' sum",
                        f"{b:6.1f}   {a:8.1f}   {a / b:12.2f}"
                        f"   (before {fmt(shards['before'])}; after {fmt(shards['after'])})"))


if __name__ == "__main__":
    sys.exit(main())
