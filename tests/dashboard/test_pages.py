"""AppTest of every page on the known dataset (sandbox data through the real pipeline): no exception,
the expected symbols, numbers that match the marts (read back independently with the admin role).
What the pipeline cannot produce on demand (stale data, failures of every kind, a used-up quota)
runs on the hand-made seed."""

from __future__ import annotations

import base64
import json
import math
from dataclasses import replace
from datetime import date, datetime, timedelta

import numpy as np
import pytest
import seed


def decode(values):
    """Plotly JSON arrays may be typed-array dicts ({"dtype", "bdata"})."""
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()
    return values


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
    # The sparkline is the last 92 calendar days of closes from fct_daily_prices.
    ibm = published.rows("select close::float8 from marts.fct_daily_prices where symbol = 'IBM' "
                         "and trade_date > %s order by trade_date", (published.last_day - timedelta(days=92),))
    assert len(ibm) > 55
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
         "1 trading day behind"),
        ("2026-12-02T22:00:00+00:00", ":red-badge[:material/warning: Data as of 2026-11-25]", "4 trading days behind"),
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
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    by_name = {t.get("name"): t for t in fig["data"]}
    assert {"IBM", "SMA 50", "SMA 200", "Volume", "RSI 14", "MACD", "Signal", "MACD hist"} <= set(by_name)
    assert "SMA 20" not in by_name and "BB upper" not in by_name
    assert decode(by_name["IBM"]["close"]) == pytest.approx([b[1] for b in bars])
    rsi_lines = sorted(s["y0"] for s in fig["layout"]["shapes"])
    assert rsi_lines == [30, 70]
    sma200 = published.rows("select sma_200::float8 from marts.fct_technical_indicators where symbol = 'IBM' "
                            "and trade_date between %s and %s order by trade_date", (last - timedelta(days=365), last))
    got = decode(by_name["SMA 200"]["y"])
    want = [r[0] for r in sma200]
    assert len(got) == len(want) == len(bars)
    for g, w in zip(got, want, strict=True):
        assert (w is None and (g is None or math.isnan(g))) or math.isclose(g, w)


def test_symbol_detail_overlays_and_date_range(make_app, published) -> None:
    at = make_app("symbol", settings=published.settings, query={"symbol": "MSFT"})
    start, end = published.last_day - timedelta(days=60), published.last_day - timedelta(days=30)
    at.pills[0].set_value(["EMA 12", "Bollinger bands"])
    at.date_input[0].set_value((start, end)).run()
    no_errors(at)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = {t.get("name") for t in fig["data"]}
    assert {"EMA 12", "BB upper", "BB lower", "BB middle"} <= names
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
    charts = at.get("plotly_chart")
    assert len(charts) == 2  # value over time + allocation
    series = json.loads(charts[0].proto.spec)["data"][0]
    y = decode(series["y"])
    assert y[-1] == pytest.approx(value)  # the last point of "value over time" is today's market value


def test_portfolio_csv_upload_with_bad_rows(make_app, published) -> None:
    at = make_app("portfolio", settings=published.settings)
    csv = b"symbol,shares,cost_basis\nMSFT,4,1200\nZZZZ,1,10\nIBM,-5,100\nXOM,x,1\n"
    at.file_uploader[0].upload("mine.csv", csv, "text/csv")
    at.run()
    assert not at.exception
    warning = at.warning[0].value
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
    assert "CSV line 1: header must be symbol,shares,cost_basis; got ticker;qty" in at.warning[0].value
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


def test_quota_exhausted_is_flagged(make_app, dataset) -> None:
    at = make_app("quality", settings=replace(dataset.settings, daily_quota=10))
    assert "daily API quota is used up" in at.error[0].value
