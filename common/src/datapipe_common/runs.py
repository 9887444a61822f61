"""Run rows that never stay `running` (docs/warehouse.md, "Run rows").

`ops.extract_runs` and `ops.gate_runs` share the columns `status` ('running' until the run ends:
then its verdict, or 'aborted'), `started_at`, `finished_at`, `heartbeat_at` and `reason`:
- a run beats (sets `heartbeat_at = now()`) every `heartbeat_interval(grace)` seconds while it works;
- a run that fails marks its own row `aborted` with the reason (`abort_sql`), when the warehouse
  still answers;
- every run starts by marking `aborted` the rows whose last beat is older than the grace period
  (`sweep_sql`): the process was killed or lost the warehouse for good. DATAPIPE_RUN_GRACE_S,
  default 600 s: ten missed beats.

Stdlib only: the SQL is built here, executed by each component with its own driver.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from datapipe_common.config import env_float

RUN_TABLES = ("ops.extract_runs", "ops.gate_runs")
DEFAULT_GRACE_S = 600.0
GRACE_VARIABLE = "DATAPIPE_RUN_GRACE_S"
# the reason stored when a sweep aborts a row; `{grace}` is the grace period in seconds
ABANDONED = ("abandoned: no heartbeat for {grace:g} s (DATAPIPE_RUN_GRACE_S); the process was killed"
             " or lost the warehouse before it could record its end")


def grace_s(env: Mapping[str, str]) -> float:
    """DATAPIPE_RUN_GRACE_S: how long a `running` row may go without a heartbeat."""
    return env_float(env, GRACE_VARIABLE, DEFAULT_GRACE_S, minimum=1.0, maximum=7 * 24 * 3600.0)


def heartbeat_interval(grace: float) -> float:
    """Beat often enough that a live run misses at most a fifth of its grace period (at most every 60 s)."""
    return max(0.2, min(60.0, grace / 5))


def _check(table: str) -> str:
    if table not in RUN_TABLES:
        raise ValueError(f"{table} is not a run table ({', '.join(RUN_TABLES)})")
    return table


def sweep_sql(table: str) -> str:
    """Mark abandoned `running` rows aborted. Parameters: (reason, grace seconds); returns their keys."""
    return (f"update {_check(table)} set status = 'aborted', finished_at = now(), reason = %s"
            " where status = 'running' and coalesce(heartbeat_at, started_at) < now() - make_interval(secs => %s)"
            " returning started_at")


def heartbeat_sql(table: str, key: str) -> str:
    """Parameters: (run id,)."""
    return f"update {_check(table)} set heartbeat_at = now() where {key} = %s and status = 'running'"


def abort_sql(table: str, key: str) -> str:
    """Mark one run aborted, unless it already ended. Parameters: (reason, run id)."""
    return (f"update {_check(table)} set status = 'aborted', finished_at = now(), reason = %s"
            f" where {key} = %s and status = 'running'")


class Beat:
    """One heartbeat of a run row, on its own connection (the run's are busy): `connect()` returns a
    DB-API-like connection in autocommit mode (psycopg's), opened on first use and after a failure."""

    def __init__(self, connect: Callable[[], Any], table: str, key: str, run_id: object) -> None:
        self._connect, self._sql, self._run_id = connect, heartbeat_sql(table, key), run_id
        self._conn: Any = None

    def __call__(self) -> None:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect()
        try:
            self._conn.execute(self._sql, (self._run_id,))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


class Heartbeat:
    """Call `beat()` every `interval` seconds in a daemon thread until the block ends (then `beat.close()`
    when it has one). A failing beat is ignored (the run itself reports a lost warehouse; a missing
    beat only lets a sweep abort it)."""

    def __init__(self, beat: Callable[[], None], interval: float) -> None:
        self._beat, self._interval = beat, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._beat()
            except Exception:  # noqa: S112 - see the class docstring
                continue

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        close = getattr(self._beat, "close", None)
        if close is not None and not self._thread.is_alive():
            close()
