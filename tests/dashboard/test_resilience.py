"""Warehouse down -> friendly state -> recovery; empty warehouse -> guided empty state."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
import seed
from dashboard_helpers import start_warehouse, stop_warehouse
from datapipe_dashboard.settings import Settings

PAGES = ("market", "symbol", "portfolio", "quality")


def texts(at) -> str:
    parts = [e.value for e in (*at.error, *at.info, *at.markdown, *at.caption)]
    return "\n".join(str(p) for p in parts)


@pytest.mark.parametrize("page", PAGES)
def test_unreachable_warehouse_is_a_friendly_state(make_app, dataset, page) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    libpq = {**dataset.settings.libpq, "PGPORT": str(port)}
    at = make_app(page, settings=replace(dataset.settings, libpq=libpq))
    assert not at.exception
    assert "The warehouse is not reachable" in at.error[0].value
    assert f"127.0.0.1:{port}" in at.error[0].value
    assert "Retrying in" in texts(at)
    assert dataset.settings.libpq["PGPASSWORD"] not in texts(at)
    assert not at.dataframe


def test_warehouse_stops_then_comes_back(make_app, dataset) -> None:
    server = dataset.warehouse.server
    at = make_app("market")
    assert at.dataframe[0].value["symbol"].iloc[0] == "AAPL"
    stop_warehouse(server)
    try:
        import streamlit as st

        st.cache_data.clear()  # as after the TTL: the next query really goes to the warehouse
        at.run()
        assert not at.exception
        assert "The warehouse is not reachable" in at.error[0].value
        assert not at.dataframe
    finally:
        start_warehouse(server)
    # What the automatic retry does: rerun until the warehouse answers (a loaded machine may need a moment).
    for _ in range(10):
        at.run()
        if not at.error:
            break
        time.sleep(1)
    assert not at.exception and not at.error, [c.value for c in at.caption]
    assert len(at.dataframe[0].value) == len(seed.COMPANIES)


@pytest.fixture(scope="module")
def empty_databases(dataset) -> dict[str, str]:
    """`nothing`: no marts schema at all; `unpublished`: the tables exist and are empty."""
    with dataset.admin() as conn:
        for name in ("nothing", "unpublished"):
            conn.execute(f"drop database if exists {name}")
            conn.execute(f"create database {name}")
            conn.execute(f"grant connect on database {name} to dashboard")
    with dataset.admin("unpublished") as conn:
        seed.create_tables(conn)
        seed.grant_reader(conn)
    return {"nothing": "nothing", "unpublished": "unpublished"}


@pytest.mark.parametrize("database", ["nothing", "unpublished"])
@pytest.mark.parametrize("page", PAGES)
def test_empty_warehouse_guides_the_user(make_app, dataset, empty_databases, database, page) -> None:
    settings: Settings = replace(dataset.settings, libpq={**dataset.settings.libpq, "PGDATABASE": database})
    at = make_app(page, settings=settings)
    assert not at.exception and not at.error, [c.value for c in at.caption]
    assert "No published data yet" in at.info[0].value
    assert "make pipeline" in texts(at) and "make demo" in texts(at)
