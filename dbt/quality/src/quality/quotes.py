"""`quality publish-quotes`: build, test and publish the live quotes' models (issue 20), the light path.

One command, so market_quotes_intraday needs one transform pod: `dbt build --select tag:quotes` (the
quotes' staging views, `fct_live_quotes` and `fct_intraday_bars` in the `quotes_staging` schema, and
their tests), then, only when every model and test passed, each table is copied into the marts schema
and swapped in one transaction (readers see the old or the new one, never none), readable by the
dashboard role. That works before the daily DAG's first publish too: the prices then carry no change
(models/quotes/fct_live_quotes.sql). The daily marts and their write-audit-publish (gate,
ops.publish_runs) are untouched: these tables are labelled live and not audited on the dashboard.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Mapping, Sequence

from psycopg import sql

from quality.db import connect
from quality.grants import grant_marts_tables
from quality.settings import Settings

log = logging.getLogger("quality.quotes")

SELECTOR = "tag:quotes"
BUILD_SCHEMA = "quotes_staging"  # dbt_project.yml: models/quotes +schema
TABLES = ("fct_live_quotes", "fct_intraday_bars")


def dbt_build(env: Mapping[str, str], extra: Sequence[str] = ()) -> int:
    """`dbt build --select tag:quotes` in the working directory (the dbt project), streaming its output."""
    command = ["dbt", "build", "--select", SELECTOR, *extra]
    log.warning("running %s", " ".join(command))
    return subprocess.run(command, env=dict(env), check=False).returncode


def publish(settings: Settings) -> dict[str, int]:
    """Copy every quotes table into the marts schema and swap it in; returns the rows per table."""
    marts = sql.Identifier(settings.marts_schema)
    counts: dict[str, int] = {}
    with connect(settings) as conn, conn.transaction():
        conn.execute(sql.SQL("create schema if not exists {}").format(marts))
        for table in TABLES:
            new, final = sql.Identifier(f"{table}__new"), sql.Identifier(table)
            conn.execute(sql.SQL("drop table if exists {}.{}").format(marts, new))
            conn.execute(sql.SQL("create table {}.{} as select * from {}.{}").format(
                marts, new, sql.Identifier(BUILD_SCHEMA), final))
            conn.execute(sql.SQL("drop table if exists {}.{}").format(marts, final))
            conn.execute(sql.SQL("alter table {}.{} rename to {}").format(marts, new, final))
            row = conn.execute(sql.SQL("select count(*) from {}.{}").format(marts, final)).fetchone()
            counts[table] = int(row[0]) if row else 0
        # readable by the dashboard even before the daily DAG's first publish and its grant-reader
        grant_marts_tables(conn, settings, TABLES)
    return counts


def publish_quotes(settings: Settings, env: Mapping[str, str] | None = None) -> int:
    """Build and test the quotes models; publish them only when all passed. The exit code of dbt, or 0."""
    code = dbt_build(os.environ if env is None else env)
    if code != 0:
        log.error("dbt build --select %s failed (exit %d): the quotes are not published; the daily marts are"
                  " untouched", SELECTOR, code)
        return code
    counts = publish(settings)
    print("published " + ", ".join(f"{settings.marts_schema}.{t} ({n} rows)" for t, n in counts.items()))
    return 0
