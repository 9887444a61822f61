"""Free and premium keys, and no silent hole in a published history (issue 14, items 1 and 2): the
real chain (sandbox API serving either tier -> extract -> dbt -> gate -> publish) on a real PostgreSQL.

The baseline is two symbols' full histories published as of BEFORE; then the pipeline does not run
for 150 NYSE sessions (more than a compact answer's 100)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
import reference
from chain import Chain, StepResult, start_sandbox
from conftest import Sandbox, TestWarehouse
from datapipe_common.calendar import nyse

pytestmark = pytest.mark.slow

SYMBOLS = ("AAPL", "IBM")
BEFORE = dt.date(2024, 12, 2)  # a Monday: the last run before the outage


def sessions_after(day: dt.date, n: int) -> dt.date:
    for _ in range(n):
        day = nyse().next_session(day)
    return day


AFTER = sessions_after(BEFORE, 150)


def on(day: dt.date) -> dict[str, str]:
    """The clocks of a run on `day`'s evening: the extractor's planner and the gate's freshness."""
    return {"EXTRACT_NOW": f"{day.isoformat()}T18:00", "QUALITY_TODAY": nyse().next_session(day).isoformat(),
            "DATAPIPE_SYMBOLS": ",".join(SYMBOLS)}


def api(sandbox: Sandbox) -> dict[str, str]:
    return {"ALPHAVANTAGE_BASE_URL": sandbox.base_url, "ALPHAVANTAGE_API_KEY": "sandbox",
            "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0"}


def run(chain: Chain, day: dt.date, sandbox: Sandbox | None, *steps: str, **env: str) -> dict[str, StepResult]:
    """Steps of the pipeline in order, as `make pipeline` runs them, each with its result (not checked)."""
    out = {}
    for name in steps:
        extra = api(sandbox) if sandbox and name.startswith("extract") else {}
        out[name] = chain.step(name, **on(day), **extra, **env)
    return out


PUBLISH = ("dbt_build", "quality_gate", "publish_marts")


def published_days(chain: Chain, symbol: str) -> list[dt.date]:
    return [r[0] for r in chain.query("select trade_date from marts.fct_daily_prices where symbol = %s"
                                      " order by trade_date", (symbol,))]  # type: ignore[misc]


@pytest.fixture(scope="module")
def before_outage(warehouse: TestWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """SYMBOLS' full histories published as of BEFORE (a premium key)."""
    workdir = tmp_path_factory.mktemp("history")
    warehouse.psql("create database history_base owner pipeline", admin=True)
    chain = Chain(warehouse, "history_base", workdir)
    sandbox = start_sandbox("--as-of", BEFORE.isoformat())
    try:
        for result in run(chain, BEFORE, sandbox, "extract_prices", "extract_companies", *PUBLISH).values():
            result.check()
    finally:
        sandbox.process.terminate()
        sandbox.process.wait(timeout=10)
    yield chain


def test_a_free_key_publishes_a_history_from_compact_answers(warehouse: TestWarehouse, tmp_path: Path,
                                                             sandbox_server) -> None:
    warehouse.psql("create database history_free owner pipeline", admin=True)
    chain = Chain(warehouse, "history_free", tmp_path)
    sandbox = sandbox_server("--tier", "free", "--as-of", AFTER.isoformat())
    for result in run(chain, AFTER, sandbox, "extract_prices", "extract_companies", *PUBLISH).values():
        result.check()
    requests = chain.query("select symbol, output_size, requests, status from ops.extract_run_symbols"
                           " where function = 'TIME_SERIES_DAILY' order by symbol")
    # at most one refused `full` per symbol (two workers may both ask before one learns), then compact
    assert [(r[1], r[3]) for r in requests] == [("compact", "succeeded")] * len(SYMBOLS)
    assert all(r[2] in (1, 2) for r in requests), requests
    assert chain.scalar("select api_tier from ops.extract_runs where command = 'prices'") == "free"
    compact = nyse().sessions(BEFORE, AFTER)[-100:]
    for symbol in SYMBOLS:
        assert published_days(chain, symbol) == compact, symbol
        rows = chain.query("select close::float8, sma_20, sma_50, sma_200, rsi_14 from marts.fct_daily_prices"
                           " join marts.fct_technical_indicators using (symbol, trade_date) where symbol = %s"
                           " order by trade_date", (symbol,))
        # indicators that need more bars than the history has stay empty; the others start on their bar
        assert all(r[3] is None for r in rows), "sma_200 needs 200 bars"
        first = {name: next(i for i, r in enumerate(rows) if r[j] is not None) + 1
                 for j, name in ((1, "sma_20"), (2, "sma_50"), (4, "rsi_14"))}
        assert first == {"sma_20": 20, "sma_50": 50, "rsi_14": 15}
        assert reference.close_enough(rows[-1][2], reference.indicators([r[0] for r in rows])["sma_50"][-1])


def test_a_premium_key_after_a_long_outage_publishes_every_session(before_outage: Chain, tmp_path: Path,
                                                                   sandbox_server) -> None:
    chain = before_outage.clone(tmp_path)
    sandbox = sandbox_server("--as-of", AFTER.isoformat())
    for result in run(chain, AFTER, sandbox, "extract_prices", *PUBLISH).values():
        result.check()
    assert chain.query("select distinct output_size from ops.extract_run_symbols where function = "
                       "'TIME_SERIES_DAILY' and started_at > (select max(published_at) from ops.publish_history"
                       " where publish_id = 1)") == [("full",)]
    for symbol in SYMBOLS:
        days = published_days(chain, symbol)
        assert days[-1] == AFTER
        assert days[days.index(BEFORE):] == nyse().sessions(BEFORE, AFTER), f"{symbol}: sessions missing"


def test_a_free_key_after_a_long_outage_publishes_nothing_across_the_hole(before_outage: Chain, tmp_path: Path,
                                                                        sandbox_server) -> None:
    chain = before_outage.clone(tmp_path)
    marts, publishes = chain.marts_state(), chain.publish_count()
    sandbox = sandbox_server("--tier", "free", "--as-of", AFTER.isoformat())
    extracted = run(chain, AFTER, sandbox, "extract_prices")["extract_prices"]
    assert extracted.returncode == 1  # `make pipeline` stops here
    compact_first = nyse().sessions(BEFORE, AFTER)[-100]
    missing = f"{nyse().next_session(BEFORE)}..{nyse().previous_session(compact_first)} are missing"
    for symbol in SYMBOLS:
        assert f"{symbol:<6}  failed" in extracted.output and missing in extracted.output
    # an operator running the rest anyway: nothing across the hole reaches the marts
    rest = run(chain, AFTER, None, *PUBLISH)
    assert rest["quality_gate"].returncode == 1 and rest["publish_marts"].returncode == 1
    assert chain.marts_state() == marts and chain.publish_count() == publishes

    # the documented way out: accept the holes, load, rebuild with a full refresh
    for symbol in SYMBOLS:
        ok = chain.extract_cli("accept-gap", symbol)
        assert ok.returncode == 0 and f"{symbol}: accepted the gap of 50 sessions" in ok.output, ok.output
    run(chain, AFTER, sandbox, "extract_prices")["extract_prices"].check()
    # forgetting the full refresh: the continuity check names the hole, nothing is published
    forgot = run(chain, AFTER, None, *PUBLISH)
    forgot["dbt_build"].check()
    assert forgot["quality_gate"].returncode == 1
    assert "no NYSE session is missing inside a symbol's history" in forgot["quality_gate"].output
    assert f'["IBM", "{nyse().next_session(BEFORE)}", "{nyse().previous_session(compact_first)}", 50]' in \
        forgot["quality_gate"].output
    assert chain.marts_state() == marts and chain.publish_count() == publishes
    # with it: each history restarts after its hole, indicators computed afresh
    for result in run(chain, AFTER, None, *PUBLISH, DBT_FULL_REFRESH="1").values():
        result.check()
    for symbol in SYMBOLS:
        assert published_days(chain, symbol) == nyse().sessions(compact_first, AFTER), symbol
    first_sma50 = chain.scalar("select min(trade_date) from marts.fct_technical_indicators"
                               " where symbol = 'IBM' and sma_50 is not null")
    assert first_sma50 == nyse().sessions(compact_first, AFTER)[49]


def test_the_continuity_check_names_a_missing_range_whatever_caused_it(before_outage: Chain, tmp_path: Path) -> None:
    chain = before_outage.clone(tmp_path)
    marts, publishes = chain.marts_state(), chain.publish_count()
    gone = nyse().sessions(dt.date(2023, 3, 6), dt.date(2023, 3, 8))
    removal = "payload"
    for day in gone:
        removal = f"({removal} #- '{{Time Series (Daily),{day}}}')"
    chain.query(f"update raw.time_series_daily set payload = {removal} where symbol = 'IBM'")
    results = run(chain, BEFORE, None, *PUBLISH, DBT_FULL_REFRESH="1")
    results["dbt_build"].check()
    gate = results["quality_gate"]
    assert gate.returncode == 1
    assert "fct_daily_prices.no NYSE session is missing inside a symbol's history" in gate.output
    assert f'["IBM", "{gone[0]}", "{gone[-1]}", 3]' in gate.output
    assert results["publish_marts"].returncode == 1
    assert chain.marts_state() == marts and chain.publish_count() == publishes
