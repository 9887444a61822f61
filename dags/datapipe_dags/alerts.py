"""On-call alerts: email through the SMTP provider's notifier and Slack through an incoming webhook.

One notifier, `PipelineAlert`, is attached as `on_failure_callback` to every task. It classifies
what happened:

- `quality_gate_failed` — the `quality_gate` task failed; the message lists the failing
  expectations, read from `ops.gate_results` (docs/warehouse.md) of the latest gate run;
- `stale_source_data` — the source-freshness task (`dbt_source_freshness`) failed (error threshold)
  or warned; the message names each source's table, its thresholds (from the dbt manifest) and its
  newest load;
- `dbt_test_warnings` — the run's dbt build finished with test warnings (tests of severity `warn`);
- `task_failed` — any other task failed (after its retries).

Warnings: Cosmos' watcher tasks do not call `on_warning_callback`, so the warnings come from dbt's
own results, recorded per run in `ops.dbt_results` by the project's on-run-end hook
(dbt/macros/run_results.sql). `PipelineAlert(settings, warning=True)` is the success callback of the
freshness task (its sources that warned) and the success and skipped callback of the watcher
producer (the build's tests whose latest result warned): one alert each per run, none without a
warning.

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
FRESHNESS_TASK_ID = "dbt_source_freshness"
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
# The latest result of each node of one kind ('test' or 'source') in one pipeline run, as dbt's
# on-run-end hook recorded it (dbt/macros/run_results.sql): a node retried alone counts by its retry.
DBT_LATEST_RESULTS_SQL = """
select distinct on (r.unique_id) r.unique_id, r.status, r.failures
from ops.dbt_results as r
where r.run_id = %s and r.resource_type = %s
order by r.unique_id, r.result_id desc
"""
WARN = "warn"


def classify(task: Any, warning: bool = False) -> str:
    if task is not None and getattr(task, "task_id", "") == GATE_TASK_ID:
        return "quality_gate_failed"
    if task is not None and getattr(task, "task_id", "") == FRESHNESS_TASK_ID:
        return "stale_source_data"
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


def query_warehouse(settings: Settings, query: str, params: Sequence[Any] | None = None,
                    ) -> tuple[list[tuple[Any, ...]] | None, str | None]:
    """Rows of a read-only query, or (None, reason) when the warehouse cannot be read: an alert
    must still go out when it is unreachable."""
    try:
        if settings.warehouse_conn_id:
            from airflow.providers.postgres.hooks.postgres import PostgresHook

            rows = PostgresHook(postgres_conn_id=settings.warehouse_conn_id).get_records(query, parameters=params)
        elif settings.is_local:
            # Local runtime: the steps use the libpq variables of this process; so does libpq here.
            import psycopg

            with psycopg.connect("", connect_timeout=10) as conn:
                rows = conn.execute(query, params).fetchall()
        else:
            return None, "set DATAPIPE_WAREHOUSE_CONN_ID to read the warehouse from alerts"
    except Exception as exc:
        return None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return [tuple(r) for r in rows], None


def fetch_failing_expectations(settings: Settings) -> tuple[list[str] | None, str | None]:
    """Failing expectations of the latest gate run, or (None, reason) when they cannot be read."""
    rows, error = query_warehouse(settings, GATE_RESULTS_SQL)
    return (None, error) if rows is None else ([format_expectation(r) for r in rows], None)


def node_name(unique_id: str) -> str:
    """dbt's name of a node: `test.datapipe.<name>.<hash>` -> name, `source.datapipe.<source>.<table>`
    -> source.table."""
    parts = unique_id.split(".")
    if parts[0] == "source" and len(parts) >= 4:
        return ".".join(parts[2:])
    return parts[2] if len(parts) >= 3 else unique_id


def fetch_dbt_warnings(settings: Settings, run_id: str, resource_type: str) -> tuple[list[str], str | None]:
    """The nodes of `resource_type` whose latest result in `run_id` is a warning, by name (a test with
    its number of failing rows), or ([], reason) when ops cannot be read."""
    rows, error = query_warehouse(settings, DBT_LATEST_RESULTS_SQL, (run_id, resource_type))
    if rows is None:
        return [], error
    warned = sorted((node_name(str(uid)), failures) for uid, status, failures in rows if status == WARN)
    return [f"{name} ({failures} failing row{'s' * (failures != 1)})" if failures else name
            for name, failures in warned], None


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
    """What on-call needs about stale sources: each source's table, thresholds and newest load, read
    from the dbt manifest and the warehouse. The freshness task checks every source with a freshness
    rule; a Cosmos source task (`select` = `source:<source>.<table>`) checks one."""
    if getattr(task, "task_id", "") == FRESHNESS_TASK_ID:
        names = None  # every source with a freshness rule
    else:
        selectors = getattr(task, "select", None) or []
        names = [s.removeprefix("source:") for s in ([selectors] if isinstance(selectors, str) else selectors)
                 if str(s).startswith("source:")]
        if len(names) != 1:
            return []
    try:
        with settings.dbt_manifest.open() as fh:
            sources = list(json.load(fh).get("sources", {}).values())
        if names is None:
            nodes = sorted((n for n in sources if (n.get("freshness") or {}).get("error_after", {}).get("count")
                            or (n.get("freshness") or {}).get("warn_after", {}).get("count")),
                           key=lambda n: (n["source_name"], n["name"]))
        else:
            nodes = [next(n for n in sources if f"{n['source_name']}.{n['name']}" == names[0])]
    except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError) as exc:
        first = f"Source:       {names[0]}" if names else "Sources:      unavailable"
        return [first, f"Freshness:    unavailable ({type(exc).__name__} reading {settings.dbt_manifest})"]
    return [line for node in nodes for line in source_lines(node, settings, now)]


def source_lines(node: dict[str, Any], settings: Settings, now: dt.datetime | None = None) -> list[str]:
    """One source's table, freshness thresholds and newest load (from the warehouse)."""
    name = f"{node['source_name']}.{node['name']}"
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
        lines = [f"Source:       {name} (table {table}, loads timed by {loaded_at}, age in NYSE sessions)"]
    else:
        rules = [f"{level} after {t}" for level, key in levels if (t := _threshold(freshness.get(key)))]
        lines = [f"Source:       {name} (table {table}, loaded_at_field {loaded_at})"]
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
        if self.warning:
            self.notify_warnings(context)
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

    def notify_warnings(self, context: Any) -> None:
        """The warnings of this run's freshness check or build, from ops.dbt_results (nothing when
        there are none, or alerts are off)."""
        ti = context["ti"]
        kind = classify(getattr(ti, "task", None) or ti, warning=True)
        if kind == "dbt_test_warnings" and (getattr(ti, "try_number", 1) or 1) > 1:
            # Cosmos' producer builds on its first try only (later tries skip): its warnings went out then
            self.log.info("producer try %s ran no build: no warning alert", ti.try_number)
            return
        if not self.enabled:
            self.log.info("alerts are not configured (DATAPIPE_ALERT_EMAIL_TO / DATAPIPE_SLACK_CONN_ID)")
            return
        run_id = str(context.get("run_id") or ti.run_id)
        warned, error = fetch_dbt_warnings(self.settings, run_id,
                                           "source" if kind == "stale_source_data" else "test")
        if error:
            self.log.warning("dbt's results of run %s could not be read (%s): no warning alert", run_id, error)
            return
        if not warned:
            self.log.info("dbt reported no warnings for run %s: no alert", run_id)
            return
        details = (stale_source_details(getattr(ti, "task", None) or ti, self.settings)
                   if kind == "stale_source_data" else [])
        message = build_message(kind, {**context, "test_names": warned}, self.settings.airflow_base_url,
                                details=details)
        deliver(message, self.channels, context, self.log)
