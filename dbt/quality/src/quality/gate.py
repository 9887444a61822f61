"""The Great Expectations gate: one expectation suite per audited mart, one checkpoint.

Suites are defined in code (GX 1.x: data source -> table asset -> batch definition -> suite ->
validation definition -> checkpoint) against the audit schema. Every evaluated expectation is
stored in ops.gate_results, the run in ops.gate_runs (with a fingerprint of the audited tables
that `quality publish` checks), and Data Docs HTML is written to QUALITY_DATA_DOCS_DIR.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quality import db
from quality.calendar import expected_latest_trade_date
from quality.settings import MARTS, Settings

PRICE_COLUMNS = ("open", "high", "low", "close")
INDICATOR_COLUMNS = (
    "sma_20", "sma_50", "sma_200", "ema_12", "ema_26", "macd", "macd_signal", "macd_hist",
    "rsi_14", "bb_upper", "bb_middle", "bb_lower",
)


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

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [r for r in self.results if not r.success]


def suites_spec(
    settings: Settings, expected_date: dt.date, published_counts: Mapping[str, int]
) -> dict[str, list[Any]]:
    """The expectations of every mart (GX expectation objects), built from the settings."""
    import great_expectations.expectations as gxe

    symbols = sorted(settings.symbols)

    def common(mart: str, key: list[str]) -> list[Any]:
        published = published_counts.get(mart)
        min_rows = 1 if not published else max(1, math.floor(published * (1 - settings.row_count_tolerance)))
        out: list[Any] = [
            gxe.ExpectTableRowCountToBeBetween(min_value=min_rows),
            gxe.ExpectColumnDistinctValuesToContainSet(column="symbol", value_set=symbols),
        ]
        out += [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in key]
        if len(key) == 1:
            out.append(gxe.ExpectColumnValuesToBeUnique(column=key[0]))
        else:
            out.append(gxe.ExpectCompoundColumnsToBeUnique(column_list=key))
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


def _outcome(mart: str, res: Any) -> ExpectationOutcome:
    cfg = res.expectation_config
    kwargs = {k: v for k, v in dict(cfg.kwargs).items() if k != "batch_id"}
    result = res.result or {}
    observed = result.get("observed_value")
    exc = res.exception_info or {}
    if exc.get("raised_exception"):
        details = f"error: {exc.get('exception_message')}"
    elif "unexpected_count" in result:
        n = result.get("unexpected_count") or 0
        total = result.get("element_count")
        sample = result.get("partial_unexpected_list") or []
        details = f"{n} unexpected of {total} rows" + (f", e.g. {_short(sample[:5], 200)}" if n else "")
    elif "missing_count" in result:
        missing = sorted(str(v) for v in result.get("partial_missing_list") or [])
        details = f"missing: {', '.join(missing)}" if result["missing_count"] else "all present"
        observed = {"missing_count": result["missing_count"], "missing": missing}
    elif observed is not None:
        details = f"observed {_short(observed, 200)}"
    else:
        details = "ok" if res.success else "failed"
    return ExpectationOutcome(
        mart=mart,
        expectation_type=cfg.type,
        column=kwargs.get("column") or (",".join(kwargs["column_list"]) if "column_list" in kwargs else None)
        or (f"{kwargs['column_A']},{kwargs['column_B']}" if "column_A" in kwargs else None),
        kwargs=json.loads(json.dumps(kwargs, default=str)),
        success=bool(res.success),
        observed_value=None if observed is None else _short(observed, 1000),
        details=details,
    )


def run_gate(settings: Settings, now: dt.datetime | None = None) -> GateOutcome:
    """Validate every audited mart; record the run; never touches `marts`."""
    now = now or dt.datetime.now(dt.UTC)
    expected = expected_latest_trade_date(
        now, today=settings.today, lag_days=settings.freshness_lag_days,
        close_delay_minutes=settings.market_close_delay_minutes,
    )
    gate_run_id = uuid.uuid4()
    outcome = GateOutcome(gate_run_id=gate_run_id, success=False, expected_latest_date=expected)
    with db.connect(settings, autocommit=True) as conn:
        db.ensure_ops_tables(conn)
        conn.execute(
            "insert into ops.gate_runs (gate_run_id, started_at, audit_schema) values (%s, now(), %s)",
            (gate_run_id, settings.audit_schema),
        )
        published = {
            m: db.row_count(conn, settings.marts_schema, m)
            for m in MARTS
            if db.table_exists(conn, settings.marts_schema, m)
        }
        present = [m for m in MARTS if db.table_exists(conn, settings.audit_schema, m)]
        outcome.missing_marts = [m for m in MARTS if m not in present]
        fingerprint = db.fingerprint(conn, settings.audit_schema, MARTS)

    for mart in outcome.missing_marts:
        outcome.results.append(ExpectationOutcome(
            mart=mart, expectation_type="expect_table_to_exist", column=None,
            kwargs={"table": f"{settings.audit_schema}.{mart}"}, success=False, observed_value=None,
            details=f"{settings.audit_schema}.{mart} does not exist: run `dbt build` first",
        ))

    if present:
        import great_expectations as gx
        from great_expectations.checkpoint import UpdateDataDocsAction

        settings.data_docs_dir.mkdir(parents=True, exist_ok=True)
        context = _context(settings.data_docs_dir)
        source = context.data_sources.add_postgres(name="warehouse", connection_string=settings.sqlalchemy_url())
        spec = suites_spec(settings, expected, published)
        definitions = []
        for mart in present:
            asset = source.add_table_asset(name=mart, table_name=mart, schema_name=settings.audit_schema)
            batch = asset.add_batch_definition_whole_table(name=f"{mart}_all")
            suite = context.suites.add(gx.ExpectationSuite(name=f"{mart}_suite", expectations=spec[mart]))
            definitions.append(
                context.validation_definitions.add(gx.ValidationDefinition(name=mart, data=batch, suite=suite))
            )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name="datapipe_gate",
                validation_definitions=definitions,
                actions=[UpdateDataDocsAction(name="data_docs", site_names=["datapipe"])],
                result_format={"result_format": "SUMMARY", "partial_unexpected_count": 5},
            )
        )
        result = checkpoint.run(run_id=None)
        for validation in result.run_results.values():
            mart = validation.suite_name.removesuffix("_suite")
            outcome.results.extend(_outcome(mart, r) for r in validation.results)
        index = settings.data_docs_dir / "index.html"
        outcome.data_docs_path = index if index.exists() else settings.data_docs_dir

    outcome.success = bool(outcome.results) and all(r.success for r in outcome.results)
    with db.connect(settings) as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "insert into ops.gate_results (gate_run_id, mart, expectation_type, column_name, kwargs, success,"
                " observed_value, details) values (%s, %s, %s, %s, %s::jsonb, %s, %s, %s)",
                [
                    (gate_run_id, r.mart, r.expectation_type, r.column, json.dumps(r.kwargs), r.success,
                     r.observed_value, r.details)
                    for r in outcome.results
                ],
            )
        conn.execute(
            "update ops.gate_runs set finished_at = now(), success = %s, expectations_total = %s,"
            " expectations_failed = %s, data_docs_path = %s, audit_fingerprint = %s::jsonb where gate_run_id = %s",
            (outcome.success, len(outcome.results), len(outcome.failures),
             str(outcome.data_docs_path) if outcome.data_docs_path else None, json.dumps(fingerprint), gate_run_id),
        )
    return outcome
