"""The sandbox API as a real HTTP server: Alpha Vantage's shapes, the NYSE calendar, determinism,
runtime fault control and the request log."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import urllib.request

import pytest
from calendar_cases import CASE_IDS, CASES, CalendarCase
from datapipe_common.calendar import nyse
from extract.sandbox.faults import Fault, FaultSpecError, parse_faults
from extract_testlib import AS_OF, EXTRACT, admin_url, http, requests_seen, set_faults


def get(base_url: str, **params: str) -> tuple[int, str, bytes]:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    try:
        with urllib.request.urlopen(f"{base_url}?{query}", timeout=30) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


# -- calendar: the shared NYSE calendar decides the sandbox's dates -----------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_last_bar_is_the_latest_completed_session(case: CalendarCase, sandbox_server) -> None:
    """At each instant the sandbox's newest bar is the session the gate expects and the dashboard
    calls fresh; with the session in progress it serves the partial bar of today instead."""
    server = sandbox_server("--now", case.at.strftime("%Y-%m-%dT%H:%M"))
    doc = json.loads(get(server.base_url, function="TIME_SERIES_DAILY", symbol="IBM")[2])
    days = list(doc["Time Series (Daily)"])
    assert days[0] == doc["Meta Data"]["3. Last Refreshed"] == case.expected.isoformat()
    assert days[1] == case.previous.isoformat()
    assert all(nyse().is_session(dt.date.fromisoformat(d)) for d in days)


def test_early_close_ends_the_partial_bar_at_one(sandbox_server) -> None:
    """In intraday mode an early-close session is in progress until 13:00, not 16:00: at 12:00 the
    newest bar is today's partial one, at 13:30 it is already the final bar."""

    def newest(*args: str) -> tuple[str, dict[str, str]]:
        series = json.loads(get(sandbox_server(*args).base_url, function="TIME_SERIES_DAILY", symbol="IBM")[2])[
            "Time Series (Daily)"]
        day = next(iter(series))
        return day, series[day]

    final = newest("--as-of", "2026-11-27")
    partial = newest("--now", "2026-11-27T12:00", "--intraday")
    assert partial[0] == final[0] == "2026-11-27" and partial[1] != final[1]
    assert newest("--now", "2026-11-27T13:30", "--intraday") == final
    assert newest("--now", "2026-11-27T09:00", "--intraday")[0] == "2026-11-25"


# -- shapes over HTTP ---------------------------------------------------------------------------------


def test_daily_shape(sandbox):
    status, ctype, raw = get(sandbox, function="TIME_SERIES_DAILY", symbol="IBM", apikey="k")
    assert status == 200 and ctype == "application/json"
    doc = json.loads(raw)
    assert list(doc) == ["Meta Data", "Time Series (Daily)"]
    assert doc["Meta Data"] == {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": "IBM",
        "3. Last Refreshed": "2026-11-25",
        "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern",
    }
    series = doc["Time Series (Daily)"]
    days = list(series)
    assert len(days) == 100 and days == sorted(days, reverse=True)  # compact, newest first
    assert all(nyse().is_session(dt.date.fromisoformat(d)) for d in days)
    bar = series[days[0]]
    assert list(bar) == ["1. open", "2. high", "3. low", "4. close", "5. volume"]
    assert all(isinstance(v, str) for v in bar.values())
    assert all(len(bar[k].split(".")[1]) == 4 for k in ("1. open", "2. high", "3. low", "4. close"))
    for b in series.values():
        o, h, low, c = (float(b[k]) for k in ("1. open", "2. high", "3. low", "4. close"))
        assert low <= min(o, c) <= max(o, c) <= h and int(b["5. volume"]) > 0


def test_full_history_is_about_twenty_years_and_extends_compact(sandbox):
    full = json.loads(get(sandbox, function="TIME_SERIES_DAILY", symbol="MSFT", outputsize="full")[2])
    compact = json.loads(get(sandbox, function="TIME_SERIES_DAILY", symbol="MSFT")[2])
    days = list(full["Time Series (Daily)"])
    assert full["Meta Data"]["4. Output Size"] == "Full size"
    assert "2006-11-27" <= days[-1] <= "2006-12-01" and days[0] == "2026-11-25"
    assert not any(d in days for d in ("2025-12-25", "2026-07-03", "2026-11-26", "2026-11-21"))
    for day, bar in compact["Time Series (Daily)"].items():
        assert full["Time Series (Daily)"][day] == bar


def test_same_symbol_same_bars_across_servers_and_calendar_moves(sandbox, sandbox_server):
    other = sandbox_server("--as-of", "2026-12-04")
    a = json.loads(get(sandbox, function="TIME_SERIES_DAILY", symbol="NVDA", outputsize="full")[2])[
        "Time Series (Daily)"
    ]
    b = json.loads(get(other.base_url, function="TIME_SERIES_DAILY", symbol="NVDA", outputsize="full")[2])[
        "Time Series (Daily)"
    ]
    assert "2026-12-04" in b and "2026-12-04" not in a
    common = sorted(set(a) & set(b))
    assert len(common) > 4900
    assert all(a[d] == b[d] for d in common)  # moving the calendar only appends bars
    again = get(sandbox, function="TIME_SERIES_DAILY", symbol="NVDA", outputsize="full")[2]
    first = get(sandbox, function="TIME_SERIES_DAILY", symbol="NVDA", outputsize="full")[2]
    assert hashlib.sha256(again).digest() == hashlib.sha256(first).digest()
    assert (
        a
        != json.loads(get(sandbox, function="TIME_SERIES_DAILY", symbol="AMD", outputsize="full")[2])[
            "Time Series (Daily)"
        ]
    )


def test_overview_and_quote_shapes(sandbox):
    ov = json.loads(get(sandbox, function="OVERVIEW", symbol="AAPL")[2])
    assert ov["Symbol"] == "AAPL" and ov["Name"] == "Apple Inc" and ov["Sector"] == "TECHNOLOGY"
    assert all(isinstance(v, str) for v in ov.values())
    for key in (
        "AssetType",
        "Exchange",
        "Currency",
        "Country",
        "Industry",
        "MarketCapitalization",
        "PERatio",
        "DividendYield",
        "Beta",
        "52WeekHigh",
        "52WeekLow",
    ):
        assert key in ov
    q = json.loads(get(sandbox, function="GLOBAL_QUOTE", symbol="AAPL")[2])["Global Quote"]
    assert list(q) == [
        "01. symbol",
        "02. open",
        "03. high",
        "04. low",
        "05. price",
        "06. volume",
        "07. latest trading day",
        "08. previous close",
        "09. change",
        "10. change percent",
    ]
    assert q["07. latest trading day"] == "2026-11-25" and q["10. change percent"].endswith("%")


def test_unknown_symbols_and_functions(sandbox):
    set_faults(sandbox, [], unknown=["NOPE"])
    assert "Error Message" in json.loads(get(sandbox, function="TIME_SERIES_DAILY", symbol="NOPE")[2])
    assert "Error Message" in json.loads(get(sandbox, function="TIME_SERIES_DAILY", symbol="BAD-1")[2])
    assert json.loads(get(sandbox, function="OVERVIEW", symbol="NOPE")[2]) == {}
    assert json.loads(get(sandbox, function="GLOBAL_QUOTE", symbol="NOPE")[2]) == {"Global Quote": {}}
    assert "does not exist" in json.loads(get(sandbox, function="NO_SUCH_FUNCTION", symbol="IBM")[2])["Error Message"]
    assert (
        "premium endpoint"
        in json.loads(get(sandbox, function="TIME_SERIES_DAILY_ADJUSTED", symbol="IBM")[2])["Information"]
    )
    set_faults(sandbox, [], unknown=[])


def test_runtime_faults_and_request_log(sandbox):
    set_faults(sandbox, ["html503?every=2", "quota?after=3"])
    answers = [get(sandbox, function="TIME_SERIES_DAILY", symbol="IBM", apikey="MYKEY123") for _ in range(5)]
    assert [a[0] for a in answers] == [200, 503, 200, 503, 200]  # the first matching fault wins
    assert b"<html>" in answers[1][2]
    assert answers[4][2].startswith(b'{"Information":"We have detected your API key as MYKEY123')
    seen = requests_seen(sandbox)
    assert [r["n"] for r in seen] == [1, 2, 3, 4, 5]
    assert [r["fault"] for r in seen] == [None, "html503?every=2", None, "html503?every=2", "quota?after=3"]
    assert all(r["has_key"] and "apikey" not in json.dumps(r) for r in seen)
    assert seen == sorted(seen, key=lambda r: r["t"])
    faults = http("GET", admin_url(sandbox, "/_sandbox/faults"))
    assert faults["faults"] == ["html503?every=2", "quota?after=3"]
    with pytest.raises(urllib.error.HTTPError) as info:
        http("POST", admin_url(sandbox, "/_sandbox/faults"), {"faults": ["explode"]})
    assert info.value.code == 400
    set_faults(sandbox, [])


def test_require_key_and_demo_key(sandbox_server):
    s = sandbox_server("--as-of", AS_OF, "--require-key", "RIGHTKEY")
    assert (
        "apikey is invalid or missing"
        in json.loads(get(s.base_url, function="OVERVIEW", symbol="IBM", apikey="WRONG")[2])["Error Message"]
    )
    assert json.loads(get(s.base_url, function="OVERVIEW", symbol="IBM", apikey="RIGHTKEY")[2])["Symbol"] == "IBM"
    open_sb = sandbox_server("--as-of", AS_OF)
    assert (
        "demo" in json.loads(get(open_sb.base_url, function="OVERVIEW", symbol="AAPL", apikey="demo")[2])["Information"]
    )
    assert json.loads(get(open_sb.base_url, function="OVERVIEW", symbol="IBM", apikey="demo")[2])["Symbol"] == "IBM"


def test_fault_specs():
    f = Fault.parse("html503?symbols=msft,aapl&times=2&every=3")
    assert (f.kind, f.symbols, f.times, f.every) == ("html503", frozenset({"MSFT", "AAPL"}), 2, 3)
    assert [x.kind for x in parse_faults("throttle?every=2; slow?seconds=1.5")] == ["throttle", "slow"]
    for bad in ("explode", "throttle?every=x", "throttle?colour=red", "throttle?style=loud", "slow?every=-1"):
        with pytest.raises(FaultSpecError):
            Fault.parse(bad)


def test_bad_cli_arguments_fail_clearly(tmp_path):
    import subprocess

    out = subprocess.run(
        [str(EXTRACT), "sandbox", "--port", "0", "--fault", "explode"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "unknown fault kind 'explode'" in out.stderr
    out = subprocess.run(
        [str(EXTRACT), "sandbox", "--port", "0", "--as-of", "26/11/2026"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "not a YYYY-MM-DD date" in out.stderr


def test_intraday_partial_bar_changes_until_the_close(sandbox_server):
    """--intraday: during a session today's bar is partial and moves; after the close it is final."""
    closed = sandbox_server("--as-of", "2026-11-24")
    noon = sandbox_server("--intraday", "--now", "2026-11-24T12:00")
    late = sandbox_server("--intraday", "--now", "2026-11-24T15:30")
    after = sandbox_server("--intraday", "--now", "2026-11-24T17:00")
    before = sandbox_server("--intraday", "--now", "2026-11-24T09:00")

    def series(s):
        doc = json.loads(get(s.base_url, function="TIME_SERIES_DAILY", symbol="IBM")[2])
        return doc["Meta Data"]["3. Last Refreshed"], doc["Time Series (Daily)"]

    final_day, final = series(closed)
    noon_day, at_noon = series(noon)
    late_day, at_late = series(late)
    assert final_day == noon_day == late_day == series(after)[0] == "2026-11-24"
    assert series(before)[0] == "2026-11-23"  # before the open the latest bar is the previous session's
    assert len(at_noon) == 100 and next(iter(at_noon)) == "2026-11-24"
    assert series(after)[1] == final
    bar_noon, bar_late, bar_final = at_noon["2026-11-24"], at_late["2026-11-24"], final["2026-11-24"]
    assert bar_noon["1. open"] == bar_late["1. open"] == bar_final["1. open"]
    assert len({bar_noon["4. close"], bar_late["4. close"], bar_final["4. close"]}) == 3
    assert int(bar_noon["5. volume"]) < int(bar_late["5. volume"]) < int(bar_final["5. volume"])
    for bar in (bar_noon, bar_late):
        o, h, low, c = (float(bar[k]) for k in ("1. open", "2. high", "3. low", "4. close"))
        assert low <= min(o, c) <= max(o, c) <= h
    assert {d: b for d, b in at_noon.items() if d != "2026-11-24"} == {
        d: b for d, b in final.items() if d != "2026-11-24"
    }
    # the realtime quote is the partial bar's close; without an entitlement it is end of day (yesterday's)
    quote = json.loads(get(noon.base_url, function="GLOBAL_QUOTE", symbol="IBM", entitlement="realtime")[2])
    assert (quote["Global Quote"]["05. price"], quote["Global Quote"]["07. latest trading day"]) == (
        bar_noon["4. close"], "2026-11-24")
    eod = json.loads(get(noon.base_url, function="GLOBAL_QUOTE", symbol="IBM")[2])["Global Quote"]
    assert eod["07. latest trading day"] == "2026-11-23"
