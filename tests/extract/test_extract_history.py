"""Free and premium keys, and no silent hole in a symbol's daily history (issue 14, items 1 and 2):
the real extractor against the sandbox serving either tier, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import functools
import subprocess
import uuid
from collections import Counter

import pytest
from datapipe_common.calendar import nyse
from extract_testlib import EXTRACT, query_json, requests_seen, run_extract, symbol_rows

FACTS_PREMIUM_FEATURE = (  # what Alpha Vantage answers a free key asking outputsize=full (../shared/FACTS.md)
    "Thank you for using Alpha Vantage! The outputsize=full parameter value is a premium feature for the "
    "TIME_SERIES_DAILY endpoint. You may subscribe to any of the premium plans at https://www.alphavantage.co/premium/"
    " to instantly unlock all premium features"
)
BEFORE = dt.date(2026, 1, 5)  # the last session loaded before the outage


def sessions_after(day: dt.date, n: int) -> dt.date:
    for _ in range(n):
        day = nyse().next_session(day)
    return day


AFTER = sessions_after(BEFORE, 150)  # the outage: 150 sessions without a run


def sizes(base_url: str, symbol: str | None = None) -> list[str]:
    """The outputsize of every daily request seen by the sandbox (of one symbol), in order."""
    return [r["outputsize"] for r in requests_seen(base_url)
            if r["function"] == "TIME_SERIES_DAILY" and (symbol is None or r["symbol"] == symbol)]


def tiers(warehouse, base_url: str) -> list[dict]:
    return query_json(warehouse, f"select tier, key_fingerprint, evidence from ops.api_tiers"
                                 f" where base_url = '{base_url}'")


def stored_days(warehouse, symbol: str) -> list[dt.date]:
    out = warehouse.psql(f"select string_agg(distinct d, ',' order by d) from raw.time_series_daily p,"
                         f" jsonb_object_keys(p.payload -> 'Time Series (Daily)') d where p.symbol = '{symbol}'")
    return [dt.date.fromisoformat(d) for d in out.split(",")] if out else []


def now_at(day: dt.date) -> str:
    return f"{day.isoformat()}T18:00"


def new_key() -> str:
    """A key of its own per test: ops.api_tiers remembers a tier per API URL and key, and the sandboxes'
    ports (their URLs) come round again in one test session."""
    return f"TIERKEY-{uuid.uuid4().hex[:10]}"


# -- tiers -----------------------------------------------------------------------------------------------


def test_free_key_is_refused_full_once_then_loads_compact_and_the_tier_is_remembered(warehouse, sandbox_server):
    key = new_key()
    run = functools.partial(run_extract, key=key)
    sandbox = sandbox_server("--tier", "free", "--as-of", BEFORE.isoformat())
    first = run(warehouse, sandbox.base_url, "prices", "--symbols", "FRA,FRB,FRC", EXTRACT_WORKERS="1",
                        EXTRACT_NOW=now_at(BEFORE))
    assert first.returncode == 0, first.stderr
    rows = symbol_rows(warehouse, first.run_id)
    assert {s: (r["status"], r["output_size"], r["bars"]) for s, r in rows.items()} == {
        s: ("succeeded", "compact", 100) for s in ("FRA", "FRB", "FRC")}
    # one refused `full` in the whole run (never retried), then every symbol asked compact only
    assert sizes(sandbox.base_url) == ["full", "compact", "compact", "compact"]
    assert rows["FRA"]["requests"] == 2 and rows["FRB"]["requests"] == 1
    assert "premium feature" in first.stderr and "Traceback" not in first.stderr
    # the tier is in ops: for this run and for the key (a fingerprint, never the key)
    assert warehouse.psql(f"select api_tier from ops.extract_runs where run_id = '{first.run_id}'") == "free"
    (known,) = tiers(warehouse, sandbox.base_url)
    assert known["tier"] == "free" and "premium feature" in known["evidence"]
    assert key not in known["key_fingerprint"] and len(known["key_fingerprint"]) == 12
    # a later run of the same key does not ask `full` again, not even for a new symbol
    second = run(warehouse, sandbox.base_url, "prices", "--symbols", "FRA,FRD", EXTRACT_NOW=now_at(BEFORE))
    assert second.returncode == 0, second.stderr
    assert sizes(sandbox.base_url)[4:] == ["compact", "compact"]
    assert symbol_rows(warehouse, second.run_id)["FRD"]["output_size"] == "compact"


def test_free_key_with_parallel_workers_costs_at_most_one_refused_request_per_symbol(warehouse, sandbox_server):
    key = new_key()
    run = functools.partial(run_extract, key=key)
    sandbox = sandbox_server("--tier", "free", "--as-of", BEFORE.isoformat())
    symbols = [f"FP{c}" for c in "ABCDEF"]
    result = run(warehouse, sandbox.base_url, "prices", "--symbols", ",".join(symbols), EXTRACT_WORKERS="4",
                         EXTRACT_NOW=now_at(BEFORE))
    assert result.returncode == 0, result.stderr
    for symbol in symbols:
        asked = sizes(sandbox.base_url, symbol)
        assert asked.count("full") <= 1 and asked[-1] == "compact", (symbol, asked)
    assert sum(s == "full" for s in sizes(sandbox.base_url)) <= 4  # at most one per worker, before they learn


def test_premium_key_loads_full_history_and_the_tier_is_recorded(warehouse, sandbox_server):
    key = new_key()
    run = functools.partial(run_extract, key=key)
    sandbox = sandbox_server("--as-of", BEFORE.isoformat())
    result = run(warehouse, sandbox.base_url, "prices", "--symbols", "PKA", EXTRACT_NOW=now_at(BEFORE))
    assert result.returncode == 0, result.stderr
    row = symbol_rows(warehouse, result.run_id)["PKA"]
    assert (row["output_size"], row["status"], row["requests"]) == ("full", "succeeded", 1)
    assert row["bars"] > 4900
    assert [t["tier"] for t in tiers(warehouse, sandbox.base_url)] == ["premium"]
    assert warehouse.psql(f"select api_tier from ops.extract_runs where run_id = '{result.run_id}'") == "premium"


# -- outages longer than a compact answer ----------------------------------------------------------------


def test_premium_key_after_a_long_outage_asks_full_and_leaves_no_hole(warehouse, sandbox_server):
    key = new_key()
    run = functools.partial(run_extract, key=key)
    before = sandbox_server("--as-of", BEFORE.isoformat())
    assert run(warehouse, before.base_url, "prices", "--symbols", "POA,POB",
                       EXTRACT_NOW=now_at(BEFORE)).returncode == 0
    after = sandbox_server("--as-of", AFTER.isoformat())
    # the clock knows: 150 sessions since the newest stored bar, more than compact holds -> `full` at once
    result = run(warehouse, after.base_url, "prices", "--symbols", "POA", EXTRACT_NOW=now_at(AFTER))
    assert result.returncode == 0, result.stderr
    assert sizes(after.base_url, "POA") == ["full"]
    assert symbol_rows(warehouse, result.run_id)["POA"]["output_size"] == "full"
    # the clock lags behind the API (or the API's answer is shorter than thought): the compact answer
    # does not reach the stored bar -> `full` after all
    lagging = run(warehouse, after.base_url, "prices", "--symbols", "POB", EXTRACT_NOW=now_at(BEFORE))
    assert lagging.returncode == 0, lagging.stderr
    assert sizes(after.base_url, "POB") == ["compact", "full"]
    row = symbol_rows(warehouse, lagging.run_id)["POB"]
    assert (row["output_size"], row["requests"]) == ("full", 2)
    for symbol in ("POA", "POB"):
        days = stored_days(warehouse, symbol)
        assert days[-1] == AFTER
        assert days[days.index(BEFORE):] == nyse().sessions(BEFORE, AFTER), f"{symbol}: a session is missing"


def test_free_key_after_a_long_outage_fails_the_symbol_naming_the_range_until_accepted(warehouse, sandbox_server):
    key = new_key()
    run = functools.partial(run_extract, key=key)
    before = sandbox_server("--as-of", BEFORE.isoformat())
    loaded_before = run(warehouse, before.base_url, "prices", "--symbols", "FOA", EXTRACT_NOW=now_at(BEFORE))
    assert loaded_before.returncode == 0
    after = sandbox_server("--tier", "free", "--as-of", AFTER.isoformat())
    result = run(warehouse, after.base_url, "prices", "--symbols", "FOA,FON", EXTRACT_WORKERS="1",
                         EXTRACT_NOW=now_at(AFTER))
    assert result.returncode == 1
    compact_first = nyse().sessions(BEFORE, AFTER)[-100]
    first_missing, last_missing = nyse().next_session(BEFORE), nyse().previous_session(compact_first)
    rows = symbol_rows(warehouse, result.run_id)
    # FOA: `full` refused (the key is free), compact cannot reach the stored bar -> fails, range named
    assert sizes(after.base_url, "FOA") == ["full", "compact"]
    assert (rows["FOA"]["status"], rows["FOA"]["reason_code"]) == ("failed", "history_gap")
    assert f"50 NYSE sessions {first_missing}..{last_missing} are missing" in rows["FOA"]["reason"]
    assert "extract accept-gap FOA" in rows["FOA"]["reason"]
    assert warehouse.psql(f"select count(*) from raw.time_series_daily where run_id = '{result.run_id}'"
                          " and symbol = 'FOA'") == "0", "nothing across the hole is stored"
    # other symbols go on: FON is new, loads compact without asking `full` (the run knows the key now)
    assert (rows["FON"]["status"], rows["FON"]["output_size"]) == ("succeeded", "compact")
    assert sizes(after.base_url, "FON") == ["compact"]
    gap = query_json(warehouse, "select newest_stored, missing_from, missing_to, missing_sessions, accepted_at"
                                " from ops.history_gaps where symbol = 'FOA'")
    assert gap == [{"newest_stored": str(BEFORE), "missing_from": str(first_missing),
                    "missing_to": str(last_missing), "missing_sessions": 50, "accepted_at": None}]
    # the next run fails the same way (nothing is ever accepted silently)
    again = run(warehouse, after.base_url, "prices", "--symbols", "FOA", EXTRACT_NOW=now_at(AFTER))
    assert again.returncode == 1 and symbol_rows(warehouse, again.run_id)["FOA"]["reason_code"] == "history_gap"
    assert warehouse.psql("select count(*) from ops.history_gaps where symbol = 'FOA'") == "1"

    # the operator accepts the hole: the next load stores compact, the history restarts at its oldest bar
    env = {**warehouse.env, "PATH": "/usr/bin:/bin"}
    accept = subprocess.run([str(EXTRACT), "accept-gap", "FOA"], env=env, capture_output=True, text=True, timeout=60)
    assert accept.returncode == 0, accept.stderr
    assert f"FOA: accepted the gap of 50 sessions {first_missing}..{last_missing}" in accept.stdout
    assert "DBT_FULL_REFRESH=1 make pipeline" in accept.stdout
    loaded = run(warehouse, after.base_url, "prices", "--symbols", "FOA", EXTRACT_NOW=now_at(AFTER))
    assert loaded.returncode == 0, loaded.stderr
    assert symbol_rows(warehouse, loaded.run_id)["FOA"]["output_size"] == "compact"
    assert warehouse.psql("select restart_on from ops.history_gaps where symbol = 'FOA'") == str(compact_first)
    # accepting again: nothing left to accept, said clearly
    twice = subprocess.run([str(EXTRACT), "accept-gap", "FOA"], env=env, capture_output=True, text=True, timeout=60)
    assert twice.returncode == 1 and "no unaccepted gap recorded for FOA" in twice.stderr


def test_reason_codes_of_an_older_warehouse_are_migrated(warehouse):
    """A warehouse created before `history_gap` existed accepts it after `extract migrate`."""
    warehouse.psql("alter table ops.extract_run_symbols drop constraint extract_run_symbols_reason_code_check;"
                   " alter table ops.extract_run_symbols add constraint extract_run_symbols_reason_code_check"
                   " check (reason_code in ('invalid_symbol', 'not_attempted')) not valid")
    env = {**warehouse.env, "PATH": "/usr/bin:/bin"}
    assert subprocess.run([str(EXTRACT), "migrate"], env=env, capture_output=True, timeout=60).returncode == 0
    definition = warehouse.psql("select pg_get_constraintdef(oid) from pg_constraint"
                                " where conname = 'extract_run_symbols_reason_code_check'")
    codes = Counter(c for c in ("history_gap", "premium_feature", "invalid_symbol") if f"'{c}'" in definition)
    assert codes == Counter({"history_gap": 1, "premium_feature": 1, "invalid_symbol": 1}), definition


@pytest.mark.parametrize("tier, expected", [("free", FACTS_PREMIUM_FEATURE), ("premium", None)])
def test_the_sandbox_serves_both_tiers(sandbox_server, tier, expected):
    import json
    import urllib.request

    sandbox = sandbox_server("--tier", tier, "--as-of", BEFORE.isoformat())
    for size in ("full", "compact"):
        with urllib.request.urlopen(f"{sandbox.base_url}?function=TIME_SERIES_DAILY&symbol=IBM&outputsize={size}",
                                    timeout=30) as resp:
            doc = json.loads(resp.read())
        if size == "full" and expected:
            assert doc == {"Information": expected}
        else:
            assert len(doc["Time Series (Daily)"]) == (100 if size == "compact" else len(doc["Time Series (Daily)"]))
            assert size == "compact" or len(doc["Time Series (Daily)"]) > 4900
