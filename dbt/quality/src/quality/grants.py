"""The dashboard's read-only role: SELECT on `marts` (now and after every publish swap) and on
the ops tables the dashboard shows; nothing on raw, staging or audit. Idempotent."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql

from quality import db
from quality.settings import Settings

OPS_TABLES = ("extract_runs", "extract_run_symbols", "gate_runs", "gate_results", "publish_history", "pipeline_runs")
PRIVATE_SCHEMAS = ("raw", "staging", "dbt_test_failures")


class GrantError(RuntimeError):
    """The grants could not be applied; the message says why."""


def grant_marts_tables(conn: psycopg.Connection[Any], settings: Settings, tables: Sequence[str]) -> bool:
    """SELECT on `tables` of the marts schema for the dashboard role, with what reaching them takes
    (CONNECT on the database, USAGE on the schema), in `conn`'s transaction; False when the role does
    not exist. For a publish that can come before `grant-reader` ever ran: the live quotes are
    published before the daily DAG's first publish (whose last step is grant-reader)."""
    if not conn.execute("select 1 from pg_roles where rolname = %s", (settings.dashboard_role,)).fetchone():
        return False
    role, marts = sql.Identifier(settings.dashboard_role), sql.Identifier(settings.marts_schema)
    conn.execute(sql.SQL("grant connect on database {} to {}").format(sql.Identifier(conn.info.dbname), role))
    conn.execute(sql.SQL("grant usage on schema {} to {}").format(marts, role))
    for table in tables:
        conn.execute(sql.SQL("grant select on {}.{} to {}").format(marts, sql.Identifier(table), role))
    return True


def grant_reader(settings: Settings) -> list[str]:
    """Apply the grants; returns the ops tables granted (those that exist)."""
    role = sql.Identifier(settings.dashboard_role)
    marts = sql.Identifier(settings.marts_schema)
    with db.connect(settings) as conn, conn.transaction():
        db.ensure_ops_tables(conn)
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (settings.dashboard_role,)).fetchone()
        if not exists:
            raise GrantError(
                f"role {settings.dashboard_role!r} does not exist: create it as an administrator"
                " (`make db-up` does locally; the chart does in the cluster) or set DASHBOARD_ROLE"
            )
        conn.execute("select pg_advisory_xact_lock(hashtext('datapipe_quality_grants'))")
        conn.execute(sql.SQL("grant connect on database {} to {}").format(
            sql.Identifier(conn.info.dbname), role))
        conn.execute(sql.SQL("create schema if not exists {}").format(marts))
        conn.execute(sql.SQL("grant usage on schema {} to {}").format(marts, role))
        conn.execute(sql.SQL("grant select on all tables in schema {} to {}").format(marts, role))
        # tables created later (every publish creates new ones) are readable too
        conn.execute(sql.SQL("alter default privileges in schema {} grant select on tables to {}").format(marts, role))
        conn.execute(sql.SQL("grant usage on schema ops to {}").format(role))
        granted = []
        for table in OPS_TABLES:
            if db.table_exists(conn, "ops", table):
                conn.execute(sql.SQL("grant select on {} to {}").format(sql.Identifier("ops", table), role))
                granted.append(table)
        # belt and braces: nothing on the private schemas, even if granted by hand before
        for schema in (*PRIVATE_SCHEMAS, settings.audit_schema):
            if conn.execute("select 1 from pg_namespace where nspname = %s", (schema,)).fetchone():
                revoke = sql.SQL("revoke all on all tables in schema {} from {}")
                conn.execute(revoke.format(sql.Identifier(schema), role))
                conn.execute(sql.SQL("revoke all on schema {} from {}").format(sql.Identifier(schema), role))
    return granted
