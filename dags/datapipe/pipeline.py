"""The market_data_daily DAG, built from `Settings` (so tests can build it from a dict).

    check_company_refresh ─┬─ extract_companies ─┐
                           └─ keep_companies ────┤
    extract_prices ──────────────────────────────┴─ extracted ─► dbt (Cosmos: sources' freshness,
        one run + test task per model, in dependency order) ─► quality_gate ─► publish_marts ─► grant_reader

Company overviews change rarely: `extract_companies` runs on the first run of the week (Monday in
the schedule's timezone), on the DAG's first successful run (an empty warehouse has no companies),
or when the run is triggered with `{"refresh_companies": true}`; otherwise `keep_companies` (a
no-op) takes its place. One DAG, so the marts are always built from one consistent extraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, BaseOperator, CronTriggerTimetable, Param, task

from datapipe.alerts import GATE_TASK_ID, PipelineAlert
from datapipe.config import Settings
from datapipe.dbt_group import dbt_task_group
from datapipe.local import LocalStepOperator, local_step_kwargs
from datapipe.pods import pod_kwargs, retry_kwargs
from datapipe.steps import Steps, load_steps

DAG_ID = "market_data_daily"
START_DATE = pendulum.datetime(2024, 1, 2, tz="UTC")


def step_task(settings: Settings, steps: Steps, name: str, **kwargs: Any) -> BaseOperator:
    """One steps.toml step as a task: a KubernetesPodOperator, or a local subprocess."""
    step = steps[name]
    if settings.is_local:
        return LocalStepOperator(task_id=name, **local_step_kwargs(settings, step), **kwargs)
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator  # not needed locally

    return KubernetesPodOperator(
        task_id=name,
        name=f"datapipe-{name.replace('_', '-')}",
        cmds=[step.command[0]],
        arguments=list(step.command[1:]),
        **pod_kwargs(settings, step.component),
        **kwargs,
    )


def wants_company_refresh(logical_date: Any, timezone: str, params: dict[str, Any],
                          previous_success: Any) -> bool:
    if params.get("refresh_companies"):
        return True
    # Airflow 3 passes a lazy proxy: test its truthiness (a proxy of None is not `is None`).
    if not previous_success:
        return True
    if logical_date is None:
        return False
    return bool(pendulum.instance(logical_date).in_timezone(timezone).weekday() == 0)


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
        dagrun_timeout=timedelta(hours=3),
        default_args=default_args,
        params={
            "refresh_companies": Param(
                False, type="boolean", description="Also refresh company overviews in this run"
            )
        },
        tags=list(tags),
    ) as dag:

        @task.branch(task_id="check_company_refresh", retries=0)
        def check_company_refresh(**context: Any) -> str:
            refresh = wants_company_refresh(
                context.get("logical_date"), settings.schedule_timezone, dict(context.get("params") or {}),
                context.get("prev_start_date_success"),
            )
            return "extract_companies" if refresh else "keep_companies"

        extract_prices = step_task(settings, steps, "extract_prices")
        extract_companies = step_task(settings, steps, "extract_companies")
        keep_companies = EmptyOperator(task_id="keep_companies")
        extracted = EmptyOperator(task_id="extracted", trigger_rule="none_failed_min_one_success")
        dbt = dbt_task_group(settings, steps, default_args, **dbt_kwargs)
        gate = step_task(settings, steps, GATE_TASK_ID)
        publish = step_task(settings, steps, "publish_marts")
        grant = step_task(settings, steps, "grant_reader")

        check_company_refresh() >> [extract_companies, keep_companies]
        [extract_prices, extract_companies, keep_companies] >> extracted
        extracted >> dbt >> gate >> publish >> grant
    return dag
