"""Read-only access to the warehouse: one shared connection per connection string, typed errors.

Every statement is parameterized (psycopg placeholders); the session is read-only
(`default_transaction_read_only`) on top of the reader role's SELECT-only grants.
"""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import psycopg
from psycopg import errors as pg_errors


class DashboardDataError(Exception):
    """Base of the errors the pages turn into friendly states."""


class WarehouseUnavailable(DashboardDataError):
    """The warehouse cannot be reached (down, wrong host/port, refused, timed out)."""


class NotPublished(DashboardDataError):
    """A mart or ops table does not exist yet: the pipeline has not published anything."""


class AccessDenied(DashboardDataError):
    """The reader role lacks a grant (run `quality grant-reader`)."""


class Publishing(DashboardDataError):
    """A query waited too long for a lock on a published mart: `quality publish` is swapping new
    tables in (the only locks readers ever wait for). Retry in a moment."""


class Connector:
    """A lazily opened, automatically re-opened connection shared by the app's sessions."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self._conninfo, autocommit=True)
            except psycopg.OperationalError as exc:
                raise WarehouseUnavailable(_first_line(exc)) from None
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> pd.DataFrame:
        """Run one SELECT and return its rows as a DataFrame (columns named as selected)."""
        with self._lock:
            # A connection that died with a restarted server is retried once on a fresh one.
            for attempt in (1, 2):
                conn = self._connect()
                try:
                    # Binary results: floats and dates arrive without text parsing.
                    with conn.cursor(binary=True) as cur:
                        cur.execute(sql, params)
                        columns = [c.name for c in cur.description or ()]
                        rows = cur.fetchall()
                    return _frame(columns, rows)
                except (pg_errors.UndefinedTable, pg_errors.InvalidSchemaName, pg_errors.UndefinedColumn) as exc:
                    raise NotPublished(_first_line(exc)) from None
                except pg_errors.InsufficientPrivilege as exc:
                    raise AccessDenied(_first_line(exc)) from None
                except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected) as exc:
                    # lock_timeout (settings.LOCK_TIMEOUT_MS), or a deadlock with publish's swap
                    raise Publishing(_first_line(exc)) from None
                except psycopg.OperationalError as exc:
                    self._drop()
                    if attempt == 2:
                        raise WarehouseUnavailable(_first_line(exc)) from None
                except psycopg.InterfaceError as exc:
                    self._drop()
                    if attempt == 2:
                        raise WarehouseUnavailable(_first_line(exc)) from None
        raise AssertionError("unreachable")

    def ping(self) -> bool:
        try:
            self.query("select 1 as ok")
        except DashboardDataError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._drop()


def _frame(columns: list[str], rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    """The plain constructor: several times faster than from_records for thousands of rows."""
    return pd.DataFrame(rows, columns=columns)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
