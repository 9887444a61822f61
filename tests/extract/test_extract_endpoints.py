"""The endpoint registry (extract/endpoints.py): one entry per Alpha Vantage function is all the CLI,
the raw tables, the parser and the sandbox know. A throwaway endpoint added through the registry
alone gets its `extract` command, its raw table, its parsing, its sandbox answer and its storage,
without any other file knowing about it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from extract.errors import PermanentSymbolError, TransientError
from extract.sandbox.data import SandboxRequest
from extract.sandbox.server import SandboxConfig, make_server
from extract_testlib import AS_OF, FAST, TEST_KEY, query_json, requests_seen, run_extract, set_faults, symbol_rows

from extract import cli, endpoints, protocol

# -- a throwaway endpoint: everything about it is in this one entry -------------------------------------

FAKE_FUNCTION = "FAKE_DIVIDENDS"


def parse_fake(doc: Any, symbol: str, key: str | None, body: bytes) -> protocol.Content:
    """{"symbol": ..., "dividends": [{"ex_date": ..., "amount": ...}, ...]}"""
    if isinstance(doc, dict) and "dividends" not in doc:
        protocol.classify_message(doc, key)
        raise TransientError(f"'dividends' missing (keys: {list(doc)[:5]})", reason_code="invalid_payload")
    if not isinstance(doc, dict) or doc.get("symbol") != symbol:
        raise PermanentSymbolError(f"symbol is {doc.get('symbol') if isinstance(doc, dict) else doc!r}",
                                   reason_code="invalid_payload")
    rows = doc["dividends"]
    if not isinstance(rows, list) or not all(isinstance(r, dict) and float(r["amount"]) >= 0 for r in rows):
        raise PermanentSymbolError("a dividend is not {ex_date, amount >= 0}", reason_code="invalid_payload")
    return protocol.Content(len(rows), rows[0]["ex_date"] if rows else None)


def fake_answer(request: SandboxRequest) -> bytes:
    """A dividend on the first session of each of the last four quarters, from the symbol's walk."""
    rows = []
    for back in (0, 63, 126, 189):
        i = len(request.series.dates) - 1 - back
        rows.append({"ex_date": request.series.dates[i], "amount": f"{request.series.closes[i] * 0.005:.4f}"})
    return orjson.dumps({"symbol": request.symbol, "dividends": rows})


FAKE = endpoints.Endpoint(
    function=FAKE_FUNCTION,
    command="fake-dividends",
    table="fake_dividends",
    parse=parse_fake,
    sandbox=fake_answer,
    summary="FAKE_DIVIDENDS (a throwaway endpoint of the tests) into raw.fake_dividends",
    unknown_symbol=b'{"Error Message": "no such symbol"}',
)


@pytest.fixture
def fake_endpoint(warehouse) -> Iterator[endpoints.Endpoint]:
    with endpoints.registered(FAKE):
        yield FAKE
    warehouse.psql("drop table if exists raw.fake_dividends", admin=True)


@pytest.fixture
def in_process_sandbox(fake_endpoint) -> Iterator[str]:
    """The sandbox as a real HTTP server, in this process (so it sees the registered entry)."""
    config = SandboxConfig(port=0, as_of=dt.date.fromisoformat(AS_OF), unknown_symbols=frozenset({"NOPE"}))
    server, _ = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/query"
    finally:
        server.shutdown()
        server.server_close()


def extract_in_process(warehouse, base_url: str, *argv: str) -> int:
    """`extract ARGV` in this process (the registered entry exists only here); logging restored after."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return cli.main(list(argv), env={**warehouse.env, **FAST, "ALPHAVANTAGE_BASE_URL": base_url,
                                         "ALPHAVANTAGE_API_KEY": TEST_KEY})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def test_a_throwaway_endpoint_works_through_the_registry_alone(warehouse, in_process_sandbox, capsys):
    base_url = in_process_sandbox
    # the CLI lists the command with the entry's summary
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "fake-dividends" in capsys.readouterr().out

    rc = extract_in_process(warehouse, base_url, "fake-dividends", "--symbols", "IBM,AAPL,NOPE")
    assert rc == 1  # NOPE is unknown to the API: that symbol fails, the others are stored

    # the raw table was created from the registry, with the columns every raw table has
    columns = warehouse.psql("select string_agg(column_name, ',' order by ordinal_position) from"
                             " information_schema.columns where table_schema = 'raw' and table_name = 'fake_dividends'")
    assert columns == ("payload_id,run_id,symbol,function,output_size,request_url,requested_at,received_at,"
                       "payload_sha256,payload,first_date,last_date")
    stored = query_json(warehouse, "select symbol, function, jsonb_array_length(payload -> 'dividends') as n,"
                                   " request_url from raw.fake_dividends order by symbol")
    assert [(r["symbol"], r["function"], r["n"]) for r in stored] == [("AAPL", FAKE_FUNCTION, 4),
                                                                       ("IBM", FAKE_FUNCTION, 4)]
    assert all("apikey" not in r["request_url"] for r in stored)
    # the sandbox answered from the entry's generator (deterministic, from the symbol's walk)
    ibm = orjson.loads(warehouse.psql("select payload::text from raw.fake_dividends where symbol = 'IBM'"))
    assert ibm["dividends"][0]["ex_date"] == AS_OF
    # the parser's verdicts and the run log
    run_id = warehouse.psql(f"select run_id from ops.extract_runs where function = '{FAKE_FUNCTION}'")
    rows = symbol_rows(warehouse, run_id)
    assert {s: (r["status"], r["bars"]) for s, r in rows.items()} == {
        "IBM": ("succeeded", 4), "AAPL": ("succeeded", 4), "NOPE": ("failed", 0)}
    assert rows["NOPE"]["reason_code"] == "invalid_symbol" and "no such symbol" in rows["NOPE"]["reason"]
    assert warehouse.psql(f"select command || '|' || status from ops.extract_runs where run_id = '{run_id}'") == \
        "fake-dividends|failed"
    # a second run stores nothing new: identical answers are recorded `unchanged`
    assert extract_in_process(warehouse, base_url, "fake-dividends", "--symbols", "IBM") == 0
    assert warehouse.psql("select count(*) from raw.fake_dividends where symbol = 'IBM'") == "1"
    # and with the entry gone, nothing knows the function any more
    with _unregistered(FAKE), pytest.raises(PermanentSymbolError, match="unsupported function"):
        protocol.interpret(200, "application/json", fake_answer_bytes(), function=FAKE_FUNCTION, symbol="IBM")


class _unregistered:
    """The entry removed for the duration of the block, then put back."""

    def __init__(self, endpoint: endpoints.Endpoint) -> None:
        self.endpoint = endpoint

    def __enter__(self) -> None:
        endpoints._REGISTRY.pop(self.endpoint.function)

    def __exit__(self, *exc: object) -> None:
        endpoints.register(self.endpoint)


def fake_answer_bytes() -> bytes:
    return b'{"symbol": "IBM", "dividends": []}'


def test_the_registry_refuses_clashing_or_malformed_entries():
    for change, message in (
        ({"function": "OVERVIEW"}, "function 'OVERVIEW' is taken by OVERVIEW"),
        ({"command": "prices"}, "command 'prices' is taken by TIME_SERIES_DAILY"),
        ({"table": "time_series_daily"}, "table 'time_series_daily' is taken"),
        ({"command": "migrate"}, "is a built-in command"),
        ({"table": "x; drop table y"}, "does not match"),
        ({"function": "lower_case"}, "does not match"),
    ):
        with pytest.raises(ValueError, match=message):
            endpoints.register(dataclasses.replace(FAKE, **change))
    assert endpoints.find(FAKE_FUNCTION) is None and "fake-dividends" not in endpoints.commands()
    assert [e.function for e in endpoints.all_endpoints()][:4] == [
        "TIME_SERIES_DAILY", "OVERVIEW", "ETF_PROFILE", "GLOBAL_QUOTE"]


# -- every registered endpoint, end to end -----------------------------------------------------------------


@pytest.mark.parametrize("entry", endpoints.all_endpoints(), ids=lambda e: e.command)
def test_every_endpoint_command_loads_its_raw_table_from_the_sandbox(warehouse, sandbox_server, entry):
    known = "SPY" if entry.function == "ETF_PROFILE" else "REGA"  # ETF_PROFILE knows funds only
    unknown = "NX" + entry.table[:3].upper()  # one per endpoint: a stored {} is not stored twice
    sandbox = sandbox_server("--as-of", AS_OF, "--unknown-symbols", unknown)
    set_faults(sandbox.base_url, [])
    result = run_extract(warehouse, sandbox.base_url, entry.command, "--symbols", f"{known},{unknown}")
    rows = symbol_rows(warehouse, result.run_id)
    assert rows[known]["status"] == "succeeded", rows
    assert [r["function"] for r in requests_seen(sandbox.base_url)].count(entry.function) >= 2
    stored = int(warehouse.psql(f"select count(*) from {entry.relation} where run_id = '{result.run_id}'"))
    if entry.unknown_symbol == b"{}":
        # the API answers {} for a symbol it has nothing about: that answer is stored, not a failure
        assert (result.returncode, rows[unknown]["status"], stored) == (0, "no_data", 2), result.stderr
    else:
        assert (result.returncode, rows[unknown]["status"], stored) == (1, "failed", 1), result.stderr
