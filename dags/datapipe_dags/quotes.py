"""The market_quotes_intraday DAG, built from `Settings` (so tests can build it from a dict).

    check_poll_time ─► extract_quotes ─► publish_quotes

The schedule comes from the quota planner (datapipe_common.intraday): cron lines on weekdays at the
chosen interval, in New York time; `check_poll_time` skips a scheduled run whose instant is not a poll
of an NYSE session (a holiday, after an early close). Off (no schedule, paused on creation) for free
keys. Steps and pods are the daily DAG's (steps.toml, pods.py): nothing new to deploy.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task
from airflow.timetables.trigger import MultipleCronTriggerTimetable
from datapipe_common.intraday import cron_expressions

from datapipe_dags.alerts import PipelineAlert, RunAlert
from datapipe_dags.config import Settings
from datapipe_dags.pipeline import session_day, step_task
from datapipe_dags.steps import Steps, load_steps

log = logging.getLogger(__name__)

DAG_ID = "market_quotes_intraday"
START_DATE = pendulum.datetime(2024, 1, 2, tz="UTC")
TIMEZONE = "America/New_York"
# a run is stopped after one interval (the next poll is the retry), within these bounds
MIN_TIMEOUT = timedelta(minutes=2)
MAX_TIMEOUT = timedelta(minutes=15)


def off_reason(settings: Settings) -> str | None:
    """Why the DAG is not scheduled (None: it is)."""
    if not settings.quotes_on:
        return ("the Alpha Vantage key is a free key (DATAPIPE_API_TIER=free): its 25 requests a day are the"
                " daily DAG's, and its quotes are end of day; set DATAPIPE_API_TIER=premium (or"
                " DATAPIPE_QUOTES_ENABLED=true) to poll live prices")
    plan = settings.quotes_plan()
    if plan.interval_min is None:
        return f"no poll fits the key's budget: {plan.reason}"
    return None


def is_poll_run(run_type: Any, logical_date: Any, interval_min: int | None) -> tuple[bool, str]:
    """(go ahead?, why): a scheduled run only at a poll instant of a session; a manual run always."""
    from datapipe_common.intraday import is_poll_time

    kind = str(getattr(run_type, "value", run_type) or "")
    if kind != "scheduled" or logical_date is None or interval_min is None:
        return True, f"{kind or 'manual'} run: goes ahead"
    at = pendulum.instance(logical_date).in_timezone(TIMEZONE)
    if is_poll_time(at, interval_min):
        return True, f"{at:%Y-%m-%d %H:%M} ET is a poll of the session (every {interval_min} min)"
    return False, (f"{at:%Y-%m-%d %H:%M} ET is not during an NYSE session ({session_day(logical_date)}: holiday,"
                   " before the open or after an (early) close): nothing to poll")


def build_market_quotes_intraday(settings: Settings, steps: Steps | None = None,
                                 doc_md: str | None = None) -> DAG:
    steps = steps or load_steps()
    plan = settings.quotes_plan()
    off = off_reason(settings)
    if off:
        log.info("%s is off: %s", DAG_ID, off)
        schedule = None
        timeout = MAX_TIMEOUT
    else:
        assert plan.interval_min is not None
        log.info("%s polls %s", DAG_ID, plan.describe())
        schedule = MultipleCronTriggerTimetable(*cron_expressions(plan.interval_min), timezone=TIMEZONE)
        timeout = min(MAX_TIMEOUT, max(MIN_TIMEOUT, timedelta(minutes=plan.interval_min)))
    default_args: dict[str, Any] = {
        "owner": "datapipe",
        "retries": 0,  # the next poll is the retry
        "execution_timeout": timeout,
        "on_failure_callback": [PipelineAlert(settings)],
    }
    with DAG(
        dag_id=DAG_ID,
        description="Live prices during the NYSE session -> raw.quotes -> quotes models -> published (premium keys)",
        doc_md=(doc_md or "") + f"\n\n**This deployment:** {off or 'polls ' + plan.describe()}.",
        schedule=schedule,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=timeout,
        is_paused_upon_creation=off is not None,
        on_failure_callback=[RunAlert(settings.channels)],
        default_args=default_args,
        tags=["datapipe", "market-data", "quotes"],
    ) as dag:

        @task.short_circuit(task_id="check_poll_time", ignore_downstream_trigger_rules=True)
        def check_poll_time(**context: Any) -> bool:
            log.info("%s", plan.describe() if not off else f"off: {off}")
            dag_run = context.get("dag_run")
            go, why = is_poll_run(getattr(dag_run, "run_type", None), context.get("logical_date"), plan.interval_min)
            log.info("%s", why)
            return go

        extract = step_task(settings, steps, "extract_quotes", env=settings.quotes_env)
        publish = step_task(settings, steps, "publish_quotes")
        check_poll_time() >> extract >> publish
    return dag
