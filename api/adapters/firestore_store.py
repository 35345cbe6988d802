"""The Firestore store: with the firestore_* modules it is made of, the only code that
talks to Firestore.

Where each document lives: firestore_paths.py; what each holds: api/models/documents.py.
The store's verbs are split by subject: task creation (firestore_tasks.py), sharded
counters (firestore_counters.py), the queues' queries (firestore_queues.py),
conversations (firestore_conversations.py) and the other documents
(firestore_documents.py). This module holds the client, task transitions and the
generic document verbs the others build on.

Maps keyed by callers, programs or models (a task's input and result, an event's
data) are stored as JSON strings: see firestore_codec.py. Locally and in tests the
client talks to the emulator (FIRESTORE_EMULATOR_HOST), never to an in-memory fake.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from api.adapters.firestore_codec import decode, encode
from api.adapters.firestore_conversations import ConversationStore
from api.adapters.firestore_counters import CounterStore
from api.adapters.firestore_deadlines import bound_every_call
from api.adapters.firestore_documents import DocumentStore
from api.adapters.firestore_environments import EnvironmentStore
from api.adapters.firestore_paths import EVENTS, TASKS, event_doc_id, task_path, usage_path
from api.adapters.firestore_queues import QueueQueries
from api.adapters.firestore_secrets import UserSecretStore
from api.adapters.firestore_spend import SpendStore
from api.adapters.firestore_tasks import TaskCreation
from api.models.documents import EventDoc, TaskDoc
from api.retry import retry_call


@dataclass
class Change:
    """What a transition writes: task field updates, new events, counter increments
    (document path, counters), and other documents written in the same transaction
    (path, data, merge)."""

    updates: dict[str, Any] = field(default_factory=dict)
    events: list[tuple[str, Any]] = field(default_factory=list)
    increments: list[tuple[str, dict[str, int]]] = field(default_factory=list)
    writes: list[tuple[str, dict, bool]] = field(default_factory=list)


# Reads another document ("collection/id[/sub/id...]") inside the same transaction.
Reader = Callable[[str], dict[str, Any] | None]
# A mutation sees the current task (a dict, or None when absent) and returns the Change
# to apply, or None to write nothing. It runs inside a transaction and may be retried;
# any other document it needs it reads through `read`, before anything is written.
Mutation = Callable[[Any, Reader], Change | None]


CONTENTION_BUDGET_SECONDS = 8.0


class Contended(Exception):
    """A transaction kept losing races for the same documents; try again later."""


def _read(snapshot: Any) -> Any:
    """A document as the services know it, or None when it does not exist."""
    return decode(snapshot.reference.path, snapshot.to_dict()) if snapshot.exists else None


class FirestoreStore(
    TaskCreation,
    CounterStore,
    QueueQueries,
    ConversationStore,
    DocumentStore,
    SpendStore,
    UserSecretStore,
    EnvironmentStore,
):
    def __init__(
        self, project: str, client: Any = None, deadline_seconds: float | None = None
    ) -> None:
        self.project = project
        self._client = client
        self._deadline_seconds = deadline_seconds
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        # Built on first use, never at import time (the SDK is heavy, and tests pick
        # the emulator through the environment before the first call).
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from google.cloud import firestore

                    client = firestore.Client(project=self.project)
                    if self._deadline_seconds is not None:
                        bound_every_call(client, self._deadline_seconds)
                    self._client = client
        return self._client

    def _contended(self, attempt: Callable[[], Any]) -> Any:
        """Run a transaction, retrying with jittered backoff when it loses a race.

        Transactions that read the same document (a user's quota, a busy task) can
        abort one another; the client's own retries are immediate, so under a burst
        they collide again. Spreading the retries out lets them through; past the
        budget the caller gets a 503 with Retry-After (errors.py), never a 500.
        """
        from google.api_core import exceptions as gexc

        def lost_race(error: Exception) -> bool:
            if isinstance(error, ValueError):
                return "transaction" in str(error).lower()
            return isinstance(error, gexc.Aborted)

        try:
            return retry_call(
                attempt,
                retry_if=lost_race,
                initial=0.02,
                maximum=0.5,
                deadline_seconds=CONTENTION_BUDGET_SECONDS,
            )
        except (gexc.Aborted, ValueError) as error:
            if not lost_race(error):
                raise
            raise Contended(str(error)) from error

    def _task_ref(self, task_id: str) -> Any:
        return self.client.collection(TASKS).document(task_id)

    # -- tasks -----------------------------------------------------------------

    def get_task(self, task_id: str) -> TaskDoc | None:
        return _read(self._task_ref(task_id).get())

    @staticmethod
    def _set_event(transaction: Any, task_ref: Any, event: EventDoc) -> None:
        ref = task_ref.collection(EVENTS).document(event_doc_id(event["seq"]))
        transaction.set(ref, encode(ref.path, event))

    def update_task(
        self, task_id: str, mutate: Mutation, now: datetime
    ) -> tuple[TaskDoc | None, bool]:
        """Apply `mutate` to the task in one transaction; return (task after, changed)."""
        from google.cloud import firestore

        client = self.client
        task_ref = self._task_ref(task_id)

        @firestore.transactional
        def apply(transaction: Any) -> tuple[TaskDoc | None, bool]:
            current = _read(task_ref.get(transaction=transaction))

            def read(path: str) -> dict | None:
                return _read(client.document(path).get(transaction=transaction))

            change = mutate(current, read)
            if current is None or change is None:
                return current, False
            updated = dict(current, **change.updates)
            seq = current.get("eventSeq", 0)
            for kind, data in change.events:
                seq += 1
                event: EventDoc = {"seq": seq, "type": kind, "data": data, "at": now}
                if "expireAt" in current:
                    event["expireAt"] = current["expireAt"]
                self._set_event(transaction, task_ref, event)
            updated["eventSeq"] = seq
            transaction.update(task_ref, encode(task_ref.path, dict(change.updates, eventSeq=seq)))
            for path, data, merge in change.writes:
                transaction.set(client.document(path), encode(path, data), merge=merge)
            for path, counters in change.increments:
                transaction.set(
                    client.document(path),
                    {name: firestore.Increment(n) for name, n in counters.items()},
                    merge=True,
                )
            return cast(TaskDoc, updated), True

        result: tuple[TaskDoc | None, bool] = self._contended(
            lambda: apply(client.transaction(max_attempts=1))
        )
        return result

    def append_task_event(self, task_id: str, kind: str, data: Any, now: datetime) -> None:
        """One more event on a task, whatever its status (a webhook attempt is recorded
        on a finished task)."""
        self.update_task(task_id, lambda task, read: Change(events=[(kind, data)]), now)

    def add_llm_usage(
        self, task_id: str, input_tokens: int, output_tokens: int, now: datetime
    ) -> None:
        """Count one LLM call on the task (`llmUsage`) and on its owner's day (`usage`),
        in one transaction."""

        def mutate(current: TaskDoc | None, read: Reader) -> Change | None:
            if current is None:
                return None
            before = cast(dict[str, int], current.get("llmUsage") or {})
            totals = {
                "inputTokens": before.get("inputTokens", 0) + input_tokens,
                "outputTokens": before.get("outputTokens", 0) + output_tokens,
                "calls": before.get("calls", 0) + 1,
            }
            counters = {
                "llmInputTokens": input_tokens,
                "llmOutputTokens": output_tokens,
                "llmTokens": input_tokens + output_tokens,
                "llmCalls": 1,
            }
            return Change(
                updates={"llmUsage": totals},
                increments=[(usage_path(current["owner"], now), counters)],
            )

        self.update_task(task_id, mutate, now)

    def list_tasks(
        self, owner: str, *, status: str | None, limit: int, after_id: str | None
    ) -> list[TaskDoc]:
        """The owner's tasks, newest first; `after_id` continues after that task."""
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self.client.collection(TASKS).where(filter=FieldFilter("owner", "==", owner))
        if status is not None:
            query = query.where(filter=FieldFilter("status", "==", status))
        query = query.order_by("createdAt", direction=firestore.Query.DESCENDING).order_by(
            "__name__", direction=firestore.Query.DESCENDING
        )
        if after_id is not None:
            cursor = self._task_ref(after_id).get()
            if not cursor.exists or cursor.get("owner") != owner:
                return []
            query = query.start_after(cursor)
        return [_read(doc) for doc in query.limit(limit).stream()]

    def tasks_with_status(
        self, statuses: list[str], *, due_field: str, due_before: datetime, limit: int
    ) -> list[TaskDoc]:
        """Tasks in `statuses` whose `due_field` is at or before `due_before`, oldest
        due first. Used by the dispatcher (queued) and the reconciler (in flight)."""
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(TASKS)
            .where(filter=FieldFilter("status", "in", statuses))
            .where(filter=FieldFilter(due_field, "<=", due_before))
            .order_by(due_field)
            .limit(limit)
        )
        return [_read(doc) for doc in query.stream()]

    def count_tasks_with_status(self, statuses: list[str]) -> int:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = self.client.collection(TASKS).where(filter=FieldFilter("status", "in", statuses))
        result = query.count().get()
        return int(result[0][0].value)

    # -- events ----------------------------------------------------------------

    def list_events(self, task_id: str, *, after: int, limit: int) -> list[EventDoc]:
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self._task_ref(task_id)
            .collection(EVENTS)
            .where(filter=FieldFilter("seq", ">", after))
            .order_by("seq")
            .limit(limit)
        )
        return [_read(doc) for doc in query.stream()]

    # -- other documents (agents, conversations, usage) ----------------------------

    def get_doc(self, path: str) -> Any:
        return _read(self.client.document(path).get())

    def create_doc(self, path: str, data: dict[str, Any]) -> None:
        self.client.document(path).create(encode(path, data))

    def create_doc_if_absent(self, path: str, data: dict[str, Any]) -> bool:
        """Create a document unless it exists: one commit with a precondition, so of
        any number of racing callers exactly one gets True, and none waits on a lock."""
        from google.api_core import exceptions as gexc

        try:
            self.client.document(path).create(data)
        except gexc.Conflict:
            return False
        return True

    def delete_doc(self, path: str) -> None:
        self.client.document(path).delete()

    def update_doc(self, path: str, updates: dict[str, Any]) -> None:
        self.client.document(path).update(encode(path, updates))

    def list_owned(
        self, collection: str, owner: str, *, limit: int, after_id: str | None
    ) -> list[Any]:
        """The owner's documents of `collection`, newest first."""
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        ref = self.client.collection(collection)
        query = (
            ref.where(filter=FieldFilter("owner", "==", owner))
            .order_by("createdAt", direction=firestore.Query.DESCENDING)
            .order_by("__name__", direction=firestore.Query.DESCENDING)
        )
        if after_id is not None:
            cursor = ref.document(after_id).get()
            if not cursor.exists or cursor.get("owner") != owner:
                return []
            query = query.start_after(cursor)
        return [_read(doc) for doc in query.limit(limit).stream()]

    def list_children(self, path: str, *, limit: int, after_id: str | None = None) -> list[Any]:
        """A subcollection's first `limit` documents after `after_id`, in id order (our
        ids sort by time)."""
        collection = self.client.collection(path)
        query = collection.order_by("__name__")
        if after_id is not None:
            query = query.start_after({"__name__": collection.document(after_id)})
        return [_read(doc) for doc in query.limit(limit).stream()]

    def list_children_before(self, path: str, *, before: datetime, limit: int) -> list[Any]:
        """The last `limit` documents of a subcollection created before `before`, oldest
        first. (By `createdAt`, not by id: Firestore scans keys in ascending order only.)"""
        from google.cloud import firestore
        from google.cloud.firestore_v1.base_query import FieldFilter

        query = (
            self.client.collection(path)
            .where(filter=FieldFilter("createdAt", "<", before))
            .order_by("createdAt", direction=firestore.Query.DESCENDING)
            .limit(limit)
        )
        return [_read(doc) for doc in query.stream()][::-1]

    def delete_task(self, task_id: str) -> None:
        """Delete a task's document and its events."""
        self.delete_tree(task_path(task_id), (EVENTS,))

    def delete_tree(self, path: str, subcollections: tuple[str, ...]) -> None:
        """Delete a document and the named subcollections under it, in batches."""
        doc = self.client.document(path)
        for name in subcollections:
            while True:
                batch = self.client.batch()
                docs = list(doc.collection(name).limit(400).stream())
                for child in docs:
                    batch.delete(child.reference)
                if not docs:
                    break
                batch.commit()
        doc.delete()

    def run_transaction(self, work: Callable[[Reader, Callable[..., None]], Any]) -> Any:
        """Run `work(read, write)` in one transaction: `read(path)` returns a document
        or None; `write(path, data, merge=False)` sets one. Reads come first."""
        from google.cloud import firestore

        client = self.client

        @firestore.transactional
        def run(transaction: Any) -> Any:
            def read(path: str) -> dict | None:
                return _read(client.document(path).get(transaction=transaction))

            def write(path: str, data: dict, merge: bool = False) -> None:
                transaction.set(client.document(path), encode(path, data), merge=merge)

            return work(read, write)

        return self._contended(lambda: run(client.transaction(max_attempts=1)))
