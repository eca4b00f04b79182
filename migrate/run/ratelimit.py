"""--rate-limit: at most N keys per second read from the source (a token bucket, one second of burst)."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, keys_per_second: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.rate = keys_per_second
        self.clock = clock
        self.sleep = sleep
        self.tokens = 0.0
        self.last = clock()

    def batch_size(self, wanted: int) -> int:
        """Batches small enough that a slow rate still moves several times a second (smooth load, fine checkpoints)."""
        if self.rate is None:
            return wanted
        return max(1, min(wanted, int(self.rate / 4)))

    def acquire(self, keys: int) -> None:
        """Wait until `keys` more keys fit in the rate."""
        if self.rate is None or keys <= 0:
            return
        now = self.clock()
        self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate)
        self.last = now
        self.tokens -= keys
        if self.tokens < 0:
            self.sleep(-self.tokens / self.rate)
