"""Failures that explain themselves and run rows that never stay `running`: the warehouse stopped or
its connections killed mid-run, a SIGKILLed run, credentials inside ALPHAVANTAGE_BASE_URL."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable
from typing import Any

from datapipe_common.masking import mask_url, url_secrets
from extract_testlib import EXTRACT, TEST_KEY, extract_env, query_json, run_extract, set_faults


def start_extract(warehouse: Any, base_url: str, *args: str, **env: str) -> subprocess.Popen[str]:
    """`extract ARGS` as a subprocess left running, with `extract_env`."""
    return subprocess.Popen([str(EXTRACT), *args], env=extract_env(warehouse, base_url, **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_row(warehouse: Any, run_id: str) -> dict[str, Any]:
    rows = query_json(warehouse, "select status, reason, finished_at, heartbeat_at from ops.extract_runs"
                                 f" where run_id = '{run_id}'")
    assert len(rows) == 1
    return rows[0]


def running_run(warehouse: Any, symbol: str) -> str | None:
    """The run id of the running run that has recorded `symbol` (so it is busy with the others)."""
    try:
        out = warehouse.psql(
            "select r.run_id from ops.extract_runs r join ops.extract_run_symbols s using (run_id)"
            f" where r.status = 'running' and s.symbol = '{symbol}' limit 1"
        )
    except subprocess.CalledProcessError:  # the first run has not created the tables yet
        return None
    return out or None


def one_line_failure(stderr: str) -> str:
    """The last stderr line, after asserting there is no traceback."""
    assert "Traceback" not in stderr, stderr
    return stderr.strip().splitlines()[-1]


# a slow run: the first symbol answers at once, every other one after three seconds
SLOW = ["slow?seconds=3&symbols=STPB,STPC,STPD,STPE,STPF,STPG"]
SLOW_SYMBOLS = "STPA,STPB,STPC,STPD,STPE,STPF,STPG"


def test_warehouse_stopped_mid_extract_is_one_line_and_the_next_run_aborts_the_row(warehouse, sandbox):
    set_faults(sandbox, SLOW)
    proc = start_extract(warehouse, sandbox, "prices", "--symbols", SLOW_SYMBOLS, EXTRACT_WORKERS="1")
    run_id = wait_for(lambda: running_run(warehouse, "STPA"), what="the run to record its first symbol")
    warehouse.stop()
    try:
        _, stderr = proc.communicate(timeout=60)
    finally:
        warehouse.start()
    assert proc.returncode == 3, stderr
    line = one_line_failure(stderr)
    assert line.startswith("extract: warehouse unreachable or lost:"), line
    assert "`make db-up`" in line and "run extract again" in line
    assert TEST_KEY not in stderr
    # the warehouse was gone, so the row could not be finished; a run after the grace period aborts it
    assert run_row(warehouse, run_id)["status"] == "running"
    time.sleep(1.2)
    set_faults(sandbox, [])
    after = run_extract(warehouse, sandbox, "prices", "--symbols", "STPA", DATAPIPE_RUN_GRACE_S="1")
    assert after.returncode == 0, after.stderr
    row = run_row(warehouse, run_id)
    assert row["status"] == "aborted" and row["finished_at"]
    assert row["reason"].startswith("abandoned: no heartbeat for 1 s")
    assert "marked 1 abandoned run aborted" in after.stderr


def test_connections_killed_mid_extract_mark_the_row_aborted_with_the_reason(warehouse, sandbox):
    set_faults(sandbox, SLOW)
    proc = start_extract(warehouse, sandbox, "prices", "--symbols", SLOW_SYMBOLS, EXTRACT_WORKERS="1")
    run_id = wait_for(lambda: running_run(warehouse, "STPA"), what="the run to record its first symbol")
    warehouse.psql("select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'extract'"
                   " and pid <> pg_backend_pid()", admin=True)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert one_line_failure(stderr).startswith("extract: warehouse unreachable or lost:")
    row = run_row(warehouse, run_id)
    assert row["status"] == "aborted" and row["finished_at"], row
    assert row["reason"].startswith("warehouse unreachable or lost:"), row


def test_sigkill_then_a_new_run_aborts_the_row_after_the_grace_period_only(warehouse, sandbox):
    set_faults(sandbox, SLOW)
    killed = start_extract(warehouse, sandbox, "prices", "--symbols", SLOW_SYMBOLS, EXTRACT_WORKERS="1",
                           DATAPIPE_RUN_GRACE_S="2")
    run_id = wait_for(lambda: running_run(warehouse, "STPA"), what="the run to record its first symbol")
    # a live run beats: another run meanwhile, with a grace shorter than the run, leaves it alone
    time.sleep(2.5)
    assert run_row(warehouse, run_id)["heartbeat_at"], "a live run should have beaten by now"
    # STPA is not slowed: the faults stay, so the first run is still going when this one ends
    concurrent = run_extract(warehouse, sandbox, "prices", "--symbols", "STPA", DATAPIPE_RUN_GRACE_S="2")
    assert concurrent.returncode == 0 and run_row(warehouse, run_id)["status"] == "running"
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    # within the grace period the row is left alone (it could be a slow run)...
    soon = run_extract(warehouse, sandbox, "quotes", "--symbols", "STPA", DATAPIPE_RUN_GRACE_S="30")
    assert soon.returncode == 0 and run_row(warehouse, run_id)["status"] == "running"
    # ...after it, the next run marks it aborted and says so
    time.sleep(2.2)
    later = run_extract(warehouse, sandbox, "quotes", "--symbols", "STPA", DATAPIPE_RUN_GRACE_S="2")
    assert later.returncode == 0, later.stderr
    row = run_row(warehouse, run_id)
    assert row["status"] == "aborted" and row["reason"].startswith("abandoned: no heartbeat for 2 s"), row
    assert warehouse.psql("select count(*) from ops.extract_runs where status = 'running'") == "0"


def test_debug_prints_the_traceback(sandbox):
    env = {"PATH": "/usr/bin:/bin", "ALPHAVANTAGE_BASE_URL": sandbox, "ALPHAVANTAGE_API_KEY": "KEYKEYKEY99",
           "PGHOST": "127.0.0.1", "PGPORT": "1", "PGUSER": "nobody", "PGDATABASE": "nothing"}
    plain = subprocess.run([str(EXTRACT), "prices", "--symbols", "IBM"], env=env, capture_output=True, text=True,
                           timeout=60)
    debug = subprocess.run([str(EXTRACT), "prices", "--symbols", "IBM", "--debug"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert plain.returncode == debug.returncode == 3
    assert one_line_failure(plain.stderr) == debug.stderr.strip().splitlines()[-1]
    assert "Traceback" in debug.stderr and "psycopg.OperationalError" in debug.stderr
    assert "KEYKEYKEY99" not in plain.stderr + debug.stderr


# -- credentials inside ALPHAVANTAGE_BASE_URL -------------------------------------------------------------

SECRETS = ("basicuser", "pw-9f8e7d", "tok-5a4b3c", "key-1q2w3e", "pass-0o9i8u", "apikey-7y6t5r")


def secret_url(sandbox: str) -> str:
    host = sandbox.removeprefix("http://")
    return (f"http://basicuser:pw-9f8e7d@{host}?token=tok-5a4b3c&key=key-1q2w3e&password=pass-0o9i8u"
            "&apikey=apikey-7y6t5r&region=us")


def test_url_credentials_are_masked_wherever_the_base_url_is_printed_or_stored(warehouse, sandbox):
    set_faults(sandbox, ["html503?symbols=UB&times=1", "error?symbols=UC"])
    result = run_extract(warehouse, secret_url(sandbox), "prices", "--symbols", "UA,UB,UC",
                         EXTRACT_LOG_LEVEL="DEBUG")
    assert result.returncode == 1, result.stderr  # UC is refused; UA and UB are stored
    stored = warehouse.psql(f"select base_url from ops.extract_runs where run_id = '{result.run_id}'")
    host = sandbox.removeprefix("http://")
    assert stored == f"http://***@{host}?token=***&key=***&password=***&apikey=***&region=us"
    assert stored in result.stderr  # the run's first log line names it, masked the same way
    request_urls = warehouse.psql(f"select string_agg(request_url, ' ') from raw.time_series_daily"
                                  f" where run_id = '{result.run_id}'")
    assert "function=TIME_SERIES_DAILY" in request_urls
    for table in ("raw.time_series_daily", "ops.extract_runs", "ops.extract_run_symbols"):
        dump = warehouse.psql(f"select coalesce(string_agg(t::text, E'\\n'), '') from {table} t")
        for secret in SECRETS:
            assert secret not in dump, (table, secret)
    for secret in (*SECRETS, TEST_KEY):
        assert secret not in result.stdout + result.stderr, secret


def test_url_credentials_are_masked_in_configuration_and_warehouse_errors(warehouse, sandbox):
    bad = secret_url(sandbox).replace("http://", "ftp://")
    refused = run_extract(warehouse, bad, "prices", "--symbols", "UA")
    assert refused.returncode == 2 and "must start with http://" in refused.stderr
    unreachable = subprocess.run(
        [str(EXTRACT), "prices", "--symbols", "UA", "--debug"],
        env={"PATH": "/usr/bin:/bin", "ALPHAVANTAGE_BASE_URL": secret_url(sandbox), "PGHOST": "127.0.0.1",
             "PGPORT": "1", "PGUSER": "nobody", "PGDATABASE": "nothing"},
        capture_output=True, text=True, timeout=60,
    )
    assert unreachable.returncode == 3
    for secret in SECRETS:
        assert secret not in refused.stderr + unreachable.stderr, secret


def test_mask_url_and_url_secrets():
    assert mask_url("https://u:p%40ss@h:1/q?Token=t&monkey=m&api_key=k#apikey=f") == (
        "https://***@h:1/q?Token=***&monkey=m&api_key=***#apikey=***")
    assert mask_url("https://only-a-token@h/q") == "https://***@h/q"
    assert mask_url("http://127.0.0.1:8765/query") == "http://127.0.0.1:8765/query"
    assert set(url_secrets("https://u:p%40ss@h/q?token=t&x=1")) == {"u", "p%40ss", "p@ss", "t"}
