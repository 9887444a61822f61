"""
### market_data_daily — prices to published marts, every US trading day after the close

`extract_prices` loads Alpha Vantage daily bars into `raw` (company overviews are refreshed weekly
by `extract_companies`, see *check_company_refresh*); the **dbt** task group (Cosmos) runs one task
per dbt model and its tests, in dependency order, after checking source freshness, building the marts
into the `audit` schema; `quality_gate` validates them with Great Expectations and `publish_marts`
makes them the ones the dashboard reads (write-audit-publish). A failed gate publishes nothing.

Every step is a command in an image (`dags/datapipe_dags/steps.toml`): a KubernetesPodOperator pod on
Kubernetes, or with `DATAPIPE_RUNTIME=local` the same command in the component's virtualenv.
Failures, a failed gate and stale sources alert by email and Slack when configured.
Configuration and runbook: docs/airflow.md. Schedule: 17:30 America/New_York, Monday to Friday;
no catch-up, one run at a time; backfills (`airflow backfill create`) are idempotent.
"""

from __future__ import annotations

import os

from datapipe_dags.config import Settings
from datapipe_dags.pipeline import build_market_data_daily

# The entry point: the environment is read here, once.
dag = build_market_data_daily(Settings.from_env(os.environ), doc_md=__doc__)
