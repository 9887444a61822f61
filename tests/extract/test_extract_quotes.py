"""Live prices (issue 20): the real answer shapes of TIME_SERIES_INTRADAY, GLOBAL_QUOTE (and its empty and
delayed forms) and REALTIME_BULK_QUOTES; the sandbox's intraday bars, quotes and bulk quotes moving with
its clock for both key tiers, with its faults; `extract quotes` into raw.quotes, append-only and
deduplicated by symbol and bar time."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from typing import Any

import orjson
import pytest
from datapipe_common.calendar import NEW_YORK
from extract.errors import PermanentSymbolError, PremiumFeatureError, StopAllError, TransientError
from extract.protocol import BULK_QUOTES, GLOBAL_QUOTE, INTRADAY, interpret
from extract.quotes import choose_source, quote_rows
from extract.sandbox.server import SandboxConfig, SandboxState
from extract_testlib import admin_url, http, query_json, requests_seen, run_extract, set_faults, symbol_rows

KEY = "SECRETKEY42"

# -- the real API's shapes (Alpha Vantage's documentation examples, FACTS.md) ------------------------------

REAL_GLOBAL_QUOTE = {"Global Quote": {
    "01. symbol": "IBM", "02. open": "133.7600", "03. high": "134.0400", "04. low": "132.8600",
    "05. price": "133.2300", "06. volume": "4074161", "07. latest trading day": "2021-04-01",
    "08. previous close": "133.2600", "09. change": "-0.0300", "10. change percent": "-0.0225%"}}
REAL_INTRADAY = {
    "Meta Data": {"1. Information": "Intraday (5min) open, high, low, close prices and volume", "2. Symbol": "IBM",
                  "3. Last Refreshed": "2024-05-10 19:55:00", "4. Interval": "5min", "5. Output Size": "Compact",
                  "6. Time Zone": "US/Eastern"},
    "Time Series (5min)": {
        "2024-05-10 19:55:00": {"1. open": "167.2000", "2. high": "167.2000", "3. low": "167.1500",
                                "4. close": "167.1500", "5. volume": "40"},
        "2024-05-10 19:50:00": {"1. open": "167.1500", "2. high": "167.2000", "3. low": "167.1500",
                                "4. close": "167.2000", "5. volume": "12"},
    },
}
REAL_BULK = {"endpoint": "Realtime Bulk Quotes", "data": [
    {"symbol": "MSFT", "timestamp": "2024-05-10 15:59:59.000", "open": "412.4200", "high": "414.6200",
     "low": "411.0300", "close": "414.7400", "volume": "13402347", "previous_close": "414.7400",
     "change": "0.0000", "change_percent": "0.0000", "extended_hours_quote": "414.6000",
     "extended_hours_change": "-0.1400", "extended_hours_change_percent": "-0.0338"},
    {"symbol": "IBM", "timestamp": "2024-05-10 15:59:58.000", "open": "167.1300", "high": "168.0600",
     "low": "166.7600", "close": "167.1500", "volume": "2255425", "previous_close": "167.1500",
     "change": "0.0000", "change_percent": "0.0000", "extended_hours_quote": "167.2000",
     "extended_hours_change": "0.0500", "extended_hours_change_percent": "0.0299"},
]}


def parse(doc: Any, function: str, symbol: str = "IBM") -> Any:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return interpret(200, "application/json", raw, function=function, symbol=symbol, key=KEY)


def test_global_quote_real_shape_delayed_key_and_empty_form():
    parsed = parse(REAL_GLOBAL_QUOTE, GLOBAL_QUOTE)
    assert (parsed.bars, parsed.last_day) == (1, "2021-04-01")
    [row] = quote_rows(GLOBAL_QUOTE, parsed.body, "realtime")
    # no time of day: end of day, at the close of its trading day (2021-04-01 was a full session)
    assert (row.symbol, row.delay, row.source) == ("IBM", "end_of_day", "global_quote")
    assert row.bar_at == dt.datetime(2021, 4, 1, 16, 0, tzinfo=NEW_YORK)
    assert row.quote["05. price"] == "133.2300"
    delayed = {"Global Quote - DATA DELAYED BY 15 MINUTES": REAL_GLOBAL_QUOTE["Global Quote"]}
    assert parse(delayed, GLOBAL_QUOTE).bars == 1
    with pytest.raises(PermanentSymbolError, match="empty 'Global Quote'") as info:
        parse({"Global Quote": {}}, GLOBAL_QUOTE)
    assert info.value.reason_code == "invalid_symbol"


def test_global_quote_on_an_early_close_day_is_stamped_at_1300():
    doc = json.loads(json.dumps(REAL_GLOBAL_QUOTE))
    doc["Global Quote"]["07. latest trading day"] = "2025-11-28"  # the day after Thanksgiving
    [row] = quote_rows(GLOBAL_QUOTE, parse(doc, GLOBAL_QUOTE).body, "end_of_day")
    assert row.bar_at == dt.datetime(2025, 11, 28, 13, 0, tzinfo=NEW_YORK)


def test_intraday_real_shape_newest_bar_is_the_live_price():
    parsed = parse(REAL_INTRADAY, INTRADAY)
    assert (parsed.bars, parsed.last_refreshed, parsed.last_day) == (2, "2024-05-10 19:55:00", "2024-05-10")
    [row] = quote_rows(INTRADAY, parsed.body, "delayed")
    assert row.bar_at == dt.datetime(2024, 5, 10, 19, 55, tzinfo=NEW_YORK)
    assert (row.quote["4. close"], row.delay, row.source) == ("167.1500", "delayed", "intraday")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d["Time Series (5min)"].update({"2024-05-10 7:55": d["Time Series (5min)"]["2024-05-10 19:55:00"]}),
     "is not 'YYYY-MM-DD HH:MM:SS'"),
    (lambda d: d["Time Series (5min)"]["2024-05-10 19:55:00"].update({"2. high": "1.0"}), "OHLC inconsistent"),
    (lambda d: d["Meta Data"].update({"2. Symbol": "MSFT"}), "requested 'IBM'"),
    (lambda d: d.update({"Time Series (5min)": {}}), "is empty"),
])
def test_intraday_broken_answers_are_permanent_with_a_reason(mutate, message):
    doc = json.loads(json.dumps(REAL_INTRADAY))
    mutate(doc)
    with pytest.raises(PermanentSymbolError, match=message):
        parse(doc, INTRADAY)


def test_intraday_without_its_series_is_classified():
    with pytest.raises(TransientError, match="Time Series"):
        parse({"Meta Data": REAL_INTRADAY["Meta Data"]}, INTRADAY)
    with pytest.raises(PremiumFeatureError):
        parse({"Information": "Thank you for using Alpha Vantage! The entitlement=realtime parameter value is a"
                              " premium feature for the TIME_SERIES_INTRADAY endpoint."}, INTRADAY)


def test_bulk_quotes_real_shape_and_refusals():
    parsed = parse(REAL_BULK, BULK_QUOTES, "MSFT,IBM,NOPE")
    assert parsed.bars == 2  # NOPE left out: the caller records it as that symbol's failure
    rows = quote_rows(BULK_QUOTES, parsed.body, "realtime")
    assert [(r.symbol, r.bar_at.time()) for r in rows] == [("MSFT", dt.time(15, 59, 59)), ("IBM", dt.time(15, 59, 58))]
    with pytest.raises(PermanentSymbolError, match="was not requested"):
        parse(REAL_BULK, BULK_QUOTES, "IBM")
    with pytest.raises(PermanentSymbolError, match="no quote for any"):
        parse({"endpoint": "Realtime Bulk Quotes", "data": []}, BULK_QUOTES, "NOPE")
    bad = json.loads(json.dumps(REAL_BULK))
    bad["data"][1]["close"] = "n/a"
    with pytest.raises(PermanentSymbolError, match="IBM close"):
        parse(bad, BULK_QUOTES, "MSFT,IBM")
    with pytest.raises(StopAllError, match="premium endpoint"):
        parse({"Information": "Thank you for using Alpha Vantage! This is a premium endpoint."}, BULK_QUOTES, "IBM")


def test_the_source_follows_the_key():
    assert choose_source(None, "premium", True) == "global_quote"  # no entitlement: end of day
    assert choose_source("realtime", "free", True) == "global_quote"
    assert choose_source("delayed", None, False) == "intraday"
    assert choose_source("realtime", "premium", True) == "bulk"


# -- the sandbox: prices that move with its clock ----------------------------------------------------------


def state(now: str, tier: str = "premium") -> SandboxState:
    return SandboxState(SandboxConfig(now=dt.datetime.fromisoformat(now).replace(tzinfo=NEW_YORK), tier=tier))


def answer(sb: SandboxState, **params: str) -> Any:
    a = sb.answer_query(params)
    assert a.status == 200
    return orjson.loads(a.body)


def test_sandbox_quotes_move_with_the_clock_and_repeat_within_a_minute():
    sb = state("2026-11-24T14:37")
    first = answer(sb, function="GLOBAL_QUOTE", symbol="IBM", entitlement="realtime")["Global Quote"]
    assert answer(sb, function="GLOBAL_QUOTE", symbol="IBM", entitlement="realtime")["Global Quote"] == first
    sb.set_clock(dt.datetime(2026, 11, 24, 14, 38, tzinfo=NEW_YORK), running=False)
    later = answer(sb, function="GLOBAL_QUOTE", symbol="IBM", entitlement="realtime")["Global Quote"]
    assert later["05. price"] != first["05. price"] and later["02. open"] == first["02. open"]
    # the same (symbol, minute) from another sandbox process gives the same price
    assert answer(state("2026-11-24T14:38"), function="GLOBAL_QUOTE", symbol="IBM",
                  entitlement="realtime")["Global Quote"] == later
    # the intraday series' newest bar closes at the quote's price; delayed sees 15 minutes back
    series = answer(sb, function="TIME_SERIES_INTRADAY", symbol="IBM", interval="1min", entitlement="realtime")
    newest = max(series["Time Series (1min)"])
    assert newest == "2026-11-24 14:37:00"
    assert series["Time Series (1min)"][newest]["4. close"] == later["05. price"]
    delayed = answer(sb, function="TIME_SERIES_INTRADAY", symbol="IBM", interval="5min", entitlement="delayed")
    assert delayed["Meta Data"]["3. Last Refreshed"] == "2026-11-24 14:20:00"
    bulk = answer(sb, function="REALTIME_BULK_QUOTES", symbol="IBM,AAPL", entitlement="realtime")["data"]
    assert next((q["symbol"], q["close"], q["timestamp"]) for q in bulk) == ("IBM", later["05. price"],
                                                                            "2026-11-24 14:38:00.000")


def test_sandbox_free_keys_get_end_of_day_and_premium_notices():
    free = state("2026-11-24T14:37", tier="free")
    eod = answer(free, function="GLOBAL_QUOTE", symbol="IBM")["Global Quote"]
    assert eod["07. latest trading day"] == "2026-11-23"  # end of day: the last completed session
    intraday = answer(free, function="TIME_SERIES_INTRADAY", symbol="IBM", interval="5min")
    assert intraday["Meta Data"]["3. Last Refreshed"] == "2026-11-23 15:55:00"
    assert "premium feature" in answer(free, function="GLOBAL_QUOTE", symbol="IBM", entitlement="realtime")[
        "Information"]
    assert "premium endpoint" in answer(free, function="REALTIME_BULK_QUOTES", symbol="IBM")["Information"]
    # a premium key without an entitlement gets end of day too
    assert answer(state("2026-11-24T14:37"), function="GLOBAL_QUOTE", symbol="IBM")["Global Quote"] == eod


def test_sandbox_respects_early_closes_holidays_and_unknown_symbols():
    # 2026-11-27, the day after Thanksgiving, closes at 13:00: at 14:00 the session is over
    after = state("2026-11-27T14:00")
    series = answer(after, function="TIME_SERIES_INTRADAY", symbol="IBM", interval="5min", entitlement="realtime")
    assert series["Meta Data"]["3. Last Refreshed"] == "2026-11-27 12:55:00"
    # Thanksgiving itself: the previous session's close
    holiday = state("2026-11-26T12:00")
    quote = answer(holiday, function="GLOBAL_QUOTE", symbol="IBM", entitlement="realtime")["Global Quote"]
    assert quote["07. latest trading day"] == "2026-11-25"
    assert answer(after, function="GLOBAL_QUOTE", symbol="NOPE1X", entitlement="realtime") == {"Global Quote": {}}
    bulk = answer(after, function="REALTIME_BULK_QUOTES", symbol="IBM,NOPE1X", entitlement="realtime")
    assert [q["symbol"] for q in bulk["data"]] == ["IBM"]
    assert "Error Message" in answer(after, function="REALTIME_BULK_QUOTES",
                                     symbol=",".join(f"A{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(101)),
                                     entitlement="realtime")


# -- `extract quotes` against the sandbox, into the warehouse ----------------------------------------------

QUOTES = "select symbol, bar_at, source, delay, quote from raw.quotes order by symbol, bar_at"


def set_clock(base_url: str, now: str, running: bool = False) -> None:
    http("POST", admin_url(base_url, "/_sandbox/clock"), {"now": now, "running": running})


@pytest.fixture
def clean_quotes(warehouse):
    """No quotes, quote payloads or learned tiers from an earlier test."""
    if warehouse.psql("select to_regclass('raw.quotes') is not null") == "t":
        warehouse.psql("truncate raw.quotes, raw.global_quote, raw.time_series_intraday, raw.realtime_bulk_quotes;"
                       " delete from ops.api_tiers", admin=True)
    return warehouse


def test_extract_quotes_intraday_append_only_and_deduplicated(clean_quotes, sandbox_server):
    warehouse = clean_quotes
    sb = sandbox_server("--now", "2026-11-24T14:37", "--unknown-symbols", "NOPE")
    env = {"ALPHAVANTAGE_ENTITLEMENT": "realtime", "EXTRACT_INTRADAY_INTERVAL": "1min"}
    result = run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM,AAPL,NOPE", **env)
    assert result.returncode == 1, result.stderr  # NOPE fails, the others are stored
    rows = symbol_rows(warehouse, result.run_id)
    assert {s: r["status"] for s, r in rows.items()} == {"IBM": "succeeded", "AAPL": "succeeded", "NOPE": "failed"}
    stored = query_json(warehouse, QUOTES)
    assert [(r["symbol"], r["source"], r["delay"]) for r in stored] == [("AAPL", "intraday", "realtime"),
                                                                      ("IBM", "intraday", "realtime")]
    assert stored[1]["bar_at"].startswith("2026-11-24T19:36:00")  # the 1-minute bar of 14:36 ET closes at 14:37
    seen = requests_seen(sb.base_url)
    assert {(r["function"], r["entitlement"]) for r in seen} == {("TIME_SERIES_INTRADAY", "realtime")}
    # the same minute again: nothing new (deduplicated by symbol and bar time)
    assert run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM,AAPL", **env).returncode == 0
    assert len(query_json(warehouse, QUOTES)) == 2
    # the clock moves: one more row per symbol, the older ones kept (append-only)
    set_clock(sb.base_url, "2026-11-24T14:39")
    assert run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM,AAPL", **env).returncode == 0
    ibm = [r for r in query_json(warehouse, QUOTES) if r["symbol"] == "IBM"]
    assert len(ibm) == 2 and ibm[0]["quote"]["4. close"] != ibm[1]["quote"]["4. close"]
    assert warehouse.psql("select count(*) from raw.time_series_intraday where symbol = 'IBM'") == "2"


def test_extract_quotes_bulk_500_symbols_in_5_requests_with_a_fault_retried(clean_quotes, sandbox_server):
    warehouse = clean_quotes
    sb = sandbox_server("--now", "2026-11-24T11:05")
    symbols = [f"B{chr(65 + i // 26 // 26)}{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}" for i in range(500)]
    set_faults(sb.base_url, ["html503?functions=REALTIME_BULK_QUOTES&times=1&symbols=" + symbols[250]])
    # ALPHAVANTAGE_TIMEOUT_S: the sandbox walks 25 years of each new symbol once (~0.05 s a symbol)
    env = {"ALPHAVANTAGE_ENTITLEMENT": "delayed", "ALPHAVANTAGE_BULK_QUOTES": "true", "ALPHAVANTAGE_TIMEOUT_S": "120"}
    result = run_extract(warehouse, sb.base_url, "quotes", "--symbols", ",".join(symbols), timeout=600, **env)
    assert result.returncode == 0, result.stderr
    seen = requests_seen(sb.base_url)
    assert [r["function"] for r in seen] == ["REALTIME_BULK_QUOTES"] * 6  # 5 batches, one answered 503 once
    assert sum(r["fault"] is not None for r in seen) == 1
    assert warehouse.psql("select count(*) || '|' || min(delay) || '|' || min(bar_at at time zone"
                          " 'America/New_York')::text from raw.quotes") == "500|delayed|2026-11-24 10:50:00"
    assert warehouse.psql(f"select sum(requests) from ops.extract_run_symbols where run_id = '{result.run_id}'") == "6"


def test_extract_quotes_free_key_falls_back_to_end_of_day_global_quote(clean_quotes, sandbox_server):
    warehouse = clean_quotes
    sb = sandbox_server("--now", "2026-11-24T14:37", "--tier", "free")
    result = run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM,MSFT",
                         ALPHAVANTAGE_ENTITLEMENT="realtime", EXTRACT_WORKERS="1")
    assert result.returncode == 0, result.stderr
    stored = query_json(warehouse, QUOTES)
    assert {(r["symbol"], r["source"], r["delay"]) for r in stored} == {("IBM", "global_quote", "end_of_day"),
                                                                       ("MSFT", "global_quote", "end_of_day")}
    assert all(r["bar_at"].startswith("2026-11-23T21:00:00") for r in stored)  # 16:00 ET the day before
    # one refused intraday request taught the run the key is free; the next symbol asked GLOBAL_QUOTE at once
    assert [r["function"] for r in requests_seen(sb.base_url)] == ["TIME_SERIES_INTRADAY", "GLOBAL_QUOTE",
                                                                    "GLOBAL_QUOTE"]
    assert warehouse.psql("select tier from ops.api_tiers") == "free"
    # the next run knows it: no entitlement asked at all
    set_faults(sb.base_url, [])
    assert run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM",
                       ALPHAVANTAGE_ENTITLEMENT="realtime").returncode == 0
    assert [r["function"] for r in requests_seen(sb.base_url)] == ["GLOBAL_QUOTE"]


def test_extract_quotes_an_empty_quote_fails_that_symbol_only_and_throttling_is_retried(clean_quotes,
                                                                                       sandbox_server):
    warehouse = clean_quotes
    sb = sandbox_server("--now", "2026-11-24T14:37", "--unknown-symbols", "GONE")
    set_faults(sb.base_url, ["throttle?symbols=IBM&times=1"])
    result = run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM,GONE,MSFT")
    assert result.returncode == 1
    rows = symbol_rows(warehouse, result.run_id)
    assert {s: (r["status"], r["requests"]) for s, r in rows.items()} == {
        "IBM": ("succeeded", 2), "GONE": ("failed", 1), "MSFT": ("succeeded", 1)}
    assert rows["GONE"]["reason_code"] == "invalid_symbol"


def test_sandbox_clock_endpoint_runs_from_a_start(sandbox_server):
    sb = sandbox_server("--clock-start", "2026-11-24T10:00")
    with urllib.request.urlopen(admin_url(sb.base_url, "/_sandbox/clock"), timeout=10) as resp:
        clock = json.loads(resp.read())
    assert clock["running"] is True and clock["now"].startswith("2026-11-24T10:0")


def test_extract_quotes_deletes_intraday_payloads_past_their_retention(clean_quotes, sandbox_server):
    warehouse = clean_quotes
    sb = sandbox_server("--now", "2026-11-24T14:37")
    env = {"ALPHAVANTAGE_ENTITLEMENT": "realtime", "EXTRACT_INTRADAY_RETENTION_DAYS": "3"}
    assert run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM", **env).returncode == 0
    # that poll's payload, aged: 2 days (kept) and 4 days (past the retention)
    warehouse.psql("insert into raw.time_series_intraday (run_id, symbol, function, request_url, requested_at,"
                   " received_at, payload, payload_sha256) select run_id, symbol, function, request_url, requested_at,"
                   " received_at - make_interval(days => d), payload, payload_sha256 || d"
                   " from raw.time_series_intraday, unnest(array[2, 4]) as d", admin=True)
    set_clock(sb.base_url, "2026-11-24T14:52")
    result = run_extract(warehouse, sb.base_url, "quotes", "--symbols", "IBM", **env)
    assert result.returncode == 0, result.stderr
    ages = query_json(warehouse, "select (extract(epoch from now() - received_at) / 86400)::int as days"
                                 " from raw.time_series_intraday order by received_at")
    assert [a["days"] for a in ages] == [2, 0, 0]  # the 4-day-old payload is gone, the newest poll stored
    assert "deleted 1 raw.time_series_intraday payload received more than 3 days ago" in result.stderr
