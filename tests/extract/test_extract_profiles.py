"""Symbols without a company overview are first-class (issue 14, item 3): OVERVIEW's `{}` is permanent
after one retry, an ETF gets its ETF_PROFILE instead, and `--missing` asks only for what is missing.
The real extractor against the sandbox, on a real PostgreSQL."""

from __future__ import annotations

from collections import Counter

from extract_testlib import query_json, requests_seen, run_extract, symbol_rows


def asked(base_url: str) -> Counter[tuple[str, str]]:
    return Counter((r["function"], r["symbol"]) for r in requests_seen(base_url))


def test_an_etf_next_to_a_stock_gets_its_etf_profile_and_no_symbol_fails(warehouse, sandbox_server):
    # SPY is an ETF for the sandbox as for Alpha Vantage: OVERVIEW answers {}; DLST has no profile at all
    sandbox = sandbox_server("--fault", "empty?symbols=DLST&functions=OVERVIEW,ETF_PROFILE")
    result = run_extract(warehouse, sandbox.base_url, "companies", "--symbols", "PSTK,SPY,DLST")
    assert result.returncode == 0, result.stderr
    requests = asked(sandbox.base_url)
    # {} is retried once, then taken as the answer (not five requests: a fifth of a free day's quota)
    assert requests[("OVERVIEW", "SPY")] == 2 and requests[("OVERVIEW", "DLST")] == 2
    assert requests[("ETF_PROFILE", "SPY")] == 1 and requests[("ETF_PROFILE", "DLST")] == 2
    assert requests[("OVERVIEW", "PSTK")] == 1 and ("ETF_PROFILE", "PSTK") not in requests
    rows = symbol_rows(warehouse, result.run_id)
    assert {s: r["status"] for s, r in rows.items()} == {"PSTK": "succeeded", "SPY": "succeeded", "DLST": "no_data"}
    assert "no company overview" in rows["SPY"]["reason"] and "ETF_PROFILE" in rows["SPY"]["reason"]
    assert rows["DLST"]["reason_code"] == "no_data"
    functions = dict(tuple(x.split("=")) for x in warehouse.psql(
        f"select symbol || '=' || function from ops.extract_run_symbols where run_id = '{result.run_id}'").split())
    assert functions == {"PSTK": "OVERVIEW", "SPY": "ETF_PROFILE", "DLST": "ETF_PROFILE"}
    # what the API answered is stored: the empty overviews (so they are not asked again every run) and
    # SPY's profile
    stored = query_json(warehouse, "select symbol, payload = '{}'::jsonb as empty from raw.company_overview"
                                   f" where run_id = '{result.run_id}' order by symbol")
    assert stored == [{"symbol": "DLST", "empty": True}, {"symbol": "PSTK", "empty": False},
                      {"symbol": "SPY", "empty": True}]
    etf = query_json(warehouse, f"select symbol, payload ? 'net_assets' as profile from raw.etf_profile"
                                f" where run_id = '{result.run_id}' order by symbol")
    assert etf == [{"symbol": "DLST", "profile": False}, {"symbol": "SPY", "profile": True}]
    assert warehouse.psql(f"select status from ops.extract_runs where run_id = '{result.run_id}'") == "succeeded"


def test_missing_asks_only_the_symbols_with_no_answer_yet(warehouse, sandbox_server):
    sandbox = sandbox_server()
    assert run_extract(warehouse, sandbox.base_url, "companies", "--symbols", "MSA,QQQ").returncode == 0
    before = len(requests_seen(sandbox.base_url))
    # MSA has an overview, QQQ (an ETF) answered {}: both are known; MSB is new
    result = run_extract(warehouse, sandbox.base_url, "companies", "--missing", "--symbols", "MSA,QQQ,MSB")
    assert result.returncode == 0, result.stderr
    assert [(r["function"], r["symbol"]) for r in requests_seen(sandbox.base_url)[before:]] == [("OVERVIEW", "MSB")]
    assert set(symbol_rows(warehouse, result.run_id)) == {"MSB"}
    # nothing missing: no request and no run recorded
    runs = warehouse.psql("select count(*) from ops.extract_runs")
    again = run_extract(warehouse, sandbox.base_url, "companies", "--missing", "--symbols", "MSA,QQQ,MSB")
    assert again.returncode == 0 and "nothing missing" in again.stderr
    assert warehouse.psql("select count(*) from ops.extract_runs") == runs
    assert len(requests_seen(sandbox.base_url)) == before + 1


def test_a_failed_overview_is_missing_again_next_run(warehouse, sandbox_server):
    sandbox = sandbox_server("--fault", "http500?symbols=MFA&functions=OVERVIEW")
    first = run_extract(warehouse, sandbox.base_url, "companies", "--symbols", "MFA")
    assert first.returncode == 1 and symbol_rows(warehouse, first.run_id)["MFA"]["reason_code"] == "http_error"
    healed = sandbox_server()
    second = run_extract(warehouse, healed.base_url, "companies", "--missing", "--symbols", "MFA")
    assert second.returncode == 0 and symbol_rows(warehouse, second.run_id)["MFA"]["status"] == "succeeded"
