"""The marts cover the tracked symbols, and a symbol without a company overview is first-class (issue
14, item 3): the real chain (sandbox API -> extract -> dbt -> gate -> publish) on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chain import AS_OF, Chain, StepResult, start_sandbox
from conftest import Sandbox, TestWarehouse

pytestmark = pytest.mark.slow

BASE = ("AAPL", "IBM")
PUBLISH = ("dbt_build", "quality_gate", "publish_marts")


def api(sandbox: Sandbox) -> dict[str, str]:
    return {"ALPHAVANTAGE_BASE_URL": sandbox.base_url, "ALPHAVANTAGE_API_KEY": "sandbox",
            "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "0"}


def run(chain: Chain, symbols: tuple[str, ...], sandbox: Sandbox | None, *steps: str) -> dict[str, StepResult]:
    out = {}
    for name in steps:
        extra = api(sandbox) if sandbox and name.startswith("extract") else {}
        out[name] = chain.step(name, DATAPIPE_SYMBOLS=",".join(symbols), **extra)
    return out


def checked(results: dict[str, StepResult]) -> None:
    for result in results.values():
        result.check()


def mart_symbols(chain: Chain, mart: str) -> list[str]:
    return [str(r[0]) for r in chain.query(f"select distinct symbol from marts.{mart} order by 1")]


@pytest.fixture(scope="module")
def published(warehouse: TestWarehouse, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    """AAPL and IBM published as of AS_OF."""
    warehouse.psql("create database symbols_base owner pipeline", admin=True)
    chain = Chain(warehouse, "symbols_base", tmp_path_factory.mktemp("symbols"))
    sandbox = start_sandbox("--as-of", AS_OF.isoformat())
    try:
        checked(run(chain, BASE, sandbox, "extract_prices", "extract_companies", *PUBLISH))
    finally:
        sandbox.process.terminate()
        sandbox.process.wait(timeout=10)
    yield chain


def test_an_etf_next_to_a_stock_is_published_with_its_profile(published: Chain, tmp_path: Path,
                                                             sandbox_server) -> None:
    chain = published.clone(tmp_path)
    symbols = (*BASE, "SPY")
    checked(run(chain, symbols, sandbox_server("--as-of", AS_OF.isoformat()),
                "extract_prices", "extract_companies", *PUBLISH))
    companies = {r[0]: r[1:] for r in chain.query(
        "select symbol, name, asset_type, profile_source, sector from marts.dim_company order by symbol")}
    assert companies["SPY"][1:3] == ("ETF", "ETF profile") and companies["SPY"][0]
    assert companies["IBM"][2] == "company overview" and companies["IBM"][0] == "International Business Machines"
    assert mart_symbols(chain, "fct_daily_prices") == mart_symbols(chain, "mart_market_overview") == sorted(symbols)


def test_a_symbol_added_mid_week_is_published_the_same_day(published: Chain, tmp_path: Path, sandbox_server) -> None:
    """Mid-week the DAG runs `extract_missing_companies` (only symbols with no overview answer yet), not the
    weekly refresh: a new symbol is published at once; one without any profile too, marked so."""
    chain = published.clone(tmp_path)
    symbols = (*BASE, "MSFT", "NPRF")
    sandbox = sandbox_server("--as-of", AS_OF.isoformat(),
                             "--fault", "empty?symbols=NPRF&functions=OVERVIEW,ETF_PROFILE")
    results = run(chain, symbols, sandbox, "extract_prices", "extract_missing_companies", *PUBLISH)
    checked(results)
    asked = chain.query("select distinct r.symbol from ops.extract_run_symbols as r join ops.extract_runs as x"
                        " using (run_id) where x.command = 'companies' and x.started_at > (select published_at"
                        " from ops.publish_history where publish_id = 1) order by 1")
    assert asked == [("MSFT",), ("NPRF",)], "only the symbols with no overview answer were asked"
    companies = {r[0]: r[1:] for r in chain.query("select symbol, name, profile_source from marts.dim_company")}
    assert companies["MSFT"] == ("Microsoft Corporation", "company overview")
    assert companies["NPRF"] == ("NPRF", "no company profile")
    assert mart_symbols(chain, "fct_technical_indicators") == sorted(symbols)


def test_a_symbol_removed_from_the_list_leaves_the_marts_and_keeps_its_raw_history(published: Chain, tmp_path: Path,
                                                                                    sandbox_server) -> None:
    chain = published.clone(tmp_path)
    baseline = chain.marts_state()
    raw_before = chain.scalar("select count(*) from raw.time_series_daily where symbol = 'AAPL'")
    sandbox = sandbox_server("--as-of", AS_OF.isoformat())
    checked(run(chain, ("IBM",), sandbox, "extract_prices", *PUBLISH))
    for mart in ("dim_company", "fct_daily_prices", "fct_technical_indicators", "mart_market_overview"):
        assert mart_symbols(chain, mart) == ["IBM"], mart
        assert mart_symbols(chain, mart).count("AAPL") == 0
    assert chain.scalar("select count(*) from raw.time_series_daily where symbol = 'AAPL'") == raw_before
    # tracked again: its whole history is back, exactly as before
    checked(run(chain, BASE, sandbox, "extract_prices", *PUBLISH))
    assert {m: v[1:] for m, v in chain.marts_state().items()} == {m: v[1:] for m, v in baseline.items()}


def test_prices_of_an_untracked_symbol_without_an_overview_break_nothing(published: Chain, tmp_path: Path) -> None:
    """The real case: prices once extracted for symbols whose overview never came."""
    chain = published.clone(tmp_path)
    for ghost in ("GHA", "GHB"):
        chain.query(f"""insert into raw.time_series_daily (run_id, symbol, function, output_size, request_url,
                            requested_at, received_at, payload_sha256, payload)
                        select run_id, '{ghost}', function, output_size, request_url, requested_at, now(),
                               md5(random()::text), payload
                        from raw.time_series_daily where symbol = 'IBM' order by payload_id desc limit 1
                        returning 1""")
    checked(run(chain, BASE, None, *PUBLISH))
    assert mart_symbols(chain, "fct_daily_prices") == sorted(BASE)


def test_the_gate_refuses_fact_symbols_missing_from_dim_company(published: Chain, tmp_path: Path) -> None:
    chain = published.clone(tmp_path)
    marts, publishes = chain.marts_state(), chain.publish_count()
    chain.query("delete from audit.dim_company where symbol = 'AAPL'")
    gate = chain.step("quality_gate", DATAPIPE_SYMBOLS="IBM")  # every configured symbol is there
    assert gate.returncode == 1
    assert "every fact symbol is in dim_company" in gate.output and '["AAPL"]' in gate.output
    assert chain.step("publish_marts", DATAPIPE_SYMBOLS="IBM").returncode == 1
    assert chain.marts_state() == marts and chain.publish_count() == publishes
