#!/usr/bin/env python3
"""Benchmark of the extractor (issue 2): prints figures, asserts nothing.

    .local/venvs/extract/bin/python bench/extract.py [--symbols 500] [--workers 4] [--rpm 300] [--rpm-requests 50]

1. Throughput: `extract prices --full` for N distinct symbols (full history, ~5,000 bars each) from the
   sandbox API running in its own process, limiter off, W workers, into a private embedded PostgreSQL.
   Reports wall time, requests/s, bars/s loaded (bars counted in ops.extract_runs) and the extractor's
   peak RSS (os.wait4 rusage of the extractor process alone).
   The sandbox generates each synthetic history once (~0.1 s of Python per symbol on this machine) and
   caches it; the bench asks for every symbol once before timing, so the timed run measures the
   extractor, not the stand-in for the remote API.
2. Rate limit: `extract companies` for M symbols at R requests/minute, 4 workers; the achieved rate is
   measured from the sandbox's own request timestamps (GET /_sandbox/requests).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

from benchlib import EXTRACT, ROOT, get, start_sandbox, symbols, warehouse_mod

AS_OF = "2026-11-25"


def tree_rss_kib(root: int) -> int:
    """Resident memory of `root` and all its descendants (the parse helper processes), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def proc_cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime (and reaped children's, e.g. finished PostgreSQL backends) of a process, seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / os.sysconf("SC_CLK_TCK")


def run_extract(args: list[str], env: dict[str, str]) -> tuple[float, int, float, str, float]:
    """(wall seconds, exit code, peak RSS MiB of the extractor and its helpers together, stderr tail,
    CPU seconds including the helpers) of one extractor run."""
    import threading

    started = time.monotonic()
    proc = subprocess.Popen([str(EXTRACT), *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    assert proc.stderr is not None
    err = proc.stderr.read()
    done.set()
    sampler.join()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak_mib = max(peak[0], usage.ru_maxrss) / 1024.0
    return wall, proc.returncode, peak_mib, err.decode()[-2000:], usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=500)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--rpm", type=float, default=300.0)
    ap.add_argument("--rpm-requests", type=int, default=50)
    ap.add_argument("--skip-limiter", action="store_true")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument(
        "--parse-processes", type=int, default=None, help="EXTRACT_PARSE_PROCESSES (default: the extractor's)"
    )
    opts = ap.parse_args()
    syms = symbols(opts.symbols, seed=2)

    tmp = Path(tempfile.mkdtemp(prefix="bench-extract-", dir=ROOT / ".local"))
    wh = warehouse_mod.Warehouse(tmp / "warehouse")
    wh.start()
    sandbox = start_sandbox("--as-of", AS_OF, "--cache-bodies", str(opts.symbols * 2 + 16))
    base = sandbox.base
    try:
        print(f"machine: {os.cpu_count()} cores; warehouse: embedded PostgreSQL; sandbox pid {sandbox.process.pid}")
        env = {
            "PATH": "/usr/bin:/bin",
            **wh.env(),
            "ALPHAVANTAGE_BASE_URL": f"{base}/query",
            "ALPHAVANTAGE_API_KEY": "bench",
            "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0",
            "EXTRACT_WORKERS": str(opts.workers),
            "EXTRACT_LOG_LEVEL": "WARNING",
        }
        if opts.parse_processes is not None:
            env["EXTRACT_PARSE_PROCESSES"] = str(opts.parse_processes)
        if not opts.skip_throughput:
            t0 = time.monotonic()
            with ThreadPoolExecutor(2) as pool:
                sizes = list(
                    pool.map(
                        lambda s: len(get(f"{base}/query?function=TIME_SERIES_DAILY&symbol={s}&outputsize=full")), syms
                    )
                )
            print(
                f"sandbox warm-up: {len(syms)} full histories generated in {time.monotonic() - t0:.1f}s "
                f"({sum(sizes) / 1e6:.0f} MB of JSON)"
            )
            get(f"{base}/_sandbox/requests")
            urllib.request.urlopen(
                urllib.request.Request(f"{base}/_sandbox/requests", method="DELETE"), timeout=10
            ).read()

            load = os.getloadavg()[0]
            postmaster = int((wh.pgdata / "postmaster.pid").read_text().split()[0])
            pg0, sb0 = proc_cpu_s(postmaster, children=True), proc_cpu_s(sandbox.process.pid)
            wall, rc, rss, err, cpu = run_extract(["prices", "--full", "--symbols", ",".join(syms)], env)
            pg_cpu, sb_cpu = proc_cpu_s(postmaster, children=True) - pg0, proc_cpu_s(sandbox.process.pid) - sb0
            out = wh.psql_admin(
                "select requests, bars, symbols_succeeded from ops.extract_runs order by started_at desc limit 1",
                database="warehouse",
            ).strip()
            requests, bars, ok = (int(x) for x in out.split("|"))
            print(f"\n== throughput: {len(syms)} symbols, full history, limiter off, {opts.workers} workers")
            print(f"exit code          {rc}  ({ok}/{len(syms)} symbols succeeded)")
            print(f"wall time          {wall:.1f} s")
            print(f"requests/s         {requests / wall:.1f}")
            print(f"bars loaded        {bars:,}")
            print(f"bars/s             {bars / wall:,.0f}   (target >= 100,000)")
            print(f"extractor peak RSS {rss:.0f} MiB   (target <= 300; the process and its parse helpers together)")
            print(
                f"CPU seconds        extractor {cpu:.1f} (incl. helpers), PostgreSQL {pg_cpu:.1f}, sandbox {sb_cpu:.1f}"
            )
            total, cores = cpu + pg_cpu + sb_cpu, os.cpu_count() or 1
            print(
                f"CPU-bound capacity {bars / (total / cores):,.0f} bars/s = bars / (total CPU / {cores} cores); "
                f"load average before the run: {load:.1f}"
            )
            if rc != 0:
                print(err, file=sys.stderr)

        if not opts.skip_limiter:
            urllib.request.urlopen(
                urllib.request.Request(f"{base}/_sandbox/requests", method="DELETE"), timeout=10
            ).read()
            lim = symbols(opts.rpm_requests, seed=3)
            with ThreadPoolExecutor(2) as pool:  # pre-generate, so the sandbox is not the bottleneck
                list(pool.map(lambda s: get(f"{base}/query?function=OVERVIEW&symbol={s}"), lim))
            urllib.request.urlopen(
                urllib.request.Request(f"{base}/_sandbox/requests", method="DELETE"), timeout=10
            ).read()
            env_lim = {**env, "ALPHAVANTAGE_REQUESTS_PER_MINUTE": f"{opts.rpm:g}", "EXTRACT_WORKERS": "4"}
            wall, rc, rss, err, _ = run_extract(["companies", "--symbols", ",".join(lim)], env_lim)
            times = sorted(r["t"] for r in json.loads(get(f"{base}/_sandbox/requests"))["requests"])
            achieved = (len(times) - 1) / (times[-1] - times[0]) * 60.0
            gaps = [b - a for a, b in pairwise(times)]
            worst_minute = max(sum(1 for t in times if s <= t < s + 60.0) for s in times)
            window = 10 * 60.0 / opts.rpm  # the same limit scaled to 10 request slots
            worst_window = max(sum(1 for t in times if s <= t < s + window) for s in times)
            print(f"\n== rate limit: {len(times)} OVERVIEW requests at R = {opts.rpm:g}/min, 4 workers (exit {rc})")
            print(f"achieved rate      {achieved:.1f}/min = {achieved / opts.rpm:.1%} of R   (target >= 95 %)")
            print(f"smallest gap       {min(gaps) * 1000:.0f} ms (60/R = {60000 / opts.rpm:.0f} ms)")
            print(f"most in any 60 s   {worst_minute} (R = {opts.rpm:g})")
            print(f"most in any {window:.1f} s  {worst_window} (10 slots of 60/R)")
    finally:
        sandbox.stop()
        wh.destroy()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
