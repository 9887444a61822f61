"""Which audited fact rows changed since the marts were last published.

The daily facts are projections of the dbt model `staging.int_daily_prices__indicators`, which
stamps every row it (re)computes with `computed_at` (one value per dbt run); each fact model
records the newest `computed_at` it has consumed (`staging.dbt_watermarks.watermark_at`), and
`quality publish` records the older of the two it published (`ops.publish_history.audit_watermark`). So the
fact rows that are new or changed since the last publish are exactly the keys
`(symbol, trade_date)` of the indicator rows computed after that watermark; every other audited
fact row is identical to a row the gate already validated and publish already copied.

The gate validates row-level expectations on those rows only and publish replaces only those
keys; both fall back to whole tables when there is no usable watermark (first publish, full
refresh, or most of the table changed).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from datapipe_common.marts import MAX_CHANGED_FRACTION
from psycopg import sql

from quality import db

CHANGE_LOG_SCHEMA, CHANGE_LOG_TABLE = "staging", "int_daily_prices__indicators"
# the tables behind that view (dbt/models/intermediate/indicator_shards), each with its own watermark
CHANGE_LOG_SHARDS = ("int_daily_prices__indicators_shard_0", "int_daily_prices__indicators_shard_1")
FACTS = ("fct_daily_prices", "fct_technical_indicators")


@dataclass(frozen=True)
class Scope:
    published_watermark: dt.datetime | None  # computed_at of the published facts, None = nothing usable
    audit_watermark: dt.datetime | None  # computed_at both audited facts have consumed now
    changed_rows: int  # change-log rows computed after the published watermark

    @property
    def incremental(self) -> bool:
        return self.published_watermark is not None

    def changed_keys(self) -> sql.Composed:
        """SELECT of the changed (symbol, trade_date) keys (only meaningful when incremental)."""
        return sql.SQL("select symbol, trade_date from {} where computed_at > {}").format(
            sql.Identifier(CHANGE_LOG_SCHEMA, CHANGE_LOG_TABLE), sql.Literal(self.published_watermark)
        )

    def describe(self) -> str:
        if not self.incremental:
            return "whole tables"
        return (f"{self.changed_rows:,} fact rows changed since the last publish"
                f" (computed after {self.published_watermark})")


def _consumed(conn: psycopg.Connection, column: str, models: tuple[str, ...]) -> Any:
    """The oldest of the dbt watermarks (`column` of staging.dbt_watermarks) of `models`: what
    every one of them has consumed; None unless each model has a row."""
    if not db.table_exists(conn, "staging", "dbt_watermarks"):
        return None
    row = conn.execute(
        sql.SQL("select count(*), min({c}) from staging.dbt_watermarks where model = any(%s)").format(
            c=sql.Identifier(column)),
        (list(models),),
    ).fetchone()
    if row is None or row[0] != len(models):
        return None
    return row[1]


def consumed_watermark(conn: psycopg.Connection) -> dt.datetime | None:
    """The newest change-log `computed_at` that BOTH audited facts have consumed (dbt's own
    watermarks), or None. Rows computed later are not in the facts yet: they stay in scope."""
    value = _consumed(conn, "watermark_at", FACTS)
    return value if isinstance(value, dt.datetime) else None


def consumed_source_watermark(conn: psycopg.Connection) -> int | None:
    """The staging payload cursor every indicator shard has consumed (their dbt watermarks), or None."""
    value = _consumed(conn, "watermark", CHANGE_LOG_SHARDS)
    return None if value is None else int(value)


def current_scope(conn: psycopg.Connection, audit_schema: str, marts_schema: str) -> Scope:
    """The scope of the audit contents right now (read-only)."""
    if not db.table_exists(conn, CHANGE_LOG_SCHEMA, CHANGE_LOG_TABLE):
        return Scope(None, None, 0)
    log = sql.Identifier(CHANGE_LOG_SCHEMA, CHANGE_LOG_TABLE)
    audit_watermark = consumed_watermark(conn)
    whole = Scope(None, audit_watermark, 0)
    if not all(db.table_exists(conn, s, f) for s in (audit_schema, marts_schema) for f in FACTS):
        return whole
    row = conn.execute(
        "select audit_watermark from ops.publish_history where status = 'published'"
        " order by publish_id desc limit 1"
    ).fetchone()
    published = row[0] if row else None
    if published is None or audit_watermark is None or published > audit_watermark:
        return whole
    changed_row = conn.execute(
        sql.SQL("select count(*) from {} where computed_at > {}").format(log, sql.Literal(published))
    ).fetchone()
    changed = int(changed_row[0]) if changed_row else 0
    total = sum(db.estimated_rows(conn, CHANGE_LOG_SCHEMA, shard) for shard in CHANGE_LOG_SHARDS)
    if total and changed > MAX_CHANGED_FRACTION * total:
        return Scope(None, audit_watermark, changed)
    return Scope(published, audit_watermark, changed)
