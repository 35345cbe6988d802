"""The store's verbs for custom environments (DESIGN section 17): an owner's listing
document (names unique, bounded in number, changed in one transaction) and one build
document per manifest hash, claimed by exactly one build task."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from api.adapters.firestore_paths import environment_build_path, task_path, user_environments_path
from api.models.documents import TERMINAL, EnvironmentBuildDoc, EnvironmentEntry


class EnvironmentLimitReached(Exception):
    """The owner already has as many environments as allowed."""


class EnvironmentNameTaken(Exception):
    """The owner already has an environment of that name."""


class EnvironmentStore:
    # FirestoreStore's
    client: Any
    _contended: Callable[[Callable[[], Any]], Any]

    def list_environments(self, owner: str) -> dict[str, EnvironmentEntry]:
        snapshot = self.client.document(user_environments_path(owner)).get()
        if not snapshot.exists:
            return {}
        return dict((snapshot.to_dict() or {}).get("environments") or {})

    def add_environment(self, owner: str, entry: EnvironmentEntry, max_count: int) -> None:
        """:raises EnvironmentNameTaken: the owner has one of that name.
        :raises EnvironmentLimitReached: the owner has `max_count` already."""

        def add(known: dict[str, EnvironmentEntry]) -> bool:
            if any(other["name"] == entry["name"] for other in known.values()):
                raise EnvironmentNameTaken(entry["name"])
            if len(known) >= max_count:
                raise EnvironmentLimitReached(f"at most {max_count} environments")
            known[entry["id"]] = entry
            return True

        self._change_environments(owner, add)

    def delete_environment(self, owner: str, environment_id: str) -> bool:
        """Remove one from the owner's listing; False when there is none of that id."""
        return self._change_environments(
            owner, lambda known: known.pop(environment_id, None) is not None
        )

    def rebase_environment(self, owner: str, entry: EnvironmentEntry, old_hash: str) -> bool:
        """Point an environment at its manifest's build on the current default
        environment (`entry`'s hash and build task), unless it was deleted or another
        request moved it first; False then."""

        def rebase(known: dict[str, EnvironmentEntry]) -> bool:
            current = known.get(entry["id"])
            if current is None or current["hash"] != old_hash:
                return False
            known[entry["id"]] = {
                **current,
                "hash": entry["hash"],
                "buildTaskId": entry["buildTaskId"],
            }
            return True

        return self._change_environments(owner, rebase)

    def _change_environments(
        self, owner: str, change: Callable[[dict[str, EnvironmentEntry]], bool]
    ) -> bool:
        """`change` applied to the owner's listing in one transaction: it edits the
        listing in place and says whether it did (then the listing is written)."""
        from google.cloud import firestore

        client = self.client
        ref = client.document(user_environments_path(owner))

        @firestore.transactional
        def apply(transaction: Any) -> bool:
            snapshot = ref.get(transaction=transaction)
            known = dict((snapshot.to_dict() or {}).get("environments") or {})
            if not change(known):
                return False
            transaction.set(ref, {"environments": known})
            return True

        return cast(bool, self._contended(lambda: apply(client.transaction(max_attempts=1))))

    def get_environment_builds(self, hashes: list[str]) -> dict[str, EnvironmentBuildDoc]:
        refs = [self.client.document(environment_build_path(h)) for h in dict.fromkeys(hashes)]
        return {
            snapshot.id: cast(EnvironmentBuildDoc, snapshot.to_dict())
            for snapshot in self.client.get_all(refs)
            if snapshot.exists
        }

    def claim_environment_build(
        self, build: EnvironmentBuildDoc
    ) -> tuple[EnvironmentBuildDoc, bool]:
        """(the manifest's build, whether `build` is it): a new build is stored unless
        one is ready or still building; a build whose task has ended without making
        the archive (a runner lost before it reported), or whose archive expired, is
        taken over."""
        from google.cloud import firestore

        client = self.client
        ref = client.document(environment_build_path(build["hash"]))

        @firestore.transactional
        def claim(transaction: Any) -> tuple[EnvironmentBuildDoc, bool]:
            snapshot = ref.get(transaction=transaction)
            if snapshot.exists:
                current = cast(EnvironmentBuildDoc, snapshot.to_dict())
                if current["status"] == "ready":
                    return current, False
                task = client.document(task_path(current["taskId"])).get(transaction=transaction)
                if task.exists and (task.to_dict() or {}).get("status") not in TERMINAL:
                    return current, False
            transaction.set(ref, dict(build))
            return build, True

        return cast(
            tuple[EnvironmentBuildDoc, bool],
            self._contended(lambda: claim(client.transaction(max_attempts=1))),
        )

    def use_environment_build(self, manifest_hash: str, now: datetime) -> None:
        """An environment of this ready build was read or used at `now`."""
        from google.api_core import exceptions as gexc

        with contextlib.suppress(gexc.NotFound):
            self.client.document(environment_build_path(manifest_hash)).update({"usedAt": now})

    def expire_environment_build(self, manifest_hash: str, task_id: str) -> None:
        """The ready build by `task_id` lost its archive (the bucket's lifecycle rule):
        `expired`, which the next build of the manifest takes over."""
        from google.cloud import firestore

        client = self.client
        ref = client.document(environment_build_path(manifest_hash))

        @firestore.transactional
        def expire(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            current = cast(EnvironmentBuildDoc, snapshot.to_dict() or {})
            if current.get("taskId") == task_id and current.get("status") == "ready":
                transaction.update(ref, {"status": "expired"})

        self._contended(lambda: expire(client.transaction(max_attempts=1)))

    def finish_environment_build(
        self, manifest_hash: str, task_id: str, size_bytes: int | None, now: datetime
    ) -> None:
        """The build by `task_id` ended: `ready` with its archive's size, or (size
        None) forgotten, so the next environment of this manifest builds again."""
        from google.cloud import firestore

        client = self.client
        ref = client.document(environment_build_path(manifest_hash))

        @firestore.transactional
        def finish(transaction: Any) -> None:
            snapshot = ref.get(transaction=transaction)
            if not snapshot.exists:
                return
            current = cast(EnvironmentBuildDoc, snapshot.to_dict())
            if current["taskId"] != task_id or current["status"] == "ready":
                return
            if size_bytes is None:
                transaction.delete(ref)
            else:
                transaction.update(
                    ref, {"status": "ready", "sizeBytes": size_bytes, "readyAt": now}
                )

        self._contended(lambda: finish(client.transaction(max_attempts=1)))
