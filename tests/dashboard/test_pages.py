"""AppTest of every page on the known dataset (sandbox data through the real pipeline): no exception,
the expected symbols, numbers that match the marts (read back independently with the admin role).
What the pipeline cannot produce on demand (stale data, failures of every kind, a used-up quota)
runs on the hand-made seed."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import datetime, timedelta

import pandas as pd
import pytest
from dashboard_helpers import unescaped
from datapipe_dashboard import queries
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df


def vega_charts(at) -> list[tuple[dict, dict[str, pd.DataFrame]]]:
    """Every Vega-Lite chart of the page: its spec and its datasets (Arrow, decoded)."""
    out = []
    for chart in at.get("vega_lite_chart"):
        frames = {d.name: convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets}
        out.append((json.loads(chart.proto.spec), frames))
    return out


def frame_with(frames: dict[str, pd.DataFrame], column: str) -> pd.DataFrame:
    found = [f for f in frames.values() if column in f.columns]
    columns = [list(f.columns) for f in frames.values()]
    assert len(found) == 1, f"expected one dataset with column {column!r}, got {columns}"
    return found[0]


def spec_values(spec, key: str) -> list:
    """Every value of `key` anywhere in a (nested) Vega-Lite spec."""
    if isinstance(spec, dict):
        return [v for k, v in spec.items() if k == key] + [x for v in spec.values() for x in spec_values(v, key)]
    if isinstance(spec, list):
        return [x for v in spec for x in spec_values(v, key)]
    return []


def series(frames: dict[str, pd.DataFrame], name: str) -> list[float]:
    lines = frame_with(frames, "series")
    return list(lines[lines["series"] == name].sort_values("trade_date")["value"])


def no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_market_overview_matches_the_mart(make_app, published) -> None:
    at = make_app("market", settings=published.settings)
    no_errors(at)
    assert at.title[0].value == "Market overview"
    badge = f":green-badge[:material/check_circle: Data as of {published.last_day:%Y-%m-%d}]"
    assert badge in [m.value for m in at.markdown]
    table = at.dataframe[0].value
    mart = published.rows("select symbol, close::float8, day_change_pct::float8, low_52w::float8, high_52w::float8,"
                          " rsi_14::float8 from marts.mart_market_overview order by symbol")
    assert list(table["symbol"]) == [r[0] for r in mart] == sorted(published.symbols)
    for row, (symbol, close, pct, low, high, rsi) in zip(table.to_dict("records"), mart, strict=True):
        assert row["close"] == pytest.approx(close), symbol
        assert row["day_change_pct"] == pytest.approx(pct), symbol
        assert row["rsi_14"] == pytest.approx(rsi), symbol
        assert row["range_52w"] == pytest.approx((close - low) / (high - low) * 100), symbol
        assert row["detail"] == f"symbol?symbol={symbol}"
    # The sparkline is the last SPARKLINE_DAYS calendar days of closes from fct_daily_prices.
    since = published.last_day - timedelta(days=queries.SPARKLINE_DAYS)
    ibm = published.rows("select close::float8 from marts.fct_daily_prices where symbol = 'IBM' "
                         "and trade_date > %s order by trade_date", (since,))
    assert len(ibm) > 35
    assert table.set_index("symbol").loc["IBM", "sparkline"] == pytest.approx([r[0] for r in ibm])
    (up, down), = published.rows("select count(*) filter (where day_change_pct > 0), "
                                 "count(*) filter (where day_change_pct < 0) from marts.mart_market_overview")
    assert metrics(at)["Advancers"] == str(up) and metrics(at)["Decliners"] == str(down)
    assert metrics(at)["Symbols"] == str(len(published.symbols))


def test_market_filter(make_app, published) -> None:
    at = make_app("market", settings=published.settings)
    at.text_input[0].input("xom").run()
    assert list(at.dataframe[0].value["symbol"]) == ["XOM"]


@pytest.mark.parametrize(
    ("now", "badge", "note"),
    [
        ("2026-11-27T19:00:00+00:00", ":orange-badge[:material/schedule: Data as of 2026-11-25]",
         "1 session behind"),
        ("2026-12-02T22:00:00+00:00", ":red-badge[:material/warning: Data as of 2026-11-25]", "4 sessions behind"),
    ],
)
def test_stale_data_turns_the_badge_amber_then_red(make_app, dataset, now, badge, note) -> None:
    at = make_app("market", settings=replace(dataset.settings, now_override=datetime.fromisoformat(now)))
    no_errors(at)
    assert badge in [m.value for m in at.markdown]
    assert any(note in c.value for c in at.caption)


def test_symbol_detail_chart_and_facts(make_app, published) -> None:
    at = make_app("symbol", settings=published.settings, query={"symbol": "IBM"})
    no_errors(at)
    last = published.last_day
    assert at.selectbox[0].value == "IBM"
    assert at.date_input[0].value == (last - timedelta(days=365), last)
    assert at.pills[0].value == ["SMA 50", "SMA 200"]
    bars = published.rows("select trade_date, close::float8 from marts.fct_daily_prices where symbol = 'IBM' "
                          "and trade_date between %s and %s order by trade_date", (last - timedelta(days=365), last))
    m = metrics(at)
    assert m["Bars in range"] == str(len(bars))
    assert m["Last close"] == f"{bars[-1][1]:,.2f}"
    (sector, industry), = published.rows("select sector, industry from marts.dim_company where symbol = 'IBM'")
    assert (m["Sector"], m["Industry"]) == (sector or "-", industry or "-")
    (spec, frames), = vega_charts(at)
    prices = frame_with(frames, "close").sort_values("trade_date")
    assert set(frame_with(frames, "series")["series"]) == {"SMA 50", "SMA 200"}
    fields = set(spec_values(spec, "field"))
    assert {"open", "high", "low", "close", "volume", "rsi_14", "macd", "macd_signal", "macd_hist"} <= fields
    assert list(prices["close"]) == pytest.approx([b[1] for b in bars])
    assert sorted(spec_values(spec, "datum")) == [30, 70]  # the RSI lines
    sma200 = published.rows("select sma_200::float8 from marts.fct_technical_indicators where symbol = 'IBM' "
                            "and trade_date between %s and %s order by trade_date", (last - timedelta(days=365), last))
    got = series(frames, "SMA 200")
    want = [r[0] for r in sma200]
    assert len(got) == len(want) == len(bars)
    for g, w in zip(got, want, strict=True):
        assert (w is None and (g is None or math.isnan(g))) or math.isclose(g, w)


def test_a_history_loaded_from_compact_answers_says_free_key(make_app, dataset, published) -> None:
    """Issue 14: a symbol never loaded with its full history (a free key) says since when it has one."""
    at = make_app("symbol", settings=dataset.settings, query={"symbol": "IBM"})  # the seed: compact loads only
    no_errors(at)
    (first,), = dataset.rows("select min(trade_date) from marts.fct_daily_prices where symbol = 'IBM'")
    assert any(f"history since {first:%Y-%m-%d} (free key)" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    # the pipeline's symbols were first loaded with outputsize=full (a premium key): no such note
    at = make_app("symbol", settings=published.settings, query={"symbol": "IBM"})
    no_errors(at)
    assert not any("free key" in c.value for c in at.caption), [c.value for c in at.caption]


def test_symbol_detail_overlays_and_date_range(make_app, published) -> None:
    at = make_app("symbol", settings=published.settings, query={"symbol": "MSFT"})
    start, end = published.last_day - timedelta(days=60), published.last_day - timedelta(days=30)
    at.pills[0].set_value(["EMA 12", "Bollinger bands"])
    at.date_input[0].set_value((start, end)).run()
    no_errors(at)
    (_, frames), = vega_charts(at)
    names = set(frame_with(frames, "series")["series"])
    assert names == {"EMA 12", "BB upper", "BB lower", "BB middle"}
    assert "SMA 50" not in names
    (count,), = published.rows("select count(*) from marts.fct_daily_prices where symbol = 'MSFT' "
                               "and trade_date between %s and %s", (start, end))
    assert count > 15
    assert metrics(at)["Bars in range"] == str(count)


def test_portfolio_from_the_example_table(make_app, published) -> None:
    at = make_app("portfolio", settings=published.settings)
    no_errors(at)
    first3 = published.rows("select symbol, close::float8 from marts.mart_market_overview order by symbol limit 3")
    held = dict(zip([s for s, _ in first3], (10, 25, 5), strict=True))  # the example rows
    closes = dict(first3)
    cost = sum(round(closes[s] * n * 0.9, 2) for s, n in held.items())
    value = sum(closes[s] * n for s, n in held.items())
    m = metrics(at)
    assert m["Market value"] == f"{value:,.2f}"
    assert m["Cost basis"] == f"{cost:,.2f}"
    assert m["P/L"] == f"{value - cost:+,.2f}"
    positions = at.dataframe[-1].value.set_index("symbol")
    assert sorted(positions.index) == sorted(held)
    for symbol, shares in held.items():
        assert positions.loc[symbol, "market_value"] == pytest.approx(closes[symbol] * shares)
    charts = vega_charts(at)
    assert len(charts) == 2  # value over time + allocation
    curve = frame_with(charts[0][1], "value").sort_values("date")
    assert curve["value"].iloc[-1] == pytest.approx(value)  # the last point of "value over time" is today's value
    allocation = frame_with(charts[1][1], "market_value").set_index("symbol")
    for symbol, shares in held.items():
        assert allocation.loc[symbol, "market_value"] == pytest.approx(closes[symbol] * shares)


def test_portfolio_csv_upload_with_bad_rows(make_app, published) -> None:
    at = make_app("portfolio", settings=published.settings)
    csv = b"symbol,shares,cost_basis\nMSFT,4,1200\nZZZZ,1,10\nIBM,-5,100\nXOM,x,1\n"
    at.file_uploader[0].upload("mine.csv", csv, "text/csv")
    at.run()
    assert not at.exception
    warning = unescaped(at.warning[0].value)
    assert "3 row(s) of CSV mine.csv ignored" in warning
    assert "CSV line 3: unknown symbol 'ZZZZ'" in warning
    assert "CSV line 4: shares -5 is negative" in warning
    assert "CSV line 5: shares 'x' is not a number" in warning
    (msft,), = published.rows("select close::float8 from marts.mart_market_overview where symbol = 'MSFT'")
    assert metrics(at)["Market value"] == f"{4 * msft:,.2f}"  # the valid row is still computed
    assert list(at.dataframe[-1].value["symbol"]) == ["MSFT"]


def test_portfolio_malformed_csv(make_app, published) -> None:
    at = make_app("portfolio", settings=published.settings)
    at.file_uploader[0].upload("bad.csv", b"ticker;qty\nIBM;3\n", "text/csv")
    at.run()
    assert not at.exception
    assert "CSV line 1: header must be symbol,shares,cost_basis; got ticker;qty" in unescaped(at.warning[0].value)
    assert "No valid holdings to value yet." in [i.value for i in at.info]


def frames_by_columns(at) -> dict[tuple[str, str], object]:
    return {tuple(d.value.columns)[:2]: d.value for d in at.dataframe}


def test_data_quality_page_on_the_published_pipeline(make_app, published) -> None:
    at = make_app("quality", settings=published.settings)
    no_errors(at)
    day = published.settings.now().date()
    (requests,), = published.rows("select coalesce(sum(requests), 0) from ops.extract_runs "
                                  "where (started_at at time zone 'UTC')::date = %s", (day,))
    assert requests >= 2 * len(published.symbols)  # prices + companies, one request per symbol at least
    assert metrics(at)["Requests today"] == f"{requests} / 25"
    frames = frames_by_columns(at)
    runs = frames[("started_at", "command")]
    assert sorted(runs["command"]) == sorted(r[0] for r in published.rows("select command from ops.extract_runs"))
    assert set(runs["status"]) == {"succeeded"}
    (gate_id, total), = published.rows("select gate_run_id, expectations_total from ops.gate_runs "
                                       "order by started_at desc limit 1")
    gate = frames[("outcome", "mart")]
    expected = published.rows("select mart, expectation_type from ops.gate_results where gate_run_id = %s "
                              "order by mart, expectation_type", (gate_id,))
    assert len(gate) == len(expected) == total > 0
    assert sorted(zip(gate["mart"], gate["expectation_type"], strict=True)) == sorted(expected)
    assert set(gate["outcome"]) == {"pass"}
    publish = frames[("published_at", "status")]
    assert list(publish["status"]) == [r[0] for r in published.rows(
        "select status from ops.publish_history order by published_at desc limit 20")]
    fresh = frames[("symbol", "last_trade_date")]
    assert sorted(fresh["symbol"]) == sorted(published.symbols)
    assert set(fresh["trading_days_behind"]) == {0}
    assert set(fresh["last_extract_status"]) <= {"succeeded", "unchanged"}
    assert "No failed requests in the last 7 days." in [s.value for s in at.success]
    # one pipeline run, read from ops.pipeline_runs (the view an external monitor reads)
    pipeline = frames[("run_started_at", "outcome")]
    (bars,), = published.rows("select sum(bars) from ops.extract_runs")
    assert list(pipeline["outcome"]) == ["published"]
    assert list(pipeline["rows_loaded"]) == [bars] and bars > 0
    assert list(pipeline["checks_total"]) == [total] and list(pipeline["checks_failed"]) == [0]
    assert list(pipeline["freshness_lag_sessions"]) == [0]  # the gate passed: nothing missing
    assert all(pipeline[c].iloc[0] >= 0 for c in ("extract_s", "transform_s", "gate_s", "publish_s", "total_s"))


def test_data_quality_lists_the_symbols_without_a_company_profile(make_app, dataset, published) -> None:
    """Issue 14: an ETF (profile from ETF_PROFILE) or a symbol with no profile at all is published, and
    listed on the data-quality page."""
    at = make_app("quality")  # the seed: XOM has no company profile
    no_errors(at)
    listed = frames_by_columns(at)[("symbol", "name")]
    expected = dataset.rows("select symbol, profile_source from marts.dim_company"
                            " where profile_source <> 'company overview' order by symbol")
    assert [tuple(r) for r in listed[["symbol", "profile_source"]].itertuples(index=False)] == expected
    assert expected == [("XOM", "no company profile")]
    at = make_app("quality", settings=published.settings)  # the pipeline's stocks all have an overview
    no_errors(at)
    assert "Every published symbol has a company overview." in [s.value for s in at.success]


def test_data_quality_failures_by_reason(make_app, dataset) -> None:
    at = make_app("quality")
    no_errors(at)
    (requests,), = dataset.rows("select sum(requests) from ops.extract_runs where started_at >= '2026-11-26' "
                                "and started_at < '2026-11-27'")
    assert metrics(at)["Requests today"] == f"{requests} / 25"
    reasons = frames_by_columns(at)[("reason_code", "today")].set_index("reason_code")
    assert reasons.loc["throttled", "today"] == 1 and reasons.loc["invalid_symbol", "today"] == 1
    assert reasons.loc["daily_quota", "last_7_days"] == 5 and reasons.loc["daily_quota", "today"] == 0
    fresh = frames_by_columns(at)[("symbol", "last_trade_date")].set_index("symbol")
    assert fresh.loc["JPM", "last_reason_code"] == "throttled"
    assert set(fresh.loc[["IBM", "MSFT"], "last_extract_status"]) == {"succeeded"}
    gate = frames_by_columns(at)[("outcome", "mart")]
    assert list(gate["outcome"]) == ["pass"] * 4
    assert any("passed]" in m.value and "4/4 expectations met" in m.value for m in at.markdown)
    # the seeded warehouse has no ops.pipeline_runs view: the section says so, the page still renders
    assert "Nothing recorded yet" in " ".join(i.value for i in at.info)


def test_quota_exhausted_is_flagged(make_app, dataset) -> None:
    at = make_app("quality", settings=replace(dataset.settings, daily_quota=10))
    assert "daily API quota is used up" in at.error[0].value
