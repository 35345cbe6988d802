"""A caller's usage against their limits (`GET /api/usage`): the one place that reads
the counters the quotas and the LLM proxy keep (api/services/quotas.py), so a change
in how they are stored changes this function and nothing else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.adapters.firestore_store import USAGE
from api.services.quotas import QUOTAS, usage_doc_id
from api.services.state_machine import utcnow
from api.services.tasks import rfc3339


class UsageService:
    def __init__(
        self, store, *, max_active: int, max_per_day: int, daily_token_budget: int
    ) -> None:
        self.store = store
        self.max_active = max_active
        self.max_per_day = max_per_day
        self.daily_token_budget = daily_token_budget

    def for_user(self, owner: str, now: datetime | None = None) -> dict:
        """Today's (UTC) task count, the unfinished tasks and today's LLM tokens, each
        with its limit, and when the daily counters start again."""
        now = now or utcnow()
        active = (self.store.get_doc(f"{QUOTAS}/{owner}") or {}).get("activeTasks", 0)
        today = self.store.get_doc(f"{USAGE}/{usage_doc_id(owner, now)}") or {}
        midnight = (now.astimezone(UTC) + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return {
            "day": now.astimezone(UTC).strftime("%Y-%m-%d"),
            "tasksToday": _counter(today.get("tasksCreated", 0), self.max_per_day),
            "activeTasks": _counter(active, self.max_active),
            "llmTokensToday": _counter(today.get("llmTokens", 0), self.daily_token_budget),
            "resetsAt": rfc3339(midnight),
        }


def _counter(used: int, limit: int) -> dict:
    # A counter can briefly dip below zero when settles race; never show that.
    return {"used": max(0, int(used)), "limit": limit}
