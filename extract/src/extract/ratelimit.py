"""One client-side rate limiter shared by every worker thread of a run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# Spacing slightly above 60/R: network jitter between our send and the server's clock never makes
# the server see more than R requests in a minute, and the achieved rate stays above 99 % of R.
SAFETY = 1.01


class RateLimiter:
    """At most `per_minute` acquisitions per minute, evenly spaced (burst of one). 0 disables it.

    The lock is held while waiting, so waiting workers are released one at a time, each at least
    60/R seconds after the previous release, whatever the number of threads.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = SAFETY * 60.0 / per_minute if per_minute > 0 else 0.0
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._last: float | None = None

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            waited = 0.0
            if self._last is not None:
                wait = self._last + self.interval - now
                if wait > 0:
                    self._sleep(wait)
                    waited = wait
                    now = self._clock()
            self._last = now
            return waited
