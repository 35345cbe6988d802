"""A per-user request rate on the public API: a token bucket per user, per instance.

Each user's bucket holds up to USER_REQUEST_BURST tokens and refills at
USER_REQUESTS_PER_SECOND; every authenticated public request takes one, and a
request that finds the bucket empty is answered 429 with the seconds until the next
token in `Retry-After`. Buckets live in this process only: with N instances a user
gets up to N times the rate, which is what the setting bounds (the cost one
instance's threads can be made to spend), while Firestore-held limits (admission)
bound what a user can make the platform hold.
"""

from __future__ import annotations

import math
import threading
import time

from api.errors import ApiError

MAX_BUCKETS = 10_000


class RequestRate:
    def __init__(self, per_second: float, burst: int) -> None:
        self.per_second = per_second
        self.burst = max(1, burst)
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def take(self, user: str) -> None:
        """Take one token for `user`, or raise 429 `rate_limited` with Retry-After."""
        if self.per_second <= 0:
            return  # USER_REQUESTS_PER_SECOND=0 turns the limit off
        now = time.monotonic()
        with self._lock:
            tokens, at = self._buckets.get(user, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.per_second)
            if tokens < 1:
                self._buckets[user] = (tokens, now)
                wait = (1 - tokens) / self.per_second
                raise ApiError(
                    429,
                    "rate_limited",
                    f"Over {self.per_second:g} requests per second (bursts of {self.burst}); "
                    "retry after Retry-After seconds.",
                    retry_after=max(1, math.ceil(wait)),
                )
            if len(self._buckets) >= MAX_BUCKETS and user not in self._buckets:
                self._forget_full(now)
            self._buckets[user] = (tokens - 1, now)

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        refill = self.burst / self.per_second
        self._buckets = {u: b for u, b in self._buckets.items() if now - b[1] < refill}
