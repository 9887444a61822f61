"""`quality` console script: gate, publish, grant-reader, summary, calendar.

    quality gate           validate the audited marts (GX); exit 1 with the failing expectations
    quality publish        copy the audited marts into `marts` in one transaction (needs every dbt model
                           and test of the run passed, then a passed gate on exactly the audit)
    quality grant-reader   read-only grants for the dashboard role (idempotent)
    quality summary        print the published marts: rows, symbols, latest trading day; and the latest
                           run (ops.pipeline_runs). --json: the marts and the 20 newest runs as JSON
    quality calendar       print the trading day the freshness check expects

Configuration (environment, read once): PGHOST PGPORT PGDATABASE PGUSER PGPASSWORD PGSSLMODE,
DATAPIPE_SYMBOLS, DATAPIPE_RUN_ID (the pipeline run: Airflow's run id; unset, the run of the newest
dbt result), DATAPIPE_AUDIT_SCHEMA (audit), DATAPIPE_MARTS_SCHEMA (marts), DASHBOARD_ROLE
(dashboard), QUALITY_DATA_DOCS_DIR (target/data_docs), QUALITY_ROW_COUNT_TOLERANCE (0.05),
QUALITY_FRESHNESS_LAG_DAYS (0), QUALITY_TODAY (pin the date, YYYY-MM-DD),
QUALITY_MARKET_CLOSE_DELAY_MINUTES (60), QUALITY_LOCK_TIMEOUT_S (60), QUALITY_SWAP_TIMEOUT_S (2),
DATAPIPE_RUN_GRACE_S (600).

An expected error (warehouse, permissions, files, Great Expectations) is one line naming what failed
and what to do, with its exit code (docs/common.md, "Exit codes"); `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from datapipe_common import failures

from quality.settings import ConfigError, Settings

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = failures.EXIT_OK, failures.EXIT_FAILED, failures.EXIT_CONFIG


def hints(command: str) -> dict[str, str]:
    """What to do, per kind of failure (datapipe_common.failures)."""
    return {
        failures.WAREHOUSE: "check PGHOST/PGPORT/PGDATABASE/PGUSER/PGPASSWORD and that the warehouse is up"
        f" (`make db-up` locally), then run `quality {command}` again",
        failures.PERMISSION: "run quality as the pipeline writer role (PGUSER owning audit, marts and ops),"
        " not the dashboard reader; or grant the privilege",
        failures.FILES: "set QUALITY_DATA_DOCS_DIR to a directory quality can create and write, then run again",
        failures.GX: f"run `quality {command} --debug` for the traceback; the gate run is recorded aborted",
    }


def _gate(settings: Settings) -> int:
    from quality.gate import run_gate

    outcome = run_gate(settings)
    total, failed = len(outcome.results), len(outcome.failures)
    print(f"gate run {outcome.gate_run_id}: {total - failed}/{total} expectations passed"
          f" (freshness: latest bar >= {outcome.expected_latest_date}; rows checked:"
          f" {outcome.scope.describe() if outcome.scope else 'whole tables'})")
    if outcome.data_docs_path:
        print(f"data docs: {outcome.data_docs_path}")
    if outcome.success:
        print("GATE PASSED")
        return EXIT_OK
    print(f"GATE FAILED: {failed} failing expectation(s); nothing will be published:", file=sys.stderr)
    for failure in outcome.failures:
        print(f"  - {failure.describe()}", file=sys.stderr)
    return EXIT_FAILED


def _publish(settings: Settings) -> int:
    from quality.publish import PublishRefused, publish

    try:
        outcome = publish(settings)
    except PublishRefused as exc:
        print(f"PUBLISH REFUSED: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(outcome.dbt)
    counts = ", ".join(f"{m}={n:,}" for m, n in outcome.row_counts.items())
    print(f"published (publish_id {outcome.publish_id}, gate run {outcome.gate_run_id}, {outcome.mode}): {counts}")
    print(outcome.swap)
    return EXIT_OK


def _grant(settings: Settings) -> int:
    from quality.grants import GrantError, grant_reader

    try:
        granted = grant_reader(settings)
    except GrantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"role {settings.dashboard_role}: SELECT on {settings.marts_schema}.* (and future tables),"
          f" ops.{', ops.'.join(granted) if granted else '(no ops tables yet)'}")
    return EXIT_OK


def _summary(settings: Settings, as_json: bool = False) -> int:
    from quality.runs import latest_runs
    from quality.summary import format_run, format_table, last_publish, summary_rows

    rows = summary_rows(settings)
    runs = latest_runs(settings, limit=20 if as_json else 1)
    if as_json:
        print(json.dumps({
            "marts": [{"mart": m, "rows": n, "symbols": s, "latest_trade_date": None if d in ("-", "not published")
                       else d} for m, n, s, d in rows],
            "last_publish": last_publish(settings),
            "runs": runs,
        }, indent=2))
    else:
        print(f"published marts ({settings.marts_schema}), last publish: {last_publish(settings)}")
        print(format_table(rows))
        print(f"latest run: {format_run(runs[0]) if runs else 'none recorded'}")
    return EXIT_OK if all(r[3] != "not published" for r in rows) else EXIT_FAILED


def _calendar(settings: Settings) -> int:
    from quality.gate import expected_latest_session

    print(expected_latest_session(settings, dt.datetime.now(dt.UTC)).isoformat())
    return EXIT_OK


COMMANDS = {"gate": _gate, "publish": _publish, "grant-reader": _grant, "summary": _summary, "calendar": _calendar}


def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="quality", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (default: one line saying what failed and what to do)")
    parser.add_argument("--json", action="store_true", help="summary: print JSON for a monitor")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.debug:  # GX logs the errors it re-raises with their tracebacks; we explain them in one line
        logging.getLogger("great_expectations").setLevel(logging.CRITICAL)
    try:
        settings = Settings.from_env(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"quality: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    def body() -> int:
        if args.command == "summary":
            return _summary(settings, as_json=args.json)
        return COMMANDS[args.command](settings)

    return failures.run_cli("quality", body, debug=args.debug, hints=hints(args.command))


if __name__ == "__main__":
    sys.exit(main())
