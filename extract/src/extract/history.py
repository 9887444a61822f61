"""A symbol's daily history: which output size to ask, the key's tier, and no silent holes.

Alpha Vantage gives the newest 100 sessions (`outputsize=compact`) to every key and 20+ years
(`full`) to premium keys only: a free key asking `full` gets an `Information` "premium feature"
answer (HTTP 200), which is permanent, never retried. So, per symbol of `extract prices`:

- first load (nothing stored) or `--full`: ask `full`, unless the key is known to be free; a refusal
  teaches the run (and ops.api_tiers, for later runs) that the key is free, and the symbol falls back
  to `compact` at once. At most one refused request per symbol, and after the first one none at all.
- later loads: `compact`, except when it cannot reach the newest stored bar. That is predicted by the
  NYSE sessions since that bar (more than a compact answer holds: ask `full` directly) and checked on
  every compact answer (its oldest bar must not be after the session following the stored one).
  A premium (or not yet known) key then asks `full`; a free key cannot: the symbol fails with the
  missing sessions named, nothing is stored, and ops.history_gaps records the hole until an operator
  accepts it (`extract accept-gap SYMBOL`). The next payload stored after that sets the day the
  symbol's history restarts on (staging keeps only bars from then).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid

import psycopg
from datapipe_common.calendar import nyse

from extract import db
from extract.client import ApiClient, Attempt, Response
from extract.endpoints import Endpoint
from extract.errors import HistoryGapError, PremiumFeatureError

log = logging.getLogger("extract.history")

COMPACT_SESSIONS = 100  # sessions in a compact answer


class KeyTier:
    """The API key's tier as this run knows it ('free', 'premium' or None), shared by the workers."""

    def __init__(self, known: str | None) -> None:
        self._lock = threading.Lock()
        self.value = known
        self.learned: tuple[str, str] | None = None  # (tier, evidence) learned by this run

    def learn(self, tier: str, evidence: str) -> None:
        with self._lock:
            if self.value != tier:
                log.warning("the API key is a %s key: %s", tier, evidence)
            if self.value != tier or self.learned is None:
                self.learned = (tier, evidence)
            self.value = tier

    @property
    def is_free(self) -> bool:
        return self.value == "free"


def missing_sessions(newest_stored: dt.date, answer_first: dt.date) -> list[dt.date]:
    """The sessions strictly between the newest stored bar and an answer's oldest bar."""
    if answer_first <= newest_stored:
        return []
    return [d for d in nyse().sessions(newest_stored, answer_first) if newest_stored < d < answer_first]


def gap_message(symbol: str, newest_stored: dt.date, answer_first: dt.date, missing: list[dt.date]) -> str:
    return (
        f"history gap: {len(missing)} NYSE session{'s' * (len(missing) != 1)} {missing[0]}..{missing[-1]} are"
        f" missing between the newest stored bar ({newest_stored}) and the oldest bar of the compact answer"
        f" ({answer_first}); a free key cannot fetch them (outputsize=full is a premium feature). Nothing was"
        f" stored. Accept the gap with `extract accept-gap {symbol}` (the history then restarts after it,"
        f" docs/extract.md) or use a premium key."
    )


class DailyHistory:
    """Fetch one symbol's daily series the way the module docstring says."""

    def __init__(self, client: ApiClient, endpoint: Endpoint, tier: KeyTier, *, full: bool,
                 now: dt.datetime, run_id: uuid.UUID) -> None:
        self.client = client
        self.endpoint = endpoint
        self.tier = tier
        self.full = full
        self.latest_session = nyse().latest_completed_session(now)
        self.run_id = run_id

    def predicts_gap(self, newest_stored: dt.date) -> bool:
        """More sessions closed since the newest stored bar than a compact answer holds."""
        return nyse().sessions_between(newest_stored, self.latest_session) > COMPACT_SESSIONS

    def _full(self, symbol: str, attempt: Attempt) -> Response | None:
        """The `full` answer, or None when the key may not ask it (the run learns it is free)."""
        try:
            response = self.client.fetch(self.endpoint.function, symbol, attempt, "full")
        except PremiumFeatureError as exc:
            self.tier.learn("free", exc.reason)
            return None
        self.tier.learn("premium", f"outputsize=full answered for {symbol}")
        return response

    def fetch(self, conn: psycopg.Connection[tuple[object, ...]], symbol: str,
              attempt: Attempt) -> tuple[Response, str, db.Gap | None]:
        """(answer, its output size, the accepted gap whose restart this answer sets)."""
        newest = db.newest_stored_day(conn, self.endpoint, symbol)
        restart = db.pending_restart(conn, symbol) if newest is not None else None
        want_full = self.full or newest is None or (restart is None and self.predicts_gap(newest))
        if want_full and not self.tier.is_free:
            response = self._full(symbol, attempt)
            if response is not None:
                return response, "full", restart
        elif want_full and self.full:
            log.warning("%s: --full not asked, the key is a free key: compact instead", symbol)
        response = self.client.fetch(self.endpoint.function, symbol, attempt, "compact")
        if newest is None or restart is not None or response.parsed.first_day is None:
            return response, "compact", restart
        answer_first = dt.date.fromisoformat(response.parsed.first_day)
        missing = missing_sessions(newest, answer_first)
        if not missing:
            return response, "compact", None
        if not self.tier.is_free:
            full = self._full(symbol, attempt)
            if full is not None:
                return full, "full", None
        db.record_gap(conn, self.run_id, symbol, newest, missing)
        raise HistoryGapError(gap_message(symbol, newest, answer_first, missing))
