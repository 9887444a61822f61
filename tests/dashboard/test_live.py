"""Live prices on the dashboard (issue 20, item 4), AppTest: during the session the market page, the
symbol page and the portfolio show the live price and its change next to the last close, labelled with
the bar time, the delay and "not audited"; the symbol page draws today's intraday line; outside the
session nothing live is shown; in a session without live quotes the page says why; before the
daily DAG's first publish the market page shows the live prices without a change."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
import seed
from datapipe_dashboard.settings import Settings

LABEL = "11:45 ET, delayed 15 min, not audited"


def no_errors(at) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def live_rows(live) -> dict[str, tuple[float, float, float]]:
    rows = live.rows("select symbol, price_usd::float8, last_close_usd::float8, change_pct::float8"
                     " from marts.fct_live_quotes order by symbol")
    return {r[0]: r[1:] for r in rows}


def captions(at) -> list[str]:
    return [c.value for c in at.caption]


def test_settings_read_the_refresh_period() -> None:
    assert Settings.from_env({}).live_refresh_seconds == 60
    assert Settings.from_env({"DASHBOARD_LIVE_REFRESH_SECONDS": "15"}).live_refresh_seconds == 15


def test_market_page_lists_live_prices_next_to_the_last_close(make_app, live) -> None:
    at = make_app("market", settings=live.settings)
    no_errors(at)
    assert "Live prices" in [h.value for h in at.subheader]
    table = at.dataframe[0].value
    expected = live_rows(live)
    assert list(table["symbol"]) == sorted(expected)
    for row in table.to_dict("records"):
        price, close, pct = expected[row["symbol"]]
        assert (row["price_usd"], row["last_close_usd"], row["change_pct"]) == pytest.approx((price, close, pct))
        assert row["change_usd"] == pytest.approx(price - close)
        assert row["label"] == LABEL
    assert f"Live: {LABEL} · refreshes every 2 s" in captions(at)


def test_symbol_page_shows_the_live_price_and_todays_line(make_app, live) -> None:
    at = make_app("symbol", settings=live.settings, query={"symbol": "IBM"})
    no_errors(at)
    price, close, pct = live_rows(live)["IBM"]
    metric = next(m for m in at.metric if m.label == "Live price")
    assert metric.value == f"{price:,.2f}"
    assert metric.delta == f"{price - close:+,.2f} ({pct:+.2f} %)"
    assert LABEL in captions(at)
    # the intraday line (a Vega-Lite chart) beside the daily chart
    assert len(at.get("vega_lite_chart")) == 2
    bars = live.rows("select count(*) from marts.fct_intraday_bars where symbol = 'IBM'")[0][0]
    assert bars == 28  # 09:30 .. 11:45 ET, every 5 minutes


def test_portfolio_values_the_holdings_at_live_prices(make_app, live) -> None:
    at = make_app("portfolio", settings=live.settings)
    no_errors(at)
    metrics = {m.label: m for m in at.metric}
    holdings = at.dataframe  # the live table of the holdings
    quoted = next(d.value for d in holdings if "price_usd" in d.value.columns)
    value = float((quoted["shares"] * quoted["price_usd"]).sum())
    close_value = float((quoted["shares"] * quoted["last_close_usd"]).sum())
    assert metrics["Live value"].value == f"{value:,.2f}"
    assert metrics["Live value"].delta == f"{value - close_value:+,.2f} since the last close"
    assert metrics["Value at the last close"].value == f"{close_value:,.2f}"
    assert set(quoted["label"]) == {LABEL}


@pytest.mark.parametrize("now", [
    datetime(2026, 11, 27, 18, 30, tzinfo=UTC),  # 13:30 ET: after the early close
    datetime(2026, 11, 26, 17, 0, tzinfo=UTC),  # Thanksgiving, noon: no session
    datetime(2026, 11, 27, 14, 0, tzinfo=UTC),  # 09:00 ET: before the open
])
def test_nothing_live_outside_the_session(make_app, live, now) -> None:
    settings = replace(live.settings, now_override=now)
    for page, query in (("market", None), ("symbol", {"symbol": "IBM"}), ("portfolio", None)):
        at = make_app(page, settings=settings, query=query)
        no_errors(at)
        assert "Live prices" not in [h.value for h in at.subheader]
        assert not {"Live price", "Live value"} & {m.label for m in at.metric}
        assert not [c for c in captions(at) if "not audited" in c or "live prices" in c.lower()]


def test_a_session_without_live_quotes_says_why(make_app, dataset) -> None:
    # the hand-made seed has no live tables: the quotes DAG never published (a free key)
    settings = replace(dataset.settings, now_override=seed.LIVE_NOW)
    at = make_app("market", settings=settings)
    no_errors(at)
    assert any("off for free Alpha Vantage keys" in c for c in captions(at))


def test_before_the_first_daily_publish_the_market_page_shows_live_prices_without_a_change(
        make_app, live_before_daily) -> None:
    at = make_app("market", settings=live_before_daily.settings)
    no_errors(at)
    # the daily marts are not there yet: the page says so, and still lists the live prices
    assert any("No published data yet" in i.value for i in at.info)
    assert "Live prices" in [h.value for h in at.subheader]
    table = at.dataframe[0].value
    prices = dict(live_before_daily.rows("select symbol, price_usd::float8 from marts.fct_live_quotes"))
    assert list(table["symbol"]) == sorted(prices)
    assert list(table["price_usd"]) == pytest.approx([prices[s] for s in sorted(prices)])
    assert table[["change_usd", "change_pct", "last_close_usd"]].isna().all().all()
    assert set(table["label"]) == {f"{LABEL}, no published close yet"}
    assert f"Live: {LABEL} · refreshes every 2 s" in captions(at)
