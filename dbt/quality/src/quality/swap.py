"""Publish's exclusive window: swapping the staged marts into place, short and bounded.

Readers hold ACCESS SHARE locks on the published marts while their queries run. Renaming a table
needs ACCESS EXCLUSIVE, which waits for the readers already inside and, while it waits, queues
every reader that comes after it. So the swap is the last statement of publish's transaction and
ONE statement (a DO block: lock every published mart that is replaced, then the renames), run
under `lock_timeout` and `statement_timeout` of QUALITY_SWAP_TIMEOUT_S. Either it is done within
that bound, or it is cancelled and rolled back to a savepoint (the staged copies and everything
else publish did stay), the queued readers go through, and after a pause of the same length it
tries again, until QUALITY_LOCK_TIMEOUT_S has passed; then publish gives up and nothing changes.
A reader therefore waits at most the bound (plus publish's commit) for publish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import errors, sql

from quality import db
from quality.settings import Settings

# What a cancelled attempt raises: its lock wait or the statement ran past the bound, or it met a
# reader that locks several marts in the other order (the reader or this attempt is cancelled).
_STEP_BACK = (errors.LockNotAvailable, errors.QueryCanceled, errors.DeadlockDetected)


class SwapTimeout(RuntimeError):
    """The exclusive locks were not obtained within QUALITY_LOCK_TIMEOUT_S; nothing was swapped."""

    def __init__(self, attempts: int, settings: Settings) -> None:
        super().__init__(
            f"readers held the published marts for longer than QUALITY_LOCK_TIMEOUT_S"
            f" ({settings.lock_timeout_s:g} s): {attempts} attempts of at most"
            f" {settings.swap_timeout_s:g} s each (QUALITY_SWAP_TIMEOUT_S) did not get the exclusive locks"
        )
        self.attempts = attempts


@dataclass(frozen=True)
class Swap:
    """How the swap went: `started` is time.monotonic() when the attempt that succeeded began."""

    attempts: int
    bound_s: float
    started: float
    stepped_back_s: float

    def describe(self, finished: float) -> str:
        """The window from the successful attempt's start to `finished` (after the commit)."""
        window_ms = round((finished - self.started) * 1000)
        text = (f"exclusive window {window_ms} ms (bound {round(self.bound_s * 1000)} ms),"
                f" {self.attempts} attempt{'s' if self.attempts != 1 else ''}")
        if self.attempts > 1:
            text += f"; stepped back for readers for {self.stepped_back_s:.1f} s"
        return text


def swap_in(conn: psycopg.Connection, marts: str, staged: list[str], settings: Settings) -> Swap:
    """Replace each published mart of `staged` by its `<mart>__publishing` copy; the caller's
    transaction must commit right after (the locks are held until then)."""
    first = time.monotonic()
    if not staged:
        return Swap(0, settings.swap_timeout_s, first, 0.0)
    statement = _statement(conn, marts, staged)
    bound = sql.Literal(f"{round(settings.swap_timeout_s * 1000)}ms")
    conn.execute(sql.SQL("set local lock_timeout = {}").format(bound))
    conn.execute(sql.SQL("set local statement_timeout = {}").format(bound))
    deadline = first + settings.lock_timeout_s
    attempts = 0
    while True:
        attempts += 1
        started = time.monotonic()
        try:
            with conn.transaction():  # a savepoint: a cancelled attempt undoes only itself
                conn.execute(statement)
            return Swap(attempts, settings.swap_timeout_s, started, started - first)
        except _STEP_BACK:
            # the next attempt must fit, pause included
            if time.monotonic() + 2 * settings.swap_timeout_s > deadline:
                raise SwapTimeout(attempts, settings) from None
            time.sleep(settings.swap_timeout_s)


def _statement(conn: psycopg.Connection, marts: str, staged: list[str]) -> sql.Composed:
    """One DO block: lock the published marts being replaced (all at once, in a fixed order),
    then rename each out of the way, the staged copy in, and drop the old one."""
    steps: list[sql.Composable] = []
    published = [m for m in staged if db.table_exists(conn, marts, m)]
    if published:
        tables = sql.SQL(", ").join(sql.Identifier(marts, m) for m in sorted(published))
        steps.append(sql.SQL("lock table {} in access exclusive mode;").format(tables))
    for mart in staged:
        retired = sql.Identifier(marts, f"{mart}__retired")
        steps += [
            sql.SQL("drop table if exists {};").format(retired),
            sql.SQL("alter table if exists {} rename to {};").format(
                sql.Identifier(marts, mart), sql.Identifier(f"{mart}__retired")),
            sql.SQL("alter table {} rename to {};").format(
                sql.Identifier(marts, f"{mart}__publishing"), sql.Identifier(mart)),
            sql.SQL("drop table if exists {};").format(retired),
        ]
    return sql.SQL("do $swap$ begin {} end $swap$").format(sql.SQL(" ").join(steps))
