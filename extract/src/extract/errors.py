"""Typed outcomes of one API call. Every error carries a `reason_code` of ops.extract_run_symbols."""

from __future__ import annotations

# Every reason_code of ops.extract_run_symbols (db.migrate keeps the table's check constraint equal to it).
REASON_CODES = (
    "invalid_symbol", "throttled", "daily_quota", "premium_endpoint", "premium_feature", "demo_key",
    "invalid_payload", "http_error", "timeout", "connection_error", "not_attempted", "history_gap", "no_data",
)
# Every status of ops.extract_run_symbols; `no_data`: the API has nothing for the symbol (counted as ok).
STATUSES = ("succeeded", "unchanged", "no_data", "failed", "skipped")


class ExtractError(Exception):
    """Base class: `reason_code` (docs/warehouse.md) and a readable, key-free message."""

    reason_code = "invalid_payload"

    def __init__(self, message: str, *, reason_code: str | None = None) -> None:
        super().__init__(message)
        if reason_code is not None:
            self.reason_code = reason_code

    @property
    def reason(self) -> str:
        return str(self)


class TransientError(ExtractError):
    """Worth retrying with backoff: outages, throttling, truncated or empty bodies, timeouts."""


class ThrottledError(TransientError):
    """A `Note` / `Information` throttle text: wait and retry (bounded)."""

    reason_code = "throttled"


class EmptyAnswerError(TransientError):
    """`{}` where an endpoint answers `{}` for a symbol it has nothing about (OVERVIEW of an ETF): retried
    `retries` times (a glitch), then the answer stands (NoDataError)."""

    retries = 1


class PermanentSymbolError(ExtractError):
    """This symbol cannot succeed in this run (invalid symbol, invalid payload); other symbols go on."""


class PremiumFeatureError(PermanentSymbolError):
    """A parameter value this key may not use (a free key asking `outputsize=full`): permanent for the
    request, never retried; the caller may ask again without it."""

    reason_code = "premium_feature"


class HistoryGapError(PermanentSymbolError):
    """Sessions are missing between the stored history and what the API can still give (a free key
    after a long outage): the symbol fails, nothing is stored, until the gap is accepted."""

    reason_code = "history_gap"


class NoDataError(PermanentSymbolError):
    """The API has nothing for this symbol (`{}` again after a retry): a permanent, legitimate answer,
    stored as received so it is not asked again, and not a failure."""

    reason_code = "no_data"

    def __init__(self, message: str, *, body: bytes = b"{}") -> None:
        super().__init__(message)
        self.body = body


class StopAllError(ExtractError):
    """No further request can succeed in this run: daily quota, premium-only endpoint, demo key."""
