"""Alert messages and their delivery: email (the SMTP provider's notifier) and Slack (an incoming webhook).

Every alert of the deployment goes through here, so they all look alike and reach the same people:

- a task failed, the gate failed, a source is stale (`datapipe_dags.alerts.PipelineAlert`, which adds
  the pipeline's own details to `TaskAlert`);
- a run failed or timed out and no task alert covered it (`RunAlert`, the DAG's `on_failure_callback`);
- a DAG file does not import (`datapipe_dags.health`, run by the `datapipe_health` DAG).

Only the standard library, Airflow and `datapipe_dags.channels` (stdlib only) are imported: the health
DAG imports this module and must still import, and alert, when the pipeline's DAG cannot (a bad
DATAPIPE_* value, a missing manifest, a broken dependency).
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow.sdk import BaseNotifier

from datapipe_dags.channels import Channels

MAX_ERROR_CHARS = 600

# The alerts' own patterns, not datapipe_common.masking: the health DAG imports this module and must
# import when the shared package cannot (tests/dags/test_dagbag.py blocks it); the two rules are
# pinned case by case in tests/dags/test_alerts.py and tests/common/test_failures.py.
_REDACTIONS = (
    # key=value secrets in URLs, DSNs and messages
    (re.compile(r"(?i)\b(apikey|api_key|password|passwd|pwd|token|secret)(\s*[=:]\s*)([^\s&'\",;]+)"), r"\1\2***"),
    # credentials in URLs: scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^/\s:@]+):([^@\s/]+)@"), r"\1:***@"),
)

log = logging.getLogger(__name__)


def redact(text: str) -> str:
    for pattern, repl in _REDACTIONS:
        text = pattern.sub(repl, text)
    return text


@dataclass(frozen=True)
class AlertMessage:
    kind: str
    subject: str
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def html(self) -> str:
        return f"<h3>{html.escape(self.subject)}</h3><pre>{html.escape(self.text)}</pre>"


def run_url(base_url: str, dag_id: str, run_id: str) -> str:
    """The Airflow 3 UI page of one DAG run (its graph and task states)."""
    return f"{base_url.rstrip('/')}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_log_url(base_url: str, dag_id: str, run_id: str, task_id: str, try_number: int | None,
                 map_index: int | None = None) -> str:
    """The Airflow 3 UI page of one task try (its log), as the UI itself links it."""
    url = f"{run_url(base_url, dag_id, run_id)}/tasks/{quote(task_id)}"
    if map_index is not None and map_index >= 0:
        url += f"/mapped/{map_index}"
    if try_number:
        url += f"?try_number={try_number}"
    return url


def field(name: str, value: Any) -> str:
    """One `Name:         value` line: every message aligns its values in the same column."""
    return f"{name + ':':<14}{value}"


def first_line(text: str) -> str:
    stripped = str(text).strip()
    return redact(stripped.splitlines()[0])[:MAX_ERROR_CHARS] if stripped else ""


def compose(kind: str, title: str, where: str, about: str, when: str, lines: Sequence[str]) -> AlertMessage:
    """The shape of every alert: subject `[datapipe] <title>: <about> (<when>)`, a first line
    `<title> in <where>`, a blank line, then the fields (redacted here, once, for every message)."""
    subject = f"[datapipe] {title}: {about}" + (f" ({when})" if when else "")
    body = (f"{title} in {where}", "", *(redact(line) for line in lines))
    return AlertMessage(kind=kind, subject=redact(subject), lines=tuple(body))


def logical_date_text(logical_date: Any) -> str:
    return logical_date.isoformat() if logical_date is not None else "(none)"


def task_message(kind: str, title: str, context: Any, base_url: str, *, extra: Sequence[str] = ()) -> AlertMessage:
    """A task alert: DAG, task, run, logical date, try, the try's log and the error's first line."""
    ti = context["ti"]
    dag_id, task_id = ti.dag_id, ti.task_id
    run_id = context.get("run_id") or ti.run_id
    when = logical_date_text(context.get("logical_date"))
    try_number = getattr(ti, "try_number", None)
    lines = [
        field("DAG", dag_id),
        field("Task", task_id),
        field("Run id", run_id),
        field("Logical date", when),
        field("Try number", try_number),
        field("Log", task_log_url(base_url, dag_id, run_id, task_id, try_number, getattr(ti, "map_index", None))),
    ]
    exc = context.get("exception")
    if exc is not None:
        lines.append(field("Error", f"{type(exc).__name__}: {first_line(str(exc))}"))
    return compose(kind, title, f"DAG {dag_id}", f"{dag_id}.{task_id}", when, [*lines, *extra])


def deliver(msg: AlertMessage, channels: Channels, context: Any, logger: Any = log) -> list[str]:
    """Send `msg` to every configured channel; returns the channels that failed (redacted). A failing
    channel never stops the other."""
    failures: list[str] = []
    if channels.email_to:
        try:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            SmtpNotifier(
                to=list(channels.email_to),
                from_email=channels.email_from,
                subject=msg.subject,
                html_content=msg.html,
                smtp_conn_id=channels.smtp_conn_id,
            ).notify(context)
            logger.info("alert %s emailed to %s", msg.kind, ", ".join(channels.email_to))
        except Exception as exc:
            failures.append(f"email via {channels.smtp_conn_id}: {type(exc).__name__}: {exc}")
    if channels.slack_conn_id:
        try:
            from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

            SlackWebhookNotifier(
                slack_webhook_conn_id=channels.slack_conn_id,
                text=f"*{msg.subject}*\n```\n{msg.text}\n```",
            ).notify(context)  # type: ignore[no-untyped-call]
            logger.info("alert %s posted to Slack connection %s", msg.kind, channels.slack_conn_id)
        except Exception as exc:
            failures.append(f"Slack via {channels.slack_conn_id}: {type(exc).__name__}: {exc}")
    failures = [redact(f) for f in failures]
    for failure in failures:
        logger.error("could not deliver alert %s: %s", msg.kind, failure)
    return failures


class Notifier(BaseNotifier):
    """A notifier whose messages are built in Python: no template field, nothing rendered by Jinja."""

    template_fields = ()

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        # Nothing to render. Also spares `airflow dags test`, whose DAG callbacks get a SerializedDAG
        # that has no template environment (BaseNotifier would fail asking it for one).
        return None


# A task whose state the scheduler (or a person) set while it ran was stopped from outside: its
# process is terminated, and whatever it raises then is not the task's failure.
STOPPED_FROM_OUTSIDE = frozenset({"skipped", "success", "removed"})


def server_task_state(ti: Any) -> str | None:
    """The task instance's state as the API server has it now, asked through the Task SDK from the
    task's own process; None when it cannot be asked (then the alert goes out)."""
    try:
        from airflow.sdk.execution_time import task_runner

        if getattr(task_runner, "SUPERVISOR_COMMS", None) is None:
            return None
        map_index = getattr(ti, "map_index", -1)
        states = task_runner.RuntimeTaskInstance.get_task_states(
            dag_id=ti.dag_id, run_ids=[ti.run_id], task_ids=[ti.task_id],
            map_index=map_index if map_index is not None and map_index >= 0 else None)
        key = ti.task_id if map_index is None or map_index < 0 else f"{ti.task_id}_{map_index}"
        state = (states.get(ti.run_id) or {}).get(key)
        return None if state is None else str(state)
    except Exception:
        return None


class TaskAlert(Notifier):
    """A task's `on_failure_callback` (after its retries): one "Task failed" alert to every channel.

    Not for a task stopped from outside: when a run exceeds its `dagrun_timeout` the scheduler marks
    its running tasks skipped and Airflow terminates them; a task that then raises (a step killed by
    SIGTERM exits -15) reaches this callback, but the failure is the run's, and `RunAlert` reports
    it once, as a timeout."""

    def __init__(self, channels: Channels) -> None:
        super().__init__()
        self.channels = channels

    def message(self, context: Any) -> AlertMessage:
        return task_message("task_failed", "Task failed", context, self.channels.airflow_base_url)

    def stopped_from_outside(self, context: Any) -> bool:
        ti = context.get("ti")
        state = server_task_state(ti) if ti is not None else None
        if state in STOPPED_FROM_OUTSIDE:
            self.log.info("task %s was stopped from outside (its state is now %s: a run timeout or an operator's"
                          " action): no task alert; a timed-out run is alerted once by the DAG's RunAlert",
                          ti.task_id, state)
            return True
        return False

    def notify(self, context: Any) -> None:
        if not self.channels.enabled:
            self.log.info("alerts are not configured (DATAPIPE_ALERT_EMAIL_TO / DATAPIPE_SLACK_CONN_ID)")
            return
        if self.stopped_from_outside(context):
            return
        deliver(self.message(context), self.channels, context, self.log)


# -- a run that failed or timed out -------------------------------------------------------------------

RUN_TITLES = {"timed_out": "DAG run timed out", "all_tasks_deadlocked": "DAG run stuck"}


def run_task_states(dag_id: str, run_id: str) -> dict[str, str]:
    """{task id: state} of one run. DAG callbacks run in the dag processor, whose callback process
    asks the API server through the Task SDK (it has no database access); `airflow dags test` runs
    them in its own process, which has the metadata database and no Task SDK channel."""
    from airflow.sdk.execution_time import task_runner

    if getattr(task_runner, "SUPERVISOR_COMMS", None) is not None:
        states = task_runner.RuntimeTaskInstance.get_task_states(dag_id=dag_id, run_ids=[run_id])
        return {str(k): str(v) for k, v in (states.get(run_id) or {}).items()}
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(select(TaskInstance.task_id, TaskInstance.map_index, TaskInstance.state).where(
            TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)).all()
    return {(t if m < 0 else f"{t}_{m}"): str(s) for t, m, s in rows}


def covering_task_alerts(states: Mapping[str, str]) -> list[str]:
    """Tasks of the run that ended `failed`: each sent its own alert (every task of our DAGs has
    one as its on_failure_callback), so the run's failure is already paged."""
    return sorted(t for t, s in states.items() if s == "failed")


def build_run_message(context: Any, base_url: str, states: Mapping[str, str] | None,
                      states_error: str | None = None) -> AlertMessage:
    """A run alert: why the run ended, what was still running, and where to look."""
    reason = str(context.get("reason") or "failed")
    dag = context.get("dag")
    dag_run = context.get("dag_run")
    dag_id = str(getattr(dag, "dag_id", None) or getattr(dag_run, "dag_id", "?"))
    run_id = str(context.get("run_id") or getattr(dag_run, "run_id", "?"))
    when = logical_date_text(context.get("logical_date") or getattr(dag_run, "logical_date", None))
    title = RUN_TITLES.get(reason, "DAG run failed")
    started = getattr(dag_run, "start_date", None)
    lines = [field("DAG", dag_id), field("Run id", run_id), field("Logical date", when),
             field("Started", started.isoformat() if started is not None else "(unknown)")]
    timeout = getattr(dag, "dagrun_timeout", None)
    if reason == "timed_out":
        lines.append(field("Reason", f"the run exceeded its dagrun_timeout ({timeout}); Airflow stopped it and "
                                     "marked its unfinished tasks skipped, so no task alert went out"))
    else:
        lines.append(field("Reason", f"{reason}; no task of the run failed, so no task alert went out"))
    ti = context.get("ti")
    if ti is not None:
        label = "Unfinished" if reason == "timed_out" else "Last task"
        try_number = getattr(ti, "try_number", None)
        lines.append(field(label, f"{ti.task_id} (try {try_number})"))
        lines.append(field("Task log", task_log_url(base_url, dag_id, run_id, ti.task_id, try_number,
                                                   getattr(ti, "map_index", None))))
    lines.append(field("Run", run_url(base_url, dag_id, run_id)))
    if states is not None:
        counts: dict[str, int] = {}
        for state in states.values():
            counts[state] = counts.get(state, 0) + 1
        lines.append(field("Task states", ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "(none)"))
    else:
        lines.append(field("Task states", f"unavailable ({states_error})"))
    return compose(f"dag_run_{reason}", title, f"DAG {dag_id}", str(dag_id), when, lines)


class RunAlert(Notifier):
    """A DAG's `on_failure_callback`: one alert for a run that failed or timed out, unless a task
    alert already covered it (a task of the run ended `failed`).

    Why it is needed: `dagrun_timeout` marks the running tasks skipped, so no task callback fires
    (apache/airflow#30264), and a run can fail with no failed task (all tasks deadlocked)."""

    def __init__(self, channels: Channels,
                 task_states: Callable[[str, str], dict[str, str]] = run_task_states) -> None:
        super().__init__()
        self.channels = channels
        self.task_states = task_states

    def notify(self, context: Any) -> None:
        dag_run = context.get("dag_run")
        dag_id = str(getattr(context.get("dag"), "dag_id", None) or getattr(dag_run, "dag_id", ""))
        run_id = str(context.get("run_id") or getattr(dag_run, "run_id", ""))
        states: dict[str, str] | None = None
        error = None
        try:
            states = self.task_states(dag_id, run_id)
        except Exception as exc:  # the alert still goes out, saying what could not be read
            error = f"{type(exc).__name__}: {first_line(str(exc))}"
        covered = covering_task_alerts(states or {})
        if covered:
            self.log.info("run %s failed (%s); already alerted by its failed task(s) %s: no run alert",
                          run_id, context.get("reason"), ", ".join(covered))
            return
        if not self.channels.enabled:
            self.log.info("alerts are not configured (DATAPIPE_ALERT_EMAIL_TO / DATAPIPE_SLACK_CONN_ID)")
            return
        deliver(build_run_message(context, self.channels.airflow_base_url, states, error), self.channels,
                context, self.log)
