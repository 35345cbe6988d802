"""Model budgets: reserve before a call, settle after it, exactly once (DESIGN section 15).

Before the proxy forwards a call it reserves the call's most: its estimated input and
the `max_tokens` it is given, in tokens and in dollars, against the task's budget
(`maxTokens`, `maxCostUsd`) and its owner's day (USER_DAILY_TOKEN_BUDGET,
USER_DAILY_COST_BUDGET_USD). The reservation is added first, with atomic increments, and
checked after: the task's totals come back in the commit's transform results, the
owner's day is summed from its shards. Of any set of racing reservations the one that
reads last sees them all, so together they never pass a budget (a race near the limit
can refuse one that would have fitted; it is told to retry). No transaction and no
per-owner hot document: the task's spend document takes only that task's calls (a few
in flight), and an owner's day is spread over LLM_BUDGET_SHARDS shards.

When the answer ends, its real usage replaces the reservation (firestore_spend.py). A
budget is therefore passed by at most what one call used beyond its estimate: its
input is estimated from the body's size (bytes / 3, an upper bound for nearly any text)
and its output cannot pass `max_tokens`.

Settling never fails an answered call: it is retried, then the usage is parked on the
call's record (the outbox), which the reconciler settles (`settle_due`). The record's
deletion is the settlement's precondition, so it counts once however often it is tried.
A record whose call never ended (its API instance died) is settled by the reconciler
after the upstream timeout, its reservation counted as spent.
"""

from __future__ import annotations

import functools
import logging
import random
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from api import config
from api.adapters.firestore_spend import TASK_FIELDS, CallRecord, SettledAlready, Spent, spend_day
from api.adapters.firestore_store import FirestoreStore
from api.models.documents import TaskDoc
from api.retry import retry_call
from api.services.llm_pricing import ModelPrice, nanos, usd
from api.services.state_machine import utcnow

log = logging.getLogger(__name__)

LLM_BUDGET_SHARDS = 8
RESERVE_TRIES = 3
RECORD_RETRY_SECONDS = 5.0
SETTLE_DUE_BATCH = 100


class BudgetExceeded(Exception):
    """The budget is spent: no retry will help (until midnight UTC, for a day's)."""


class BudgetBusy(Exception):
    """Calls in flight hold what is left, or too many are in flight: retry shortly."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Limits:
    """What one reservation is checked against (nanodollars; None: no cost limit)."""

    task_tokens: int
    task_nanos: int | None
    day_tokens: int
    day_nanos: int


def _transient(error: Exception) -> bool:
    from google.api_core import exceptions as gexc

    retryable = (
        gexc.Aborted,
        gexc.ServiceUnavailable,
        gexc.DeadlineExceeded,
        gexc.InternalServerError,
    )
    return isinstance(error, retryable)


class LlmBudget:
    def __init__(
        self,
        store: FirestoreStore,
        *,
        daily_tokens: int,
        daily_cost_usd: float,
        in_flight_per_task: int,
        record_retry_seconds: float = RECORD_RETRY_SECONDS,
    ) -> None:
        self.store = store
        self.daily_tokens = daily_tokens
        self.daily_nanos = nanos(daily_cost_usd)
        self.in_flight_per_task = in_flight_per_task
        self.record_retry_seconds = record_retry_seconds
        self._stopping = threading.Event()

    def start(self, interval: float) -> None:
        """Settle due calls in the background (locally; on Cloud Run the scheduler's
        reconcile call does it too)."""

        def loop() -> None:
            while not self._stopping.wait(interval):
                try:
                    self.settle_due(utcnow())
                except Exception:
                    log.exception("settling parked model calls failed")

        threading.Thread(target=loop, name="llm-settle", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def limits(self, task: TaskDoc) -> Limits:
        max_cost = task["input"].get("maxCostUsd")
        return Limits(
            task["input"]["maxTokens"],
            nanos(max_cost) if max_cost is not None else None,
            self.daily_tokens,
            self.daily_nanos,
        )

    def reserve(
        self,
        task: TaskDoc,
        price: ModelPrice,
        input_estimate: int,
        cached: bool,
        requested: int,
        now: datetime,
    ) -> tuple[CallRecord, int]:
        """Reserve a call's most; (its record, the max_tokens it may be given).

        :raises BudgetExceeded: the task's or the owner's budget cannot take the input.
        :raises BudgetBusy: too many calls of the task in flight, or theirs hold the rest.
        """
        limits, owner, day = self.limits(task), task["owner"], spend_day(now)
        # A request that marks cache breakpoints may write its input to the cache, the
        # dearest way to send it.
        input_price = price.cache_write if cached else price.input
        spend, shards = self.store.read_budget(task["id"], owner, now, LLM_BUDGET_SHARDS)
        for _ in range(RESERVE_TRIES):
            room, spent_room = _room(limits, spend, shards)
            out_tokens = room[0] - input_estimate
            if limits.task_nanos is not None or self.daily_nanos:
                cost_left = room[1] - input_estimate * input_price
                out_tokens = min(out_tokens, int(cost_left // max(price.output, 1e-9)))
            max_tokens = min(requested, config.LLM_MAX_RESPONSE_TOKENS, out_tokens)
            if max_tokens < 1:
                # Would it fit were no other call in flight? If not, no retry helps.
                tokens_alone = spent_room[0] - input_estimate
                nanos_alone = spent_room[1] - input_estimate * input_price
                if tokens_alone < 1 or nanos_alone < price.output:
                    raise BudgetExceeded(
                        _spent_message(
                            limits,
                            spend,
                            shards,
                            input_estimate,
                            input_estimate * input_price,
                            price.output,
                        )
                    )
                raise BudgetBusy(
                    "This task's other model calls hold what is left of its budget; retry when "
                    "they end.",
                    config.LLM_BUSY_RETRY_AFTER_SECONDS,
                )
            record = CallRecord(
                call_id=secrets.token_hex(12),
                task_id=task["id"],
                owner=owner,
                day=day,
                shard=random.randrange(LLM_BUDGET_SHARDS),
                tokens=input_estimate + max_tokens,
                nanos=int(input_estimate * input_price + max_tokens * price.output) + 1,
                settle_at=now
                + timedelta(
                    seconds=config.LLM_UPSTREAM_TIMEOUT_SECONDS
                    + config.LLM_RESERVATION_GRACE_SECONDS
                ),
            )
            spend = retry_call(
                functools.partial(self.store.reserve, record),
                retry_if=_transient,
                initial=0.05,
                maximum=0.5,
                deadline_seconds=self.record_retry_seconds,
            )
            if spend["inFlight"] > self.in_flight_per_task:
                self.settle(record, Spent(), now)
                raise BudgetBusy(
                    f"This task has {self.in_flight_per_task} model calls in flight "
                    "(LLM_CALLS_IN_FLIGHT_PER_TASK); retry when one ends.",
                    config.LLM_BUSY_RETRY_AFTER_SECONDS,
                )
            shards = self.store.read_day_shards(owner, day, LLM_BUDGET_SHARDS)
            if min(_room(limits, spend, shards)[0]) >= 0:
                return record, max_tokens
            # Racing reservations took part of it: give this one back, size it again.
            self.settle(record, Spent(), now)
            spend = {**spend, "inFlight": spend["inFlight"] - 1}
            spend["reservedTokens"] -= record.tokens
            spend["reservedNanos"] -= record.nanos
        raise BudgetBusy(
            "Concurrent model calls are reserving this budget; retry shortly.",
            config.LLM_BUSY_RETRY_AFTER_SECONDS,
        )

    def settle(self, record: CallRecord, spent: Spent, now: datetime) -> None:
        """Replace the reservation with what was spent, once. Never raises: what cannot
        be written now is parked on the call's record for the reconciler."""
        try:
            retry_call(
                lambda: self.store.settle(record, spent),
                retry_if=_transient,
                initial=0.05,
                maximum=1.0,
                deadline_seconds=self.record_retry_seconds,
            )
            return
        except SettledAlready:
            return
        except Exception as error:  # contention past the retries: the outbox takes it
            log.warning("settling model call %s failed (%s); parking it", record.call_id, error)
        if not spent.answered:
            return  # the reconciler settles the record as it is, at its settleAt
        try:
            retry_call(
                lambda: self.store.park(record, spent, now),
                retry_if=_transient,
                initial=0.05,
                maximum=1.0,
                deadline_seconds=self.record_retry_seconds,
            )
        except Exception:
            # Still reserved: the reconciler counts the reservation as spent.
            log.error("model call %s could not be parked", record.call_id, exc_info=True)

    def settle_due(self, now: datetime) -> int:
        """The reconciler's pass: settle parked calls, and calls that never ended."""
        settled = 0
        for record, parked in self.store.due_calls(now, SETTLE_DUE_BATCH):
            # Unknown usage of a call that never ended: its reservation counts as spent.
            spent = parked or Spent(input_tokens=record.tokens, nanos=record.nanos)
            try:
                self.store.settle(record, spent)
                settled += 1
            except SettledAlready:
                continue
            except Exception:
                log.warning("model call %s stays parked", record.call_id, exc_info=True)
        return settled

    def spent_usd(self, task_id: str) -> float:
        """What the task's settled model calls cost (an estimate from the price table)."""
        return usd(self.store.read_task_spend(task_id).get("spentNanos", 0))

    def remaining_usd(self, task: TaskDoc, now: datetime) -> float | None:
        """What the task may still spend in dollars (its own limit and its owner's day),
        for an engine that takes a budget; None when neither limits it."""
        limits = self.limits(task)
        spend, shards = self.store.read_budget(task["id"], task["owner"], now, LLM_BUDGET_SHARDS)
        if limits.task_nanos is None and not self.daily_nanos:
            return None
        return usd(int(max(0, _room(limits, spend, shards)[0][1])))


def _room(
    limits: Limits, spend: dict, shards: list[dict]
) -> tuple[tuple[int, float], tuple[int, float]]:
    """((tokens, nanos) left after spent and reserved, (tokens, nanos) left after spent
    alone), the tighter of the task's and the day's."""
    spend = {name: spend.get(name, 0) for name in TASK_FIELDS}
    day = {name: sum(s.get(name, 0) for s in shards) for name in TASK_FIELDS}
    task_nanos = limits.task_nanos if limits.task_nanos is not None else float("inf")
    day_nanos = limits.day_nanos if limits.day_nanos else float("inf")
    left = (
        min(
            limits.task_tokens - spend["spentTokens"] - spend["reservedTokens"],
            limits.day_tokens - day["spentTokens"] - day["reservedTokens"],
        ),
        min(
            task_nanos - spend["spentNanos"] - spend["reservedNanos"],
            day_nanos - day["spentNanos"] - day["reservedNanos"],
        ),
    )
    spent_left = (
        min(limits.task_tokens - spend["spentTokens"], limits.day_tokens - day["spentTokens"]),
        min(task_nanos - spend["spentNanos"], day_nanos - day["spentNanos"]),
    )
    return left, spent_left


def _spent_message(
    limits: Limits, spend: dict, shards: list[dict], estimate: int, input_nanos: float, price: float
) -> str:
    """Which budget cannot take the call (its input and one output token) even alone."""
    day_tokens = sum(s.get("spentTokens", 0) for s in shards)
    day_nanos = sum(s.get("spentNanos", 0) for s in shards)
    if limits.day_tokens - day_tokens - estimate < 1:
        return (
            f"The daily token budget ({limits.day_tokens}) of this task's owner is spent "
            "(or cannot take this request); it resets at 00:00 UTC."
        )
    if limits.day_nanos and limits.day_nanos - day_nanos - input_nanos < price:
        return (
            f"The daily cost budget (${usd(limits.day_nanos)}, an estimate from the price "
            "table) of this task's owner is spent; it resets at 00:00 UTC."
        )
    task_nanos = spend.get("spentNanos", 0)
    if limits.task_nanos is not None and limits.task_nanos - task_nanos - input_nanos < price:
        return f"The task's cost budget (maxCostUsd ${usd(limits.task_nanos)}) is spent."
    return (
        f"The task's token budget ({limits.task_tokens}) is spent, or cannot take this "
        f"request (about {estimate} input tokens)."
    )
