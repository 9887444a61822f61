"""
### datapipe_health — pages on-call when a DAG file of this deployment does not import

A DAG that does not import has no task to fail, so nothing else alerts and its schedule silently
stops. Every 15 minutes `check_import_errors` reads the import errors Airflow recorded (REST API,
`GET /api/v2/importErrors`, through the connection `airflow_api`) and sends each new one by email
and Slack, once: the same error is not sent again, a different one is, and one that went away and
comes back is sent again (docs/airflow.md, Alerts).

This file imports only Airflow and `datapipe_dags.channels` / `notify` / `health` (standard library
and Airflow): a bad DATAPIPE_* value, a missing dbt manifest or a broken dependency of the pipeline
cannot stop it from importing. Its own failures (API server unreachable, connection missing) alert
like any task's.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, CronTriggerTimetable, task
from datapipe_dags.channels import Channels
from datapipe_dags.health import DEFAULT_API_CONN_ID, check_import_errors
from datapipe_dags.notify import RunAlert, TaskAlert

# The entry point: the environment is read here, once, leniently (an invalid value is reported in
# the task log and left out; the pipeline DAG refuses it, which is one of the errors this DAG reports).
CHANNELS, PROBLEMS = Channels.from_env(os.environ)
API_CONN_ID = os.environ.get("DATAPIPE_AIRFLOW_API_CONN_ID", "").strip() or DEFAULT_API_CONN_ID

with DAG(
    dag_id="datapipe_health",
    description="Alerts (email, Slack) once per DAG import error of this deployment",
    doc_md=__doc__,
    schedule=CronTriggerTimetable("*/15 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=10),
    on_failure_callback=[RunAlert(CHANNELS)],
    default_args={"owner": "datapipe", "retries": 1, "retry_delay": timedelta(minutes=1),
                  "on_failure_callback": [TaskAlert(CHANNELS)]},
    tags=["datapipe", "health"],
):

    @task(task_id="check_import_errors")
    def check(**context: Any) -> dict[str, Any]:
        return check_import_errors(CHANNELS, PROBLEMS, API_CONN_ID, context)

    check()
