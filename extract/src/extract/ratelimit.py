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

    The lock is held while waiting, so waiting workers are released one at a time. Slots are
    scheduled 60/R (+1 %) apart; a release that wakes up a little late (thread scheduling on a busy
    machine, at most 10 % of the interval and 0.5 s) does not push the following slots back, so the
    achieved rate stays near R. A release later than that, or after idle time, restarts the schedule
    from now: idle time is never banked into a burst.
    """

    def __init__(
        self,
        per_minute: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = SAFETY * 60.0 / per_minute if per_minute > 0 else 0.0
        self.max_late = min(0.1 * self.interval, 0.5)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._slot: float | None = None  # when the next release is due

    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds waited."""
        if not self.interval:
            return 0.0
        with self._lock:
            now = self._clock()
            slot = now if self._slot is None else self._slot
            waited = 0.0
            if slot > now:
                self._sleep(slot - now)
                waited = slot - now
                now = self._clock()
            if now - slot > self.max_late:
                slot = now
            self._slot = slot + self.interval
            return waited
