"""HTTP calls to Alpha Vantage (or the sandbox): rate limit, retries with backoff and jitter, typed errors."""

from __future__ import annotations

import datetime as dt
import logging
import random
import threading
from dataclasses import dataclass
from urllib.parse import urlencode

import urllib3
from urllib3.exceptions import (
    HTTPError,
    NewConnectionError,
    ProtocolError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)

from extract import protocol
from extract.errors import EmptyAnswerError, ExtractError, NoDataError, StopAllError, ThrottledError, TransientError
from extract.masking import mask_secret
from extract.parsing import Parser
from extract.ratelimit import RateLimiter
from extract.settings import Settings

log = logging.getLogger("extract.client")


class RunStopped(ExtractError):
    """The run was stopped (daily quota, premium, demo key) before this symbol could finish."""


@dataclass
class Attempt:
    """What one symbol cost: requests sent (retries included) and the final outcome's timestamps."""

    requests: int = 0
    requested_at: dt.datetime | None = None
    received_at: dt.datetime | None = None


@dataclass(frozen=True)
class Response:
    parsed: protocol.Parsed
    url: str  # without the key
    requested_at: dt.datetime
    received_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ApiClient:
    """Thread-safe: one instance shared by every worker of a run."""

    def __init__(
        self, settings: Settings, limiter: RateLimiter, stop: threading.Event, *, seed: int | None = None
    ) -> None:
        self.settings = settings
        self.limiter = limiter
        self.stop = stop
        self.stop_reason: ExtractError | None = None
        self.parser = Parser(settings.parse_processes)
        self._rng = random.Random(seed)  # noqa: S311 - deterministic data, not crypto
        timeout = urllib3.Timeout(connect=min(10.0, settings.timeout_s), read=settings.timeout_s)
        self.http = urllib3.PoolManager(num_pools=2, maxsize=max(1, settings.workers), retries=False, timeout=timeout)

    def urls(self, params: dict[str, str]) -> tuple[str, str]:
        """(URL sent, URL stored): the stored one never carries the key nor the base URL's credentials."""
        base = self.settings.base_url
        sep = "&" if "?" in base else "?"
        sent = f"{base}{sep}{urlencode(params)}"
        public = f"{self.settings.public_base_url}{sep}{urlencode(params)}"
        if self.settings.api_key is None:
            return sent, public
        return f"{sent}&{urlencode({'apikey': self.settings.api_key})}", public

    def mask(self, text: str) -> str:
        return mask_secret(text, self.settings.secrets)

    def _delay(self, error: TransientError, attempt: int) -> float:
        s = self.settings
        base = s.throttle_wait_s if isinstance(error, ThrottledError) else s.backoff_s * (2**attempt)
        return min(s.backoff_max_s, base) * self._rng.uniform(0.5, 1.0)

    def request_stop(self, error: StopAllError) -> None:
        if not self.stop.is_set():
            self.stop_reason = error
            self.stop.set()

    def fetch(self, function: str, symbol: str, attempt: Attempt, output_size: str | None = None) -> Response:
        """GET one payload, retrying transient failures; raises PermanentSymbolError, StopAllError,
        RunStopped, or the last TransientError once the retries are spent."""
        params = {"function": function, "symbol": symbol}
        if output_size:
            params["outputsize"] = output_size
        url, public_url = self.urls(params)
        retry = 0
        while True:
            if self.stop.is_set():
                reason = self.stop_reason.reason if self.stop_reason else "run stopped"
                raise RunStopped(
                    f"not retried: the run stopped ({reason})",
                    reason_code=(self.stop_reason.reason_code if self.stop_reason else "not_attempted"),
                )
            self.limiter.acquire()
            attempt.requests += 1
            requested_at = _now()
            attempt.requested_at = requested_at
            try:
                try:
                    resp = self.http.request("GET", url, preload_content=True)
                except NewConnectionError as exc:
                    raise TransientError(f"cannot connect: {exc}", reason_code="connection_error") from None
                except Urllib3Timeout as exc:
                    raise TransientError(
                        f"timed out after {self.settings.timeout_s:g}s: {exc}", reason_code="timeout"
                    ) from None
                except (ProtocolError, HTTPError, OSError) as exc:
                    raise TransientError(f"connection failed: {exc}", reason_code="connection_error") from None
                received_at = _now()
                attempt.received_at = received_at
                parsed = self.parser.interpret(
                    resp.status,
                    resp.headers.get("Content-Type"),
                    resp.data,
                    function=function,
                    symbol=symbol,
                    key=self.settings.api_key,
                )
                return Response(parsed, public_url, requested_at, received_at)
            except StopAllError as exc:
                self.request_stop(exc)
                raise
            except TransientError as exc:
                exc.args = (self.mask(str(exc)),)
                if isinstance(exc, EmptyAnswerError) and retry >= min(exc.retries, self.settings.max_retries):
                    # the same `{}` again: the API has nothing for this symbol (not a glitch)
                    raise NoDataError(f"{exc} ({attempt.requests} request{'s' * (attempt.requests != 1)})",
                                      body=resp.data) from None
                if retry >= self.settings.max_retries:
                    raise type(exc)(
                        f"{exc} (gave up after {attempt.requests} request{'s' * (attempt.requests != 1)})",
                        reason_code=exc.reason_code,
                    ) from None
                delay = self._delay(exc, retry)
                log.warning(
                    "%s %s: %s; retry %d/%d in %.1fs",
                    function,
                    symbol,
                    exc,
                    retry + 1,
                    self.settings.max_retries,
                    delay,
                )
                retry += 1
                if self.stop.wait(delay):
                    continue  # loop top raises RunStopped
