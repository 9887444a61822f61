"""Write-audit-publish: copy the audited marts into `marts` in ONE transaction.

Each mart is copied into a fresh table beside the published one (`<mart>__publishing`), indexed,
and then every published table is swapped for its copy by renames, all in the same transaction:
readers see the old marts until the commit and the new ones after it, never a missing, empty or
half-written table (a reader blocked on the swap re-resolves the name to the new table when the
lock is released). The audit tables are only read: the incremental dbt models keep their state.
Publishing requires the latest gate run to have passed on exactly the audit contents present now.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass

import psycopg
from psycopg import sql

from quality import db
from quality.settings import MARTS, Settings

PRIMARY_KEYS = {
    "dim_company": ("symbol",),
    "fct_daily_prices": ("symbol", "trade_date"),
    "fct_technical_indicators": ("symbol", "trade_date"),
    "mart_market_overview": ("symbol",),
}


class PublishRefused(RuntimeError):
    """Nothing was published; the message says why and what to do."""


@dataclass(frozen=True)
class PublishOutcome:
    publish_id: int
    gate_run_id: uuid.UUID
    row_counts: dict[str, int]


def _record(conn: psycopg.Connection, gate_run_id: uuid.UUID | None, status: str, counts: dict[str, int]) -> int:
    row = conn.execute(
        "insert into ops.publish_history (gate_run_id, published_at, status, row_counts)"
        " values (%s, now(), %s, %s::jsonb) returning publish_id",
        (gate_run_id, status, json.dumps(counts)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def publish(settings: Settings) -> PublishOutcome:
    audit, marts = settings.audit_schema, settings.marts_schema
    with db.connect(settings, autocommit=True) as conn:
        db.ensure_ops_tables(conn)
        gate = conn.execute(
            "select gate_run_id, success, audit_fingerprint from ops.gate_runs"
            " where finished_at is not null and audit_schema = %s order by started_at desc limit 1",
            (audit,),
        ).fetchone()
        if gate is None:
            _record(conn, None, "refused: no gate run", {})
            raise PublishRefused("no gate run found: run `quality gate` before `quality publish`")
        gate_run_id, gate_ok, gate_fingerprint = gate
        if not gate_ok:
            _record(conn, gate_run_id, "refused: gate failed", {})
            raise PublishRefused(
                f"the latest gate run {gate_run_id} failed; marts left unchanged"
                " (see `quality gate` output or ops.gate_results)"
            )

    with db.connect(settings) as conn:
        try:
            with conn.transaction():
                conn.execute("select pg_advisory_xact_lock(hashtext('datapipe_quality_publish'))")
                timeout = sql.Literal(f"{int(settings.lock_timeout_s * 1000)}ms")
                conn.execute(sql.SQL("set local lock_timeout = {}").format(timeout))
                if db.fingerprint(conn, audit, MARTS) != gate_fingerprint:
                    raise PublishRefused(
                        f"the audit schema changed since gate run {gate_run_id} validated it;"
                        " run `quality gate` again before publishing"
                    )
                conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(marts)))
                counts: dict[str, int] = {}
                for mart in MARTS:
                    staged = sql.Identifier(marts, f"{mart}__publishing")
                    conn.execute(sql.SQL("drop table if exists {}").format(staged))
                    copy = sql.SQL("create table {} as select * from {}").format(staged, sql.Identifier(audit, mart))
                    cur = conn.execute(copy)
                    counts[mart] = cur.rowcount
                    conn.execute(
                        sql.SQL("alter table {} add constraint {} primary key ({})").format(
                            staged, sql.Identifier(f"{mart}__pk_{uuid.uuid4().hex[:8]}"),
                            sql.SQL(", ").join(sql.Identifier(c) for c in PRIMARY_KEYS[mart]),
                        )
                    )
                    conn.execute(sql.SQL("analyze {}").format(staged))
                # the swap: only now are the published tables locked, for the few statements left
                for mart in MARTS:
                    conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(marts, f"{mart}__retired")))
                    conn.execute(
                        sql.SQL("alter table if exists {} rename to {}").format(
                            sql.Identifier(marts, mart), sql.Identifier(f"{mart}__retired")
                        )
                    )
                    conn.execute(
                        sql.SQL("alter table {} rename to {}").format(
                            sql.Identifier(marts, f"{mart}__publishing"), sql.Identifier(mart)
                        )
                    )
                    conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(marts, f"{mart}__retired")))
                publish_id = _record(conn, gate_run_id, "published", counts)
        except PublishRefused:
            with db.connect(settings, autocommit=True) as log_conn:
                _record(log_conn, gate_run_id, "refused: audit changed since gate", {})
            raise
        except psycopg.Error as exc:
            with db.connect(settings, autocommit=True) as log_conn:
                _record(log_conn, gate_run_id, f"failed: {type(exc).__name__}", {})
            raise PublishRefused(f"publishing failed and was rolled back, marts unchanged: {exc}") from exc
    return PublishOutcome(publish_id=publish_id, gate_run_id=gate_run_id, row_counts=counts)
