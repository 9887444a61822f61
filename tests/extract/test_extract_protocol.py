"""The payload parser on every Alpha Vantage shape (FACTS.md), plus property tests: mutated and random
bodies never raise anything but a typed ExtractError."""

from __future__ import annotations

import datetime as dt
import json
import math

import orjson
import pytest
from extract.errors import ExtractError, PermanentSymbolError, StopAllError, ThrottledError, TransientError
from extract.protocol import DAILY, ETF_PROFILE, GLOBAL_QUOTE, OVERVIEW, interpret
from extract.sandbox import data
from extract.sandbox import server as sandbox
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

AS_OF = dt.date(2026, 11, 25)
KEY = "SECRETKEY42"


def body(doc) -> bytes:
    return json.dumps(doc).encode()


def daily_doc(symbol="IBM", size="compact"):
    return orjson.loads(data.daily_payload(data.generate(symbol, AS_OF), AS_OF, size))


def parse(doc_or_bytes, function=DAILY, symbol="IBM", status=200, content_type="application/json"):
    raw = doc_or_bytes if isinstance(doc_or_bytes, bytes) else body(doc_or_bytes)
    return interpret(status, content_type, raw, function=function, symbol=symbol, key=KEY)


# -- good payloads ------------------------------------------------------------------------------------


def test_daily_compact_and_full():
    compact = parse(daily_doc())
    assert (compact.function, compact.symbol, compact.bars, compact.last_refreshed) == (DAILY, "IBM", 100, "2026-11-25")
    full = parse(daily_doc(size="full"))
    assert 4900 < full.bars < 5100  # about 20 years of trading days


def test_real_alpha_vantage_daily_shape_with_indentation():
    raw = b"""{
    "Meta Data": {
        "1. Information": "Daily Prices (open, high, low, close) and Volumes",
        "2. Symbol": "IBM",
        "3. Last Refreshed": "2024-05-10",
        "4. Output Size": "Compact",
        "5. Time Zone": "US/Eastern"
    },
    "Time Series (Daily)": {
        "2024-05-10": {"1. open": "167.1300", "2. high": "168.0700", "3. low": "166.3200",
                       "4. close": "167.1500", "5. volume": "2255114"},
        "2024-05-09": {"1. open": "167.5000", "2. high": "167.5000", "3. low": "165.8500",
                       "4. close": "166.2700", "5. volume": "4266615"}
    }
}"""
    parsed = parse(raw)
    assert parsed.bars == 2 and parsed.body == raw  # the body is kept exactly as received


def test_overview_and_global_quote():
    series = data.generate("AAPL", AS_OF)
    ov = parse(data.overview_payload(series), OVERVIEW, "AAPL")
    assert ov.bars == 1
    quote = parse(data.global_quote_payload(series), GLOBAL_QUOTE, "AAPL")
    assert quote.bars == 1
    assert orjson.loads(quote.body)["Global Quote"]["10. change percent"].endswith("%")


def test_a_premium_feature_refusal_is_permanent_for_the_request_not_throttling_nor_a_stop():
    """A free key asking outputsize=full (FACTS.md's text): not retried, not a stop of the run."""
    from extract.errors import PremiumFeatureError

    text = ("Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature for the "
            "TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at "
            "https://www.alphavantage.co/premium/ to instantly unlock all premium features")
    with pytest.raises(PremiumFeatureError) as caught:
        parse({"Information": text})
    assert caught.value.reason_code == "premium_feature"
    assert not isinstance(caught.value, StopAllError | TransientError)
    # the premium *endpoint* notice still stops the run, the throttle text still retries
    with pytest.raises(StopAllError):
        parse({"Information": sandbox.TEXT_PREMIUM})
    with pytest.raises(ThrottledError):
        parse({"Information": sandbox.TEXT_THROTTLE_INFORMATION})


def test_etf_profile_and_the_empty_answers_of_overview_and_etf_profile():
    """An ETF's real ETF_PROFILE shape (no symbol, no name in it); `{}` from OVERVIEW or ETF_PROFILE is
    the API saying it has nothing about the symbol: retried once by the client, then taken as is."""
    from extract.errors import EmptyAnswerError

    spy = data.generate("SPY", AS_OF)
    profile = parse(data.etf_profile_answer(data.SandboxRequest("SPY", AS_OF, "", spy)), ETF_PROFILE, "SPY")
    assert profile.bars == 1
    real = {"net_assets": "1013000000000", "net_expense_ratio": "0.000945", "portfolio_turnover": "0.03",
            "dividend_yield": "0.0118", "inception_date": "1993-01-22", "leveraged": "NO",
            "sectors": [{"sector": "INFORMATION TECHNOLOGY", "weight": "0.339"}],
            "holdings": [{"symbol": "NVDA", "description": "NVIDIA CORP", "weight": "0.0765"}]}
    assert parse(real, ETF_PROFILE, "SPY").bars == 1
    for function in (OVERVIEW, ETF_PROFILE):
        with pytest.raises(EmptyAnswerError, match=r"answered \{\}"):
            parse({}, function, "SPY")
    with pytest.raises(PermanentSymbolError, match="net_assets"):
        parse({**real, "net_assets": "lots"}, ETF_PROFILE, "SPY")
    with pytest.raises(PermanentSymbolError, match="holdings"):
        parse({**real, "holdings": "NVDA"}, ETF_PROFILE, "SPY")
    with pytest.raises(ThrottledError):
        parse({"Information": sandbox.TEXT_THROTTLE_INFORMATION}, ETF_PROFILE, "SPY")
    assert data.overview_answer(data.SandboxRequest("SPY", AS_OF, "", spy)) == b"{}"


def test_overview_missing_values_are_none_strings():
    doc = orjson.loads(data.overview_payload(data.generate("IBM", AS_OF)))
    doc.update({"PERatio": "None", "DividendYield": "-", "Beta": "None"})
    assert parse(doc, OVERVIEW).bars == 1


# -- the API's error texts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "error", "reason_code"),
    [
        ({"Error Message": sandbox.TEXT_INVALID_CALL.format(function=DAILY)}, PermanentSymbolError, "invalid_symbol"),
        ({"Error Message": sandbox.TEXT_BAD_KEY}, StopAllError, "demo_key"),
        ({"Note": sandbox.TEXT_THROTTLE_NOTE}, ThrottledError, "throttled"),
        ({"Information": sandbox.TEXT_THROTTLE_INFORMATION}, ThrottledError, "throttled"),
        ({"Information": sandbox.TEXT_QUOTA.format(key=KEY)}, StopAllError, "daily_quota"),
        (
            {
                "Information": "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. "
                "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to "
                "instantly remove all daily rate limits."
            },
            StopAllError,
            "daily_quota",
        ),
        ({"Information": sandbox.TEXT_PREMIUM}, StopAllError, "premium_endpoint"),
        ({"Information": sandbox.TEXT_DEMO}, StopAllError, "demo_key"),
        ({}, TransientError, "invalid_payload"),
        ({"Meta Data": {"2. Symbol": "IBM"}}, TransientError, "invalid_payload"),
    ],
)
def test_error_texts_are_typed(doc, error, reason_code):
    with pytest.raises(error) as info:
        parse(doc)
    assert info.value.reason_code == reason_code
    assert KEY not in str(info.value)


def test_quota_text_embedding_the_key_is_masked():
    with pytest.raises(StopAllError) as info:
        parse({"Information": sandbox.TEXT_QUOTA.format(key=KEY)})
    assert "detected your API key as ***" in str(info.value)


def test_overview_unknown_symbol_is_an_empty_object():
    # a transient error first (the client asks once more), then the client takes it as "no overview"
    with pytest.raises(TransientError, match=r"OVERVIEW answered {}: no company overview of IBM"):
        parse({}, OVERVIEW)


def test_global_quote_unknown_symbol():
    with pytest.raises(PermanentSymbolError) as info:
        parse({"Global Quote": {}}, GLOBAL_QUOTE)
    assert info.value.reason_code == "invalid_symbol"


@pytest.mark.parametrize(
    ("status", "content_type", "raw", "error", "reason_code"),
    [
        (503, "text/html", sandbox.HTML_503, TransientError, "http_error"),
        (200, "text/html", sandbox.HTML_503, TransientError, "http_error"),  # outage page with a 200
        (200, "application/json", b"<html>oops</html>", TransientError, "http_error"),
        (429, "application/json", b'{"Information": "Too Many Requests"}', ThrottledError, "throttled"),
        (500, "application/json", b"{}", TransientError, "http_error"),
        (404, "text/plain", b"not found", PermanentSymbolError, "http_error"),
        (200, "application/json", b"", TransientError, "invalid_payload"),
        (200, "application/json", b"[1, 2]", TransientError, "invalid_payload"),
        (200, "application/json", b'"just a string"', TransientError, "invalid_payload"),
    ],
)
def test_transport_failures(status, content_type, raw, error, reason_code):
    with pytest.raises(error) as info:
        parse(raw, status=status, content_type=content_type)
    assert info.value.reason_code == reason_code


def test_truncated_json():
    raw = data.daily_payload(data.generate("IBM", AS_OF), AS_OF, "compact")
    with pytest.raises(TransientError, match=r"invalid or truncated JSON") as info:
        parse(raw[: len(raw) // 2])
    assert info.value.reason_code == "invalid_payload"


# -- validation ---------------------------------------------------------------------------------------


def first_bar(doc):
    return next(iter(doc["Time Series (Daily)"].values()))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["Meta Data"].update({"2. Symbol": "MSFT"}), r"'2\. Symbol' is 'MSFT', requested 'IBM'"),
        (lambda d: d.pop("Meta Data"), r"'Meta Data' missing"),
        (lambda d: d.update({"Time Series (Daily)": {}}), r"is empty"),
        (lambda d: d.update({"Time Series (Daily)": []}), r"is not an object"),
        (lambda d: first_bar(d).update({"1. open": "abc"}), r"1\. open = 'abc' is not a number"),
        (lambda d: first_bar(d).update({"5. volume": "-5"}), r"5\. volume = '-5' is not a finite, non-negative"),
        (lambda d: first_bar(d).update({"4. close": "NaN"}), r"not a finite"),
        (lambda d: first_bar(d).update({"2. high": "Infinity"}), r"not a finite"),
        (lambda d: first_bar(d).update({"2. high": True}), r"is not a number"),
        (lambda d: first_bar(d).update({"3. low": None}), r"is not a number"),
        (lambda d: first_bar(d).pop("3. low"), r"field '3\. low' missing"),
        (lambda d: first_bar(d).update({"3. low": "100000"}), r"OHLC inconsistent"),
        (lambda d: first_bar(d).update({"2. high": "0.0001"}), r"OHLC inconsistent"),
        (lambda d: d["Time Series (Daily)"].update({"2026-02-30": first_bar(d)}), r"not a calendar date"),
        (lambda d: d["Time Series (Daily)"].update({"2026-W19-5": first_bar(d)}), r"not YYYY-MM-DD"),
        (lambda d: d["Time Series (Daily)"].update({"20261125": first_bar(d)}), r"not YYYY-MM-DD"),
        (lambda d: d["Time Series (Daily)"].update({"2026-11-26": "1.0"}), r"expected an object"),
    ],
)
def test_invalid_payloads_are_permanent_with_a_reason(mutate, message):
    doc = daily_doc()
    mutate(doc)
    with pytest.raises((PermanentSymbolError, TransientError), match=message) as info:
        parse(doc)
    assert info.value.reason_code == "invalid_payload"


def test_symbol_match_ignores_case_and_overview_symbol_must_match():
    doc = daily_doc()
    doc["Meta Data"]["2. Symbol"] = "ibm"
    assert parse(doc).bars == 100
    ov = orjson.loads(data.overview_payload(data.generate("IBM", AS_OF)))
    with pytest.raises(PermanentSymbolError, match="requested 'AAPL'"):
        parse(ov, OVERVIEW, "AAPL")


def test_overview_bad_number_and_nul():
    ov = orjson.loads(data.overview_payload(data.generate("IBM", AS_OF)))
    with pytest.raises(PermanentSymbolError, match="MarketCapitalization"):
        parse({**ov, "MarketCapitalization": "lots"}, OVERVIEW)
    with pytest.raises(PermanentSymbolError, match="NUL"):
        parse({**ov, "Name": "a\x00b"}, OVERVIEW)


# -- properties ---------------------------------------------------------------------------------------

TYPED = (TransientError, PermanentSymbolError, StopAllError)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
BASE = data.daily_payload(data.generate("IBM", AS_OF), AS_OF, "compact")
BAR_FIELDS = ("1. open", "2. high", "3. low", "4. close", "5. volume")


def independent_check(doc, symbol="IBM") -> int:
    """A slow, obviously-correct validator to compare the fast one against."""
    series = doc["Time Series (Daily)"]
    assert doc["Meta Data"]["2. Symbol"].upper() == symbol
    for day, bar in series.items():
        assert dt.date.fromisoformat(day).isoformat() == day
        values = [bar[f] for f in BAR_FIELDS]
        assert all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)
        o, h, low, c, v = (float(x) for x in values)
        assert all(math.isfinite(x) and x >= 0 for x in (o, h, low, c, v))
        assert low <= min(o, c) and max(o, c) <= h
    return len(series)


def outcome(raw: bytes, function=DAILY):
    try:
        return interpret(200, "application/json", raw, function=function, symbol="IBM", key=KEY)
    except TYPED as exc:
        assert exc.reason_code in {
            "invalid_symbol",
            "throttled",
            "daily_quota",
            "premium_endpoint",
            "premium_feature",
            "demo_key",
            "invalid_payload",
            "http_error",
        }
        assert str(exc), "a typed error must say what was wrong"
        return exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_end_in_a_typed_error(raw):
    for function in (DAILY, OVERVIEW, GLOBAL_QUOTE, ETF_PROFILE):
        assert isinstance(outcome(raw, function), ExtractError)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_random_json_documents_end_in_a_typed_error(doc):
    for function in (DAILY, OVERVIEW, GLOBAL_QUOTE, ETF_PROFILE):
        result = outcome(body(doc), function)
        assert isinstance(result, ExtractError)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_byte_mutations_of_a_valid_payload(draw):
    raw = bytearray(BASE)
    for _ in range(draw.draw(st.integers(1, 4))):
        op = draw.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        pos = draw.draw(st.integers(0, len(raw) - 1))
        if op == "flip":
            raw[pos] = draw.draw(st.integers(0, 255))
        elif op == "delete":
            del raw[pos : pos + draw.draw(st.integers(1, 20))]
        elif op == "insert":
            raw[pos:pos] = draw.draw(st.binary(min_size=1, max_size=8))
        else:
            del raw[pos:]
        if not raw:
            raw = bytearray(b" ")
    result = outcome(bytes(raw))
    if not isinstance(result, ExtractError):
        # accepted: then it really is valid, by an independent check
        assert result.bars == independent_check(orjson.loads(bytes(raw)))


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_structural_mutations_of_a_valid_document(draw):
    doc = orjson.loads(BASE)
    series = doc["Time Series (Daily)"]
    days = list(series)
    for _ in range(draw.draw(st.integers(1, 3))):
        target = draw.draw(st.sampled_from(["bar_field", "bar", "date", "meta", "top"]))
        value = draw.draw(json_values | st.text(alphabet="0123456789.-eE+ naifINF", max_size=10))
        day = draw.draw(st.sampled_from(days))
        if target == "bar_field" and isinstance(series.get(day), dict):
            series[day][draw.draw(st.sampled_from(BAR_FIELDS))] = value
        elif target == "bar":
            series[day] = value
        elif target == "date":
            series[draw.draw(st.text(max_size=12))] = series.pop(day, {})
        elif target == "meta":
            if draw.draw(st.booleans()) or not isinstance(doc["Meta Data"], dict):
                doc["Meta Data"] = value
            else:
                doc["Meta Data"] = {**doc["Meta Data"], "2. Symbol": value}
        else:
            doc[draw.draw(st.sampled_from(["Time Series (Daily)", "Error Message", "Information", "Note"]))] = value
    result = outcome(body(doc))
    if not isinstance(result, ExtractError):
        assert result.bars == independent_check(doc)


def test_parse_helper_processes_keep_the_contract():
    """Big payloads are validated in helper processes: same result, same typed errors (reason_code kept)."""
    from extract.parsing import Parser

    parser = Parser(processes=1, inline_max_bytes=0)
    try:
        ok = parser.interpret(200, "application/json", BASE, function=DAILY, symbol="IBM", key=KEY)
        assert (ok.bars, ok.body, ok.last_refreshed) == (100, BASE, "2026-11-25")
        doc = orjson.loads(BASE)
        first_bar(doc)["3. low"] = "100000"
        with pytest.raises(PermanentSymbolError, match="OHLC inconsistent") as info:
            parser.interpret(200, "application/json", body(doc), function=DAILY, symbol="IBM", key=KEY)
        assert info.value.reason_code == "invalid_payload"
        quota = body({"Information": sandbox.TEXT_QUOTA.format(key=KEY)})
        with pytest.raises(StopAllError) as info:
            parser.interpret(200, "application/json", quota, function=DAILY, symbol="IBM", key=KEY)
        assert info.value.reason_code == "daily_quota" and KEY not in str(info.value)
    finally:
        parser.close()


def test_parse_helpers_fall_back_to_inline_when_they_cannot_start():
    """A __main__ that spawn cannot re-import (a script on stdin) breaks the helpers: validation goes on inline."""
    import subprocess
    import sys

    script = (
        "import datetime as dt\n"
        "from extract.parsing import Parser\n"
        "from extract.sandbox import data\n"
        "d = dt.date(2026, 11, 25)\n"
        "raw = data.daily_payload(data.generate('IBM', d), d, 'compact')\n"
        "p = Parser(processes=1, inline_max_bytes=0)\n"
        "print(p.interpret(200, 'application/json', raw, function='TIME_SERIES_DAILY', symbol='IBM', key=None).bars)\n"
        "print(p.processes)\n"
        "p.close()\n"
    )
    out = subprocess.run([sys.executable, "-"], input=script, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["100", "0"]
