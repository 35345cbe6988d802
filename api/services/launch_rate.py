"""A fleet-wide rate of RunJob calls, below Cloud Run's "Job run requests per minute
per region" quota (DESIGN section 9; docs/decisions/0014).

Every API instance launches tasks; the quota is the project's. So the budget lives in
Firestore, shared: time is cut into short windows, each with its share of the
per-minute rate, spread over a few shard documents so that no document takes more
than a write or so a second. Taking a launch is one atomic increment of a random
shard (no transaction, no read first); a result past the shard's share means that
shard is spent, and another is tried. When every shard of the window is spent, the
caller waits for the next window and its task stays `queued`.

Short windows keep bursts small: a fixed one-minute window would allow twice the rate
across a minute boundary; with 10 s windows any 60 s holds at most the rate plus one
window's share.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

# Windows of this many seconds (Firestore's TTL on runLaunchWindows.expireAt deletes
# spent ones).
WINDOW_SECONDS = 10
MAX_SHARDS = 4
# Spent windows are kept a little while for anyone reading them, then expire.
WINDOW_TTL = timedelta(hours=1)


class WindowCounters(Protocol):
    def add_launch_count(self, window: int, shard: int, amount: int, expire_at: datetime) -> int:
        """Add `amount` to the shard's count of launches atomically; the value after."""
        ...


class LaunchRate:
    """`acquire()` grants one RunJob call now (0.0) or says how many seconds to wait."""

    def __init__(
        self,
        counters: WindowCounters,
        per_minute: int,
        *,
        window_seconds: float = WINDOW_SECONDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if per_minute < 1:
            raise ValueError("the launch rate must be at least 1 per minute")
        self.counters = counters
        # Long enough for one launch: a rate under 6 a minute gets longer windows.
        self.window_seconds = max(window_seconds, 60 / per_minute)
        # The window's share, rounded down so that the windows of a minute never sum to
        # more than the rate.
        self.per_window = max(1, int(per_minute * self.window_seconds // 60))
        self.shards = min(MAX_SHARDS, self.per_window)
        self.clock = clock
        self._lock = threading.Lock()
        # This instance's knowledge of spent shards: (window, shard). Saves a write to a
        # shard that is known spent; another instance may still spend the others.
        self._spent: set[tuple[int, int]] = set()

    def share(self, shard: int) -> int:
        """Shard `shard`'s part of the window's launches."""
        base, extra = divmod(self.per_window, self.shards)
        return base + (1 if shard < extra else 0)

    def _window(self) -> tuple[int, float]:
        now = self.clock()
        window = int(now // self.window_seconds)
        return window, (window + 1) * self.window_seconds - now

    def _expiry(self, window: int) -> datetime:
        end = datetime.fromtimestamp((window + 1) * self.window_seconds, UTC)
        return end + WINDOW_TTL

    def acquire(self) -> float:
        window, left = self._window()
        with self._lock:
            self._spent = {key for key in self._spent if key[0] >= window}
            candidates = [s for s in range(self.shards) if (window, s) not in self._spent]
        random.shuffle(candidates)
        for shard in candidates:
            count = self.counters.add_launch_count(window, shard, 1, self._expiry(window))
            if count <= self.share(shard):
                return 0.0
            with self._lock:
                self._spent.add((window, shard))
        # Every shard is spent: the next window, spread a little so that the waiting
        # instances do not all ask at its first instant.
        return left + random.uniform(0, self.window_seconds / 4)
