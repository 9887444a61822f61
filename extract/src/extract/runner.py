"""One extraction run: workers, the shared limiter, the run log, progress with ETA, the summary table."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import queue
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TextIO

import psycopg

from extract import db, endpoints
from extract.client import ApiClient, Attempt, RunStopped
from extract.errors import ExtractError, StopAllError
from extract.masking import mask_secret
from extract.ratelimit import RateLimiter
from extract.settings import Settings

log = logging.getLogger("extract.run")


@dataclass
class Progress:
    """Logs `[done/total] ... ETA` lines: every symbol on short runs, every few seconds on long ones."""

    total: int
    interval_s: float
    every_symbol: bool
    started: float = field(default_factory=time.monotonic)
    done: int = 0
    bars: int = 0
    _last_log: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def update(self, outcome: db.SymbolOutcome, min_gap_s: float) -> None:
        with self._lock:
            self.done += 1
            self.bars += outcome.bars
            now = time.monotonic()
            if not (self.every_symbol or now - self._last_log >= self.interval_s or self.done == self.total):
                return
            self._last_log = now
            elapsed = now - self.started
            remaining = self.total - self.done
            eta = max(remaining * elapsed / self.done, remaining * min_gap_s) if self.done else 0.0
            log.info(
                "[%d/%d] %s %s%s | %.1f symbols/s, %d bars | elapsed %s, ETA %s",
                self.done,
                self.total,
                outcome.symbol,
                outcome.status,
                f" ({outcome.reason_code})" if outcome.reason_code else "",
                self.done / elapsed if elapsed > 0 else 0.0,
                self.bars,
                _hms(elapsed),
                _hms(eta),
            )


def _hms(seconds: float) -> str:
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Run:
    def __init__(self, settings: Settings, command: str, symbols: Sequence[str], *, full: bool = False) -> None:
        self.settings = settings
        self.command = command
        self.endpoint = endpoints.by_command(command)
        self.function = self.endpoint.function
        self.symbols = list(symbols)
        self.full = full
        self.run_id = uuid.uuid4()
        self.stop = threading.Event()
        self.limiter = RateLimiter(settings.requests_per_minute)
        self.client = ApiClient(settings, self.limiter, self.stop)
        self.outcomes: dict[str, db.SymbolOutcome] = {}
        self.progress = Progress(total=len(self.symbols), interval_s=5.0, every_symbol=len(self.symbols) <= 50)
        self.fatal: BaseException | None = None

    def mask(self, text: str) -> str:
        return mask_secret(text, self.settings.api_key)

    # -- one symbol -------------------------------------------------------------------------------
    def process(self, conn: psycopg.Connection[tuple[object, ...]], symbol: str) -> db.SymbolOutcome:
        outcome = db.SymbolOutcome(symbol, self.function, None, started_at=_now())
        if self.stop.is_set():
            return self._skip(conn, outcome)
        if self.endpoint.output_sizes:
            first_load = not db.has_payload(conn, self.function, symbol)
            outcome.output_size = "full" if self.full or first_load else "compact"
        attempt = Attempt()
        try:
            response = self.client.fetch(self.function, symbol, attempt, outcome.output_size)
        except RunStopped as exc:
            if attempt.requests == 0:
                return self._skip(conn, outcome)
            self._fail(outcome, attempt, exc)
        except (StopAllError, ExtractError) as exc:
            self._fail(outcome, attempt, exc)
        except Exception as exc:  # a bug or an unexpected library error: fail this symbol, keep going
            log.exception("%s %s: unexpected error", self.function, symbol)
            self._fail(outcome, attempt, ExtractError(f"unexpected error: {type(exc).__name__}: {exc}"))
        else:
            outcome.requests = attempt.requests
            outcome.bars = response.parsed.bars
            outcome.finished_at = _now()
            try:
                db.store_payload(
                    conn,
                    self.run_id,
                    outcome,
                    url=response.url,
                    requested_at=response.requested_at,
                    received_at=response.received_at,
                    body=response.parsed.body,
                )
                return outcome
            except psycopg.DataError as exc:
                # e.g. a JSON the warehouse's jsonb refuses (\u0000): a bad payload, not a broken warehouse
                self._fail(outcome, attempt, ExtractError(f"the warehouse refused the payload: {exc}"))
                outcome.bars = 0
        db.record_symbol(conn, self.run_id, outcome)
        return outcome

    def _fail(self, outcome: db.SymbolOutcome, attempt: Attempt, exc: ExtractError) -> None:
        outcome.status = "failed"
        outcome.requests = attempt.requests
        outcome.reason_code = exc.reason_code
        outcome.reason = self.mask(exc.reason)
        outcome.finished_at = _now()
        log.error("%s %s failed [%s]: %s", self.function, outcome.symbol, outcome.reason_code, outcome.reason)

    def _skip(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome) -> db.SymbolOutcome:
        stop = self.client.stop_reason
        outcome.status = "skipped"
        outcome.reason_code = "not_attempted"
        outcome.reason = self.mask(
            f"not attempted: the run stopped after {stop.reason_code}" if stop else "not attempted: the run stopped"
        )
        outcome.finished_at = _now()
        db.record_symbol(conn, self.run_id, outcome)
        return outcome

    # -- workers ----------------------------------------------------------------------------------
    def _worker(self, todo: queue.SimpleQueue[str]) -> None:
        try:
            with db.connect(self.settings.pg_env) as conn:
                while self.fatal is None:
                    try:
                        symbol = todo.get_nowait()
                    except queue.Empty:
                        return
                    outcome = self.process(conn, symbol)
                    self.outcomes[symbol] = outcome
                    self.progress.update(outcome, self.limiter.interval)
        except Exception as exc:  # the warehouse went away: stop everything, report it
            self.fatal = exc
            self.stop.set()

    def execute(self) -> list[db.SymbolOutcome]:
        with db.connect(self.settings.pg_env) as conn:
            db.migrate(conn)
            base_url = self.mask(self.settings.base_url)
            db.start_run(conn, self.run_id, self.command, self.function, base_url, len(self.symbols))
            log.info(
                "run %s: %s for %d symbol%s from %s (%s req/min, %d worker%s)",
                self.run_id,
                self.function,
                len(self.symbols),
                "s" * (len(self.symbols) != 1),
                base_url,
                f"{self.settings.requests_per_minute:g}" if self.settings.requests_per_minute else "unlimited",
                self.settings.workers,
                "s" * (self.settings.workers != 1),
            )
            todo: queue.SimpleQueue[str] = queue.SimpleQueue()
            for s in self.symbols:
                todo.put(s)
            threads = [
                threading.Thread(target=self._worker, args=(todo,), name=f"extract-{i}", daemon=True)
                for i in range(min(self.settings.workers, len(self.symbols)))
            ]
            try:
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
            finally:
                self.client.parser.close()
            outcomes = [self.outcomes[s] for s in self.symbols if s in self.outcomes]
            if self.fatal is not None:
                with contextlib.suppress(psycopg.Error):
                    db.finish_run(conn, self.run_id, outcomes, failed=True)
                raise self.fatal
            db.finish_run(conn, self.run_id, outcomes)
        if self.client.stop_reason is not None:
            log.error("run stopped early: %s", self.mask(self.client.stop_reason.reason))
        return outcomes


def summary_table(outcomes: Sequence[db.SymbolOutcome], out: TextIO = sys.stdout, *, width: int = 70) -> None:
    """symbol | status | bars | requests | reason, then totals."""
    sym_w = max([6, *(len(o.symbol) for o in outcomes)])
    header = f"{'symbol':<{sym_w}}  {'status':<9}  {'bars':>7}  {'req':>3}  reason"
    print(header, file=out)
    print("-" * len(header), file=out)
    for o in outcomes:
        reason = ""
        if o.reason_code:
            reason = f"{o.reason_code}: {o.reason or ''}"
            if len(reason) > width:
                reason = reason[: width - 3] + "..."
        print(f"{o.symbol:<{sym_w}}  {o.status:<9}  {o.bars:>7}  {o.requests:>3}  {reason}", file=out)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    print("-" * len(header), file=out)
    print(
        f"{len(outcomes)} symbols: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {sum(o.bars for o in outcomes)} bars, {sum(o.requests for o in outcomes)} requests",
        file=out,
    )
