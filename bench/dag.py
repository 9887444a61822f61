#!/usr/bin/env python3
"""Benchmark of the market_data_daily DAG (prints figures; not a test). Run: `make bench-dag`.

1. DAG file parse time with Cosmos `LoadMode.DBT_MANIFEST` (what the DAG uses), in a fresh
   interpreter per measurement:
   - cold: everything the dag processor pays for a brand-new interpreter (Airflow, Cosmos and the
     Kubernetes client imports + the file);
   - warm: re-executing the DAG file in an interpreter that already imported its libraries
     (median of N), i.e. the cost of the file itself. Target: <= 1 s.
2. The same DAG with `LoadMode.DBT_LS` (Cosmos runs `dbt ls` from the transform venv at parse time;
   Cosmos' cache disabled so every parse pays it), and the ratio dbt_ls / manifest.
3. `make run` end to end (local runtime, embedded warehouse, sandbox API, default 10 symbols):
   wall time, DAG run duration and where it goes (per task, from the run's log).
4. `--vs-pipeline [REF]`: the DAG run against the bare pipeline (`scripts/run-step --pipeline`, what
   `make pipeline` runs) in one run, on a private embedded warehouse and the sandbox: a first load
   (each on a fresh warehouse), then, after a warm-up, daily increments alternating on the same
   warehouse. The DAG's figure is its run's duration as Airflow records it (Airflow's process start
   not counted), with where it goes (from the run's log); the pipeline's is its whole process.
   Before each run an untimed `dbt parse` leaves dbt's saved parse as that variant's own previous
   run would. With REF (a git commit) the DAG of that commit (its dags/ folder, the same venvs and
   manifest) runs alternately too: before/after side by side. Also: the dbt processes each run
   started (from its log) and the pods a daily run starts in the kubernetes runtime (the DAG built
   from the chart's ConfigMap).

    .local/venvs/airflow/bin/python bench/dag.py [--repeat N] [--skip-run] [--skip-parse]
    .local/venvs/airflow/bin/python bench/dag.py --skip-parse --skip-run --vs-pipeline main --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DAGS = ROOT / "dags"
DAG_FILE = DAGS / "market_data_daily.py"
PY = ROOT / ".local" / "venvs" / "airflow" / "bin" / "python"

# Runs in a fresh interpreter: times the cold parse, then N warm re-executions of the DAG file.
PROBE = r"""
import json, runpy, statistics, sys, time
t0 = time.perf_counter()
ns = runpy.run_path(sys.argv[1], run_name="bench_dag_cold")
cold = time.perf_counter() - t0
dag = ns["dag"]
load = None
if sys.argv[3] == "dbt_ls":
    import os
    from cosmos.constants import LoadMode
    from datapipe_dags.config import Settings
    from datapipe_dags.pipeline import build_market_data_daily
    def once():
        return build_market_data_daily(Settings.from_env(os.environ), load_method=LoadMode.DBT_LS)
    t0 = time.perf_counter(); dag = once(); cold_ls = time.perf_counter() - t0
    warm = []
    for i in range(int(sys.argv[2])):
        t0 = time.perf_counter(); once(); warm.append(time.perf_counter() - t0)
    print(json.dumps({"cold_total": cold + cold_ls, "warm": warm, "tasks": len(dag.tasks)}))
else:
    warm = []
    for i in range(int(sys.argv[2])):
        t0 = time.perf_counter()
        runpy.run_path(sys.argv[1], run_name=f"bench_dag_{i}")
        warm.append(time.perf_counter() - t0)
    print(json.dumps({"cold_total": cold, "warm": warm, "tasks": len(dag.tasks)}))
"""


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def probe(mode: str, runtime: str, repeat: int) -> dict[str, object]:
    home = tempfile.mkdtemp(prefix="bench-dag-")
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": home, "AIRFLOW_HOME": home,
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__COSMOS__ENABLE_CACHE": "False", "PYTHONPATH": str(DAGS),
        "DATAPIPE_RUNTIME": runtime,
        # dbt ls parses profiles.yml, whose env_var() calls need values (it connects to nothing)
        "PGHOST": "127.0.0.1", "PGPORT": "5432", "PGDATABASE": "warehouse", "PGUSER": "pipeline",
        "PGPASSWORD": "unused", "PGSSLMODE": "disable",
    }
    proc = subprocess.run([str(PY), "-c", PROBE, str(DAG_FILE), str(repeat), mode], env=env, cwd=home,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"parse probe ({mode}, {runtime}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def bench_parse(repeat: int) -> None:
    manifest = ROOT / "dbt" / "target" / "manifest.json"
    nodes = json.loads(manifest.read_text())["nodes"]
    models = sum(1 for n in nodes.values() if n["resource_type"] == "model")
    tests = sum(1 for n in nodes.values() if n["resource_type"] == "test")
    print(f"== DAG file parse time ({DAG_FILE.relative_to(ROOT)}; manifest: {models} models, {tests} tests)")
    print(f"   load average before: {load_average()}")
    results = {}
    for runtime in ("kubernetes", "local"):
        r = probe("manifest", runtime, repeat)
        results[("manifest", runtime)] = r
        warm = r["warm"]
        print(f"   DBT_MANIFEST, {runtime:10} runtime: cold {r['cold_total']:6.2f} s (fresh interpreter, imports "
              f"included)   warm median {statistics.median(warm):.3f} s  min {min(warm):.3f} s  "
              f"(n={len(warm)}, {r['tasks']} tasks)")
    r = probe("dbt_ls", "local", max(1, repeat // 2))
    results[("dbt_ls", "local")] = r
    print(f"   DBT_LS,       local      runtime: cold {r['cold_total']:6.2f} s   warm median "
          f"{statistics.median(r['warm']):.3f} s  min {min(r['warm']):.3f} s  (n={len(r['warm'])}, {r['tasks']} tasks, "
          "Cosmos cache off)")
    base = statistics.median(results[("manifest", "local")]["warm"])  # type: ignore[arg-type]
    ls = statistics.median(results[("dbt_ls", "local")]["warm"])  # type: ignore[arg-type]
    print(f"   ratio DBT_LS / DBT_MANIFEST (warm medians, same runtime): {ls / base:.1f}x")
    print(f"   load average after: {load_average()}")


TASK_LINE = re.compile(r"^(\S+Z) .*\[DAG TEST\] running task <TaskInstance: market_data_daily\.(\S+) ")
END_LINE = re.compile(r"^(\S+Z) .*DagRun Finished: .*run_duration=([0-9.]+), state=(\w+)")


def bench_run() -> None:
    print("== make run (local runtime, embedded warehouse, sandbox API, default symbols)")
    print(f"   load average before: {load_average()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALPHAVANTAGE_", "DATAPIPE_SYMBOLS"))}
    started = time.monotonic()
    proc = subprocess.run(["make", "run"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - started
    log = proc.stdout + proc.stderr
    starts = [(datetime.fromisoformat(m.group(1).replace("Z", "+00:00")), m.group(2))
              for m in map(TASK_LINE.match, log.splitlines()) if m]
    end = next((m for m in map(END_LINE.match, log.splitlines()) if m), None)
    print(f"   exit code {proc.returncode}; wall time {wall:.1f} s (includes make's venv/manifest checks, "
          f"db-up, sandbox-up, Airflow start-up and the DAG parse)")
    if end:
        print(f"   DAG run: state {end.group(3)}, run_duration {float(end.group(2)):.1f} s")
    if starts and end:
        finish = datetime.fromisoformat(end.group(1).replace("Z", "+00:00"))
        bounds = [*(s for s, _ in starts[1:]), finish]
        per_task = [(name, (nxt - st).total_seconds()) for (st, name), nxt in zip(starts, bounds, strict=True)]
        dbt_times = [d for n, d in per_task if n.startswith("dbt.")]
        print(f"   {len(per_task)} tasks; {len(dbt_times)} dbt tasks take {sum(dbt_times):.1f} s in total "
              f"(mean {sum(dbt_times) / max(1, len(dbt_times)):.1f} s each)")
        for name, dur in per_task:
            print(f"     {dur:7.1f} s  {name}")
    print(f"   load average after: {load_average()}")
    if proc.returncode != 0:
        print(log[-4000:])


STARTED_LINE = re.compile(r"^(\S+Z) .*Task started .*execution_api")


def stamp(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_breakdown(log: str) -> dict[str, float] | None:
    """Where a DAG run's recorded duration goes, from its log's stamps (seconds):
    `before`: from the run's start as Airflow records it to its first task (under `airflow dags test`
    the CLI's DAG parse, the bundle's re-parse and sync, creating the run); `api`: the first task's
    wait for the in-process execution API's first answer (Airflow building the API: paid once per
    `dags test` process, inside the first task); `sensors`: the model and test tasks reading the
    producer's results (n = `sensor_tasks`); `producer`, `freshness`: the two dbt tasks; `other`:
    every other task, less `api`."""
    lines = log.splitlines()
    end = next((m for m in map(END_LINE.match, lines) if m), None)
    starts = [(stamp(m.group(1)), m.group(2)) for m in map(TASK_LINE.match, lines) if m]
    first_answer = next((stamp(m.group(1)) for m in map(STARTED_LINE.match, lines) if m), None)
    if end is None or not starts or first_answer is None:
        return None
    finish = stamp(end.group(1))
    run_start = finish.timestamp() - float(end.group(2))
    out = {"before": starts[0][0].timestamp() - run_start, "api": (first_answer - starts[0][0]).total_seconds(),
           "sensors": 0.0, "sensor_tasks": 0, "producer": 0.0, "freshness": 0.0, "other": 0.0}
    bounds = [*(s for s, _ in starts[1:]), finish]
    for (started, name), nxt in zip(starts, bounds, strict=True):
        took = (nxt - started).total_seconds()
        if name == "dbt.dbt_producer_watcher":
            out["producer"] += took
        elif name == "dbt_source_freshness":
            out["freshness"] += took
        elif name.startswith("dbt.") and name != "dbt.dbt_producer_watcher_done":
            out["sensors"] += took
            out["sensor_tasks"] += 1
        else:
            out["other"] += took
    out["other"] -= out["api"]
    return out


def breakdown_text(b: dict[str, float]) -> str:
    n = int(b["sensor_tasks"])
    return (f"before 1st task {b['before']:.1f} s | API start-up {b['api']:.1f} s | {n} sensor tasks "
            f"{b['sensors']:.1f} s ({b['sensors'] / max(1, n):.2f} s each) | producer {b['producer']:.1f} s | "
            f"freshness {b['freshness']:.1f} s | other tasks {b['other']:.1f} s")


DBT_COSMOS = re.compile(r"Running command: \['[^']*/dbt'")
DBT_STEP = re.compile(r"running dbt \w+")


def pods_per_daily_run() -> tuple[int, list[str]]:
    """Pods a daily run starts in the kubernetes runtime: the DAG built from the chart's DAG ConfigMap
    (default values); sensors (Cosmos' model tasks) start none unless retried; `extract_companies`
    runs only on the week's first session (reported separately)."""
    sys.path[:0] = [str(ROOT / "tests" / "chart"), str(DAGS)]
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import BaseSensorOperator
    from chart_helpers import Renderer, ensure_helm, find
    from datapipe_dags.config import Settings
    from datapipe_dags.pipeline import build_market_data_daily

    cm = find(Renderer(ensure_helm(), Path(tempfile.mkdtemp(prefix="bench-dag-helm-"))).template({}),
              "ConfigMap", "datapipe-dag-config")
    env = {**cm["data"], "DATAPIPE_DBT_MANIFEST": str(ROOT / "dbt" / "target" / "manifest.json"),
           "DATAPIPE_DBT_PROJECT_DIR": "."}
    dag = build_market_data_daily(Settings.from_env(env))
    pods = [t.task_id for t in dag.tasks if isinstance(t, KubernetesPodOperator)
            and not isinstance(t, BaseSensorOperator)]
    return len([t for t in pods if t != "extract_companies"]), pods


def timed(argv: list[str], env: dict[str, str], log: Path) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=3600)
    wall = time.monotonic() - started
    log.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed (exit {proc.returncode}); log: {log}\n{proc.stdout[-3000:]}")
    return wall, proc.stdout


def dir_name(variant: str) -> str:
    """A short directory name for a variant: the embedded PostgreSQL's Unix socket lives in its
    warehouse's directory, and a socket path is limited to 107 bytes (a full commit hash overflows it)."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", variant)[:16]


def prime_dbt_parse(dags_dir: Path, env: dict[str, str], log: Path) -> None:
    """Leave dbt/target's saved parse (partial_parse.msgpack) as this variant's own previous run would:
    an untimed `dbt parse` with the dbt arguments of its steps.toml (the transform component's DBT_*
    env). The variants share dbt/target; dbt reuses a saved parse only for the same profile and
    target arguments, so without this one variant would pay for the parse another one left."""
    if str(DAGS) not in sys.path:
        sys.path.insert(0, str(DAGS))
    from datapipe_dags.steps import load_steps  # the one reader of steps.toml, given the variant's file

    transform = load_steps(dags_dir / "datapipe_dags" / "steps.toml").components["transform"]
    dbt_env = {k: v for k, v in env.items() if not k.startswith("DBT_")} | dict(transform.env)
    proc = subprocess.run([str(ROOT / ".local" / "venvs" / "transform" / "bin" / "dbt"), "parse"],
                          cwd=ROOT / transform.local_dir, env=dbt_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)
    log.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"dbt parse failed (exit {proc.returncode}); log: {log}")


def bench_vs_pipeline(ref: str | None, repeat: int) -> None:
    sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "common" / "src")]
    import warehouse as warehouse_mod
    from datapipe_common.config import read_env_file

    root = Path(tempfile.mkdtemp(prefix="bench-dag-", dir=ROOT / ".local"))
    logs = root / "logs"
    logs.mkdir()
    if subprocess.run(["make", "-s", "sandbox-up"], cwd=ROOT, stdout=subprocess.DEVNULL).returncode != 0:
        sys.exit("make sandbox-up failed")
    sandbox = read_env_file(ROOT / ".local" / "sandbox.env")
    variants: dict[str, Path] = {"dag": DAGS}
    if ref:  # the DAG of REF: its dags/ folder, run with this checkout's venvs and manifest
        old = root / "dags-ref"
        old.mkdir()
        archive = subprocess.run(["git", "archive", ref, "dags"], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
        variants[f"dag@{ref}"] = old / "dags"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATAPIPE_", "ALPHAVANTAGE_", "AIRFLOW"))}
    base |= sandbox | {"DATAPIPE_REPO_DIR": str(ROOT),
                       "DATAPIPE_DBT_MANIFEST": str(ROOT / "dbt" / "target" / "manifest.json")}
    results: dict[tuple[str, str], list[float]] = {}
    walls: dict[tuple[str, str], list[float]] = {}
    dbt_procs: dict[str, int] = {}

    def one(name: str, phase: str, wh_env: dict[str, str], n: int) -> None:
        env = {**base, **wh_env}
        log = logs / f"{phase}-{name}-{n}.log"
        prime_dbt_parse(variants.get(name, DAGS), env, logs / f"parse-{phase}-{name}-{n}.log")
        if name == "pipeline":
            wall, out = timed(["python3", str(ROOT / "scripts" / "run-step"), "--pipeline"], env, log)
            value = wall
            procs = len(re.findall(r"^==> dbt_", out, re.M))
            parts = None
        else:
            home = root / f"airflow-{dir_name(name)}"
            # what scripts/airflow-local sets, with this variant's DAGs folder
            env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(variants[name]),
                    "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__COSMOS__CACHE_DIR": str(home / "cosmos-cache"),
                    "AIRFLOW__COSMOS__ENABLE_TELEMETRY": "False", "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                    "DATAPIPE_RUNTIME": "local", "PATH": f"{PY.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            airflow = str(PY.parent / "airflow")
            if not (home / "airflow.db").exists():
                timed([airflow, "db", "migrate"], env, logs / f"migrate-{home.name}.log")
            wall, out = timed([airflow, "dags", "test", "market_data_daily"], env, log)
            end = next((m for m in map(END_LINE.match, out.splitlines()) if m), None)
            if end is None or end.group(3) != "success":
                sys.exit(f"{name} {phase}: no successful DagRun in {log} (home {home})")
            value = float(end.group(2))
            procs = len(DBT_COSMOS.findall(out)) + len(DBT_STEP.findall(out))
            parts = run_breakdown(out)
        results.setdefault((phase, name), []).append(value)
        walls.setdefault((phase, name), []).append(wall)
        dbt_procs[name] = procs
        print(f"   {phase:6} {name:14} {value:7.1f} s   (process wall {wall:.1f} s; dbt processes: {procs})",
              flush=True)
        if name != "pipeline" and parts:
            print(f"          {'':14} {breakdown_text(parts)}", flush=True)

    names = ["pipeline", *variants]
    print(f"== DAG run vs bare pipeline (sandbox, default symbols; load average {load_average()})")
    for name in names:  # first load: each on a fresh warehouse
        wh = warehouse_mod.Warehouse(root / f"wh-first-{dir_name(name)}")
        wh.start()
        try:
            one(name, "first", wh.env(), 0)
        finally:
            wh.stop()
    wh = warehouse_mod.Warehouse(root / "wh-daily")
    wh.start()
    try:
        for n in range(repeat + 1):  # round 0 is the warm-up (a first load, then caches warm)
            for name in names:
                one(name, "warmup" if n == 0 else "daily", wh.env(), n)
    finally:
        wh.stop()
    print(f"   load average after: {load_average()}")
    for phase in ("first", "daily"):
        bare = statistics.median(results[(phase, "pipeline")])
        bare_wall = statistics.median(walls[(phase, "pipeline")])
        for name in variants:
            vals = results[(phase, name)]
            wall = statistics.median(walls[(phase, name)])
            print(f"   {phase:6} {name:14} median {statistics.median(vals):6.1f} s = "
                  f"{statistics.median(vals) / bare:.2f} x bare pipeline (median {bare:.1f} s; n={len(vals)}); "
                  f"whole processes: {wall:.1f} s = {wall / bare_wall:.2f} x")
    print(f"   dbt processes per run: {dbt_procs}")
    count, pods = pods_per_daily_run()
    print(f"   pods per daily run (kubernetes runtime, chart ConfigMap): {count} "
          f"(+ extract_companies on the week's first session): {pods}")
    print(f"   logs: {logs}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-run", action="store_true")
    parser.add_argument("--skip-parse", action="store_true")
    parser.add_argument("--vs-pipeline", nargs="?", const="", default=None, metavar="REF",
                        help="DAG run vs bare pipeline (and, with REF, the DAG of commit REF), side by side")
    args = parser.parse_args()
    if not args.skip_parse:
        bench_parse(args.repeat)
    if not args.skip_run:
        bench_run()
    if args.vs_pipeline is not None:
        bench_vs_pipeline(args.vs_pipeline or None, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
