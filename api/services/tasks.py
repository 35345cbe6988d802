"""Task rules seen from the client: submit, read, list, wait, cancel, events."""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from api import config
from api.adapters.firestore_store import Contended
from api.adapters.firestore_tasks import idempotency_record
from api.errors import ApiError, not_found
from api.models.documents import (
    NOT_SETTLED,
    EventDoc,
    IdempotencyDoc,
    TaskDoc,
    TaskEnvironment,
    TaskKind,
)
from api.services.admission import Reservation, TaskAdmission
from api.services.dispatcher import Dispatcher
from api.services.state_machine import (
    TaskStateMachine,
    TaskStatus,
    is_terminal,
    utcnow,
)
from api.services.task_watch import TaskWatch

PENDING_RECOUNT_SECONDS = 1.0
LLM_NOT_CONFIGURED = {
    "code": "llm_not_configured",
    "message": "Agent tasks need an Anthropic API key: set ANTHROPIC_API_KEY (locally) or "
    "ANTHROPIC_API_KEY_SECRET (a Secret Manager version) for the API and restart it.",
}
# How often a waiting request re-reads a task that another instance may settle.
WAIT_POLL_SECONDS = 0.5
# How long the owners with queued tasks are remembered for `queuePosition`.
QUEUE_OWNERS_SECONDS = 2.0
QUEUE_OWNERS_LIMIT = 1000


def new_task_id() -> str:
    return secrets.token_hex(12)


class TaskService:
    def __init__(
        self,
        machine: TaskStateMachine,
        dispatcher: Dispatcher,
        watch: TaskWatch,
        *,
        allow_network: bool,
        max_pending: int = config.MAX_PENDING_TASKS,
        llm_configured: bool = False,
        admission: TaskAdmission | None = None,
        check_webhook_url=None,
        check_access=None,
        retention_days: float = config.TASK_RETENTION_DAYS,
    ) -> None:
        self.retention_days = retention_days
        self.machine = machine
        self.store = machine.store
        self.dispatcher = dispatcher
        self.watch = watch
        self.allow_network = allow_network
        self.max_pending = max_pending
        self.llm_configured = llm_configured
        self.admission = admission or TaskAdmission(
            self.store,
            max_unsettled=config.MAX_UNSETTLED_TASKS_PER_USER,
            max_per_day=config.MAX_TASKS_PER_USER_PER_DAY,
            max_active=config.MAX_ACTIVE_TASKS_PER_USER,
        )
        self.check_webhook_url = check_webhook_url or (lambda url: None)
        # (owner, inputs): 422 for secrets or hosts the tasks may not have
        # (api/services/task_access.py).
        self.check_access = check_access or (lambda owner, task_inputs: None)
        # (owner, name or id) -> the custom environment a task restores
        # (api/services/environments.py resolve; set by the app's wiring).
        self.resolve_environment: Callable[[str, str], TaskEnvironment] | None = None
        self._owners_lock = threading.Lock()
        self._owners: tuple[float, dict[str, int]] = (float("-inf"), {})
        self._pending_lock = threading.Lock()
        self._pending_count = 0
        self._pending_counted_at = float("-inf")
        self._recounting = False

    def admit(self, network: bool) -> None:
        """Refuse a new task this deployment cannot take (network, capacity)."""
        if network and not self.allow_network:
            raise ApiError(
                422,
                "network_not_allowed",
                "This deployment does not allow network access from tasks "
                "(set ALLOW_TASK_NETWORK=true to allow it).",
            )
        if self._pending_tasks() >= self.max_pending:
            raise ApiError(
                503,
                "over_capacity",
                f"The platform already holds {self.max_pending} unsettled tasks; retry later.",
                retry_after=30,
            )

    def environment_fields(self, owner: str, task_input: dict) -> dict[str, Any]:
        """The task's `environment` field when its input names a custom environment.

        :raises ApiError: 404 the owner has none of that name or id; 409 not ready.
        """
        name = task_input.get("environment")
        if not name:
            return {}
        if self.resolve_environment is None:
            raise ApiError(422, "environments_unavailable", "Custom environments are not offered.")
        return {"environment": self.resolve_environment(owner, name)}

    def new_task(self, owner: str, kind: TaskKind, task_input: dict, **extra: Any) -> TaskDoc:
        """A queued task document, not yet stored (its custom environment resolved,
        unless the caller did)."""
        if "environment" not in extra:
            extra.update(self.environment_fields(owner, task_input))
        now = utcnow()
        task = {
            "id": new_task_id(),
            "owner": owner,
            "kind": kind,
            "status": TaskStatus.QUEUED.value,
            "createdAt": now,
            "startedAt": None,
            "finishedAt": None,
            "input": task_input,
            "result": None,
            "error": None,
            "execution": None,
            "nextDispatchAt": now,
            "checkAt": None,
            "expireAt": now + timedelta(days=self.retention_days),
            **extra,
        }
        return cast(TaskDoc, task)

    def submit(
        self,
        owner: str,
        kind: TaskKind,
        task_input: dict,
        idempotency_key: str | None,
        webhook_url: str | None = None,
        **extra,
    ) -> tuple[TaskDoc, bool]:
        """Store a queued task and start it. Returns (task, created).

        No transaction: the owner's limits are taken from sharded counters
        (TaskAdmission), and the task, its first event and its Idempotency-Key record
        are created in one commit, so a burst of one user's submissions shares no
        document (ADR 0007)."""
        self.check_access(owner, [task_input])
        self.admit(task_input.get("network") is True)
        if webhook_url is not None:
            self.check_webhook_url(webhook_url)
            extra["webhookUrl"] = webhook_url
        task = self.new_task(owner, kind, task_input, **extra)
        hashed = dict(task_input, webhookUrl=webhook_url) if webhook_url else task_input
        key = (
            idempotency_ids(owner, idempotency_key, hashed) if idempotency_key is not None else None
        )
        if key is not None:
            earlier = self.store.get_idempotency(key[0])
            if earlier is not None:
                return self.repeated(owner, earlier, key[1])[0], False
        reservation = self.admission.reserve(owner, task["createdAt"])
        stored = self.store_new(owner, [task], [reservation], key)
        if stored is not None and key is not None:
            return self.repeated(owner, stored, key[1])[0], False
        return self.start(task), True

    def submit_batch(
        self,
        owner: str,
        items: list[tuple[TaskKind, dict, dict]],
        idempotency_key: str | None,
        body: object,
    ) -> list[TaskDoc]:
        """Store (kind, input, extra fields) tasks all at once, or none: admission for
        the whole batch (429 if it does not fit), then one commit for every task. A
        few Firestore calls whatever the batch's size, none of them a transaction."""
        self.check_access(owner, [task_input for _, task_input, _ in items])
        self.admit(any(task_input.get("network") is True for _, task_input, _ in items))
        for _, _, extra in items:
            if extra.get("webhookUrl"):
                self.check_webhook_url(extra["webhookUrl"])
        environments: dict[str, dict[str, Any]] = {}  # each named one resolved once
        for _, task_input, _ in items:
            name = task_input.get("environment")
            if name and name not in environments:
                environments[name] = self.environment_fields(owner, task_input)
        tasks = [
            self.new_task(
                owner, kind, spec, **environments.get(spec.get("environment") or "", {}), **extra
            )
            for kind, spec, extra in items
        ]
        key = (
            idempotency_ids(owner, idempotency_key, body, "batch")
            if idempotency_key is not None
            else None
        )
        if key is not None:
            earlier = self.store.get_idempotency(key[0])
            if earlier is not None:
                return self.repeated(owner, earlier, key[1])
        reservations = self.admission.reserve_many(owner, len(tasks), tasks[0]["createdAt"])
        stored = self.store_new(owner, tasks, reservations, key)
        if stored is not None and key is not None:
            return self.repeated(owner, stored, key[1])
        started = [self.start(task, launch=False) for task in tasks]
        self.dispatcher.kick()
        return started

    def store_new(
        self,
        owner: str,
        tasks: list[TaskDoc],
        reservations: list[Reservation],
        key: tuple[str, str] | None,
    ) -> IdempotencyDoc | None:
        """Create reserved tasks in one commit; the earlier Idempotency-Key record when
        another request stored that key first (then the reservations are given back)."""
        for task, reservation in zip(tasks, reservations, strict=True):
            task["admissionShard"] = reservation.shard
        record: tuple[str, IdempotencyDoc] | None = None
        if key is not None:
            ids = [task["id"] for task in tasks]
            now = tasks[0]["createdAt"]
            record = (key[0], idempotency_record(ids[0], key[1], now, taskIds=ids))
        try:
            earlier = self.store.create_tasks(tasks, idempotency=record)
        except BaseException:
            self.admission.give_back(owner, reservations, tasks[0]["createdAt"])
            raise
        if earlier is not None:
            self.admission.give_back(owner, reservations, tasks[0]["createdAt"])
        return earlier

    def repeated(self, owner: str, record: IdempotencyDoc, body_hash: str) -> list[TaskDoc]:
        """The tasks an Idempotency-Key record names, if the body is the same."""
        if record.get("bodyHash") != body_hash:
            raise ApiError(
                422,
                "idempotency_key_reused",
                "This Idempotency-Key was used with a different request body.",
            )
        ids = record.get("taskIds") or [record["taskId"]]
        tasks = self.store.get_tasks(ids)
        found = [task for task in tasks if task is not None and task["owner"] == owner]
        if len(found) != len(tasks):
            raise not_found("task")
        return found

    def start(self, task: TaskDoc, launch: bool = True) -> TaskDoc:
        """A task was just stored: hand it to the dispatcher (`launch=False`: the
        caller kicks it once for many), or fail it at once when it can never run here
        (an agent task without an LLM key)."""
        with self._pending_lock:
            self._pending_count += 1
        if task["kind"] == "agent" and not self.llm_configured:
            settled, _ = self.machine.settle(task["id"], TaskStatus.FAILED, LLM_NOT_CONFIGURED)
            return settled or task
        if launch:
            self.dispatcher.submitted(task["id"])
        return task

    def queue_position(self, task: TaskDoc) -> int | None:
        """An estimate of how many queued tasks start before this one: the dispatcher
        takes one task per owner in turn (round-robin), so it is this owner's tasks
        ahead of it, plus as many of every other owner's (at most theirs). Costs one
        count query; the owners' queue lengths are shared for QUEUE_OWNERS_SECONDS."""
        if task["status"] != "queued":
            return None
        ahead = self.store.count_queued_before(task["owner"], task["createdAt"])
        others = sum(
            min(queued, ahead + 1)
            for owner, queued in self._queued_owners().items()
            if owner != task["owner"]
        )
        return ahead + others

    def _queued_owners(self) -> dict[str, int]:
        with self._owners_lock:
            read_at, owners = self._owners
            if time.monotonic() - read_at > QUEUE_OWNERS_SECONDS:
                owners = self.store.owners_with_queued(QUEUE_OWNERS_LIMIT)
                self._owners = (time.monotonic(), owners)
            return owners

    def _pending_tasks(self) -> int:
        """Unsettled tasks, counted in Firestore at most once per PENDING_RECOUNT_SECONDS
        and kept up to date in between with this process's own submissions. The cap
        is a guard against runaway load, not an exact quota: other instances'
        submissions show up at the next recount. One request recounts; the others go
        on with the last count meanwhile (a count over many tasks takes a while, and no
        submission should wait for it)."""
        with self._pending_lock:
            now = time.monotonic()
            stale = now - self._pending_counted_at >= PENDING_RECOUNT_SECONDS
            first = self._pending_counted_at == float("-inf")
            if not stale or (self._recounting and not first):
                return self._pending_count
            self._recounting = True
        try:
            counted = self.store.count_tasks_with_status(NOT_SETTLED)
        finally:
            with self._pending_lock:
                self._recounting = False
        with self._pending_lock:
            self._pending_count = counted
            self._pending_counted_at = time.monotonic()
            return counted

    def usage(self, owner: str) -> dict:
        """The owner's counters today against their limits (TaskAdmission.usage)."""
        return self.admission.usage(owner, utcnow())

    def get(self, owner: str, task_id: str) -> TaskDoc:
        task = self.store.get_task(task_id) if _plausible_id(task_id) else None
        if task is None or task["owner"] != owner:
            raise not_found("task")
        check_at = task.get("checkAt")
        if check_at is not None and check_at <= utcnow() and not is_terminal(task):
            # Overdue: let the dispatcher look at it (it asks the executor at most once
            # per interval). A healthy task's poll costs this one read and nothing else.
            self.dispatcher.kick()
        return task

    def wait(self, owner: str, task_id: str, seconds: float) -> TaskDoc:
        """The task once it is terminal, or as it is after `seconds` (at once when too
        many requests are already waiting in this process)."""
        deadline = time.monotonic() + seconds
        with self.watch.hold(owner) as may_wait, self.watch.watching(task_id):
            seen = self.watch.version(task_id)
            task = self.get(owner, task_id)
            while True:
                remaining = deadline - time.monotonic()
                if is_terminal(task) or remaining <= 0 or not may_wait:
                    return task
                latest = self.watch.wait(task_id, seen, min(remaining, WAIT_POLL_SECONDS))
                seen = self.watch.version(task_id)
                # A change made here carries the task; otherwise read it (another
                # instance may have changed it).
                task = latest if latest is not None else self.get(owner, task_id)

    def list(self, owner: str, *, limit: int, page_token: str | None, status: str | None):
        after_id = _decode_page_token(page_token) if page_token else None
        tasks = self.store.list_tasks(owner, status=status, limit=limit + 1, after_id=after_id)
        next_token = None
        if len(tasks) > limit:
            tasks = tasks[:limit]
            next_token = base64.urlsafe_b64encode(tasks[-1]["id"].encode()).decode()
        return tasks, next_token

    def cancel(self, owner: str, task_id: str) -> tuple[TaskDoc, bool]:
        """Cancel the task unless it has ended: (the task, whether it had already
        ended, in which case nothing changed)."""
        task = self.get(owner, task_id)
        if is_terminal(task):
            return task, True
        try:
            settled, changed = self.machine.settle(
                task_id,
                TaskStatus.CANCELLED,
                {"code": "cancelled", "message": "The task was cancelled by its owner."},
            )
        except Contended:
            # Its runner kept changing it (events, a result) for the whole contention
            # budget: whatever won is the task's truth, and a retry is safe.
            task = self.get(owner, task_id)
            if is_terminal(task):
                return task, True
            raise ApiError(
                409, "task_busy", "The task is changing too often to cancel now; retry."
            ) from None
        execution: dict[str, Any] = dict((settled or task).get("execution") or {})
        if changed and execution.get("name"):
            self.dispatcher.cancel_execution(execution["name"])
        if changed and task["status"] != "queued":
            self.dispatcher.kick()  # its slot is free: the next queued task may start
        self.watch.changed(task_id, settled)
        return settled or task, not changed

    def delete(self, owner: str, task_id: str, delete_files: Callable[[str], object]) -> None:
        """Delete a finished task: its files (first, so a failure leaves the task to
        delete again), its events and its document.

        :raises ApiError: 404 not the caller's; 409 still running, or a conversation's
            turn (delete the conversation instead).
        """
        task = self.get(owner, task_id)
        if not is_terminal(task):
            raise ApiError(
                409, "task_not_finished", "Only a finished task can be deleted: cancel it first."
            )
        if task.get("conversationId"):
            raise ApiError(
                409,
                "conversation_task",
                "This task is a conversation's turn: delete the conversation.",
            )
        delete_files(task_id)
        self.store.delete_task(task_id)

    def events(
        self, owner: str, task_id: str, after: int, limit: int
    ) -> tuple[TaskDoc, builtins.list[EventDoc]]:
        task = self.get(owner, task_id)
        return task, self.store.list_events(task_id, after=after, limit=limit)


def idempotency_ids(owner: str, key: str, body: object, scope: str = "task") -> tuple[str, str]:
    """(key id, body hash) of an Idempotency-Key: per user and per kind of
    request, so the same key on a task and on a batch are two keys."""
    if not 1 <= len(key) <= 200:
        raise ApiError(
            400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 characters."
        )
    prefix = "" if scope == "task" else f"{scope}\x00"
    key_id = hashlib.sha256(f"{owner}\x00{prefix}{key}".encode()).hexdigest()
    body_hash = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
    return key_id, body_hash


def _plausible_id(task_id: str) -> bool:
    return 0 < len(task_id) <= 64 and task_id.isalnum()


def _decode_page_token(token: str) -> str:
    try:
        task_id = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        task_id = ""
    if not _plausible_id(task_id):
        raise ApiError(400, "invalid_page_token", "pageToken is not one this API returned.")
    return task_id
