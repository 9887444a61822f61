"""Runs of the real extractor: rate limit measured at the server, idempotency, first/compact/--full loads,
configuration errors, and the pieces they rely on (settings, masking, limiter)."""

from __future__ import annotations

import logging
import subprocess
import threading
from itertools import pairwise

import pytest
from datapipe_common.config import ConfigError
from datapipe_common.symbols import DEFAULT_SYMBOLS, parse_symbols
from extract.masking import MaskingFilter, mask_secret
from extract.ratelimit import RateLimiter
from extract.settings import REAL_BASE_URL, Settings
from extract_testlib import EXTRACT, requests_seen, run_extract, set_faults, symbol_rows

# -- rate limit, measured where it matters: at the server -----------------------------------------------


def test_rate_limit_is_never_exceeded_with_several_workers(warehouse, sandbox):
    rpm = 120  # one request every 0.5 s
    set_faults(sandbox, ["throttle?every=5&times=1"])  # retries go through the limiter too
    symbols = [f"RL{c}" for c in "ABCDEFGHIJKL"]
    result = run_extract(
        warehouse,
        sandbox,
        "companies",
        "--symbols",
        ",".join(symbols),
        ALPHAVANTAGE_REQUESTS_PER_MINUTE=str(rpm),
        EXTRACT_WORKERS="4",
    )
    assert result.returncode == 0, result.stderr
    times = sorted(r["t"] for r in requests_seen(sandbox))
    assert len(times) >= len(symbols) + 1  # at least one throttled retry happened
    # "R per minute, burst of one": requests i..j span at least (j - i) * 60 / R seconds, less a small
    # allowance for the delay between the client's release and the server's clock (thread scheduling on
    # a busy 2-core machine: up to ~0.15 s seen under load 10). Over a real one-minute window the limiter's
    # 1 % spacing margin (0.6 s) absorbs such delays, so no minute ever holds more than R requests.
    interval, jitter = 60.0 / rpm, 0.2
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert times[j] - times[i] >= (j - i) * interval - jitter, (i, j, times[j] - times[i])
    # and without the limiter the same run would have hit the server in bursts (sanity of the test itself)
    set_faults(sandbox, [])
    run_extract(warehouse, sandbox, "companies", "--symbols", ",".join(symbols), EXTRACT_WORKERS="4")
    burst = sorted(r["t"] for r in requests_seen(sandbox))
    assert min(b - a for a, b in pairwise(burst)) < interval - jitter


def test_rate_limiter_spacing_with_a_fake_clock():
    now = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(60, clock=lambda: now[0], sleep=sleep)
    stamps = []
    for _ in range(5):
        limiter.acquire()
        stamps.append(now[0])
    gaps = [b - a for a, b in pairwise(stamps)]
    assert all(1.0 <= g <= 1.02 for g in gaps), gaps
    now[0] += 10  # idle time is not banked into a burst
    limiter.acquire()
    t = now[0]
    limiter.acquire()
    assert now[0] - t >= 1.0
    assert RateLimiter(0).acquire() == 0.0


def test_rate_limiter_is_shared_by_threads():
    import time

    releases: list[float] = []  # taken inside the limiter's lock, right after each wait

    def sleep_and_record(seconds: float) -> None:
        time.sleep(seconds)
        releases.append(time.monotonic())

    limiter = RateLimiter(1200, sleep=sleep_and_record)  # ~50 ms apart
    calls = []

    def work():
        for _ in range(5):
            limiter.acquire()
            calls.append(1)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 20
    assert len(releases) >= 10  # most acquisitions had to wait their turn (all but the first, on an idle machine)
    assert min(b - a for a, b in pairwise(releases)) >= limiter.interval - limiter.max_late


# -- idempotency and load modes -------------------------------------------------------------------------

STAGING_LIKE = """
    select count(*) as bars, count(distinct (symbol, day)) as distinct_days from (
      select distinct on (p.symbol, d.key) p.symbol, d.key as day, d.value
      from raw.time_series_daily p, jsonb_each(p.payload -> 'Time Series (Daily)') d
      where p.symbol in ({symbols})
      order by p.symbol, d.key, p.received_at desc, p.payload_id desc
    ) latest
"""


def test_two_runs_of_the_same_day_add_no_duplicate_business_rows(warehouse, sandbox):
    set_faults(sandbox, [])
    symbols = "IDA,IDB"
    first = run_extract(warehouse, sandbox, "prices", "--symbols", symbols)
    second = run_extract(warehouse, sandbox, "prices", "--symbols", symbols)
    third = run_extract(warehouse, sandbox, "prices", "--symbols", symbols)
    assert (first.returncode, second.returncode, third.returncode) == (0, 0, 0)
    r1, r2, r3 = (symbol_rows(warehouse, r.run_id) for r in (first, second, third))
    assert {(r["output_size"], r["status"]) for r in r1.values()} == {("full", "succeeded")}
    assert {(r["output_size"], r["status"], r["bars"]) for r in r2.values()} == {("compact", "succeeded", 100)}
    # the third run fetched an identical compact payload: recorded, not stored again
    assert {(r["output_size"], r["status"], r["bars"]) for r in r3.values()} == {("compact", "unchanged", 0)}
    assert warehouse.psql("select count(*) from raw.time_series_daily where symbol in ('IDA', 'IDB')") == "4"
    rows = warehouse.psql(STAGING_LIKE.format(symbols="'IDA', 'IDB'")).split("|")
    full_bars = r1["IDA"]["bars"] + r1["IDB"]["bars"]
    assert rows == [str(full_bars), str(full_bars)]  # one row per symbol and day, however many runs
    # the compact re-fetch agrees with the full history on every overlapping day
    same = warehouse.psql("""
        select bool_and(f.value = c.value) from
          (select d.key, d.value from raw.time_series_daily p, jsonb_each(p.payload -> 'Time Series (Daily)') d
           where p.symbol = 'IDA' and p.output_size = 'full') f
          join (select d.key, d.value from raw.time_series_daily p, jsonb_each(p.payload -> 'Time Series (Daily)') d
           where p.symbol = 'IDA' and p.output_size = 'compact') c using (key)""")
    assert same == "t"


def test_full_flag_and_stored_metadata(warehouse, sandbox):
    set_faults(sandbox, [])
    run_extract(warehouse, sandbox, "prices", "--symbols", "FLA")
    forced = run_extract(warehouse, sandbox, "prices", "--symbols", "FLA", "--full")
    assert forced.returncode == 0
    row = symbol_rows(warehouse, forced.run_id)["FLA"]
    assert (row["output_size"], row["status"], row["requests"]) == ("full", "unchanged", 1)
    meta = warehouse.psql(
        "select request_url || '|' || (received_at >= requested_at) || '|' || length(payload_sha256) || '|' ||"
        " (payload -> 'Meta Data' ->> '2. Symbol') from raw.time_series_daily where symbol = 'FLA'"
    )
    assert meta == f"{sandbox}?function=TIME_SERIES_DAILY&symbol=FLA&outputsize=full|true|64|FLA"


def test_companies_and_run_log(warehouse, sandbox):
    set_faults(sandbox, [], unknown=["CXX"])
    result = run_extract(warehouse, sandbox, "companies", "--symbols", "IBM,CXX")
    assert result.returncode == 0
    rows = symbol_rows(warehouse, result.run_id)
    assert (rows["IBM"]["status"], rows["IBM"]["output_size"]) == ("succeeded", None)
    # OVERVIEW answers {} for a symbol it has nothing about: asked once more, then that is the answer;
    # ETF_PROFILE (asked instead) too: the symbol has no profile, which is not a failure
    assert (rows["CXX"]["status"], rows["CXX"]["reason_code"], rows["CXX"]["requests"]) == ("no_data", "no_data", 4)
    assert "no company overview of CXX" in rows["CXX"]["reason"]
    run = warehouse.psql(
        "select command, function, status, symbols_requested, symbols_succeeded, symbols_failed, requests, bars,"
        f" base_url, finished_at >= started_at from ops.extract_runs where run_id = '{result.run_id}'"
    )
    assert run == f"companies|OVERVIEW|succeeded|2|2|0|5|1|{sandbox}|t"
    set_faults(sandbox, [], unknown=[])


# -- configuration and startup errors -------------------------------------------------------------------


def test_missing_key_against_the_real_endpoint_is_a_startup_error(warehouse):
    out = subprocess.run(
        [str(EXTRACT), "prices", "--symbols", "IBM"],
        env={**warehouse.env, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "ALPHAVANTAGE_API_KEY is not set" in out.stderr
    assert "Traceback" not in out.stderr


def test_unreachable_warehouse_fails_clearly(sandbox):
    out = subprocess.run(
        [str(EXTRACT), "prices", "--symbols", "IBM"],
        env={
            "PATH": "/usr/bin:/bin",
            "ALPHAVANTAGE_BASE_URL": sandbox,
            "PGHOST": "127.0.0.1",
            "PGPORT": "1",
            "PGUSER": "nobody",
            "PGDATABASE": "nothing",
            "ALPHAVANTAGE_API_KEY": "KEYKEYKEY99",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 3
    assert "extract: warehouse unreachable or lost:" in out.stderr and "KEYKEYKEY99" not in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_symbols_are_refused_before_any_request(warehouse, sandbox):
    set_faults(sandbox, [])
    result = run_extract(warehouse, sandbox, "prices", "--symbols", "IBM,'; drop table x")
    assert result.returncode == 2 and "invalid symbol" in result.stderr
    assert requests_seen(sandbox) == []


def test_migrate_is_idempotent_and_concurrent_safe(warehouse):
    env = {**warehouse.env, "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([str(EXTRACT), "migrate"], env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    tables = warehouse.psql(
        "select string_agg(table_schema || '.' || table_name, ',' order by table_schema, table_name)"
        " from information_schema.tables where table_schema = 'ops' and table_name like 'extract%'"
        " or table_schema = 'raw'"
    ).split(",")
    # the ops tables of schema.sql and one raw table per endpoint of the registry
    from extract.endpoints import all_endpoints

    assert tables == sorted(["ops.extract_run_symbols", "ops.extract_runs", "raw.quotes",
                             *(e.relation for e in all_endpoints())])


def test_settings_from_a_dict():
    s = Settings.from_env(
        {
            "ALPHAVANTAGE_API_KEY": "k3y-value",
            "ALPHAVANTAGE_REQUESTS_PER_MINUTE": "75",
            "DATAPIPE_SYMBOLS": "ibm, msft,IBM",
            "EXTRACT_WORKERS": "2",
            "PGHOST": "h",
            "OTHER": "x",
        }
    )
    assert (s.base_url, s.requests_per_minute, s.symbols, s.workers) == (REAL_BASE_URL, 75.0, ("IBM", "MSFT"), 2)
    assert dict(s.pg_env) == {"PGHOST": "h"} and "k3y-value" not in repr(s)
    sandbox = Settings.from_env({"ALPHAVANTAGE_BASE_URL": "http://127.0.0.1:1/query"})
    assert sandbox.api_key is None and sandbox.symbols == DEFAULT_SYMBOLS and not sandbox.is_real_api
    for bad in (
        {},
        {"ALPHAVANTAGE_API_KEY": "k", "ALPHAVANTAGE_TIMEOUT_S": "soon"},
        {"ALPHAVANTAGE_API_KEY": "k", "EXTRACT_WORKERS": "0"},
        {"ALPHAVANTAGE_API_KEY": "k", "ALPHAVANTAGE_BASE_URL": "ftp://x"},
        {"ALPHAVANTAGE_API_KEY": "k", "DATAPIPE_SYMBOLS": ",,"},
    ):
        with pytest.raises(ConfigError):
            Settings.from_env(bad)
    assert parse_symbols("tsco.lon, brk-b") == ("TSCO.LON", "BRK-B")


def test_masking():
    assert (
        mask_secret("https://x/query?function=A&apikey=S3CR3T&symbol=B", None)
        == "https://x/query?function=A&apikey=***&symbol=B"
    )
    assert mask_secret("detected your API key as S3CR3T and", "S3CR3T") == "detected your API key as *** and"
    assert mask_secret("the demo key", "demo") == "the *** key"
    assert mask_secret("a b c", "b") == "a b c"  # too short to mask as a substring
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "key %s in %s", ("S3CR3T", "apikey=S3CR3T"), None)
    MaskingFilter("S3CR3T").filter(record)
    assert record.getMessage() == "key *** in apikey=***"


def test_refetched_partial_bar_replaces_the_earlier_one(warehouse, sandbox_server):
    """Same day, market open: the noon run and the 15:30 run store different partial bars for today;
    picking the latest payload per (symbol, date) gives the 15:30 bar and one row per day."""
    noon = sandbox_server("--intraday", "--now", "2026-11-24T12:00")
    late = sandbox_server("--intraday", "--now", "2026-11-24T15:30")
    first = run_extract(warehouse, noon.base_url, "prices", "--symbols", "PBA")
    second = run_extract(warehouse, late.base_url, "prices", "--symbols", "PBA")
    assert (first.returncode, second.returncode) == (0, 0)
    assert symbol_rows(warehouse, second.run_id)["PBA"]["status"] == "succeeded"
    latest = warehouse.psql("""
        select d.value ->> '4. close' from (
          select distinct on (d.key) d.key, d.value from raw.time_series_daily p,
            jsonb_each(p.payload -> 'Time Series (Daily)') d
          where p.symbol = 'PBA' order by d.key, p.received_at desc, p.payload_id desc) d
        where d.key = '2026-11-24'""")
    late_close = warehouse.psql(
        f"select payload -> 'Time Series (Daily)' -> '2026-11-24' ->> '4. close' from raw.time_series_daily"
        f" where run_id = '{second.run_id}'"
    )
    noon_close = warehouse.psql(
        f"select payload -> 'Time Series (Daily)' -> '2026-11-24' ->> '4. close' from raw.time_series_daily"
        f" where run_id = '{first.run_id}'"
    )
    assert latest == late_close != noon_close
    rows = warehouse.psql(STAGING_LIKE.format(symbols="'PBA'")).split("|")
    assert rows[0] == rows[1]


def test_rate_limiter_does_not_drift_on_late_wakeups_but_never_banks_idle_time():
    now = [0.0]

    def late_sleep(s: float) -> None:
        now[0] += s + 0.005  # every wake-up 5 ms late (a busy machine)

    limiter = RateLimiter(600, clock=lambda: now[0], sleep=late_sleep)  # 0.101 s slots
    stamps = []
    for _ in range(101):
        limiter.acquire()
        stamps.append(now[0])
    # 100 intervals: late wake-ups do not accumulate (they would add 0.5 s)
    assert 100 * limiter.interval <= stamps[-1] - stamps[0] <= 100 * limiter.interval + 0.006
    assert min(b - a for a, b in pairwise(stamps)) >= limiter.interval - limiter.max_late
    now[0] += 5.0  # idle
    limiter.acquire()
    t = now[0]
    limiter.acquire()
    assert now[0] - t >= limiter.interval  # no burst after idle time


# -- the warehouse's copy of the NYSE calendar ------------------------------------------------------------


def test_migrate_keeps_the_sessions_table_equal_to_the_shared_calendar(warehouse):
    """`extract migrate` writes ops.trading_sessions from datapipe_common.calendar (SQL reads it instead
    of a weekday rule), rewrites it only when the calendar's key changed, and a changed key (a new
    library release, a new day) replaces every row."""
    from datapipe_common.calendar import calendar_key, session_rows

    env = {"PATH": "/usr/bin:/bin", **warehouse.env}
    migrate = [str(EXTRACT), "migrate"]
    assert subprocess.run(migrate, env=env, capture_output=True, text=True).returncode == 0
    rows = warehouse.psql("select session_date, to_char(close_at at time zone 'America/New_York', 'HH24:MI'),"
                          " is_early_close from ops.trading_sessions order by session_date").splitlines()
    expected = session_rows()
    assert len(rows) == len(expected) and rows[0].startswith("2000-01-03|16:00|f")
    assert "2025-01-09" not in "".join(rows) and "2026-11-27|13:00|t" in rows
    assert warehouse.psql("select obj_description('ops.trading_sessions'::regclass, 'pg_class')") == calendar_key()
    # an up-to-date table is left alone (its rows keep their physical identity) ...
    before = warehouse.psql("select min(xmin::text) from ops.trading_sessions")
    subprocess.run(migrate, env=env, check=True, capture_output=True)
    assert warehouse.psql("select min(xmin::text) from ops.trading_sessions") == before
    # ... and a stale one (yesterday's key, a row too many) is replaced in full
    warehouse.psql("comment on table ops.trading_sessions is 'XNYS stale'; insert into ops.trading_sessions"
                   " values ('2026-11-26', now(), now(), now(), false)")
    subprocess.run(migrate, env=env, check=True, capture_output=True)
    assert warehouse.psql("select count(*) from ops.trading_sessions") == str(len(expected))
    assert warehouse.psql("select count(*) from ops.trading_sessions where session_date = '2026-11-26'") == "0"
