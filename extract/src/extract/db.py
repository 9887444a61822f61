"""The warehouse side: schema migration, payload storage, and the ops run log (docs/warehouse.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files

import psycopg
from datapipe_common.libpq import conninfo
from psycopg import sql

from extract import endpoints

# Stable advisory-lock key for the schema migration ("extract" in ASCII).
MIGRATION_LOCK = 0x65787472616374

# Every raw table (one per endpoint of extract.endpoints) has these columns: one row per validated answer.
RAW_COLUMNS = """
    payload_id      bigint generated always as identity primary key,
    run_id          uuid        not null,
    symbol          text        not null,
    function        text        not null,
    output_size     text        null,
    request_url     text        not null,
    requested_at    timestamptz not null,
    received_at     timestamptz not null,
    payload_sha256  text        not null,
    payload         jsonb       not null
"""


def connect(pg_env: Mapping[str, str], *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    """A connection from the libpq variables only (datapipe_common.libpq)."""
    return psycopg.connect(conninfo(pg_env, application_name="extract"), autocommit=autocommit)


def schema_sql() -> str:
    """The schemas and the ops tables (schema.sql); the raw tables come from `raw_table_sql`."""
    return files("extract").joinpath("schema.sql").read_text()


def raw_table_sql(endpoint: endpoints.Endpoint) -> sql.Composed:
    """The raw table of an endpoint (idempotent): RAW_COLUMNS, and an index for "the latest payload of a
    symbol"; payloads uncompressed when the endpoint asks for it (ALTER only when not yet so)."""
    table = sql.Identifier("raw", endpoint.table)
    statements = [
        sql.SQL("create table if not exists {} ({})").format(table, sql.SQL(RAW_COLUMNS)),
        sql.SQL("create index if not exists {} on {} (symbol, function, received_at desc, payload_id desc)").format(
            sql.Identifier(f"{endpoint.table}_symbol_latest_idx"), table),
    ]
    if endpoint.store_uncompressed:
        statements.append(sql.SQL(
            "do $$ begin if exists (select from pg_attribute where attrelid = {rel}::regclass and attname = 'payload'"
            " and attstorage <> 'e') then alter table {table} alter column payload set storage external; end if;"
            " end $$"
        ).format(rel=sql.Literal(endpoint.relation), table=table))
    return sql.SQL(";\n").join(statements)


def migrate(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    """Create the ops tables and every registered endpoint's raw table if missing and bring
    `ops.trading_sessions` up to date; safe to run concurrently and repeatedly."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(schema_sql().encode())
        for endpoint in endpoints.all_endpoints():
            conn.execute(raw_table_sql(endpoint))
        sync_trading_sessions(conn)


def sync_trading_sessions(conn: psycopg.Connection[tuple[object, ...]]) -> bool:
    """Replace the rows of ops.trading_sessions with the calendar's sessions unless the table already
    holds them (the table's comment is the calendar's key: library release and build day), so the
    calendar is built at most once a day. Returns True when it rewrote them. Call inside the
    migration transaction: readers see the old or the new sessions, never a mix."""
    from datapipe_common.calendar import calendar_key, session_rows

    key = calendar_key()
    row = conn.execute("select obj_description('ops.trading_sessions'::regclass, 'pg_class')").fetchone()
    if row and row[0] == key:
        return False
    conn.execute("delete from ops.trading_sessions")
    with conn.cursor().copy(
        "copy ops.trading_sessions (session_date, open_at, close_at, bar_due_at, is_early_close) from stdin"
    ) as copy:
        for session in session_rows():
            copy.write_row(session)
    conn.execute(sql.SQL("comment on table ops.trading_sessions is {}").format(sql.Literal(key)))
    return True


def sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass
class SymbolOutcome:
    symbol: str
    function: str
    output_size: str | None
    status: str = "skipped"
    bars: int = 0
    requests: int = 0
    reason_code: str | None = None
    reason: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("succeeded", "unchanged")


def start_run(
    conn: psycopg.Connection[tuple[object, ...]],
    run_id: uuid.UUID,
    command: str,
    function: str,
    base_url: str,
    symbols: int,
) -> None:
    with conn.transaction():
        conn.execute(
            "insert into ops.extract_runs (run_id, command, function, started_at, status, symbols_requested, base_url)"
            " values (%s, %s, %s, now(), 'running', %s, %s)",
            (run_id, command, function, symbols, base_url),
        )


def finish_run(
    conn: psycopg.Connection[tuple[object, ...]],
    run_id: uuid.UUID,
    outcomes: list[SymbolOutcome],
    *,
    failed: bool = False,
) -> None:
    ok = sum(o.ok for o in outcomes)
    with conn.transaction():
        conn.execute(
            "update ops.extract_runs set finished_at = now(), status = %s, symbols_succeeded = %s,"
            " symbols_failed = %s, requests = %s, bars = %s where run_id = %s",
            (
                "succeeded" if ok == len(outcomes) and not failed else "failed",
                ok,
                len(outcomes) - ok,
                sum(o.requests for o in outcomes),
                sum(o.bars for o in outcomes),
                run_id,
            ),
        )


def has_payload(conn: psycopg.Connection[tuple[object, ...]], function: str, symbol: str) -> bool:
    table = sql.Identifier("raw", endpoints.endpoint(function).table)
    row = conn.execute(
        sql.SQL("select exists (select 1 from {} where symbol = %s and function = %s)").format(table),
        (symbol, function),
    ).fetchone()
    conn.commit()
    return bool(row and row[0])


_INSERT_SYMBOL = (
    "insert into ops.extract_run_symbols (run_id, symbol, function, output_size, status, bars, requests,"
    " reason_code, reason, started_at, finished_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " on conflict (run_id, symbol) do update set status = excluded.status, bars = excluded.bars,"
    " requests = excluded.requests, reason_code = excluded.reason_code, reason = excluded.reason,"
    " finished_at = excluded.finished_at"
)


def _symbol_row(run_id: uuid.UUID, o: SymbolOutcome) -> tuple[object, ...]:
    return (
        run_id,
        o.symbol,
        o.function,
        o.output_size,
        o.status,
        o.bars,
        o.requests,
        o.reason_code,
        o.reason,
        o.started_at,
        o.finished_at,
    )


def record_symbol(conn: psycopg.Connection[tuple[object, ...]], run_id: uuid.UUID, outcome: SymbolOutcome) -> None:
    with conn.transaction():
        conn.execute(_INSERT_SYMBOL, _symbol_row(run_id, outcome))


def store_payload(
    conn: psycopg.Connection[tuple[object, ...]],
    run_id: uuid.UUID,
    outcome: SymbolOutcome,
    *,
    url: str,
    requested_at: dt.datetime,
    received_at: dt.datetime,
    body: bytes,
) -> bool:
    """One transaction: the payload (unless identical to the latest stored one for this symbol and
    function) and the symbol's run-log row. Returns True when a new payload row was written."""
    endpoint = endpoints.endpoint(outcome.function)
    table = sql.Identifier("raw", endpoint.table)
    digest = sha256(body)
    with conn.transaction():
        # Serialise concurrent extractors on the same symbol, so "latest" is well defined.
        conn.execute("select pg_advisory_xact_lock(hashtext(%s))", (f"{endpoint.relation}:{outcome.symbol}",))
        row = conn.execute(
            sql.SQL("select payload_sha256 from {} where symbol = %s and function = %s"
                    " order by received_at desc, payload_id desc limit 1").format(table),
            (outcome.symbol, outcome.function),
        ).fetchone()
        stored = not (row and row[0] == digest)
        if stored:
            conn.execute(
                sql.SQL("insert into {} (run_id, symbol, function, output_size, request_url, requested_at,"
                        " received_at, payload_sha256, payload) values (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb)"
                        ).format(table),
                (
                    run_id,
                    outcome.symbol,
                    outcome.function,
                    outcome.output_size,
                    url,
                    requested_at,
                    received_at,
                    digest,
                    body.decode("utf-8"),
                ),
            )
        outcome.status = "succeeded" if stored else "unchanged"
        if not stored:
            outcome.bars = 0  # `bars` counts what this run loaded
        conn.execute(_INSERT_SYMBOL, _symbol_row(run_id, outcome))
    return stored
