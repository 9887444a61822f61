"""The Great Expectations gate: one expectation suite per audited mart, one checkpoint.

Suites are defined in code (GX 1.x: data source -> table asset -> batch definition -> suite ->
validation definition -> checkpoint) against the audit schema. Every evaluated expectation is
stored in ops.gate_results, the run in ops.gate_runs (with a fingerprint of the audited tables
that `quality publish` checks), and Data Docs HTML is written to QUALITY_DATA_DOCS_DIR.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import psycopg
from datapipe_common import failures, runs
from datapipe_common.calendar import nyse

from quality import db
from quality.scope import FACTS, Scope, current_scope
from quality.settings import MARTS, Settings

log = logging.getLogger("quality.gate")
PRICE_COLUMNS = ("open", "high", "low", "close")
SYMBOLS_PRESENT = "every configured symbol is present"
NO_MISSING_SESSIONS = "no NYSE session is missing inside a symbol's history"
FACT_SYMBOLS_IN_DIM = "every fact symbol is in dim_company"
# The facts' symbols (a skip scan of the (symbol, trade_date) index: one probe per symbol) that have
# no row in the audited dim_company. {{batch}} stays unaliased (see MISSING_SESSIONS_QUERY).
FACT_SYMBOLS_IN_DIM_QUERY = """
with recursive present (symbol) as (
    (select symbol from {{batch}} order by symbol limit 1)
    union all
    select (select symbol from {{batch}} where symbol > present.symbol order by symbol limit 1)
    from present
    where present.symbol is not null
)
select present.symbol as symbol_without_company
from present
where present.symbol is not null
    and not exists (select from {audit}.dim_company as company where company.symbol = present.symbol)
"""
# Per symbol, the NYSE sessions (ops.trading_sessions, kept equal to the shared calendar by `extract`)
# between its first and last bar that have no bar, as ranges: (symbol, missing_from, missing_to, sessions).
# Only symbols with fewer bars than sessions in their span are searched. {batch} stays unaliased:
# the unqualified columns of the correlated subquery are the batch's.
MISSING_SESSIONS_QUERY = """
with bounds as (
    select symbol, min(trade_date) as first_day, max(trade_date) as last_day, count(*) as bars
    from {batch}
    group by symbol
),
short as (
    select bounds.symbol, bounds.first_day, bounds.last_day
    from bounds
    where bounds.bars < (
        select count(*) from ops.trading_sessions
        where session_date between bounds.first_day and bounds.last_day
    )
),
sessions as (
    select session_date, row_number() over (order by session_date) as ordinal
    from ops.trading_sessions
),
missing as (
    select short.symbol, sessions.session_date,
           sessions.ordinal - row_number() over (partition by short.symbol order by sessions.session_date) as island
    from short
    inner join sessions
        on sessions.session_date between short.first_day and short.last_day
    where not exists (select from {batch} where symbol = short.symbol and trade_date = sessions.session_date)
)
select symbol, min(session_date) as missing_from, max(session_date) as missing_to, count(*) as missing_sessions
from missing
group by symbol, island
order by symbol, missing_from
"""


@dataclass(frozen=True)
class ExpectationOutcome:
    mart: str
    expectation_type: str
    column: str | None
    kwargs: dict[str, Any]
    success: bool
    observed_value: str | None
    details: str

    def describe(self) -> str:
        args = ", ".join(f"{k}={_short(v, 80)}" for k, v in self.kwargs.items() if k not in ("column", "batch_id"))
        target = f"{self.mart}.{self.column}" if self.column else self.mart
        return f"{target}: {self.expectation_type}({args}) -> {self.details}"


@dataclass
class GateOutcome:
    gate_run_id: uuid.UUID
    success: bool
    expected_latest_date: dt.date
    results: list[ExpectationOutcome] = field(default_factory=list)
    data_docs_path: Path | None = None
    missing_marts: list[str] = field(default_factory=list)
    scope: Scope | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]


def suites_spec(
    settings: Settings, expected_date: dt.date, published_counts: Mapping[str, int]
) -> dict[str, list[Any]]:
    """The expectations of every mart (GX expectation objects), built from the settings."""
    # typed as Any: GX re-exports its expectation classes without declaring them (mypy strict)
    gxe: Any = importlib.import_module("great_expectations.expectations")
    symbols = sorted(settings.symbols)

    def common(mart: str, key: list[str]) -> list[Any]:
        published = published_counts.get(mart)
        min_rows = 1 if not published else max(1, math.floor(published * (1 - settings.row_count_tolerance)))
        out: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=min_rows)]
        if len(key) == 1:
            out.append(gxe.ExpectColumnDistinctValuesToContainSet(column="symbol", value_set=symbols))
        else:
            # the facts: one index probe per symbol instead of a DISTINCT over millions of rows
            listed = ", ".join(f"('{s}')" for s in symbols)
            out.append(gxe.UnexpectedRowsExpectation(
                description=SYMBOLS_PRESENT,
                unexpected_rows_query=(
                    f"select configured.symbol as missing_symbol from (values {listed}) as configured (symbol)"
                    " where not exists (select from {batch} where symbol = configured.symbol)"
                ),
            ))
        out += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in key]
        if len(key) == 1:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=key[0]))
        else:
            # one GROUP BY (GX's compound-uniqueness metric joins the table to itself: 10x slower)
            cols = ", ".join(key)
            out.append(gxe.UnexpectedRowsExpectation(
                description=f"({cols}) is unique",
                unexpected_rows_query=(
                    f"select {cols}, count(*) as n_rows from {{batch}} group by {cols} having count(*) > 1"
                ),
            ))
        return out

    fresh = expected_date.isoformat()
    return {
        "dim_company": [
            *common("dim_company", ["symbol"]),
            gxe.ExpectColumnValuesToNotBeNull(column="name"),
        ],
        "fct_daily_prices": [
            *common("fct_daily_prices", ["symbol", "trade_date"]),
            *(gxe.ExpectColumnValuesToNotBeNull(column=c) for c in (*PRICE_COLUMNS, "volume")),
            *(gxe.ExpectColumnValuesToBeBetween(column=c, min_value=0, strict_min=True) for c in PRICE_COLUMNS),
            gxe.ExpectColumnValuesToBeBetween(column="volume", min_value=0),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B="low", or_equal=True),
            gxe.ExpectColumnValuesToBeBetween(column="daily_return", min_value=-0.95, max_value=10),
            gxe.ExpectColumnMaxToBeBetween(column="trade_date", min_value=fresh),
            # a hole inside a published history (e.g. a long outage on a free key) is never published
            gxe.UnexpectedRowsExpectation(description=NO_MISSING_SESSIONS,
                                          unexpected_rows_query=MISSING_SESSIONS_QUERY),
            # dbt's relationships tests see the changed rows only; this sees the whole table
            gxe.UnexpectedRowsExpectation(
                description=FACT_SYMBOLS_IN_DIM,
                unexpected_rows_query=FACT_SYMBOLS_IN_DIM_QUERY.format(audit=settings.audit_schema)),
        ],
        "fct_technical_indicators": [
            *common("fct_technical_indicators", ["symbol", "trade_date"]),
            gxe.ExpectColumnValuesToBeBetween(column="rsi_14", min_value=0, max_value=100),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="bb_upper", column_B="bb_lower", or_equal=True, ignore_row_if="either_value_is_missing"
            ),
            gxe.ExpectColumnMaxToBeBetween(column="trade_date", min_value=fresh),
        ],
        "mart_market_overview": [
            *common("mart_market_overview", ["symbol"]),
            # every symbol's latest bar is at least the last completed trading day
            gxe.ExpectColumnValuesToBeBetween(column="trade_date", min_value=fresh),
            gxe.ExpectColumnValuesToBeBetween(column="close", min_value=0, strict_min=True),
            gxe.ExpectColumnValuesToBeBetween(column="rsi_14", min_value=0, max_value=100),
        ],
    }


# expectations about the whole table; all others are about rows and may be scoped to changed rows
TABLE_LEVEL = ("expect_table_row_count_to_be_between", "expect_column_distinct_values_to_contain_set",
               "expect_column_max_to_be_between")
WHOLE_TABLE_QUERIES = (SYMBOLS_PRESENT, NO_MISSING_SESSIONS, FACT_SYMBOLS_IN_DIM)


def is_table_level(expectation: Any) -> bool:
    return (expectation.expectation_type in TABLE_LEVEL
            or getattr(expectation, "description", None) in WHOLE_TABLE_QUERIES)


def _context(data_docs_dir: Path) -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        data_docs_sites={
            "datapipe": {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(data_docs_dir.resolve()),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }
        },
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _exception_message(info: Mapping[str, Any]) -> str | None:
    """The error of a result: GX reports it flat, or keyed by the metric that raised it."""
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        if isinstance(value, Mapping) and (value.get("raised_exception") or value.get("exception_message")):
            return str(value.get("exception_message"))
    return None


def _outcome(mart: str, res: Any) -> ExpectationOutcome:
    cfg = res.expectation_config
    kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
    result = res.result or {}
    observed = result.get("observed_value")
    error = _exception_message(res.exception_info or {})
    if error:
        details = f"error: {_short(error, 500)}"
    elif "unexpected_count" in result:
        n = result.get("unexpected_count") or 0
        total = result.get("element_count")
        sample = result.get("partial_unexpected_list") or []
        details = f"{n} unexpected of {total} rows" + (f", e.g. {_short(sample[:5], 200)}" if n else "")
    elif "missing_count" in result:
        missing = sorted(str(v) for v in result.get("partial_missing_list") or [])
        details = f"missing: {', '.join(missing)}" if result["missing_count"] else "all present"
        observed = {"missing_count": result["missing_count"], "missing": missing}
    elif cfg.type == "unexpected_rows_expectation":
        rows = result.get("details", {}).get("unexpected_rows") or []
        details = f"{observed} unexpected rows" + (f", e.g. {_short(rows[:5], 200)}" if rows else "")
    elif observed is not None:
        details = f"observed {_short(observed, 200)}"
    else:
        details = "ok" if res.success else "failed"
    return ExpectationOutcome(
        mart=mart,
        expectation_type=cfg.type,
        column=kwargs.get("column") or (",".join(kwargs["column_list"]) if "column_list" in kwargs else None)
        or (str(cfg.description) if cfg.type == "unexpected_rows_expectation" and cfg.description else None)
        or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None),
        kwargs=json.loads(json.dumps(kwargs, default=str)),
        success=bool(res.success),
        observed_value=None if observed is None else _short(observed, 1000),
        details=details,
    )


def _with_unexpected_rows(
    settings: Settings, found: ExpectationOutcome, res: Any, batch_sql: str
) -> ExpectationOutcome:
    """A failed UnexpectedRowsExpectation with up to 5 of its rows in the details (the SUMMARY
    result format carries only their count)."""
    query = str(res.expectation_config.kwargs["unexpected_rows_query"]).replace("{batch}", f"{batch_sql} as batch")
    try:
        with db.connect(settings, autocommit=True) as conn:
            rows = conn.execute(f"select * from ({query}) as unexpected limit 5").fetchall()
    except psycopg.Error as exc:  # the details are best effort, the verdict stands
        return replace(found, details=f"{found.details} (rows unavailable: {type(exc).__name__})")
    sample = [list(r) if len(r) > 1 else r[0] for r in rows]
    return replace(found, details=f"{found.details}, e.g. {_short(sample, 200)}")


def expected_latest_session(settings: Settings, now: dt.datetime) -> dt.date:
    """The oldest acceptable latest bar: the latest NYSE session completed at `now` (its close plus
    QUALITY_MARKET_CLOSE_DELAY_MINUTES), minus QUALITY_FRESHNESS_LAG_DAYS sessions. With a pinned
    QUALITY_TODAY (tests, backfills) that day counts as not yet completed: its previous session."""
    calendar = nyse()
    if settings.today is not None:
        day = calendar.previous_session(settings.today)
    else:
        day = calendar.latest_completed_session(now, delay=dt.timedelta(minutes=settings.market_close_delay_minutes))
    for _ in range(settings.freshness_lag_days):
        day = calendar.previous_session(day)
    return day


@dataclass(frozen=True)
class AuditState:
    """What the gate validates, read once before validating: which marts exist, what is published,
    the audited tables' fingerprint (publish checks it) and the rows changed since the last publish."""

    present: list[str]
    missing: list[str]
    published_counts: dict[str, int]
    fingerprint: dict[str, dict[str, int]]
    scope: Scope
    changed_query: dict[str, str]  # per fact: SELECT of its changed rows (incremental runs only)

    def batch_sql(self, settings: Settings, mart: str, changed_rows: bool) -> str:
        return f"({self.changed_query[mart]})" if changed_rows else f"{settings.audit_schema}.{mart}"


def read_audit_state(conn: psycopg.Connection, settings: Settings) -> AuditState:
    present = [m for m in MARTS if db.table_exists(conn, settings.audit_schema, m)]
    scope = current_scope(conn, settings.audit_schema, settings.marts_schema)
    changed_keys = scope.changed_keys().as_string(conn) if scope.incremental else ""
    return AuditState(
        present=present,
        missing=[m for m in MARTS if m not in present],
        published_counts={m: db.published_rows_kept(conn, settings.marts_schema, m, settings.symbols) for m in MARTS
                          if db.table_exists(conn, settings.marts_schema, m)},
        fingerprint=db.fingerprint(conn, settings.audit_schema, MARTS),
        scope=scope,
        changed_query={
            mart: f"select * from {settings.audit_schema}.{mart} where (symbol, trade_date) in ({changed_keys})"
            for mart in FACTS if scope.incremental
        },
    )


def _missing_mart(settings: Settings, mart: str) -> ExpectationOutcome:
    return ExpectationOutcome(
        mart=mart, expectation_type="expect_table_to_exist", column=None,
        kwargs={"table": f"{settings.audit_schema}.{mart}"}, success=False, observed_value=None,
        details=f"{settings.audit_schema}.{mart} does not exist: run `dbt build` first",
    )


def _validation_definitions(context: Any, settings: Settings, state: AuditState,
                            spec: dict[str, list[Any]]) -> list[Any]:
    """Per present mart: its whole table, and for the facts of an incremental run the rows changed
    since the last publish for the row-level expectations."""
    import great_expectations as gx

    source = context.data_sources.add_postgres(name="warehouse", connection_string=settings.sqlalchemy_url())
    definitions = []
    for mart in state.present:
        asset = source.add_table_asset(name=mart, table_name=mart, schema_name=settings.audit_schema)
        batches = [(f"{mart}_suite", asset.add_batch_definition_whole_table(name=f"{mart}_all"), spec[mart])]
        if mart in state.changed_query:
            changed = source.add_query_asset(name=f"{mart}__changed", query=state.changed_query[mart])
            batches = [
                (f"{mart}_suite", batches[0][1], [e for e in spec[mart] if is_table_level(e)]),
                (f"{mart}__changed_rows_suite", changed.add_batch_definition_whole_table(name=f"{mart}_changed"),
                 [e for e in spec[mart] if not is_table_level(e)]),
            ]
        for suite_name, batch, expectations in batches:
            suite = context.suites.add(gx.ExpectationSuite(name=suite_name, expectations=expectations))
            definitions.append(context.validation_definitions.add(
                gx.ValidationDefinition(name=suite_name.removesuffix("_suite"), data=batch, suite=suite)
            ))
    return definitions


def validate(settings: Settings, state: AuditState, expected: dt.date) -> tuple[list[ExpectationOutcome], Path | None]:
    """Run every expectation on the audited marts (one GX checkpoint, one Data Docs build): the
    outcomes, and the Data Docs page. A missing mart is a failed `expect_table_to_exist`."""
    results = [_missing_mart(settings, mart) for mart in state.missing]
    if not state.present:
        return results, None
    import great_expectations as gx

    settings.data_docs_dir.mkdir(parents=True, exist_ok=True)
    context = _context(settings.data_docs_dir)
    spec = suites_spec(settings, expected, state.published_counts)
    definitions = _validation_definitions(context, settings, state, spec)
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name="datapipe_gate", validation_definitions=definitions,
        result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
    ))
    result = checkpoint.run(run_id=None)
    # one Data Docs build for every result (an UpdateDataDocsAction rebuilds the site per result)
    context.build_data_docs(site_names=["datapipe"])
    for validation in result.run_results.values():
        changed_rows = validation.suite_name.endswith("__changed_rows_suite")
        mart = validation.suite_name.removesuffix("_suite").removesuffix("__changed_rows")
        for res in validation.results:
            found = _outcome(mart, res)
            if not found.success and res.expectation_config.type == "unexpected_rows_expectation":
                found = _with_unexpected_rows(settings, found, res, state.batch_sql(settings, mart, changed_rows))
            results.append(found)
    index = settings.data_docs_dir / "index.html"
    return results, index if index.exists() else settings.data_docs_dir


def record(settings: Settings, outcome: GateOutcome, state: AuditState) -> None:
    """Every expectation into ops.gate_results and the verdict, fingerprint and scope into the
    run's ops.gate_runs row, in one transaction."""
    with db.connect(settings) as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "insert into ops.gate_results (gate_run_id, mart, expectation_type, column_name, kwargs, success,"
                " observed_value, details) values (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)",
                [(outcome.gate_run_id, r.mart, r.expectation_type, r.column, json.dumps(r.kwargs), r.success,
                  r.observed_value, r.details) for r in outcome.results],
            )
        conn.execute(
            "update ops.gate_runs set finished_at = now(), success = %s, status = %s, expectations_total = %s,"
            " expectations_failed = %s, data_docs_path = %s, audit_fingerprint = %s::jsonb, scope = %s"
            " where gate_run_id = %s",
            (outcome.success, "passed" if outcome.success else "failed", len(outcome.results), len(outcome.failures),
             str(outcome.data_docs_path) if outcome.data_docs_path else None, json.dumps(state.fingerprint),
             state.scope.describe(), outcome.gate_run_id),
        )


def run_gate(settings: Settings, now: dt.datetime | None = None) -> GateOutcome:
    """Validate every audited mart; record the run; never touches `marts`. Rows of gate runs that
    were killed are aborted first; a run that fails marks its own row aborted with the reason
    (datapipe_common.runs) and re-raises."""
    expected = expected_latest_session(settings, now or dt.datetime.now(dt.UTC))
    outcome = GateOutcome(gate_run_id=uuid.uuid4(), success=False, expected_latest_date=expected)
    with db.connect(settings, autocommit=True) as conn:
        db.ensure_ops_tables(conn)
        abandoned = conn.execute(runs.sweep_sql("ops.gate_runs"),
                                 (runs.ABANDONED.format(grace=settings.run_grace_s), settings.run_grace_s)).rowcount
        if abandoned:
            log.warning("marked %d abandoned gate run%s aborted (no heartbeat for %g s)", abandoned,
                        "s" * (abandoned != 1), settings.run_grace_s)
        # started_at: the wall clock (publish compares it with the last dbt result's recorded_at)
        conn.execute("insert into ops.gate_runs (gate_run_id, started_at, audit_schema, status, run_id)"
                     " values (%s, clock_timestamp(), %s, 'running', %s)",
                     (outcome.gate_run_id, settings.audit_schema, settings.run_id))
        try:
            with runs.Heartbeat(db.heartbeat(settings, outcome.gate_run_id),
                                runs.heartbeat_interval(settings.run_grace_s)):
                state = read_audit_state(conn, settings)
                outcome.missing_marts, outcome.scope = state.missing, state.scope
                outcome.results, outcome.data_docs_path = validate(settings, state, expected)
            outcome.success = bool(outcome.results) and all(r.success for r in outcome.results)
            record(settings, outcome, state)
        except BaseException as exc:
            _record_abort(settings, conn, outcome.gate_run_id, exc)
            raise
    return outcome


def _record_abort(settings: Settings, conn: psycopg.Connection, gate_run_id: uuid.UUID, exc: BaseException) -> None:
    """Best effort: the run's row `aborted` with the reason, on the run's connection or a fresh one;
    nothing when the warehouse is gone (the next gate run's sweep aborts it after the grace period)."""
    reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else failures.explain(exc).what
    sql_text = runs.abort_sql("ops.gate_runs", "gate_run_id")
    with contextlib.suppress(psycopg.Error):
        if not conn.closed and not conn.broken:
            conn.execute(sql_text, (reason, gate_run_id))
            return
    with contextlib.suppress(psycopg.Error), db.connect(settings, autocommit=True) as fresh:
        fresh.execute(sql_text, (reason, gate_run_id))
