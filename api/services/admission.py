"""Admission: a user's limits, without a hot document on the submission path.

Firestore sustains about one write per second per document, so nothing a
submission writes is shared by all of one user's submissions (ADR 0007):

- unsettled tasks (queued + dispatched + running): sharded counters
  `admissionShards/{owner}:u{k}` (`unsettled`, `queued`). A submission adds one to a
  random shard with an atomic increment (no transaction, no read) and reads the new
  value from the commit's transform result. Each shard holds a fixed share of the
  limit, so the shares add up to exactly MAX_UNSETTLED_TASKS_PER_USER whatever the
  number of API instances; a full shard is given back at once and another tried.
- tasks per UTC day: the same on `admissionDaily/{owner}:d{yyyymmdd}s{k}` (these
  documents carry `expireAt` for a Firestore TTL policy).
- tasks running at once (MAX_ACTIVE_TASKS_PER_USER): enforced at dispatch, in the
  transaction that moves a task to `dispatched` (`admissionRunning/{owner}`);
  tasks over it wait `queued`. That document changes at the pace tasks start and
  end, not at the pace they are submitted.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from api import config
from api.adapters.firestore_counters import CounterBusy, CounterChange
from api.adapters.firestore_paths import utc_day
from api.adapters.firestore_store import FirestoreStore
from api.errors import ApiError
from api.retry import retry_call
from api.services.llm_pricing import usd

# Unsettled tasks free up within seconds; a shard seen full is skipped this long.
FULL_SHARD_MEMORY_SECONDS = 1.0
UNSETTLED_RETRY_AFTER_SECONDS = 10
# Shards tried when commits are refused for contention, and how long a give-back retries.
BUSY_TRIES = 2 * config.ADMISSION_SHARDS
GIVE_BACK_SECONDS = 2.0
MAX_REMEMBERED = 10_000


def seconds_until_utc_midnight(now: datetime) -> int:
    tomorrow = (now.astimezone(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return max(1, int((tomorrow - now).total_seconds()))


def shard_count(limit: int) -> int:
    """Fewer shards than the limit would leave some with a share of zero."""
    return max(1, min(config.ADMISSION_SHARDS, limit))


def shard_share(limit: int, shard: int) -> int:
    """Shard `shard`'s part of `limit`; the parts add up to `limit` exactly."""
    shards = shard_count(limit)
    return limit // shards + (1 if shard < limit % shards else 0)


@dataclass(frozen=True)
class Reservation:
    """One task's share of its owner's limits: which shards hold it."""

    shard: int  # the unsettled-tasks shard (stored on the task: settling gives it back)
    day: str
    day_shard: int


class TaskAdmission:
    def __init__(
        self,
        store: FirestoreStore,
        *,
        max_unsettled: int,
        max_per_day: int,
        max_active: int,
        daily_token_budget: int = config.USER_DAILY_TOKEN_BUDGET,
        daily_cost_budget_usd: float = config.USER_DAILY_COST_BUDGET_USD,
    ) -> None:
        self.store = store
        self.daily_token_budget = daily_token_budget
        self.daily_cost_budget_usd = daily_cost_budget_usd
        self.max_unsettled = max_unsettled
        self.max_per_day = max_per_day
        self.max_active = max_active
        self._lock = threading.Lock()
        # (owner, kind) -> {shard: monotonic time until which it is taken as full}
        self._full: dict[tuple[str, str], dict[int, float]] = {}

    # -- reserving ---------------------------------------------------------------

    def reserve(self, owner: str, now: datetime) -> Reservation:
        """Take one task's share, or raise 429 naming the limit. A few commits at most:
        each try is one commit (and one more to give back a full shard)."""
        day = utc_day(now)
        # Unsettled tasks end any time: shards seen full are tried last, not skipped.
        fresh = self._candidates(owner, "u", self.max_unsettled)
        random.shuffle(fresh)
        seen_full = [k for k in range(shard_count(self.max_unsettled)) if k not in fresh]
        unsettled_left = fresh + seen_full
        daily_left = self._candidates(owner, f"d{day}", self.max_per_day)
        random.shuffle(daily_left)
        busy = 0
        while unsettled_left and daily_left:
            shard = unsettled_left.pop(0)
            day_shard = daily_left.pop(0)
            try:
                unsettled, created = self._increment(owner, shard, day, day_shard, 1, now)
            except CounterBusy:
                # Another writer holds one of these documents: try other shards (this
                # one again last), a bounded number of times.
                busy += 1
                if busy > BUSY_TRIES:
                    raise
                unsettled_left.append(shard)
                daily_left.append(day_shard)
                continue
            unsettled_full = unsettled > shard_share(self.max_unsettled, shard)
            daily_full = created > shard_share(self.max_per_day, day_shard)
            if not (unsettled_full or daily_full):
                return Reservation(shard, day, day_shard)
            self._give_back_one(owner, shard, day, day_shard, now)
            if unsettled_full:
                self._remember_full(owner, "u", shard, FULL_SHARD_MEMORY_SECONDS)
            else:
                unsettled_left.append(shard)
            if daily_full:
                self._remember_full(owner, f"d{day}", day_shard, seconds_until_utc_midnight(now))
            else:
                daily_left.append(day_shard)
        if not unsettled_left:
            raise self._unsettled_refusal(1)
        raise self._daily_refusal(now, 1)

    def reserve_many(self, owner: str, count: int, now: datetime) -> list[Reservation]:
        """All of `count` shares or none (a batch): reads every shard once, takes room
        where there is some, and gives it all back if a race filled a shard."""
        day = utc_day(now)
        u_shards, d_shards = shard_count(self.max_unsettled), shard_count(self.max_per_day)
        for _ in range(3):
            unsettled, created = self.store.read_counters(owner, day, u_shards, d_shards)
            u_room = [
                max(0, shard_share(self.max_unsettled, k) - unsettled[k]) for k in range(u_shards)
            ]
            d_room = [
                max(0, shard_share(self.max_per_day, k) - created[k]) for k in range(d_shards)
            ]
            if sum(u_room) < count:
                raise self._unsettled_refusal(count)
            if sum(d_room) < count:
                raise self._daily_refusal(now, count)
            u_take, d_take = _spread(u_room, count), _spread(d_room, count)
            after = self.store.add_to_counters(self._writes(owner, day, u_take, d_take, 1, now))
            over = any(
                value > shard_share(self.max_unsettled, k) for k, value in after["u"].items()
            ) or any(value > shard_share(self.max_per_day, k) for k, value in after["d"].items())
            if not over:
                u_list = [k for k, n in u_take.items() for _ in range(n)]
                d_list = [k for k, n in d_take.items() for _ in range(n)]
                return [Reservation(u, day, d) for u, d in zip(u_list, d_list, strict=True)]
            self._must_add(self._writes(owner, day, u_take, d_take, -1, now))
        raise self._unsettled_refusal(count)

    def give_back(self, owner: str, reservations: list[Reservation], now: datetime) -> None:
        """A reservation whose task was never stored (an idempotent repeat, a failure)."""
        u_take: dict[int, int] = {}
        d_take: dict[int, int] = {}
        for r in reservations:
            u_take[r.shard] = u_take.get(r.shard, 0) + 1
            d_take[r.day_shard] = d_take.get(r.day_shard, 0) + 1
        if reservations:
            day = reservations[0].day
            self._must_add(self._writes(owner, day, u_take, d_take, -1, now))

    # -- what GET /api/usage shows ----------------------------------------------------

    def usage(self, owner: str, now: datetime) -> dict:
        """What `GET /api/usage` shows (the one function that computes it): the caller's
        tasks today, tasks queued or running, tasks running, and LLM tokens today, each
        with its limit, and when the daily counters restart. A few reads:
        the shards in one round trip, the running count, the day's usage record."""
        day = utc_day(now)
        unsettled, created = self.store.read_counters(
            owner, day, shard_count(self.max_unsettled), shard_count(self.max_per_day)
        )
        running = self.store.running_count(owner)
        # The LLM proxy meters tokens and their cost on each day's usage record
        # (api/services/llm_budget.py); this month's days are read in one round trip.
        days = self.store.month_usages(owner, now)
        tokens = days[-1].get("llmTokens", 0)
        midnight = (now.astimezone(UTC) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return {
            "day": now.astimezone(UTC).strftime("%Y-%m-%d"),
            "tasksToday": {"used": sum(created), "limit": self.max_per_day},
            "unsettledTasks": {"used": max(0, sum(unsettled)), "limit": self.max_unsettled},
            "activeTasks": {"used": max(0, running), "limit": self.max_active},
            "llmTokensToday": {"used": tokens, "limit": self.daily_token_budget},
            "costUsdToday": {
                "used": usd(days[-1].get("llmCostNanos", 0)),
                "limit": self.daily_cost_budget_usd,
            },
            "costUsdMonth": usd(sum(day.get("llmCostNanos", 0) for day in days)),
            # When the daily counters start again: the next 00:00 UTC.
            "resetsAt": midnight.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    # -- helpers -----------------------------------------------------------------

    def _increment(
        self, owner: str, shard: int, day: str, day_shard: int, delta: int, now: datetime
    ) -> tuple[int, int]:
        after = self.store.add_to_counters(
            self._writes(owner, day, {shard: 1}, {day_shard: 1}, delta, now)
        )
        return after["u"][shard], after["d"][day_shard]

    def _give_back_one(
        self, owner: str, shard: int, day: str, day_shard: int, now: datetime
    ) -> None:
        self._must_add(self._writes(owner, day, {shard: 1}, {day_shard: 1}, -1, now))

    def _must_add(self, change: CounterChange) -> None:
        """A give-back must happen: retried with backoff when contended."""
        retry_call(
            lambda: self.store.add_to_counters(change),
            retry_if=lambda error: isinstance(error, CounterBusy),
            initial=0.05,
            maximum=0.4,
            deadline_seconds=GIVE_BACK_SECONDS,
        )

    def _writes(
        self,
        owner: str,
        day: str,
        u_take: dict[int, int],
        d_take: dict[int, int],
        sign: int,
        now: datetime,
    ) -> CounterChange:
        """What `add_to_counters` adds: `sign` times the shares taken."""
        return CounterChange(
            owner,
            day,
            {k: sign * n for k, n in u_take.items()},
            {k: sign * n for k, n in d_take.items()},
            expire_at=now + timedelta(days=2),
        )

    def _candidates(self, owner: str, kind: str, limit: int) -> list[int]:
        now = time.monotonic()
        with self._lock:
            full = self._full.get((owner, kind), {})
            return [k for k in range(shard_count(limit)) if full.get(k, 0) <= now]

    def _remember_full(self, owner: str, kind: str, shard: int, seconds: float) -> None:
        with self._lock:
            if len(self._full) > MAX_REMEMBERED:
                self._full.clear()  # a bound on memory; forgetting only costs a retry
            self._full.setdefault((owner, kind), {})[shard] = time.monotonic() + seconds

    def _unsettled_refusal(self, count: int) -> ApiError:
        return ApiError(
            429,
            "too_many_unsettled_tasks",
            f"{count} more tasks would take you past {self.max_unsettled} tasks queued or "
            "running (MAX_UNSETTLED_TASKS_PER_USER); wait for some to end or cancel some.",
            retry_after=UNSETTLED_RETRY_AFTER_SECONDS,
        )

    def _daily_refusal(self, now: datetime, count: int) -> ApiError:
        return ApiError(
            429,
            "daily_task_limit",
            f"{count} more tasks would take you past {self.max_per_day} tasks today, the "
            "limit per UTC day (MAX_TASKS_PER_USER_PER_DAY).",
            retry_after=seconds_until_utc_midnight(now),
        )


def _spread(room: list[int], count: int) -> dict[int, int]:
    """Take `count` from the shards with room, roughly evenly (fewest commits' worth of
    contention on any one shard)."""
    take: dict[int, int] = {}
    order = sorted(range(len(room)), key=lambda k: -room[k])
    left = count
    while left:
        for k in order:
            if left and room[k] > take.get(k, 0):
                take[k] = take.get(k, 0) + 1
                left -= 1
    return take
