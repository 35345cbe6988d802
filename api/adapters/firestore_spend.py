"""Model spend (api/services/llm_budget.py): reservations and their settlement, with
atomic increments and no transaction, so no model call waits on another's lock.

A reservation is one commit: the call's record (`llmCalls/{callId}`, created), and
increments of the task's spend document and of one of its owner's day shards; the
commit's transform results give the task's totals after it. A settlement is one commit
too: the call's record deleted (with an `exists` precondition, so a second settlement
of the same call changes nothing), the reservation given back and the real usage
added, on the same documents and on the day's usage record and the task's `llmUsage`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from api.adapters.firestore_paths import (
    LLM_CALLS,
    day_usage_path,
    llm_call_path,
    llm_shard_path,
    llm_spend_path,
    task_path,
    utc_day,
)

# The fields both a task's spend document and a day shard hold.
BUDGET_FIELDS = ("reservedNanos", "reservedTokens", "spentNanos", "spentTokens")
TASK_FIELDS = (*BUDGET_FIELDS, "inFlight")


def spend_day(now: datetime) -> str:
    """The UTC day (yyyymmdd) a reservation made at `now` is counted on."""
    return utc_day(now)


@dataclass(frozen=True)
class CallRecord:
    """`llmCalls/{callId}`: what a call reserved, and where (also its outbox entry)."""

    call_id: str
    task_id: str
    owner: str
    day: str  # yyyymmdd: the day shard holding the reservation
    shard: int
    tokens: int
    nanos: int
    settle_at: datetime  # when the reconciler settles it, if nothing else has

    def document(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "owner": self.owner,
            "day": self.day,
            "shard": self.shard,
            "tokens": self.tokens,
            "nanos": self.nanos,
            "settleAt": self.settle_at,
        }

    @classmethod
    def of(cls, call_id: str, doc: dict[str, Any]) -> CallRecord:
        return cls(
            call_id,
            doc["taskId"],
            doc["owner"],
            doc["day"],
            doc["shard"],
            doc["tokens"],
            doc["nanos"],
            doc["settleAt"],
        )


@dataclass(frozen=True)
class Spent:
    """A settled call's real usage (all zero for a call never answered)."""

    input_tokens: int = 0
    output_tokens: int = 0
    nanos: int = 0
    answered: bool = False
    usage: dict[str, int] = field(default_factory=dict)  # as the answer said (for the outbox)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class SettledAlready(Exception):
    """The call's record is gone: another settlement (or the reconciler) counted it."""


class SpendStore:
    client: Any

    def read_budget(
        self, task_id: str, owner: str, now: datetime, shards: int
    ) -> tuple[dict[str, int], list[dict[str, int]]]:
        """The task's spend document and its owner's shards of `now`'s UTC day, in one
        round trip."""
        day = utc_day(now)
        paths = [llm_spend_path(task_id), *(llm_shard_path(owner, day, k) for k in range(shards))]
        refs = [self.client.document(path) for path in paths]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.client.get_all(refs)}
        docs = [found.get(path, {}) for path in paths]
        return docs[0], docs[1:]

    def read_day_shards(self, owner: str, day: str, shards: int) -> list[dict[str, int]]:
        paths = [llm_shard_path(owner, day, k) for k in range(shards)]
        refs = [self.client.document(path) for path in paths]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.client.get_all(refs)}
        return [found.get(path, {}) for path in paths]

    def read_task_spend(self, task_id: str) -> dict[str, int]:
        return self.client.document(llm_spend_path(task_id)).get().to_dict() or {}

    def reserve(self, call: CallRecord) -> dict[str, int]:
        """Create the call's record and add its reservation (and one call in flight);
        the task's spend document after the commit."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        batch = self.client.batch()
        batch.create(self.client.document(llm_call_path(call.call_id)), call.document())
        task_delta = {"reservedTokens": call.tokens, "reservedNanos": call.nanos, "inFlight": 1}
        task_delta |= {"spentTokens": 0, "spentNanos": 0}  # read back with the rest
        batch.set(
            self.client.document(llm_spend_path(call.task_id)),
            {name: firestore.Increment(n) for name, n in task_delta.items()},
            merge=True,
        )
        batch.set(
            self.client.document(llm_shard_path(call.owner, call.day, call.shard)),
            {
                "reservedTokens": firestore.Increment(call.tokens),
                "reservedNanos": firestore.Increment(call.nanos),
            },
            merge=True,
        )
        try:
            results = batch.commit()
        except gexc.Conflict:
            # A retry of a commit that was applied (its answer was lost): it stands.
            spend = self.read_task_spend(call.task_id)
            return {name: int(spend.get(name, 0)) for name in task_delta}
        values = [value.integer_value for value in results[1].transform_results]
        return dict(zip(sorted(task_delta), values, strict=True))

    def settle(self, call: CallRecord, spent: Spent, *, task_document: bool = True) -> None:
        """Give back the call's reservation and count what it spent, once.

        :raises SettledAlready: the call was settled before.
        """
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        def inc(n: int) -> Any:
            return firestore.Increment(n)

        batch = self.client.batch()
        batch.delete(
            self.client.document(llm_call_path(call.call_id)),
            option=self.client.write_option(exists=True),
        )
        budget = {
            "reservedTokens": inc(-call.tokens),
            "reservedNanos": inc(-call.nanos),
            "spentTokens": inc(spent.tokens),
            "spentNanos": inc(spent.nanos),
        }
        task_spend = {**budget, "inFlight": inc(-1), "calls": inc(int(spent.answered))}
        batch.set(self.client.document(llm_spend_path(call.task_id)), task_spend, merge=True)
        shard = llm_shard_path(call.owner, call.day, call.shard)
        batch.set(self.client.document(shard), budget, merge=True)
        if spent.answered:
            daily = {
                "llmInputTokens": inc(spent.input_tokens),
                "llmOutputTokens": inc(spent.output_tokens),
                "llmTokens": inc(spent.tokens),
                "llmCalls": inc(1),
                "llmCostNanos": inc(spent.nanos),
            }
            batch.set(self.client.document(day_usage_path(call.owner, call.day)), daily, merge=True)
        if spent.answered and task_document:
            batch.update(
                self.client.document(task_path(call.task_id)),
                {
                    "llmUsage.inputTokens": inc(spent.input_tokens),
                    "llmUsage.outputTokens": inc(spent.output_tokens),
                    "llmUsage.calls": inc(1),
                },
            )
        try:
            batch.commit()
        except (gexc.NotFound, gexc.FailedPrecondition) as error:
            if not self.client.document(llm_call_path(call.call_id)).get().exists:
                raise SettledAlready(call.call_id) from error
            if not task_document:
                raise
            # The task is gone (retention deleted it): count the call without it.
            self.settle(call, spent, task_document=False)

    def park(self, call: CallRecord, spent: Spent, now: datetime) -> None:
        """Keep an answered call's usage on its record for the reconciler to settle."""
        self.client.document(llm_call_path(call.call_id)).update(
            {
                "usage": spent.usage,
                "inputTokens": spent.input_tokens,
                "outputTokens": spent.output_tokens,
                "costNanos": spent.nanos,
                "settleAt": now,
            }
        )

    def due_calls(self, now: datetime, limit: int) -> list[tuple[CallRecord, Spent | None]]:
        """Records whose settlement is due: (record, parked usage or None)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(LLM_CALLS)
            .where(filter=FieldFilter("settleAt", "<=", now))
            .order_by("settleAt")
            .limit(limit)
        )
        due = []
        for snap in query.stream():
            doc = snap.to_dict()
            parked = None
            if "inputTokens" in doc:
                parked = Spent(
                    doc["inputTokens"], doc["outputTokens"], doc["costNanos"], True, doc["usage"]
                )
            due.append((CallRecord.of(snap.id, doc), parked))
        return due

    def count_tokens_call(self, task_id: str, owner: str, now: datetime) -> None:
        """One count_tokens call, on the task's spend and the owner's day (as calls)."""
        from google.cloud import firestore

        batch = self.client.batch()
        one = firestore.Increment(1)
        batch.set(self.client.document(llm_spend_path(task_id)), {"countTokensCalls": one}, True)
        daily = {"llmCountTokensCalls": one}
        batch.set(self.client.document(day_usage_path(owner, utc_day(now))), daily, merge=True)
        batch.commit()

    def month_usages(self, owner: str, now: datetime) -> list[dict[str, Any]]:
        """The owner's usage records of `now`'s UTC month up to its day, in day order
        (empty where none), in one round trip."""
        today = utc_day(now)
        days = [f"{today[:6]}{d:02d}" for d in range(1, int(today[6:]) + 1)]
        paths = [day_usage_path(owner, day) for day in days]
        refs = [self.client.document(path) for path in paths]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.client.get_all(refs)}
        return [found.get(path, {}) for path in paths]
