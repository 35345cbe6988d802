"""Sharded counters (api/services/admission.py): changed by atomic increments outside
any transaction, so a burst of one user's submissions shares no document (ADR 0007)."""

from __future__ import annotations

from typing import Any

# The counter each kind of shard document holds (api/services/admission.py).
UNSETTLED_FIELDS = ("queued", "unsettled")  # a submission adds to both
DAILY_FIELDS = ("created",)

# (kind "u" or "d", path, increment, fields set alongside)
CounterWrite = tuple[str, str, int, dict[str, Any]]


class CounterBusy(Exception):
    """A counter commit was refused for contention; none of it was applied."""


class CounterStore:
    client: Any

    def add_to_counters(self, writes: list[CounterWrite]) -> dict[str, dict[int, int]]:
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
            ordered = sorted(UNSETTLED_FIELDS if kind == "u" else DAILY_FIELDS)
            named = dict(zip(ordered, values, strict=True))
            after[kind][extra["shard"]] = named["unsettled" if kind == "u" else "created"]
        return after

    def read_counters(self, u_paths: list[str], d_paths: list[str]) -> tuple[list[int], list[int]]:
        """The current values of shard documents, in one round trip (0 when absent)."""
        refs = [self.client.document(path) for path in (*u_paths, *d_paths)]
        found = {snap.reference.path: snap.to_dict() or {} for snap in self.client.get_all(refs)}
        unsettled = [found.get(path, {}).get("unsettled", 0) for path in u_paths]
        created = [found.get(path, {}).get("created", 0) for path in d_paths]
        return unsettled, created
