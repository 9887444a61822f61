"""dbt's verdict on a pipeline run, as dbt's on-run-end hook recorded it (dbt/macros/run_results.sql):
ops.dbt_run_nodes holds every model and test of the manifest dbt ran with, ops.dbt_results one row
per executed node and invocation. A node counts by its latest result (a retried model that then
passed has passed); warnings pass."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import psycopg

from quality import db

PASSED = ("success", "pass", "warn")
# what a refusal names first: the cause before its consequences
_SEVERITY = {"error": 0, "runtime error": 0, "fail": 1, "not run": 2, "skipped": 3}
NAMED = 5  # nodes named in a one-line refusal


@dataclass(frozen=True)
class DbtVerdict:
    run_id: str | None
    nodes: int = 0
    last_result_at: dt.datetime | None = None
    # (unique_id, latest status or "not run") of the nodes that did not pass
    failed: list[tuple[str, str]] = field(default_factory=list)
    # the run of the newest dbt result, when it is not `run_id` (dbt ran for another run since)
    newer_run: str | None = None

    @property
    def passed(self) -> bool:
        return self.nodes > 0 and not self.failed and self.newer_run is None

    def describe(self) -> str:
        """One line: why the run's dbt results do not allow a publish, or that they do."""
        if self.run_id is None:
            return "dbt: no result recorded (ops.dbt_results is empty): run dbt (`dbt build`) before publishing"
        if self.newer_run is not None:
            return (f"dbt: dbt last ran for run {self.newer_run}, after run {self.run_id}: the audit is"
                    f" {self.newer_run}'s; publish that run")
        if self.nodes == 0:
            return f"dbt: no model or test recorded for run {self.run_id}: run dbt with DATAPIPE_RUN_ID={self.run_id}"
        if self.failed:
            ordered = sorted(self.failed, key=lambda f: (_SEVERITY.get(f[1], 2), f[0]))
            named = ", ".join(f"{uid} ({status})" for uid, status in ordered[:NAMED])
            more = f" and {len(ordered) - NAMED} more" if len(ordered) > NAMED else ""
            return (f"dbt: {len(self.failed)} of {self.nodes} models and tests of run {self.run_id} did not pass"
                    f" (latest result): {named}{more}")
        return f"dbt: every model and test of run {self.run_id} passed ({self.nodes} nodes, latest results)"


def read_verdict(conn: psycopg.Connection, run_id: str | None) -> DbtVerdict:
    """The verdict on `run_id`, else on the run of the newest dbt result."""
    if not db.table_exists(conn, "ops", "dbt_results"):
        return DbtVerdict(run_id=None)
    newest = conn.execute(
        "select run_id, recorded_at from ops.dbt_results order by result_id desc limit 1").fetchone()
    if newest is None:
        return DbtVerdict(run_id=None)
    newest_run, last_result_at = str(newest[0]), newest[1]
    run = run_id or newest_run
    rows = conn.execute(
        "select n.unique_id, coalesce(r.status, 'not run') from ops.dbt_run_nodes as n"
        " left join lateral (select status from ops.dbt_results as r where r.run_id = n.run_id"
        "   and r.unique_id = n.unique_id order by r.result_id desc limit 1) as r on true"
        " where n.run_id = %s order by n.unique_id",
        (run,),
    ).fetchall()
    return DbtVerdict(
        run_id=run,
        nodes=len(rows),
        last_result_at=last_result_at,
        failed=[(str(uid), str(status)) for uid, status in rows if status not in PASSED],
        newer_run=newest_run if newest_run != run else None,
    )
