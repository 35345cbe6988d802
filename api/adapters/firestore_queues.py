"""The queries behind the queues: the fair dispatcher's (owners with queued tasks, an
owner's oldest), `queuePosition`'s, and the webhook deliveries due."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from api.adapters.firestore_codec import decode
from api.adapters.firestore_paths import DELIVERIES, TASKS, UNSETTLED_SHARDS
from api.models.documents import DeliveryDoc, TaskDoc, TaskStatus


class QueueQueries:
    client: Any

    def owners_with_queued(self, limit: int) -> dict[str, int]:
        """Owners whose admission shards count queued tasks, with how many (reading at
        most `limit` shard documents)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(UNSETTLED_SHARDS)
            .where(filter=FieldFilter("queued", ">", 0))
            .limit(limit)
        )
        owners: dict[str, int] = {}
        for doc in query.stream():
            data = doc.to_dict()
            if "owner" in data:
                owners[data["owner"]] = owners.get(data["owner"], 0) + data["queued"]
        return owners

    def oldest_queued(self, owner: str, limit: int) -> list[TaskDoc]:
        """The owner's queued tasks, oldest first."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(TASKS)
            .where(filter=FieldFilter("owner", "==", owner))
            .where(filter=FieldFilter("status", "==", TaskStatus.QUEUED.value))
            .order_by("createdAt")
            .order_by("__name__")
            .limit(limit)
        )
        return [cast(TaskDoc, decode(doc.reference.path, doc.to_dict())) for doc in query.stream()]

    def count_queued_before(self, owner: str, created_at: datetime) -> int:
        """How many of the owner's queued tasks were created before `created_at`."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(TASKS)
            .where(filter=FieldFilter("owner", "==", owner))
            .where(filter=FieldFilter("status", "==", TaskStatus.QUEUED.value))
            .where(filter=FieldFilter("createdAt", "<", created_at))
        )
        return int(query.count().get()[0][0].value)

    def due_deliveries(self, now: datetime, limit: int) -> list[DeliveryDoc]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(DELIVERIES)
            .where(filter=FieldFilter("status", "==", "pending"))
            .where(filter=FieldFilter("nextAttemptAt", "<=", now))
            .order_by("nextAttemptAt")
            .limit(limit)
        )
        return [cast(DeliveryDoc, doc.to_dict()) for doc in query.stream()]
