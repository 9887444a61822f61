"""Write-audit-publish: make the audited marts the published ones in ONE transaction.

Two ways, both inside the same transaction, so readers see the old marts until the commit and the
new ones after it, never a missing, empty or half-written table:
- copy and swap (first publish, full refresh, small marts): each mart is copied into a fresh table
  beside the published one (`<mart>__publishing`), indexed and analyzed, then swapped in by renames
  (a reader blocked on the swap re-resolves the name to the new table when the lock is released);
  the swap is the transaction's last statement, bounded by QUALITY_SWAP_TIMEOUT_S (quality.swap);
- changed keys only (the daily facts, when `quality.scope` knows what changed since the last
  publish): the changed (symbol, trade_date) rows are deleted from the published table and the
  audited ones inserted; the published row count must then equal the audited one, else the mart
  is copied and swapped after all.
The audit tables are only read: the incremental dbt models keep their state. Publishing requires,
for the pipeline run (DATAPIPE_RUN_ID, else the run of the newest dbt result): the latest result of
every dbt model and test of the run passed (ops.dbt_results, recorded by dbt's on-run-end hook;
quality.dbt_results), the latest gate run passed and started after the last dbt result, and the
audit contents present now are exactly those the gate validated (its fingerprint). Any refusal
leaves `marts` untouched and is recorded in ops.publish_history.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from dataclasses import dataclass

import psycopg
from datapipe_common import failures
from psycopg import sql

from quality import db
from quality.dbt_results import DbtVerdict, read_verdict
from quality.scope import FACTS, Scope, consumed_source_watermark, current_scope
from quality.settings import MARTS, Settings
from quality.swap import SwapTimeout, swap_in

PRIMARY_KEYS = {
    "dim_company": ("symbol",),
    "fct_daily_prices": ("symbol", "trade_date"),
    "fct_technical_indicators": ("symbol", "trade_date"),
    "mart_market_overview": ("symbol",),
}
# secondary indexes of the published marts (what the dashboard's queries use)
SECONDARY_INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "fct_daily_prices": (("trade_date",),),
}


class PublishRefused(RuntimeError):
    """Nothing was published; the message says why and what to do."""


@dataclass(frozen=True)
class PublishOutcome:
    publish_id: int
    gate_run_id: uuid.UUID
    row_counts: dict[str, int]
    mode: str  # "copy" or "changed keys: N rows"
    swap: str  # the exclusive window: how long, its bound, how many attempts
    dbt: str  # dbt's verdict on the run, one line


def _record(conn: psycopg.Connection, gate_run_id: uuid.UUID | None, status: str, counts: dict[str, int],
            scope: Scope | None = None, mode: str | None = None, run_id: str | None = None) -> int:
    source_watermark = consumed_source_watermark(conn) if scope else None
    row = conn.execute(
        "insert into ops.publish_history (gate_run_id, published_at, status, row_counts, audit_watermark,"
        " source_watermark, mode, run_id) values (%s, now(), %s, %s::jsonb, %s, %s, %s, %s) returning publish_id",
        (gate_run_id, status, json.dumps(counts), scope.audit_watermark if scope else None, source_watermark, mode,
         run_id),
    ).fetchone()
    assert row is not None
    return int(row[0])


@dataclass(frozen=True)
class Approval:
    """What allows a publish: dbt's verdict on the run and the gate run that validated the audit after it."""

    verdict: DbtVerdict
    gate_run_id: uuid.UUID
    gate_fingerprint: object


def approve(conn: psycopg.Connection, settings: Settings) -> Approval:
    """Refuse (recorded in ops.publish_history, PublishRefused with a one-line reason) unless the latest
    result of every dbt model and test of the run passed and the latest gate run passed, after the
    last dbt result. (The audit fingerprint is compared with the gate's inside the publish transaction.)"""
    verdict = read_verdict(conn, settings.run_id)
    run_id = verdict.run_id or settings.run_id
    gate = conn.execute(
        "select gate_run_id, success, audit_fingerprint, started_at, status, reason from ops.gate_runs"
        " where finished_at is not null and audit_schema = %s order by started_at desc limit 1",
        (settings.audit_schema,),
    ).fetchone()
    gate_run_id = gate[0] if gate else None
    if not verdict.passed:
        _record(conn, gate_run_id, "refused: dbt", {}, run_id=run_id)
        raise PublishRefused(f"{verdict.describe()}; marts unchanged")
    if gate is None:
        _record(conn, None, "refused: no gate run", {}, run_id=run_id)
        raise PublishRefused("no gate run found: run `quality gate` before `quality publish`")
    gate_run_id, gate_ok, gate_fingerprint, gate_started_at, gate_status, gate_reason = gate
    if gate_status == "aborted":
        _record(conn, gate_run_id, "refused: gate aborted", {}, run_id=run_id)
        raise PublishRefused(f"the latest gate run {gate_run_id} was aborted ({gate_reason}); marts left"
                             " unchanged: run `quality gate` again")
    if not gate_ok:
        _record(conn, gate_run_id, "refused: gate failed", {}, run_id=run_id)
        raise PublishRefused(
            f"the latest gate run {gate_run_id} failed; marts left unchanged"
            " (see `quality gate` output or ops.gate_results)"
        )
    if verdict.last_result_at is not None and gate_started_at <= verdict.last_result_at:
        _record(conn, gate_run_id, "refused: gate before dbt", {}, run_id=run_id)
        raise PublishRefused(
            f"the latest quality gate run {gate_run_id} started before the last dbt result of run {run_id}"
            f" ({verdict.last_result_at:%Y-%m-%d %H:%M:%S%z}): run `quality gate` again after dbt; marts unchanged"
        )
    return Approval(verdict=verdict, gate_run_id=gate_run_id, gate_fingerprint=gate_fingerprint)


def publish(settings: Settings) -> PublishOutcome:
    audit, marts = settings.audit_schema, settings.marts_schema
    with db.connect(settings, autocommit=True) as conn:
        db.ensure_ops_tables(conn)
        approval = approve(conn, settings)
    gate_run_id, gate_fingerprint, run_id = approval.gate_run_id, approval.gate_fingerprint, approval.verdict.run_id

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
                scope = current_scope(conn, audit, marts)
                counts: dict[str, int] = {}
                staged: list[str] = []
                changed = 0
                for mart in MARTS:
                    if mart in FACTS and scope.incremental and _same_columns(conn, audit, marts, mart):
                        changed += _replace_changed_keys(conn, audit, marts, mart, scope)
                        counts[mart] = db.row_count(conn, marts, mart)
                        if counts[mart] == db.row_count(conn, audit, mart):
                            continue
                    counts[mart] = _stage_copy(conn, audit, marts, mart)
                    staged.append(mart)
                incremental = [m for m in FACTS if m not in staged]
                mode = f"changed keys ({', '.join(incremental)}): {changed} rows" if incremental else "copy"
                publish_id = _record(conn, gate_run_id, "published", counts, scope, mode, run_id)
                # last: only now are the published tables locked, for one bounded statement and the commit
                swap = swap_in(conn, marts, staged, settings)
            swapped = swap.describe(time.monotonic())
        except PublishRefused:
            _record_failure(settings, gate_run_id, "refused: audit changed since gate", run_id)
            raise
        except SwapTimeout as exc:
            _record_failure(settings, gate_run_id, "failed: exclusive locks not obtained within QUALITY_LOCK_TIMEOUT_S",
                            run_id)
            raise PublishRefused(f"{exc}; nothing was published, marts unchanged: run publish again"
                                 " (the DAG's retry does)") from None
        except psycopg.Error as exc:
            _record_failure(settings, gate_run_id, f"failed: {type(exc).__name__}: {failures.first_line(exc)}",
                            run_id)
            if failures.kind_of(exc) == failures.PERMISSION or failures.is_connection_lost(exc):
                raise  # the CLI says what to do (exit 4 / 3)
            raise PublishRefused("publishing failed and was rolled back, marts unchanged:"
                                 f" {failures.first_line(exc)}") from exc
    return PublishOutcome(publish_id=publish_id, gate_run_id=gate_run_id, row_counts=counts, mode=mode,
                          swap=swapped, dbt=approval.verdict.describe())


def _record_failure(settings: Settings, gate_run_id: uuid.UUID, status: str, run_id: str | None) -> None:
    """Best effort: the failed attempt in ops.publish_history (not when the warehouse is gone)."""
    with contextlib.suppress(psycopg.Error), db.connect(settings, autocommit=True) as log_conn:
        _record(log_conn, gate_run_id, status, {}, run_id=run_id)


def _columns(conn: psycopg.Connection, schema: str, table: str) -> list[tuple[str, str]]:
    return [(str(r[0]), str(r[1])) for r in conn.execute(
        "select attname, format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped order by attnum",
        (f"{schema}.{table}",),
    )]


def _same_columns(conn: psycopg.Connection, audit: str, marts: str, mart: str) -> bool:
    return _columns(conn, audit, mart) == _columns(conn, marts, mart)


def _replace_changed_keys(conn: psycopg.Connection, audit: str, marts: str, mart: str, scope: Scope) -> int:
    """Delete the changed keys from the published mart and insert the audited rows; returns the
    number of rows inserted."""
    keys = scope.changed_keys()
    conn.execute(
        sql.SQL("delete from {} where (symbol, trade_date) in ({})").format(sql.Identifier(marts, mart), keys)
    )
    cur = conn.execute(
        sql.SQL("insert into {} select * from {} where (symbol, trade_date) in ({})").format(
            sql.Identifier(marts, mart), sql.Identifier(audit, mart), keys
        )
    )
    return cur.rowcount


def _stage_copy(conn: psycopg.Connection, audit: str, marts: str, mart: str) -> int:
    """Copy an audited mart into `<mart>__publishing` with its keys and indexes; returns the rows."""
    staged = sql.Identifier(marts, f"{mart}__publishing")
    conn.execute(sql.SQL("drop table if exists {}").format(staged))
    cur = conn.execute(sql.SQL("create table {} as select * from {}").format(staged, sql.Identifier(audit, mart)))
    conn.execute(
        sql.SQL("alter table {} add constraint {} primary key ({})").format(
            staged, sql.Identifier(f"{mart}__pk_{uuid.uuid4().hex[:8]}"),
            sql.SQL(", ").join(sql.Identifier(c) for c in PRIMARY_KEYS[mart]),
        )
    )
    for columns in SECONDARY_INDEXES.get(mart, ()):
        conn.execute(
            sql.SQL("create index {} on {} ({})").format(
                sql.Identifier(f"{mart}__{'_'.join(columns)}_{uuid.uuid4().hex[:8]}"), staged,
                sql.SQL(", ").join(sql.Identifier(c) for c in columns),
            )
        )
    conn.execute(sql.SQL("analyze {}").format(staged))
    return cur.rowcount

