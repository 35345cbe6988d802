"""The Firestore side of admission and fair dispatch (api/services/admission.py).

Kept apart from firestore_store.py, which it extends: sharded counters changed by
atomic increments outside any transaction, tasks stored without a transaction, and
the queries the fair dispatcher and `queuePosition` need.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api.adapters.firestore_codec import decode, encode

# The counter each kind of shard document holds (api/services/admission.py).
UNSETTLED_FIELDS = ("queued", "unsettled")  # a submission adds to both
DAILY_FIELDS = ("created",)


class CounterBusy(Exception):
    """A counter commit was refused for contention; none of it was applied."""


class AdmissionStore:
    client: Any
    update_task: Any  # FirestoreStore's

    def add_to_counters(
        self, writes: list[tuple[str, str, int, dict]]
    ) -> dict[str, dict[int, int]]:
        """Add to sharded counters in one commit, with no read and no transaction:
        Firestore applies increments atomically and returns each new value (the
        commit's transform results, in field-path order). `writes` are
        (kind "u" or "d", path, increment, fields set alongside); returns, by kind and
        shard, the value after the commit (`unsettled` for "u", `created` for "d")."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        batch = self.client.batch()
        for kind, path, delta, extra in writes:
            fields = UNSETTLED_FIELDS if kind == "u" else DAILY_FIELDS
            data = {name: firestore.Increment(delta) for name in fields}
            batch.set(self.client.document(path), {**extra, **data}, merge=True)
        try:
            results = batch.commit()
        except gexc.Aborted as error:
            # Nothing of the commit was applied (the emulator's lock timeout under load).
            raise CounterBusy(str(error)) from error
        after: dict[str, dict[int, int]] = {"u": {}, "d": {}}
        for (kind, _path, _delta, extra), result in zip(writes, results, strict=True):
            values = [value.integer_value for value in result.transform_results]
            fields = sorted(UNSETTLED_FIELDS if kind == "u" else DAILY_FIELDS)
            named = dict(zip(fields, values, strict=True))
            after[kind][extra["shard"]] = named["unsettled" if kind == "u" else "created"]
        return after

    def read_counters(self, u_paths: list[str], d_paths: list[str]) -> tuple[list[int], list[int]]:
        """The current values of shard documents, in one round trip (0 when absent)."""
        refs = [self.client.document(path) for path in (*u_paths, *d_paths)]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.client.get_all(refs)}
        unsettled = [found.get(path, {}).get("unsettled", 0) for path in u_paths]
        created = [found.get(path, {}).get("created", 0) for path in d_paths]
        return unsettled, created

    def create_tasks(
        self,
        tasks: list[dict],
        first_event: tuple[str, Any],
        idempotency: tuple[str, dict] | None = None,
    ) -> dict | None:
        """Store new tasks with their first event in one commit, without a transaction
        (nothing is read). With `idempotency` = (key path, record), the key document is
        created in the same commit; if it already exists nothing is written and its
        record is returned instead (the caller answers with what it names)."""
        from google.api_core import exceptions as gexc

        batch = self.client.batch()
        for task in tasks:
            ref = self.client.collection("tasks").document(task["id"])
            batch.create(ref, encode(ref.path, dict(task, eventSeq=1)))
            kind, data = first_event
            event_ref = ref.collection("events").document(f"{1:010d}")
            event = {"seq": 1, "type": kind, "data": data, "at": task["createdAt"]}
            batch.create(event_ref, encode(event_ref.path, event))
        if idempotency is not None:
            batch.create(self.client.document(idempotency[0]), idempotency[1])
        try:
            batch.commit()
        except gexc.Conflict:
            if idempotency is None:
                raise
            existing = self.client.document(idempotency[0]).get()
            if not existing.exists:
                raise
            return existing.to_dict()
        return None

    def get_tasks(self, task_ids: list[str]) -> list[dict | None]:
        refs = [self.client.collection("tasks").document(task_id) for task_id in task_ids]
        found = {
            snap.id: decode(snap.reference.path, snap.to_dict())
            for snap in self.client.get_all(refs)
            if snap.exists
        }
        return [found.get(task_id) for task_id in task_ids]

    # -- fair dispatch --------------------------------------------------------------

    def owners_with_queued(self, limit: int) -> dict[str, int]:
        """Owners whose admission shards count queued tasks, with how many (reading at
        most `limit` shard documents)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection("admissionShards")
            .where(filter=FieldFilter("queued", ">", 0))
            .limit(limit)
        )
        owners: dict[str, int] = {}
        for doc in query.stream():
            data = doc.to_dict()
            if "owner" in data:
                owners[data["owner"]] = owners.get(data["owner"], 0) + data["queued"]
        return owners

    def oldest_queued(self, owner: str, limit: int) -> list[dict]:
        """The owner's queued tasks, oldest first."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection("tasks")
            .where(filter=FieldFilter("owner", "==", owner))
            .where(filter=FieldFilter("status", "==", "queued"))
            .order_by("createdAt")
            .order_by("__name__")
            .limit(limit)
        )
        return [decode(doc.reference.path, doc.to_dict()) for doc in query.stream()]

    def count_queued_before(self, owner: str, created_at: datetime) -> int:
        """How many of the owner's queued tasks were created before `created_at`."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection("tasks")
            .where(filter=FieldFilter("owner", "==", owner))
            .where(filter=FieldFilter("status", "==", "queued"))
            .where(filter=FieldFilter("createdAt", "<", created_at))
        )
        return int(query.count().get()[0][0].value)

    # -- webhook deliveries (api/services/webhooks.py) -------------------------------

    def due_deliveries(self, now: datetime, limit: int) -> list[dict]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection("webhookDeliveries")
            .where(filter=FieldFilter("status", "==", "pending"))
            .where(filter=FieldFilter("nextAttemptAt", "<=", now))
            .order_by("nextAttemptAt")
            .limit(limit)
        )
        return [doc.to_dict() for doc in query.stream()]

    def append_task_event(self, task_id: str, kind: str, data: dict, now: datetime) -> None:
        """One more event on a task, whatever its status (a webhook attempt is recorded
        on a finished task)."""
        from api.adapters.firestore_store import Change

        self.update_task(task_id, lambda task, read: Change(events=[(kind, data)]), now)
