"""Creating tasks: the one place that decides what a new task's writes are (the task
with its first event, and an Idempotency-Key record), whether they go in a plain
commit (a submission or a batch) or in a transaction (a conversation's turn)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, cast

from api.adapters.firestore_codec import decode, encode
from api.adapters.firestore_paths import event_path, idempotency_path, task_path
from api.models.documents import EventDoc, IdempotencyDoc, TaskDoc

# Idempotency keys are kept this long (Firestore's TTL policy on `expireAt` deletes
# them afterwards; see terraform/firestore.tf).
IDEMPOTENCY_TTL = timedelta(hours=24)
# What every new task's event log starts with.
FIRST_EVENT: tuple[str, Any] = ("status", {"status": "queued"})

# (document path, its data as the services know it)
Write = tuple[str, dict[str, Any]]


def idempotency_record(task_id: str, body_hash: str, now: datetime, **extra: Any) -> IdempotencyDoc:
    record = {
        "taskId": task_id,
        "bodyHash": body_hash,
        "createdAt": now,
        "expireAt": now + IDEMPOTENCY_TTL,
        **extra,
    }
    return cast(IdempotencyDoc, record)


def new_task_writes(task: TaskDoc, first_event: tuple[str, Any] = FIRST_EVENT) -> list[Write]:
    """A new task's documents: the task (its event log at 1) and its first event,
    stamped with the task's creation time."""
    kind, data = first_event
    event: EventDoc = {"seq": 1, "type": kind, "data": data, "at": task["createdAt"]}
    if "expireAt" in task:
        event["expireAt"] = task["expireAt"]
    return [
        (task_path(task["id"]), dict(task, eventSeq=1)),
        (event_path(task["id"], 1), dict(event)),
    ]


class TaskCreation:
    client: Any
    update_task: Callable[..., Any]  # FirestoreStore's

    def create_tasks(
        self,
        tasks: list[TaskDoc],
        first_event: tuple[str, Any] = FIRST_EVENT,
        idempotency: tuple[str, IdempotencyDoc] | None = None,
    ) -> IdempotencyDoc | None:
        """Store new tasks with their first event in one commit, without a transaction
        (nothing is read). With `idempotency` = (key id, record), the key document is
        created in the same commit; if it already exists nothing is written and its
        record is returned instead (the caller answers with what it names)."""
        from google.api_core import exceptions as gexc

        batch = self.client.batch()
        for task in tasks:
            for path, data in new_task_writes(task, first_event):
                batch.create(self.client.document(path), encode(path, data))
        if idempotency is not None:
            key_path = idempotency_path(idempotency[0])
            batch.create(self.client.document(key_path), dict(idempotency[1]))
        try:
            batch.commit()
        except gexc.Conflict:
            if idempotency is None:
                raise
            existing = self.client.document(idempotency_path(idempotency[0])).get()
            if not existing.exists:
                raise
            return cast(IdempotencyDoc, existing.to_dict())
        return None

    def get_idempotency(self, key_id: str) -> IdempotencyDoc | None:
        snapshot = self.client.document(idempotency_path(key_id)).get()
        return cast(IdempotencyDoc, snapshot.to_dict()) if snapshot.exists else None

    def get_tasks(self, task_ids: list[str]) -> list[TaskDoc | None]:
        refs = [self.client.document(task_path(task_id)) for task_id in task_ids]
        found = {
            snap.id: decode(snap.reference.path, snap.to_dict())
            for snap in self.client.get_all(refs)
            if snap.exists
        }
        return [cast(TaskDoc | None, found.get(task_id)) for task_id in task_ids]
