"""The warehouse side: schema migration, payload storage, and the ops run log (docs/warehouse.md)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import TYPE_CHECKING

import orjson
import psycopg
from datapipe_common import runs
from datapipe_common.libpq import conninfo
from psycopg import sql

from extract import endpoints
from extract.errors import REASON_CODES, STATUSES

if TYPE_CHECKING:
    from extract.quotes import QuoteRow

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
    payload         jsonb       not null,
    first_date      date        null,
    last_date       date        null
"""
# added after the first release: existing tables get them (null on older rows)
RAW_ADDED_COLUMNS = ("first_date date null", "last_date date null")


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
        *(sql.SQL("alter table {} add column if not exists {}").format(table, sql.SQL(column))
          for column in RAW_ADDED_COLUMNS),
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
        ensure_values_check(conn, "extract_run_symbols", "status", STATUSES)
        ensure_values_check(conn, "extract_run_symbols", "reason_code", REASON_CODES)
        sync_trading_sessions(conn)


def ensure_values_check(conn: psycopg.Connection[tuple[object, ...]], table: str, column: str,
                        values: tuple[str, ...]) -> None:
    """ops.<table>.<column> in `values`: the check constraint is replaced when it lists other values
    (a warehouse created by an older release). Call inside the migration transaction."""
    name = f"{table}_{column}_check"
    row = conn.execute(
        "select pg_get_constraintdef(oid) from pg_constraint where conrelid = %s::regclass and conname = %s",
        (f"ops.{table}", name),
    ).fetchone()
    listed = sorted(re.findall(r"'([^']*)'", str(row[0]))) if row else None
    if listed == sorted(values):
        return
    relation, constraint = sql.Identifier("ops", table), sql.Identifier(name)
    conn.execute(sql.SQL("alter table {} drop constraint if exists {}").format(relation, constraint))
    conn.execute(sql.SQL("alter table {} add constraint {} check ({} in ({}))").format(
        relation, constraint, sql.Identifier(column), sql.SQL(", ").join(map(sql.Literal, values))))


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
        return self.status in ("succeeded", "unchanged", "no_data")


def start_run(
    conn: psycopg.Connection[tuple[object, ...]],
    run_id: uuid.UUID,
    command: str,
    function: str,
    base_url: str,
    symbols: int,
    pipeline_run_id: str | None = None,
) -> None:
    with conn.transaction():
        conn.execute(
            "insert into ops.extract_runs (run_id, command, function, started_at, status, symbols_requested, base_url,"
            " pipeline_run_id) values (%s, %s, %s, now(), 'running', %s, %s, %s)",
            (run_id, command, function, symbols, base_url, pipeline_run_id),
        )


def finish_run(
    conn: psycopg.Connection[tuple[object, ...]],
    run_id: uuid.UUID,
    outcomes: list[SymbolOutcome],
    *,
    failed: bool = False,
    api_tier: str | None = None,
) -> None:
    ok = sum(o.ok for o in outcomes)
    with conn.transaction():
        conn.execute(
            "update ops.extract_runs set finished_at = now(), status = %s, symbols_succeeded = %s,"
            " symbols_failed = %s, requests = %s, bars = %s, api_tier = %s where run_id = %s",
            (
                "succeeded" if ok == len(outcomes) and not failed else "failed",
                ok,
                len(outcomes) - ok,
                sum(o.requests for o in outcomes),
                sum(o.bars for o in outcomes),
                api_tier,
                run_id,
            ),
        )


def abort_abandoned(conn: psycopg.Connection[tuple[object, ...]], grace_s: float) -> int:
    """Mark `aborted` the runs without a heartbeat for `grace_s` (killed, or lost the warehouse for
    good); returns how many."""
    with conn.transaction():
        cur = conn.execute(runs.sweep_sql("ops.extract_runs"), (runs.ABANDONED.format(grace=grace_s), grace_s))
        return cur.rowcount


def abort_run(conn: psycopg.Connection[tuple[object, ...]], run_id: uuid.UUID, reason: str) -> None:
    """This run ended early: `aborted`, with the reason (unless it already ended)."""
    with conn.transaction():
        conn.execute(runs.abort_sql("ops.extract_runs", "run_id"), (reason, run_id))


def heartbeat(pg_env: Mapping[str, str], run_id: uuid.UUID) -> runs.Beat:
    """The run's heartbeat (datapipe_common.runs), on its own connection."""
    return runs.Beat(lambda: connect(pg_env, autocommit=True), "ops.extract_runs", "run_id", run_id)


def symbols_without_payload(conn: psycopg.Connection[tuple[object, ...]], endpoint: endpoints.Endpoint,
                            symbols: list[str]) -> list[str]:
    """The symbols (in their order) with no answer of `endpoint` stored yet (`--missing`)."""
    rows = conn.execute(
        sql.SQL("select s.symbol from unnest(%s::text[]) with ordinality as s (symbol, n)"
                " where not exists (select from {} as p where p.symbol = s.symbol and p.function = %s)"
                " order by s.n").format(sql.Identifier("raw", endpoint.table)),
        (symbols, endpoint.function),
    ).fetchall()
    conn.commit()
    return [str(r[0]) for r in rows]


_INSERT_SYMBOL = (
    "insert into ops.extract_run_symbols (run_id, symbol, function, output_size, status, bars, requests,"
    " reason_code, reason, started_at, finished_at) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " on conflict (run_id, symbol) do update set function = excluded.function,"
    " output_size = excluded.output_size, status = excluded.status, bars = excluded.bars,"
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
    first_date: str | None = None,
    last_date: str | None = None,
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
                        " received_at, payload_sha256, payload, first_date, last_date)"
                        " values (%s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s)").format(table),
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
                    first_date,
                    last_date,
                ),
            )
        outcome.status = "succeeded" if stored else "unchanged"
        if not stored:
            outcome.bars = 0  # `bars` counts what this run loaded
        conn.execute(_INSERT_SYMBOL, _symbol_row(run_id, outcome))
    return stored


# -- live quotes (extract.quotes) --------------------------------------------------------------------

_INSERT_QUOTE = (
    "insert into raw.quotes (symbol, bar_at, source, delay, fetched_at, run_id, quote)"
    " values (%s, %s, %s, %s, %s, %s, %s::jsonb) on conflict (symbol, bar_at) do nothing"
)


def _quote_params(run_id: uuid.UUID, rows: Sequence[QuoteRow], fetched_at: dt.datetime) -> list[tuple[object, ...]]:
    return [(r.symbol, r.bar_at, r.source, r.delay, fetched_at, run_id, orjson.dumps(r.quote).decode())
            for r in rows]


def store_quotes(conn: psycopg.Connection[tuple[object, ...]], run_id: uuid.UUID, rows: Sequence[QuoteRow], *,
                 fetched_at: dt.datetime) -> None:
    """Append the rows to raw.quotes; a symbol's bar time already stored keeps its first row."""
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_INSERT_QUOTE, _quote_params(run_id, rows, fetched_at))


def store_batch(conn: psycopg.Connection[tuple[object, ...]], run_id: uuid.UUID, endpoint: endpoints.Endpoint,
                outcomes: list[SymbolOutcome], rows: Sequence[QuoteRow], *, url: str, requested_at: dt.datetime,
                received_at: dt.datetime, body: bytes) -> None:
    """One transaction for a request that named several symbols (bulk quotes): its payload (the
    `symbol` column lists them), the quotes, and every symbol's run-log row."""
    label = ",".join(o.symbol for o in outcomes)
    with conn.transaction():
        conn.execute(
            sql.SQL("insert into {} (run_id, symbol, function, request_url, requested_at, received_at,"
                    " payload_sha256, payload) values (%s, %s, %s, %s, %s, %s, %s, %s::jsonb)").format(
                sql.Identifier("raw", endpoint.table)),
            (run_id, label, endpoint.function, url, requested_at, received_at, sha256(body), body.decode("utf-8")),
        )
        with conn.cursor() as cur:
            if rows:
                cur.executemany(_INSERT_QUOTE, _quote_params(run_id, rows, received_at))
            cur.executemany(_INSERT_SYMBOL, [_symbol_row(run_id, o) for o in outcomes])


# -- the daily history: newest stored bar, the key's tier, accepted gaps (extract.history) ------------


# at most this many payloads are deleted a run: a first cleanup of a long backlog spreads over runs
PRUNE_BATCH = 20_000


def prune_payloads(conn: psycopg.Connection[tuple[object, ...]], endpoint: endpoints.Endpoint, days: int) -> int:
    """Delete `endpoint`'s raw payloads received more than `days` days ago, at most PRUNE_BATCH of
    them (oldest first); the number deleted. `days` 0: nothing."""
    if days <= 0:
        return 0
    table = sql.Identifier("raw", endpoint.table)
    cur = conn.execute(sql.SQL(
        "delete from {t} where payload_id in (select payload_id from {t} where received_at < now() - make_interval("
        "days => %s) order by received_at limit %s)").format(t=table), (days, PRUNE_BATCH))
    conn.commit()
    return cur.rowcount


def newest_stored_day(conn: psycopg.Connection[tuple[object, ...]], endpoint: endpoints.Endpoint,
                      symbol: str) -> dt.date | None:
    """The newest day any stored payload of `symbol` holds (rows stored before `last_date` existed:
    their `Meta Data`'s "3. Last Refreshed")."""
    row = conn.execute(
        sql.SQL("select max(coalesce(last_date, left(payload -> 'Meta Data' ->> '3. Last Refreshed', 10)::date))"
                " from {} where symbol = %s and function = %s").format(sql.Identifier("raw", endpoint.table)),
        (symbol, endpoint.function),
    ).fetchone()
    conn.commit()
    return row[0] if row and isinstance(row[0], dt.date) else None


def key_fingerprint(key: str | None) -> str:
    """What ops.api_tiers keeps of a key: 12 hex digits of its sha256 (never the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else "no-key"


def load_tier(conn: psycopg.Connection[tuple[object, ...]], base_url: str, fingerprint: str) -> str | None:
    row = conn.execute("select tier from ops.api_tiers where base_url = %s and key_fingerprint = %s",
                       (base_url, fingerprint)).fetchone()
    conn.commit()
    return str(row[0]) if row else None


def save_tier(conn: psycopg.Connection[tuple[object, ...]], base_url: str, fingerprint: str, tier: str,
              run_id: uuid.UUID, evidence: str | None) -> None:
    with conn.transaction():
        conn.execute(
            "insert into ops.api_tiers (base_url, key_fingerprint, tier, learned_at, learned_run_id, evidence)"
            " values (%s, %s, %s, now(), %s, %s) on conflict (base_url, key_fingerprint) do update set"
            " tier = excluded.tier, learned_at = excluded.learned_at, learned_run_id = excluded.learned_run_id,"
            " evidence = excluded.evidence",
            (base_url, fingerprint, tier, run_id, evidence),
        )


@dataclass(frozen=True)
class Gap:
    gap_id: int
    symbol: str
    newest_stored: dt.date
    missing_from: dt.date
    missing_to: dt.date
    missing_sessions: int
    accepted_at: dt.datetime | None
    restart_on: dt.date | None


_GAP_COLUMNS = ("gap_id, symbol, newest_stored, missing_from, missing_to, missing_sessions, accepted_at,"
                " restart_on")


def pending_restart(conn: psycopg.Connection[tuple[object, ...]], symbol: str) -> Gap | None:
    """An accepted gap of `symbol` whose restart day is not known yet (the next stored payload sets it)."""
    row = conn.execute(
        f"select {_GAP_COLUMNS} from ops.history_gaps where symbol = %s and accepted_at is not null"
        " and restart_on is null order by gap_id desc limit 1", (symbol,)).fetchone()
    conn.commit()
    return Gap(*row) if row else None  # type: ignore[arg-type]


def record_gap(conn: psycopg.Connection[tuple[object, ...]], run_id: uuid.UUID, symbol: str,
               newest_stored: dt.date, missing: list[dt.date]) -> None:
    """The symbol's open (unaccepted) gap, updated to what this run saw, or a new one."""
    values = (newest_stored, missing[0], missing[-1], len(missing), run_id, symbol)
    with conn.transaction():
        cur = conn.execute(
            "update ops.history_gaps set newest_stored = %s, missing_from = %s, missing_to = %s,"
            " missing_sessions = %s, detected_at = now(), detected_run_id = %s"
            " where symbol = %s and accepted_at is null", values)
        if cur.rowcount == 0:
            conn.execute(
                "insert into ops.history_gaps (newest_stored, missing_from, missing_to, missing_sessions,"
                " detected_at, detected_run_id, symbol) values (%s, %s, %s, %s, now(), %s, %s)", values)


def accept_gap(conn: psycopg.Connection[tuple[object, ...]], symbol: str) -> Gap | None:
    """Mark the symbol's open gap accepted; None when it has none."""
    with conn.transaction():
        row = conn.execute(
            f"update ops.history_gaps set accepted_at = now() where symbol = %s and accepted_at is null"
            f" returning {_GAP_COLUMNS}", (symbol,)).fetchone()
    return Gap(*row) if row else None  # type: ignore[arg-type]


def set_restart(conn: psycopg.Connection[tuple[object, ...]], gap_id: int, restart_on: dt.date) -> None:
    with conn.transaction():
        conn.execute("update ops.history_gaps set restart_on = %s where gap_id = %s", (restart_on, gap_id))
