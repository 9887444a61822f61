"""Fixtures of the DAG suite; the helpers and fixture bodies live in dagtest.py (importable by
the test modules without clashing with the shared tests/conftest.py)."""

from dagtest import (  # noqa: F401  (fixtures re-exported for pytest)
    airflow_home,
    build_dag,
    k8s_dag,
    manifest,
    smtp_server,
    webhook_server,
)
