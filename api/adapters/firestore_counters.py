"""Sharded counters (api/services/admission.py): changed by atomic increments outside
any transaction, so a burst of one user's submissions shares no document (ADR 0007)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from api.adapters.firestore_paths import (
    daily_shard_path,
    launch_window_path,
    unsettled_shard_path,
)

# The counter each kind of shard document holds (api/services/admission.py).
UNSETTLED_FIELDS = ("queued", "unsettled")  # a submission adds to both
DAILY_FIELDS = ("created",)

# (kind "u" or "d", path, increment, fields set alongside)
CounterWrite = tuple[str, str, int, dict[str, Any]]


class CounterChange(NamedTuple):
    """Increments of one owner's admission shards, committed together."""

    owner: str
    day: str  # yyyymmdd: which day's shards `daily` changes
    unsettled: dict[int, int]  # shard -> added to its `unsettled` and `queued`
    daily: dict[int, int]  # shard -> added to its `created`
    expire_at: datetime  # when the daily shards may go (Firestore's TTL on `expireAt`)

    def writes(self) -> list[CounterWrite]:
        owner, day = self.owner, self.day
        writes: list[CounterWrite] = [
            ("u", unsettled_shard_path(owner, k), n, {"owner": owner, "shard": k})
            for k, n in self.unsettled.items()
            if n
        ]
        writes += [
            ("d", daily_shard_path(owner, day, k), n, {"shard": k, "expireAt": self.expire_at})
            for k, n in self.daily.items()
            if n
        ]
        return writes


class CounterBusy(Exception):
    """A counter commit was refused for contention; none of it was applied."""


class CounterStore:
    client: Any

    def add_to_counters(self, change: CounterChange) -> dict[str, dict[int, int]]:
        """Add to sharded counters in one commit, with no read and no transaction:
        Firestore applies increments atomically and returns each new value (the
        commit's transform results, in field-path order). Returns, by kind ("u" the
        unsettled shards, "d" the daily ones) and shard, the value after the commit
        (`unsettled` for "u", `created` for "d")."""
        from google.api_core import exceptions as gexc
        from google.cloud import firestore

        writes = change.writes()
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
            ordered = sorted(UNSETTLED_FIELDS if kind == "u" else DAILY_FIELDS)
            named = dict(zip(ordered, values, strict=True))
            after[kind][extra["shard"]] = named["unsettled" if kind == "u" else "created"]
        return after

    def read_counters(
        self, owner: str, day: str, u_shards: int, d_shards: int
    ) -> tuple[list[int], list[int]]:
        """The owner's `unsettled` by shard, and `created` on `day` by shard, in one
        round trip (0 when absent)."""
        u_paths = [unsettled_shard_path(owner, k) for k in range(u_shards)]
        d_paths = [daily_shard_path(owner, day, k) for k in range(d_shards)]
        refs = [self.client.document(path) for path in (*u_paths, *d_paths)]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.client.get_all(refs)}
        unsettled = [found.get(path, {}).get("unsettled", 0) for path in u_paths]
        created = [found.get(path, {}).get("created", 0) for path in d_paths]
        return unsettled, created

    def add_launch_count(self, window: int, shard: int, amount: int, expire_at: datetime) -> int:
        """The fleet-wide launch rate (api/services/launch_rate.py): add `amount` to the
        launches counted in one shard of one window (the document is created if absent,
        with `expireAt` for Firestore's TTL), in one commit with no read and no
        transaction; returns the count after it (the increment's transform result)."""
        from google.cloud import firestore

        batch = self.client.batch()
        batch.set(
            self.client.document(launch_window_path(window, shard)),
            {"count": firestore.Increment(amount), "expireAt": expire_at},
            merge=True,
        )
        [result] = batch.commit()
        return int(result.transform_results[0].integer_value)
