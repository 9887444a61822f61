"""A short table of the published marts: rows, symbols, latest trading day, last publish; and the
latest run of ops.pipeline_runs in one line."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from quality import db
from quality.settings import MARTS, Settings


def summary_rows(settings: Settings) -> list[tuple[str, int, int, str]]:
    rows = []
    with db.connect(settings, autocommit=True) as conn:
        for mart in MARTS:
            if not db.table_exists(conn, settings.marts_schema, mart):
                rows.append((mart, 0, 0, "not published"))
                continue
            has_date = conn.execute(
                "select 1 from information_schema.columns where table_schema = %s and table_name = %s"
                " and column_name = 'trade_date'", (settings.marts_schema, mart),
            ).fetchone()
            latest = sql.SQL("max(trade_date)::text") if has_date else sql.SQL("'-'")
            row = conn.execute(
                sql.SQL("select count(*), count(distinct symbol), {} from {}").format(
                    latest, sql.Identifier(settings.marts_schema, mart))
            ).fetchone()
            assert row is not None
            rows.append((mart, int(row[0]), int(row[1]), str(row[2] or "-")))
    return rows


def last_publish(settings: Settings) -> str:
    with db.connect(settings, autocommit=True) as conn:
        if not db.table_exists(conn, "ops", "publish_history"):
            return "never"
        row = conn.execute(
            "select published_at, status from ops.publish_history where status = 'published'"
            " order by publish_id desc limit 1"
        ).fetchone()
    return "never" if row is None else f"{row[0]:%Y-%m-%d %H:%M:%S %Z}"


def format_table(rows: list[tuple[str, int, int, str]]) -> str:
    header = ("mart", "rows", "symbols", "latest trade date")
    body = [(m, f"{n:,}", str(s), d) for m, n, s, d in rows]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def format_run(run: dict[str, Any]) -> str:
    """One line for a row of ops.pipeline_runs."""
    def value(key: str, unit: str = "") -> str:
        return "-" if run.get(key) is None else f"{run[key]}{unit}"

    return (f"{run['run_started_at']} {run['outcome']}; steps extract {value('extract_s', 's')},"
            f" dbt {value('transform_s', 's')}, gate {value('gate_s', 's')}, publish {value('publish_s', 's')};"
            f" rows loaded {value('rows_loaded')}, checks failed {value('checks_failed')}"
            f"/{value('checks_total')}, freshness lag {value('freshness_lag_sessions')} session(s)")
