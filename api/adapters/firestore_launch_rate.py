"""The Firestore side of the fleet-wide launch rate (api/services/launch_rate.py):
one atomic increment per call, with no read and no transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any


class FirestoreWindowCounters:
    def __init__(self, client: Any) -> None:
        self.client = client

    def add(self, path: str, amount: int, expire_at: datetime) -> int:
        """Add `amount` to `count` of the document at `path` (created if absent, with
        `expireAt` for Firestore's TTL); returns the value after the commit, which
        Firestore reports as the increment's transform result."""
        from google.cloud import firestore

        batch = self.client.batch()
        batch.set(
            self.client.document(path),
            {"count": firestore.Increment(amount), "expireAt": expire_at},
            merge=True,
        )
        [result] = batch.commit()
        return int(result.transform_results[0].integer_value)
