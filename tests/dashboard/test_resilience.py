"""Warehouse down -> friendly state -> recovery; empty warehouse -> guided empty state; a query held
up by publish -> "publishing, retry in a moment" -> recovery."""

from __future__ import annotations

import time
from dataclasses import replace

import psycopg
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


# -- a query held up by publish (issue 15) -----------------------------------------------------------

PUBLISH_WAITING = """
select count(*) from pg_locks l join pg_stat_activity a on a.pid = l.pid
where a.datname = 'republish' and a.application_name = 'datapipe-quality'
  and l.locktype = 'relation' and l.mode = 'AccessExclusiveLock' and not l.granted
"""


def test_a_query_held_up_by_publish_says_publishing(make_app, republish) -> None:
    """A long reader holds a published mart, so `quality publish` queues for its exclusive lock
    (configured here to wait far longer than it should); the dashboard's query queues behind it.
    The page must say "publishing, retry in a moment", not "warehouse unreachable", and show the
    data by itself once publish is done."""
    warehouse = republish.dataset.warehouse
    blocker = psycopg.connect(seed.conninfo(warehouse.env, "republish"))  # a transaction, held open
    blocker.execute("select count(*) from marts.mart_market_overview").fetchone()
    publish = republish.publish(QUALITY_SWAP_TIMEOUT_S="120", QUALITY_LOCK_TIMEOUT_S="300")
    try:
        deadline = time.monotonic() + 120
        with republish.dataset.admin("republish") as admin:
            while admin.execute(PUBLISH_WAITING).fetchone()[0] == 0:  # type: ignore[index]
                assert publish.poll() is None, publish.stdout.read() if publish.stdout else ""
                assert time.monotonic() < deadline, "publish never queued for its exclusive lock"
                time.sleep(0.1)
        at = make_app("market", settings=republish.settings)
        assert not at.exception
        shown = texts(at) + "\n".join(str(w.value) for w in at.warning)
        assert "publishing, retry in a moment" in shown.lower(), shown
        assert "not reachable" not in shown
        assert "Retrying in" in shown
        assert not at.dataframe
    finally:
        blocker.rollback()
        blocker.close()
    output, _ = publish.communicate(timeout=300)
    assert publish.returncode == 0, output
    for _ in range(20):  # what the automatic retry does
        import streamlit as st

        st.cache_data.clear()
        at.run()
        if at.dataframe:
            break
        time.sleep(0.5)
    assert not at.exception and not at.warning and not at.error
    assert len(at.dataframe[0].value) == len(republish.dataset.symbols)
