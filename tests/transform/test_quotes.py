"""The live quotes' light path (issue 20, item 3) on the real chain: the daily marts published as of a
Friday, then during Monday's session the sandbox's clock-driven intraday bars -> `extract quotes` ->
raw.quotes -> `quality publish-quotes` (dbt build --select tag:quotes, then its own swap into marts).

What it shows: the quotes mart holds, per symbol, the newest bar's price, its bar time, its delay and
the change against the last published daily close; the intraday mart today's bars; a quotes build never
enters the daily publish's dbt verdict (ops.dbt_results), and a failing quotes test publishes nothing
and blocks nothing daily; on a fresh deployment the quotes are published before the daily DAG ever
published, without a change (no published close to compare against yet)."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from chain import AS_OF, NEXT_TRADING_DAY, SYMBOLS, Chain, start_sandbox
from conftest import Sandbox, TestWarehouse
from datapipe_common.calendar import NEW_YORK
from quality.dbt_results import read_verdict

pytestmark = pytest.mark.slow

NOW = dt.datetime.combine(NEXT_TRADING_DAY, dt.time(14, 37), tzinfo=NEW_YORK)  # Monday, mid-session
DELAYED_BAR = dt.datetime.combine(NEXT_TRADING_DAY, dt.time(14, 20), tzinfo=NEW_YORK)  # 14:22 seen; 5-min bars
LIVE_TABLES = ("fct_live_quotes", "fct_intraday_bars")


def api(sandbox: Sandbox) -> dict[str, str]:
    return {"ALPHAVANTAGE_BASE_URL": sandbox.base_url, "ALPHAVANTAGE_API_KEY": "sandbox",
            "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0", "ALPHAVANTAGE_ENTITLEMENT": "delayed",
            "EXTRACT_INTRADAY_INTERVAL": "5min"}


def set_clock(sandbox: Sandbox, now: dt.datetime) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{sandbox.port}/_sandbox/clock", method="POST",
                                     data=json.dumps({"now": now.strftime("%Y-%m-%dT%H:%M")}).encode())
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def dbt_bookkeeping(chain: Chain) -> tuple[object, ...]:
    """ops.dbt_results and ops.dbt_run_nodes as the daily publish reads them."""
    return tuple(chain.query("select (select count(*) from ops.dbt_results), (select count(*) from ops.dbt_run_nodes),"
                             " (select run_id from ops.dbt_results order by result_id desc limit 1)")[0])


def live_state(chain: Chain) -> dict[str, tuple[object, ...]]:
    return {t: tuple(chain.query(f"select 'marts.{t}'::regclass::oid, count(*), md5(coalesce(string_agg("
                                 f"x::text, '|' order by x::text), '')) from marts.{t} as x")[0])
            for t in LIVE_TABLES}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """One sandbox for the module, its clock pinned mid-session on Monday: its daily history ends on
    Friday (the latest completed session), its intraday bars and quotes are Monday's so far."""
    server = start_sandbox("--now", NOW.strftime("%Y-%m-%dT%H:%M"))
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture(scope="module")
def live(warehouse: TestWarehouse, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """Friday's daily marts published, then one quotes poll published (delayed entitlement)."""
    warehouse.psql("create database quotes_base owner pipeline", admin=True)
    warehouse.psql("grant connect on database quotes_base to dashboard", admin=True)
    chain = Chain(warehouse, "quotes_base", tmp_path_factory.mktemp("quotes"))
    chain.extract(sandbox)
    for step in ("dbt_build", "quality_gate", "publish_marts", "grant_reader"):
        chain.step(step).check()
    chain.outputs["daily_bookkeeping"] = json.dumps(dbt_bookkeeping(chain), default=str)
    chain.outputs["extract_quotes"] = chain.step("extract_quotes", **api(sandbox)).check().output
    chain.outputs["publish_quotes"] = chain.step("publish_quotes").check().output
    yield chain


@pytest.fixture(scope="module")
def before_daily(warehouse: TestWarehouse, sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """A fresh deployment with the quotes DAG on: its first poll, before the daily DAG ever published."""
    warehouse.psql("create database quotes_first owner pipeline", admin=True)
    warehouse.psql("grant connect on database quotes_first to dashboard", admin=True)
    chain = Chain(warehouse, "quotes_first", tmp_path_factory.mktemp("quotes_first"))
    chain.step("extract_quotes", **api(sandbox)).check()
    return chain


def test_live_prices_are_published_before_the_first_daily_publish(before_daily: Chain) -> None:
    assert before_daily.scalar("select to_regclass('marts.fct_daily_prices')") is None  # never published
    result = before_daily.step("publish_quotes").check()
    assert "published marts.fct_live_quotes" in result.output
    rows = before_daily.query("select symbol, price_usd, bar_at, delay, last_close_date, last_close_usd, change_usd,"
                              " change_pct from marts.fct_live_quotes order by 1")
    assert [r[0] for r in rows] == sorted(SYMBOLS)
    for symbol, price, bar_at, delay, *against_close in rows:
        assert (bar_at, delay) == (DELAYED_BAR, "delayed"), symbol
        assert price > 0  # type: ignore[operator]
        assert against_close == [None, None, None, None], symbol  # no published close yet: no change
    # the dashboard's role reads them although grant-reader (the daily DAG's last step) never ran
    with before_daily.connect(reader=True) as conn:
        assert conn.execute("select count(*) from marts.fct_live_quotes").fetchone() == (len(SYMBOLS),)
        assert conn.execute("select count(distinct symbol) from marts.fct_intraday_bars").fetchone() == (len(SYMBOLS),)


def test_the_quotes_mart_is_the_newest_bar_with_its_delay_and_the_change_since_the_last_close(live: Chain) -> None:
    rows = live.query("select symbol, price_usd, bar_at, delay, delay_minutes, is_end_of_day, source,"
                      " last_close_date, last_close_usd, change_usd, change_pct from marts.fct_live_quotes order by 1")
    assert [r[0] for r in rows] == sorted(SYMBOLS)
    for symbol, price, bar_at, delay, delay_min, eod, source, close_day, close, change, change_pct in rows:
        # the newest bar of the symbol's latest intraday answer, as the API wrote it
        newest_key, newest_bar = live.query(
            "select k, payload -> 'Time Series (5min)' -> k from raw.time_series_intraday,"
            " jsonb_object_keys(payload -> 'Time Series (5min)') as k where symbol = %s"
            " order by received_at desc, k desc limit 1", (symbol,))[0]
        assert newest_key == DELAYED_BAR.strftime("%Y-%m-%d %H:%M:%S")
        assert bar_at == DELAYED_BAR
        assert price == Decimal(newest_bar["4. close"])  # type: ignore[index]
        assert (delay, delay_min, eod, source) == ("delayed", 15, False, "intraday")
        # the change is against the last published daily close, before the quote's session
        published = live.scalar("select close from marts.fct_daily_prices where symbol = %s and trade_date = %s",
                                (symbol, AS_OF))
        assert (close_day, close) == (AS_OF, published)
        assert change == price - published  # type: ignore[operator]
        assert abs(change_pct - 100 * (price / published - 1)) <= Decimal("0.0001")  # type: ignore[operator]


def test_the_intraday_mart_holds_todays_bars_up_to_the_delayed_minute(live: Chain) -> None:
    per_symbol = live.query("select symbol, count(*), min(bar_at), max(bar_at), min(session_date), max(session_date)"
                            " from marts.fct_intraday_bars group by 1 order by 1")
    open_at = dt.datetime.combine(NEXT_TRADING_DAY, dt.time(9, 30), tzinfo=NEW_YORK)
    bars = int((DELAYED_BAR - open_at) / dt.timedelta(minutes=5)) + 1
    assert per_symbol == [(s, bars, open_at, DELAYED_BAR, NEXT_TRADING_DAY, NEXT_TRADING_DAY) for s in sorted(SYMBOLS)]
    # the dashboard reads them as its role
    with live.connect(reader=True) as conn:
        assert conn.execute("select count(*) from marts.fct_live_quotes").fetchone() == (len(SYMBOLS),)


def test_a_quotes_build_never_enters_the_daily_publish_verdict(live: Chain) -> None:
    assert json.dumps(dbt_bookkeeping(live), default=str) == live.outputs["daily_bookkeeping"]
    with live.connect() as conn:
        verdict = read_verdict(conn, None)
    assert verdict.passed, verdict.describe()
    assert "published marts.fct_live_quotes" in live.outputs["publish_quotes"]


def test_a_later_poll_moves_the_price_and_a_repeated_poll_adds_nothing(live: Chain, sandbox: Sandbox,
                                                                       tmp_path: Path) -> None:
    chain = live.clone(tmp_path)
    before = dict(chain.query("select symbol, price_usd from marts.fct_live_quotes"))
    later = NOW + dt.timedelta(minutes=15)
    set_clock(sandbox, later)
    try:
        chain.step("extract_quotes", **api(sandbox)).check()
        chain.step("extract_quotes", **api(sandbox)).check()  # same minute: no new bar, nothing stored
        chain.step("publish_quotes").check()
    finally:
        set_clock(sandbox, NOW)
    assert chain.query("select symbol, count(*) from raw.quotes group by 1 order by 1") == [
        (s, 2) for s in sorted(SYMBOLS)]
    rows = chain.query("select symbol, bar_at, price_usd from marts.fct_live_quotes order by 1")
    assert {r[1] for r in rows} == {DELAYED_BAR + dt.timedelta(minutes=15)}
    assert any(price != before[symbol] for symbol, _, price in rows)


def test_a_failing_quotes_test_publishes_nothing_and_blocks_nothing_daily(live: Chain, tmp_path: Path) -> None:
    chain = live.clone(tmp_path)
    published, bookkeeping = live_state(chain), dbt_bookkeeping(chain)
    bad = {"1. open": "-1.0000", "2. high": "-1.0000", "3. low": "-1.0000", "4. close": "-1.0000", "5. volume": "10"}
    chain.query("insert into raw.quotes (symbol, bar_at, source, delay, fetched_at, run_id, quote)"
                " values ('IBM', %s, 'intraday', 'delayed', now(), %s, %s::jsonb)",
                (DELAYED_BAR + dt.timedelta(minutes=5), uuid.uuid4(), json.dumps(bad)))
    result = chain.step("publish_quotes")
    assert result.returncode != 0
    assert "price_usd" in result.output and "not published" in result.output
    assert live_state(chain) == published  # the live tables the dashboard reads: untouched
    assert dbt_bookkeeping(chain) == bookkeeping
    with chain.connect() as conn:
        verdict = read_verdict(conn, None)
    assert verdict.passed, verdict.describe()
