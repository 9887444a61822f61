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
from datapipe_common.failures import explain
from datapipe_common.runs import Heartbeat, heartbeat_interval

from extract import db, endpoints
from extract.client import ApiClient, Attempt, Response, RunStopped
from extract.errors import ExtractError, NoDataError, StopAllError
from extract.history import DailyHistory, KeyTier
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
    def __init__(self, settings: Settings, command: str, symbols: Sequence[str], *, full: bool = False,
                 missing_only: bool = False, endpoint: endpoints.Endpoint | None = None) -> None:
        self.settings = settings
        self.command = command
        self.endpoint = endpoint or endpoints.by_command(command)
        self.function = self.endpoint.function
        self.fallback = endpoints.endpoint(self.endpoint.fallback) if self.endpoint.fallback else None
        self.symbols = list(symbols)
        self.full = full
        self.missing_only = missing_only
        self.run_id = uuid.uuid4()
        self.stop = threading.Event()
        self.limiter = RateLimiter(settings.requests_per_minute)
        self.client = ApiClient(settings, self.limiter, self.stop)
        self.base_url = settings.public_base_url  # userinfo and secret query values masked
        self.key_fingerprint = db.key_fingerprint(settings.api_key)
        self.tier = KeyTier(None)  # what ops.api_tiers knows is read at the start of execute()
        self.history = DailyHistory(self.client, self.endpoint, self.tier, full=full, now=settings.clock(),
                                    run_id=self.run_id) if self.endpoint.output_sizes else None
        self.params: dict[str, str] = {}  # more query parameters of every request
        self.outcomes: dict[str, db.SymbolOutcome] = {}
        self.progress = Progress(total=len(self.symbols), interval_s=5.0, every_symbol=len(self.symbols) <= 50)
        self.fatal: BaseException | None = None

    def mask(self, text: str) -> str:
        return mask_secret(text, self.settings.secrets)

    # -- one symbol -------------------------------------------------------------------------------
    def _fetch(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome,
               attempt: Attempt) -> tuple[Response, db.Gap | None]:
        """The symbol's answer (series: the output size extract.history decides) and the accepted gap
        whose restart day it sets."""
        if self.history is None:
            return self.client.fetch(self.function, outcome.symbol, attempt, extra=self.params), None
        response, outcome.output_size, restart = self.history.fetch(conn, outcome.symbol, attempt)
        return response, restart

    def process(self, conn: psycopg.Connection[tuple[object, ...]], symbol: str) -> db.SymbolOutcome:
        outcome = db.SymbolOutcome(symbol, self.function, None, started_at=_now())
        if self.stop.is_set():
            return self._skip(conn, outcome)
        attempt = Attempt()
        try:
            response, restart = self._fetch(conn, outcome, attempt)
        except RunStopped as exc:
            if attempt.requests == 0:
                return self._skip(conn, outcome)
            self._fail(outcome, attempt, exc)
        except NoDataError as exc:
            return self._no_data(conn, outcome, attempt, exc)
        except (StopAllError, ExtractError) as exc:
            self._fail(outcome, attempt, exc)
        except Exception as exc:  # a bug or an unexpected library error: fail this symbol, keep going
            log.exception("%s %s: unexpected error", self.function, symbol)
            self._fail(outcome, attempt, ExtractError(f"unexpected error: {type(exc).__name__}: {exc}"))
        else:
            return self._store(conn, outcome, attempt, response, restart)
        db.record_symbol(conn, self.run_id, outcome)
        return outcome

    def _no_data(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome, attempt: Attempt,
                 exc: NoDataError) -> db.SymbolOutcome:
        """The API has nothing for the symbol: its answer is stored (so `--missing` does not ask again) and
        the symbol is `no_data`, not failed; then the endpoint's fallback, if any, is asked (an ETF's
        ETF_PROFILE when OVERVIEW has nothing)."""
        why = self.mask(exc.reason)
        self._store_answer(conn, outcome, attempt, exc.body, why)
        if self.fallback is None or outcome.function == self.fallback.function:
            return outcome
        log.info("%s %s: %s; asking %s", self.function, outcome.symbol, why, self.fallback.function)
        outcome.function, outcome.started_at = self.fallback.function, _now()
        try:
            response = self.client.fetch(self.fallback.function, outcome.symbol, attempt)
        except NoDataError as again:
            return self._no_data(conn, outcome, attempt, NoDataError(f"{why}; {again.reason}", body=again.body))
        except (StopAllError, ExtractError) as failed:
            self._fail(outcome, attempt, failed)
            db.record_symbol(conn, self.run_id, outcome)
            return outcome
        outcome.reason_code, outcome.reason = None, f"{why}; {self.fallback.function} stored instead"
        return self._store(conn, outcome, attempt, response, None)

    def _store_answer(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome,
                      attempt: Attempt, body: bytes, why: str) -> None:
        """Store an answer that holds no data (`{}`) and mark the symbol `no_data` with the reason."""
        outcome.requests, outcome.bars, outcome.finished_at = attempt.requests, 0, _now()
        url = self.client.urls({"function": outcome.function, "symbol": outcome.symbol})[1]
        stamp = attempt.received_at or _now()
        db.store_payload(conn, self.run_id, outcome, url=url, requested_at=attempt.requested_at or stamp,
                         received_at=stamp, body=body)
        outcome.status, outcome.reason_code, outcome.reason = "no_data", "no_data", why
        outcome.bars = 0
        db.record_symbol(conn, self.run_id, outcome)

    def _store(self, conn: psycopg.Connection[tuple[object, ...]], outcome: db.SymbolOutcome, attempt: Attempt,
               response: Response, restart: db.Gap | None) -> db.SymbolOutcome:
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
                first_date=response.parsed.first_day,
                last_date=response.parsed.last_day,
            )
        except psycopg.DataError as exc:
            # e.g. a JSON the warehouse's jsonb refuses (\u0000): a bad payload, not a broken warehouse
            self._fail(outcome, attempt, ExtractError(f"the warehouse refused the payload: {exc}"))
            outcome.bars = 0
            db.record_symbol(conn, self.run_id, outcome)
            return outcome
        if restart is not None and response.parsed.first_day is not None:
            restart_on = dt.date.fromisoformat(response.parsed.first_day)
            db.set_restart(conn, restart.gap_id, restart_on)
            log.warning("%s: accepted gap %s..%s: the history restarts on %s (rebuild the marts with a full"
                        " refresh, docs/extract.md)", outcome.symbol, restart.missing_from, restart.missing_to,
                        restart_on)
        return outcome

    def _save_tier(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """What the run learned about the key's tier (ops.api_tiers)."""
        if self.tier.learned is not None:
            tier, evidence = self.tier.learned
            db.save_tier(conn, self.base_url, self.key_fingerprint, tier, self.run_id, self.mask(evidence))

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
    def prepare(self, conn: psycopg.Connection[tuple[object, ...]]) -> None:
        """Called once the key's known tier is loaded, before any request (a subclass's choices)."""

    def units(self) -> list[tuple[str, ...]]:
        """The work units: one symbol each (a request per symbol); a subclass may batch them."""
        return [(s,) for s in self.symbols]

    def process_unit(self, conn: psycopg.Connection[tuple[object, ...]],
                     unit: tuple[str, ...]) -> list[db.SymbolOutcome]:
        return [self.process(conn, symbol) for symbol in unit]

    def _worker(self, todo: queue.SimpleQueue[tuple[str, ...]]) -> None:
        try:
            with db.connect(self.settings.pg_env) as conn:
                while self.fatal is None:
                    try:
                        unit = todo.get_nowait()
                    except queue.Empty:
                        return
                    for outcome in self.process_unit(conn, unit):
                        self.outcomes[outcome.symbol] = outcome
                        self.progress.update(outcome, self.limiter.interval)
        except Exception as exc:  # the warehouse went away: stop everything, report it
            self.fatal = exc
            self.stop.set()

    def execute(self) -> list[db.SymbolOutcome]:
        """Run every symbol and record the run. A run that fails (the warehouse went away, an
        interrupt) marks its row `aborted` with the reason when the warehouse still answers, then
        re-raises; rows left `running` by killed runs are aborted first (datapipe_common.runs)."""
        with db.connect(self.settings.pg_env) as conn:
            db.migrate(conn)
            abandoned = db.abort_abandoned(conn, self.settings.run_grace_s)
            if abandoned:
                log.warning("marked %d abandoned run%s aborted (no heartbeat for %g s)", abandoned,
                            "s" * (abandoned != 1), self.settings.run_grace_s)
            if self.missing_only:
                self.symbols = db.symbols_without_payload(conn, self.endpoint, self.symbols)
                if not self.symbols:
                    log.info("%s: nothing missing, every symbol has an answer in %s: no request",
                             self.function, self.endpoint.relation)
                    return []
                self.progress.total = len(self.symbols)
            base_url = self.base_url
            self.tier.value = db.load_tier(conn, base_url, self.key_fingerprint)
            self.prepare(conn)
            db.start_run(conn, self.run_id, self.command, self.function, base_url, len(self.symbols),
                         self.settings.pipeline_run_id)
            try:
                outcomes = self._work(base_url)
                if self.fatal is not None:
                    with contextlib.suppress(psycopg.Error):
                        self._save_tier(conn)  # what the run learned about the key holds even so
                    raise self.fatal
                self._save_tier(conn)
                db.finish_run(conn, self.run_id, outcomes, api_tier=self.tier.value)
            except BaseException as exc:
                self._record_abort(conn, exc)
                raise
        if self.client.stop_reason is not None:
            log.error("run stopped early: %s", self.mask(self.client.stop_reason.reason))
        return outcomes

    def _work(self, base_url: str) -> list[db.SymbolOutcome]:
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
        todo: queue.SimpleQueue[tuple[str, ...]] = queue.SimpleQueue()
        units = self.units()
        for unit in units:
            todo.put(unit)
        threads = [
            threading.Thread(target=self._worker, args=(todo,), name=f"extract-{i}", daemon=True)
            for i in range(min(self.settings.workers, len(units)))
        ]
        try:
            with Heartbeat(db.heartbeat(self.settings.pg_env, self.run_id),
                           heartbeat_interval(self.settings.run_grace_s)):
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
        finally:
            self.stop.set()  # an interrupt: the workers stop at their next symbol
            self.client.parser.close()
        return [self.outcomes[s] for s in self.symbols if s in self.outcomes]

    def _record_abort(self, conn: psycopg.Connection[tuple[object, ...]], exc: BaseException) -> None:
        """Best effort: on the run's connection, else on a fresh one; nothing when the warehouse is gone
        (the next run's sweep aborts the row after the grace period)."""
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else explain(exc, mask=self.mask).what
        with contextlib.suppress(psycopg.Error):
            if not conn.closed and not conn.broken:
                conn.rollback()
                db.abort_run(conn, self.run_id, reason)
                return
        with contextlib.suppress(psycopg.Error), db.connect(self.settings.pg_env) as fresh:
            db.abort_run(fresh, self.run_id, reason)


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
