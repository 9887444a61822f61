"""The market_data_daily DAG, built from `Settings` (so tests can build it from a dict).

    check_session ─┬─ check_company_refresh ─┬─ extract_companies ─────────┐
                   │                         └─ extract_missing_companies ─┤
                   └─ extract_prices ──────────────────────────────────────┴─ extracted ─►
        dbt_source_freshness ─► dbt (Cosmos watcher: one `dbt build`, then one run + test task per
        model reading its results, in dependency order) ─► quality_gate ─► publish_marts ─► grant_reader

`check_session` skips the whole run when a scheduled (or backfilled) run's day is not an NYSE
session (a holiday or special closure, datapipe_common.calendar): no API request, no alert. A
manual run always goes ahead. Company overviews change rarely: `extract_companies` runs on the
week's first session, on the DAG's first successful run (an empty warehouse has no companies), or
when the run is triggered with `{"refresh_companies": true}`; otherwise `extract_missing_companies`
(`extract companies --missing`: only the tracked symbols with no overview answer yet, so a symbol
added mid-week is published the same day) takes its place. One DAG, so the marts are always built
from one consistent extraction. `dbt_source_freshness` checks every source in one dbt process (one
pod) before the build: a source past its error threshold fails it, and nothing after it runs. A run
triggered with `{"full_refresh": true}` rebuilds the dbt models from scratch (after an accepted hole
in a symbol's history, docs/extract.md).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, BaseOperator, CronTriggerTimetable, Param, task

from datapipe_dags.alerts import FRESHNESS_TASK_ID, GATE_TASK_ID, PipelineAlert, RunAlert
from datapipe_dags.config import Settings
from datapipe_dags.dbt_group import dbt_task_group, producer_task
from datapipe_dags.local import LocalStepOperator, local_step_kwargs
from datapipe_dags.pods import RUN_ENV, pod_kwargs, retry_kwargs
from datapipe_dags.steps import Steps, load_steps

log = logging.getLogger(__name__)

DAG_ID = "market_data_daily"
START_DATE = pendulum.datetime(2024, 1, 2, tz="UTC")


def step_task(settings: Settings, steps: Steps, name: str, **kwargs: Any) -> BaseOperator:
    """One steps.toml step as a task: a KubernetesPodOperator, or a local subprocess."""
    step = steps[name]
    if settings.is_local:
        local = local_step_kwargs(settings, step)
        return LocalStepOperator(task_id=name, **{**local, "plain_env": {**local["plain_env"], **RUN_ENV}}, **kwargs)
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # not needed locally
    from kubernetes.client import models as k8s

    pod = pod_kwargs(settings, step.component)
    pod["env_vars"] = [*pod["env_vars"], *(k8s.V1EnvVar(name=k, value=v) for k, v in RUN_ENV.items())]
    return KubernetesPodOperator(
        task_id=name,
        name=f"datapipe-{name.replace('_', '-')}",
        cmds=[step.command[0]],
        arguments=list(step.command[1:]),
        **pod,
        **kwargs,
    )


def session_day(logical_date: Any) -> date | None:
    """The New York date of a run's logical date (None for a manual run without one)."""
    if logical_date is None:
        return None
    day: date = pendulum.instance(logical_date).in_timezone("America/New_York").date()
    return day


def is_session_run(run_type: Any, logical_date: Any) -> tuple[bool, str]:
    """(go ahead?, why). Scheduled and backfill runs go ahead only on an NYSE session; a manual run
    always does (its user asked for it)."""
    from datapipe_common.calendar import nyse  # exchange_calendars: at run time, never at parse time

    day = session_day(logical_date)
    kind = str(getattr(run_type, "value", run_type) or "")
    if kind not in ("scheduled", "backfill") or day is None:
        return True, f"{kind or 'manual'} run: goes ahead whatever the day"
    reason = nyse().closure_reason(day)
    if reason is None:
        return True, f"{day} is an NYSE session"
    return False, f"{day} is not an NYSE session ({reason}): nothing to extract, every task is skipped"


def wants_company_refresh(logical_date: Any, params: dict[str, Any], previous_success: Any) -> bool:
    """Refresh company overviews on the first session of the week (the day before it is a session of
    an earlier ISO week), on the first successful run, or when asked."""
    if params.get("refresh_companies"):
        return True
    # Airflow 3 passes a lazy proxy: test its truthiness (a proxy of None is not `is None`).
    if not previous_success:
        return True
    day = session_day(logical_date)
    if day is None:
        return False
    from datapipe_common.calendar import nyse

    calendar = nyse()
    if not calendar.is_session(day):
        return False
    return calendar.previous_session(day).isocalendar()[:2] != day.isocalendar()[:2]


def build_market_data_daily(settings: Settings, steps: Steps | None = None, doc_md: str | None = None,
                            tags: Sequence[str] = ("datapipe", "market-data"), **dbt_kwargs: Any) -> DAG:
    steps = steps or load_steps()
    default_args: dict[str, Any] = {
        "owner": "datapipe",
        **retry_kwargs(settings),
        "on_failure_callback": [PipelineAlert(settings)],
    }
    with DAG(
        dag_id=DAG_ID,
        description="Alpha Vantage prices -> raw -> dbt (audit) -> quality gate -> published marts",
        doc_md=doc_md,
        schedule=CronTriggerTimetable(settings.schedule, timezone=settings.schedule_timezone),
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        # a run still going after this is failed by the scheduler and alerted once (RunAlert: its
        # running tasks are marked skipped, so no task alert goes out); so is a failed run that
        # no task alert covered
        dagrun_timeout=timedelta(minutes=settings.dagrun_timeout_min),
        on_failure_callback=[RunAlert(settings.channels)],
        default_args=default_args,
        params={
            "refresh_companies": Param(
                False, type="boolean", description="Also refresh company overviews in this run"
            ),
            "full_refresh": Param(
                False, type="boolean",
                description="Rebuild every dbt model from scratch (dbt --full-refresh), e.g. after"
                " `extract accept-gap` (docs/extract.md)",
            ),
        },
        tags=list(tags),
    ) as dag:

        @task.short_circuit(task_id="check_session", retries=0, ignore_downstream_trigger_rules=True)
        def check_session(**context: Any) -> bool:
            dag_run = context.get("dag_run")
            go, why = is_session_run(getattr(dag_run, "run_type", None), context.get("logical_date"))
            log.info("%s", why)
            return go

        @task.branch(task_id="check_company_refresh", retries=0)
        def check_company_refresh(**context: Any) -> str:
            refresh = wants_company_refresh(
                context.get("logical_date"), dict(context.get("params") or {}), context.get("prev_start_date_success"),
            )
            return "extract_companies" if refresh else "extract_missing_companies"

        extract_prices = step_task(settings, steps, "extract_prices")
        extract_companies = step_task(settings, steps, "extract_companies")
        extract_missing_companies = step_task(settings, steps, "extract_missing_companies")
        extracted = EmptyOperator(task_id="extracted", trigger_rule="none_failed_min_one_success")
        # dbt's warnings (a source late but under its error threshold, tests of severity warn) alert
        # once per run, from the results dbt recorded in ops (the watcher tasks have no warning callback)
        warnings = PipelineAlert(settings, warning=True)
        freshness = step_task(settings, steps, FRESHNESS_TASK_ID, on_success_callback=[warnings])
        dbt = dbt_task_group(settings, steps, default_args, **dbt_kwargs)
        producer = producer_task(dbt)
        producer.on_success_callback = [warnings]
        producer.on_skipped_callback = [warnings]  # dbt exit 1 (nodes failed): warnings still alert
        gate = step_task(settings, steps, GATE_TASK_ID)
        publish = step_task(settings, steps, "publish_marts")
        grant = step_task(settings, steps, "grant_reader")

        refresh = check_company_refresh()
        check_session() >> [refresh, extract_prices]
        refresh >> [extract_companies, extract_missing_companies]
        [extract_prices, extract_companies, extract_missing_companies] >> extracted
        extracted >> freshness >> dbt >> gate >> publish >> grant
    return dag
