"""On-call alerts: email through the SMTP provider's notifier and Slack through an incoming webhook.

One notifier, `PipelineAlert`, is attached as `on_failure_callback` to every task (and as Cosmos'
`on_warning_callback` for source-freshness and dbt test warnings; Cosmos calls that callback after
every freshness run, so a warning notifier alerts only when dbt reported warnings). It classifies
what happened:

- `quality_gate_failed` — the `quality_gate` task failed; the message lists the failing
  expectations, read from `ops.gate_results` (docs/warehouse.md) of the latest gate run;
- `stale_source_data` — a dbt source-freshness task failed (error threshold) or warned; the
  message names the source's table, its thresholds (from the dbt manifest) and its newest load;
- `dbt_test_warnings` — a dbt test task finished with warnings (tests of severity `warn`);
- `task_failed` — any other task failed (after its retries).

The message names the DAG, task, run id, logical date, try number and links to the task log in the
Airflow UI (`DATAPIPE_AIRFLOW_BASE_URL`). Format and delivery are `datapipe_dags.notify`'s, shared
with the run alert (a failed or timed-out run) and the import-error alert of the health DAG. Each
channel is enabled only when configured (`DATAPIPE_ALERT_EMAIL_TO` for email over connection
`smtp_default`; `DATAPIPE_SLACK_CONN_ID` for a Slack incoming-webhook connection). No secret goes
into a message: error texts are redacted.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from typing import Any

from datapipe_dags.config import Settings
from datapipe_dags.notify import (
    AlertMessage,
    RunAlert,
    TaskAlert,
    deliver,
    field,
    redact,
    task_log_url,
    task_message,
)

__all__ = ["GATE_TASK_ID", "AlertMessage", "PipelineAlert", "RunAlert", "build_message", "classify", "redact",
           "stale_source_details", "task_log_url"]

GATE_TASK_ID = "quality_gate"
MAX_EXPECTATIONS = 25
MAX_ERROR_CHARS = 600

TITLES = {
    "task_failed": "Task failed",
    "quality_gate_failed": "Quality gate failed",
    "stale_source_data": "Stale source data",
    "dbt_test_warnings": "dbt test warnings",
}

# The latest gate run's failing expectations (tables and columns: docs/warehouse.md).
GATE_RESULTS_SQL = """
select r.mart, r.expectation_type, coalesce(r.column_name, ''), coalesce(r.observed_value, ''),
       coalesce(r.details, '')
from ops.gate_results as r
where r.gate_run_id = (select g.gate_run_id from ops.gate_runs as g order by g.started_at desc limit 1)
  and not r.success
order by r.mart, r.expectation_type, r.column_name
"""


def classify(task: Any, warning: bool = False) -> str:
    if task is not None and getattr(task, "task_id", "") == GATE_TASK_ID:
        return "quality_gate_failed"
    from cosmos.operators.base import DbtSourceMixin

    if isinstance(task, DbtSourceMixin) or (task is not None and str(getattr(task, "task_id", "")).endswith(
            ("_source", ".source"))):
        return "stale_source_data"
    return "dbt_test_warnings" if warning else "task_failed"


def build_message(kind: str, context: Any, base_url: str, *, expectations: list[str] | None = None,
                  expectations_error: str | None = None, details: Sequence[str] = ()) -> AlertMessage:
    """A task alert (notify.task_message) with the pipeline's details: dbt's warnings, the stale
    source, the failing expectations of the gate."""
    extra: list[str] = []
    warned = context.get("test_names")
    if warned:
        extra.append(field("Warnings", ", ".join(map(str, warned))[:MAX_ERROR_CHARS]))
    extra.extend(details)
    if kind == "quality_gate_failed":
        extra.append("")
        if expectations:
            shown = expectations[:MAX_EXPECTATIONS]
            extra.append(f"Failing expectations ({len(expectations)}):")
            extra.extend(f"  - {e}" for e in shown)
            if len(expectations) > len(shown):
                extra.append(f"  ... and {len(expectations) - len(shown)} more (see the task log)")
        else:
            reason = expectations_error or "none recorded in ops.gate_results"
            extra.append(f"Failing expectations: unavailable ({reason}); see the task log.")
    return task_message(kind, TITLES[kind], context, base_url, extra=extra)


def format_expectation(row: tuple[Any, ...]) -> str:
    mart, expectation, column, observed, details = (str(v) for v in row)
    text = f"{mart}: {expectation}" + (f"({column})" if column else "")
    if observed:
        text += f" observed={observed[:120]}"
    if details:
        text += f" — {details[:200]}"
    return text


def query_warehouse(settings: Settings, query: str) -> tuple[list[tuple[Any, ...]] | None, str | None]:
    """Rows of a read-only query, or (None, reason) when the warehouse cannot be read: an alert
    must still go out when it is unreachable."""
    try:
        if settings.warehouse_conn_id:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            rows = PostgresHook(postgres_conn_id=settings.warehouse_conn_id).get_records(query)
        elif settings.is_local:
            # Local runtime: the steps use the libpq variables of this process; so does libpq here.
            import psycopg

            with psycopg.connect("", connect_timeout=10) as conn:
                rows = conn.execute(query).fetchall()
        else:
            return None, "set DATAPIPE_WAREHOUSE_CONN_ID to read the warehouse from alerts"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return [tuple(r) for r in rows], None


def fetch_failing_expectations(settings: Settings) -> tuple[list[str] | None, str | None]:
    """Failing expectations of the latest gate run, or (None, reason) when they cannot be read."""
    rows, error = query_warehouse(settings, GATE_RESULTS_SQL)
    return (None, error) if rows is None else ([format_expectation(r) for r in rows], None)


def _threshold(rule: Any) -> str | None:
    if not isinstance(rule, dict) or not rule.get("count") or not rule.get("period"):
        return None
    return f"{rule['count']} {rule['period']}{'s' if rule['count'] != 1 else ''}"


def _age(delta: dt.timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)

    def n(count: int, unit: str) -> str:
        return f"{count} {unit}{'' if count == 1 else 's'}"

    return f"{n(hours // 24, 'day')} {n(hours % 24, 'hour')}" if hours >= 24 else n(hours, "hour")


def stale_source_details(task: Any, settings: Settings, now: dt.datetime | None = None) -> list[str]:
    """What on-call needs about a stale source: its table, thresholds and newest load. The source is
    the task's dbt selector (`source:<source>.<table>`), looked up in the dbt manifest."""
    selectors = getattr(task, "select", None) or []
    names = [s.removeprefix("source:") for s in ([selectors] if isinstance(selectors, str) else selectors)
             if str(s).startswith("source:")]
    if len(names) != 1:
        return []
    lines = [f"Source:       {names[0]}"]
    try:
        with settings.dbt_manifest.open() as fh:
            sources = json.load(fh).get("sources", {})
        node = next(n for n in sources.values() if f"{n['source_name']}.{n['name']}" == names[0])
    except (OSError, ValueError, StopIteration, KeyError, TypeError) as exc:
        return [*lines, f"Freshness:    unavailable ({type(exc).__name__} reading {settings.dbt_manifest})"]
    table = f"{node['schema']}.{node['identifier']}"
    # dbt/macros/freshness.sql: the source's age counts NYSE sessions, its load column is in meta
    on_sessions = "datapipe_sessions_since_load" in str(node.get("loaded_at_query") or "")
    loaded_at = node.get("loaded_at_field") or (node.get("meta") or {}).get("loaded_at_column")
    freshness = node.get("freshness") or {}
    levels = (("warn", "warn_after"), ("error", "error_after"))
    if on_sessions:  # "more than N days" of the session clock = N + 1 sessions without a newer load
        rules = [f"{level} after {rule['count'] + 1}" for level, key in levels
                 if isinstance(rule := freshness.get(key), dict) and rule.get("count") is not None]
        if rules:
            rules[-1] += " NYSE sessions without a newer load"
        lines[0] += f" (table {table}, loads timed by {loaded_at}, age in NYSE sessions)"
    else:
        rules = [f"{level} after {t}" for level, key in levels if (t := _threshold(freshness.get(key)))]
        lines[0] += f" (table {table}, loaded_at_field {loaded_at})"
    if rules:
        lines.append(f"Freshness:    {', '.join(rules)}")
    if not loaded_at or not re.fullmatch(r"\w+", str(loaded_at)) or not re.fullmatch(r"\w+\.\w+", table):
        return lines
    rows, error = query_warehouse(settings, f"select max({loaded_at}) from {table}")
    newest = rows[0][0] if rows else None
    if error:
        lines.append(f"Newest load:  unavailable ({error})")
    elif isinstance(newest, dt.datetime):
        now = now or dt.datetime.now(dt.UTC)
        lines.append(f"Newest load:  {newest.astimezone(dt.UTC).isoformat(timespec='seconds')}"
                     f" ({_age(now - newest)} ago)")
    else:
        lines.append(f"Newest load:  none ({table} is empty)")
    return lines


class PipelineAlert(TaskAlert):
    """Sends one alert per failed task (or freshness warning) to every configured channel."""

    def __init__(self, settings: Settings, *, warning: bool = False) -> None:
        super().__init__(settings.channels)
        self.settings = settings
        self.warning = warning

    def message(self, context: Any) -> AlertMessage:
        ti = context["ti"]
        kind = classify(getattr(ti, "task", None) or ti, warning=self.warning)
        expectations: list[str] | None = None
        error: str | None = None
        details: list[str] = []
        if kind == "quality_gate_failed":
            expectations, error = fetch_failing_expectations(self.settings)
        elif kind == "stale_source_data":
            details = stale_source_details(getattr(ti, "task", None) or ti, self.settings)
        return build_message(kind, context, self.settings.airflow_base_url,
                             expectations=expectations, expectations_error=error, details=details)

    def notify(self, context: Any) -> None:
        if self.warning and not context.get("test_names"):
            # Cosmos calls the warning callback of a source-freshness task after every run, warnings
            # or not; only a run that reported warnings (their names in `test_names`) is an alert.
            self.log.info("no dbt warnings reported: no alert")
            return
        if not self.enabled:
            self.log.info("alerts are not configured (DATAPIPE_ALERT_EMAIL_TO / DATAPIPE_SLACK_CONN_ID)")
            return
        if not self.warning and self.stopped_from_outside(context):
            return
        deliver(self.message(context), self.channels, context, self.log)

    @property
    def enabled(self) -> bool:
        return self.channels.enabled

