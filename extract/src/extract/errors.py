"""Typed outcomes of one API call. Every error carries a `reason_code` of ops.extract_run_symbols."""

from __future__ import annotations


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


class PermanentSymbolError(ExtractError):
    """This symbol cannot succeed in this run (invalid symbol, invalid payload); other symbols go on."""


class StopAllError(ExtractError):
    """No further request can succeed in this run: daily quota, premium-only endpoint, demo key."""
