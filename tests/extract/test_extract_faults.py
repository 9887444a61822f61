"""Every sandbox fault mode drives the real extractor (subprocess) against a real PostgreSQL to the right
outcome: retried then succeeded, or failed with the right reason, other symbols unaffected, exit code,
run log rows, and nothing bad stored in raw."""

from __future__ import annotations

import urllib.request
from collections import Counter

import pytest
from extract_testlib import (
    AS_OF,
    TEST_KEY,
    requests_seen,
    run_extract,
    set_faults,
    stored_symbols,
    symbol_rows,
)


def per_symbol_requests(base_url):
    return Counter(r["symbol"] for r in requests_seen(base_url))


# (id, faults, symbols, extra env, expected {symbol: (status, reason_code, requests)}, exit code)
# With ALPHAVANTAGE_MAX_RETRIES=2 a transient failure costs 3 requests before giving up.
CASES = [
    (
        "throttle-information-then-success",
        ["throttle?symbols=TA&times=2"],
        "TA,TB",
        {},
        {"TA": ("succeeded", None, 3), "TB": ("succeeded", None, 1)},
        0,
    ),
    (
        "throttle-note-then-success",
        ["throttle?symbols=TC&times=1&style=note"],
        "TC",
        {},
        {"TC": ("succeeded", None, 2)},
        0,
    ),
    (
        "throttle-every-nth-request",
        ["throttle?every=2&times=1"],
        "TD,TE,TF",
        {"EXTRACT_WORKERS": "1"},
        {"TD": ("succeeded", None, 1), "TE": ("succeeded", None, 2), "TF": ("succeeded", None, 2)},
        0,
    ),
    (
        "throttle-persistent",
        ["throttle?symbols=TG"],
        "TG,TH",
        {},
        {"TG": ("failed", "throttled", 3), "TH": ("succeeded", None, 1)},
        1,
    ),
    (
        "error-message-is-permanent",
        ["error?symbols=EA"],
        "EA,EB",
        {},
        {"EA": ("failed", "invalid_symbol", 1), "EB": ("succeeded", None, 1)},
        1,
    ),
    (
        "html-503-then-success-with-parse-helpers",
        ["html503?symbols=HA&times=2"],
        "HA,HB",
        {"EXTRACT_PARSE_PROCESSES": "2"},
        {"HA": ("succeeded", None, 3), "HB": ("succeeded", None, 1)},
        0,
    ),
    (
        "html-503-persistent",
        ["html503?symbols=HC"],
        "HC,HD",
        {},
        {"HC": ("failed", "http_error", 3), "HD": ("succeeded", None, 1)},
        1,
    ),
    ("http-500-persistent", ["http500?symbols=HE"], "HE", {}, {"HE": ("failed", "http_error", 3)}, 1),
    ("http-429-then-success", ["http429?symbols=RA&times=1"], "RA", {}, {"RA": ("succeeded", None, 2)}, 0),
    ("truncated-json-then-success", ["truncate?symbols=JA&times=1"], "JA", {}, {"JA": ("succeeded", None, 2)}, 0),
    (
        "truncated-json-persistent-with-parse-helpers",
        ["truncate?symbols=JB"],
        "JB,JC",
        {"EXTRACT_PARSE_PROCESSES": "2"},  # the typed errors cross the helper-process boundary
        {"JB": ("failed", "invalid_payload", 3), "JC": ("succeeded", None, 1)},
        1,
    ),
    (
        "empty-object-persistent",
        ["empty?symbols=KA"],
        "KA,KB",
        {},
        {"KA": ("failed", "invalid_payload", 3), "KB": ("succeeded", None, 1)},
        1,
    ),
    ("missing-series-key-then-success", ["noseries?symbols=KC&times=1"], "KC", {}, {"KC": ("succeeded", None, 2)}, 0),
    ("connection-reset-then-success", ["reset?symbols=CA&times=2"], "CA", {}, {"CA": ("succeeded", None, 3)}, 0),
    (
        "connection-reset-persistent",
        ["reset?symbols=CB"],
        "CB,CC",
        {},
        {"CB": ("failed", "connection_error", 3), "CC": ("succeeded", None, 1)},
        1,
    ),
    (
        "slow-answer-times-out",
        ["slow?symbols=SA&seconds=4"],
        "SA,SB",
        {"ALPHAVANTAGE_TIMEOUT_S": "1.5", "ALPHAVANTAGE_MAX_RETRIES": "1"},
        {"SA": ("failed", "timeout", 2), "SB": ("succeeded", None, 1)},
        1,
    ),
    ("slow-answer-within-timeout", ["slow?symbols=SC&seconds=0.3"], "SC", {}, {"SC": ("succeeded", None, 1)}, 0),
    ("unknown-symbol", [], "ZZZZ1,UB", {}, {"ZZZZ1": ("failed", "invalid_symbol", 1), "UB": ("succeeded", None, 1)}, 1),
]


@pytest.mark.parametrize(
    ("faults", "symbols", "env", "expected", "exit_code"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_fault_outcome(warehouse, sandbox, faults, symbols, env, expected, exit_code):
    # Generate the histories first (no faults), so answer times do not depend on a busy machine's
    # generation speed (the timeout case); set_faults then restarts the counters and the request log.
    set_faults(sandbox, [])
    for symbol in symbols.split(","):
        urllib.request.urlopen(
            f"{sandbox}?function=TIME_SERIES_DAILY&symbol={symbol}&outputsize=full", timeout=60
        ).read()
    set_faults(sandbox, faults)
    result = run_extract(warehouse, sandbox, "prices", "--symbols", symbols, **env)
    assert result.returncode == exit_code, result.stderr
    rows = symbol_rows(warehouse, result.run_id)
    got = {s: (r["status"], r["reason_code"], r["requests"]) for s, r in rows.items()}
    assert got == expected
    # The sandbox saw exactly the requests the run log claims (retries included).
    assert dict(per_symbol_requests(sandbox)) == {s: e[2] for s, e in expected.items()}
    # Only validated payloads of succeeded symbols are stored.
    assert stored_symbols(warehouse, result.run_id) == sorted(s for s, e in expected.items() if e[0] == "succeeded")
    for symbol, (status, _, _) in expected.items():
        assert (symbol in result.stdout) and (status in result.stdout)
        if status == "failed":
            assert rows[symbol]["reason"], "a failure must say why"
    run = warehouse.psql(
        f"select status || ' ' || symbols_failed from ops.extract_runs where run_id = '{result.run_id}'"
    )
    n_failed = sum(e[0] != "succeeded" for e in expected.values())
    assert run == f"{'failed' if n_failed else 'succeeded'} {n_failed}"


@pytest.mark.parametrize(
    ("fault", "reason_code"),
    [("quota?after=2", "daily_quota"), ("premium?after=2", "premium_endpoint"), ("demo?after=2", "demo_key")],
)
def test_permanent_stop_skips_the_rest_without_a_retry_storm(warehouse, sandbox, fault, reason_code):
    set_faults(sandbox, [fault])
    symbols = [fault[:2].upper() + c for c in "ABCDE"]  # fresh symbols per case: every run is a first load
    result = run_extract(warehouse, sandbox, "prices", "--symbols", ",".join(symbols), EXTRACT_WORKERS="1")
    assert result.returncode == 1
    rows = symbol_rows(warehouse, result.run_id)
    assert [(rows[s]["status"], rows[s]["reason_code"], rows[s]["requests"]) for s in symbols] == [
        ("succeeded", None, 1),
        ("succeeded", None, 1),
        ("failed", reason_code, 1),
        ("skipped", "not_attempted", 0),
        ("skipped", "not_attempted", 0),
    ]
    assert len(requests_seen(sandbox)) == 3  # no request after the stop, no retry of the stop itself
    assert stored_symbols(warehouse, result.run_id) == symbols[:2]
    assert "run stopped early" in result.stderr


def test_permanent_stop_with_several_workers_stops_everyone(warehouse, sandbox):
    set_faults(sandbox, ["quota?after=3"])
    symbols = [f"W{c}" for c in "ABCDEFGHIJKL"]
    result = run_extract(warehouse, sandbox, "prices", "--symbols", ",".join(symbols), EXTRACT_WORKERS="4")
    assert result.returncode == 1
    rows = symbol_rows(warehouse, result.run_id)
    statuses = Counter(r["status"] for r in rows.values())
    seen = requests_seen(sandbox)
    # In-flight requests may still come back with the quota text, but nothing is retried and every
    # symbol not yet started is skipped.
    assert statuses["succeeded"] == 3
    assert statuses["skipped"] >= len(symbols) - 3 - 4
    assert len(seen) == sum(r["requests"] for r in rows.values()) <= 3 + 4
    assert all(
        r["reason_code"] in ("daily_quota", "not_attempted") for r in rows.values() if r["status"] != "succeeded"
    )


def test_demo_key_is_refused_by_the_sandbox_like_the_real_api(warehouse, sandbox):
    set_faults(sandbox, [])
    result = run_extract(warehouse, sandbox, "prices", "--symbols", "DA,DB", key="demo", EXTRACT_WORKERS="1")
    assert result.returncode == 1
    rows = symbol_rows(warehouse, result.run_id)
    assert (rows["DA"]["status"], rows["DA"]["reason_code"]) == ("failed", "demo_key")
    assert (rows["DB"]["status"], rows["DB"]["reason_code"]) == ("skipped", "not_attempted")


def test_fault_flags_on_the_command_line(warehouse, sandbox_server):
    """The CLI flags (not only POST /_sandbox/faults) configure faults and unknown symbols."""
    sb = sandbox_server("--as-of", AS_OF, "--fault", "html503?symbols=FA&times=1", "--unknown-symbols", "FB")
    result = run_extract(warehouse, sb.base_url, "prices", "--symbols", "FA,FB,FC")
    rows = symbol_rows(warehouse, result.run_id)
    assert {s: (r["status"], r["requests"]) for s, r in rows.items()} == {
        "FA": ("succeeded", 2),
        "FB": ("failed", 1),
        "FC": ("succeeded", 1),
    }
    assert result.returncode == 1


def test_fault_environment_variable(warehouse, sandbox_server):
    sb = sandbox_server("--as-of", AS_OF, env={"SANDBOX_FAULTS": "error?symbols=GA;throttle?symbols=GB&times=1"})
    result = run_extract(warehouse, sb.base_url, "prices", "--symbols", "GA,GB")
    rows = symbol_rows(warehouse, result.run_id)
    assert {s: (r["status"], r["reason_code"], r["requests"]) for s, r in rows.items()} == {
        "GA": ("failed", "invalid_symbol", 1),
        "GB": ("succeeded", None, 2),
    }


def test_key_is_never_in_logs_run_log_or_tables(warehouse, sandbox):
    """The quota text embeds the key (like the real API): it must be masked everywhere."""
    set_faults(sandbox, ["html503?symbols=MA&times=1", "error?symbols=MB", "quota?after=4"])
    result = run_extract(
        warehouse, sandbox, "prices", "--symbols", "MA,MB,MC,MD,ME,MF", EXTRACT_WORKERS="1", EXTRACT_LOG_LEVEL="DEBUG"
    )
    assert result.returncode == 1
    rows = symbol_rows(warehouse, result.run_id)
    quota = [r for r in rows.values() if r["reason_code"] == "daily_quota"]
    assert quota and "***" in quota[0]["reason"], "the quota reason should show the masked key"
    assert TEST_KEY not in result.stdout + result.stderr
    for table in ("raw.time_series_daily", "raw.company_overview", "ops.extract_runs", "ops.extract_run_symbols"):
        dump = warehouse.psql(f"select coalesce(string_agg(t::text, E'\\n'), '') from {table} t")
        assert TEST_KEY not in dump, table
    sent = warehouse.psql(f"select count(*) from raw.time_series_daily where run_id = '{result.run_id}'"
                          " and request_url like '%apikey%'")
    assert sent == "0"
