"""The dashboard's role reads marts and the shown ops tables, and can write nothing."""

from __future__ import annotations

import psycopg
import pytest
import seed
from datapipe_dashboard.db import Connector
from datapipe_dashboard.settings import Settings
from psycopg import errors

WRITES = [
    "insert into marts.fct_daily_prices (symbol, trade_date, close) values ('EVIL', '2026-01-02', 1)",
    "update marts.mart_market_overview set close = 0",
    "delete from marts.dim_company",
    "truncate marts.fct_technical_indicators",
    "insert into ops.publish_history (status) values ('forged')",
    "delete from ops.extract_runs",
    "create table marts.evil (x int)",
    "create table ops.evil (x int)",
    "create table public.evil (x int)",
    "create schema evil",
    "drop table marts.dim_company",
    "alter table marts.dim_company add column evil int",
]


@pytest.fixture(scope="module")
def private_schemas(dataset):
    """raw / staging / audit exist in the real warehouse; the reader must not see them."""
    with dataset.admin() as conn:
        for schema in ("raw", "staging", "audit"):
            conn.execute(f"create schema if not exists {schema}")
            conn.execute(f"create table if not exists {schema}.secret (x int)")
    return ("raw", "staging", "audit")


def reader(dataset) -> psycopg.Connection:
    return psycopg.connect(seed.conninfo(dataset.warehouse.reader_env), autocommit=True)


@pytest.mark.parametrize("sql", WRITES)
def test_reader_role_cannot_write(dataset, sql) -> None:
    with reader(dataset) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(sql)
    (count,), = dataset.rows("select count(*) from marts.dim_company")
    assert count == len(seed.COMPANIES)


def test_reader_role_reads_marts_and_ops_only(dataset, private_schemas) -> None:
    with reader(dataset) as conn:
        assert conn.execute("select count(*) from marts.mart_market_overview").fetchone()[0] == len(seed.COMPANIES)
        assert conn.execute("select count(*) from ops.gate_results").fetchone()[0] > 0
        for schema in private_schemas:
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute(f"select * from {schema}.secret")


def test_dashboard_sessions_are_read_only_even_for_a_writer(dataset) -> None:
    """Belt and braces: the connector opens read-only transactions whatever the role."""
    admin = Connector(Settings(libpq=dict(dataset.warehouse.admin_env)).conninfo)
    with pytest.raises(errors.ReadOnlySqlTransaction):
        admin.query("delete from marts.dim_company")
    admin.close()
    (count,), = dataset.rows("select count(*) from marts.dim_company")
    assert count == len(seed.COMPANIES)


def test_connector_sends_values_as_parameters(dataset) -> None:
    """A hostile symbol is a value, not SQL."""
    conn = Connector(dataset.settings.conninfo)
    frame = conn.query("select symbol from marts.dim_company where symbol = %s", ("IBM' or '1'='1",))
    assert frame.empty
    assert list(conn.query("select symbol from marts.dim_company where symbol = %s", ("IBM",))["symbol"]) == ["IBM"]
    conn.close()
