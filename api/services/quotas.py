"""Per-user limits that hold across API instances: they live in Firestore and are
checked in the same transaction that creates the task.

- active tasks: `quotas/{owner}.activeTasks`, +1 when a task is created, -1 in the
  transaction that settles it (TaskStateMachine), so parallel submissions through any
  number of instances can never exceed the limit;
- tasks per UTC day: `usage/{owner}_{yyyymmdd}.tasksCreated`;
- LLM tokens per UTC day: `usage/...llmTokens`, enforced by the LLM proxy.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from api.adapters.firestore_codec import document_id
from api.adapters.firestore_store import USAGE, Reader
from api.errors import ApiError

QUOTAS = "quotas"


def quota_doc_id(owner: str) -> str:
    return document_id(owner)


ACTIVE_RETRY_AFTER_SECONDS = 10


def usage_doc_id(owner: str, now: datetime) -> str:
    return f"{owner}_{now.astimezone(UTC).strftime('%Y%m%d')}"


def seconds_until_utc_midnight(now: datetime) -> int:
    tomorrow = (now.astimezone(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    return max(1, int((tomorrow - now).total_seconds()))


class TaskQuota:
    def __init__(self, *, max_active: int, max_per_day: int) -> None:
        self.max_active = max_active
        self.max_per_day = max_per_day

    def reserve(self, owner: str, now: datetime, read: Reader) -> list[tuple[str, dict, bool]]:
        """Inside the creating transaction: refuse over a limit (429 naming it), else
        return the counter writes that take one task's share."""
        quota_path = f"{QUOTAS}/{quota_doc_id(owner)}"
        usage_path = f"{USAGE}/{usage_doc_id(owner, now)}"
        active = (read(quota_path) or {}).get("activeTasks", 0)
        created_today = (read(usage_path) or {}).get("tasksCreated", 0)
        if active >= self.max_active:
            raise ApiError(
                429,
                "too_many_active_tasks",
                f"You already have {active} unfinished tasks; the limit is {self.max_active} "
                "(MAX_ACTIVE_TASKS_PER_USER). Wait for one to end or cancel one.",
                retry_after=ACTIVE_RETRY_AFTER_SECONDS,
            )
        if created_today >= self.max_per_day:
            raise ApiError(
                429,
                "daily_task_limit",
                f"You have created {created_today} tasks today; the limit is "
                f"{self.max_per_day} per UTC day (MAX_TASKS_PER_USER_PER_DAY).",
                retry_after=seconds_until_utc_midnight(now),
            )
        return [
            (quota_path, {"activeTasks": max(0, active) + 1, "updatedAt": now}, True),
            (usage_path, {"tasksCreated": created_today + 1}, True),
        ]
