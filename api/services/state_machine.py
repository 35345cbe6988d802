"""The task state machine: every status change of a task happens here.

    queued -> dispatched -> running -> completed | failed | timed_out | cancelled
       ^          |
       +----------+  (a retryable launch failure puts the task back in the queue)

Any non-terminal status may also go straight to `failed` or `cancelled`.

Each transition is one Firestore transaction that reads the task, checks its
current status, and writes the new status together with its `status` event (and,
when it settles the task, the owner's usage counters). The first terminal
transition wins; every later report is ignored, so results and usage are written
exactly once however many runners, retries or reconcilers report.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from api import config
from api.adapters.firestore_paths import (
    delivery_path,
    running_path,
    unsettled_shard_path,
    usage_path,
)
from api.adapters.firestore_store import Change, FirestoreStore, Reader
from api.models.documents import IN_FLIGHT, TERMINAL, TaskDoc, TaskStatus
from api.services.conversation_turns import conversation_turn_ended
from api.services.result_fit import fit_result
from api.services.webhooks import delivery_record

__all__ = [
    "IN_FLIGHT",
    "TERMINAL",
    "ClaimRefused",
    "TaskStateMachine",
    "TaskStatus",
    "is_terminal",
    "utcnow",
]


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_terminal(task: TaskDoc) -> bool:
    return TaskStatus(task["status"]).terminal


class ClaimRefused(Exception):
    """The runner may not run this task: it is settled, or another execution has it."""


class TaskStateMachine:
    def __init__(
        self,
        store: FirestoreStore,
        *,
        runner_overhead_seconds: int,
        heartbeat_grace_seconds: float,
        claim_grace_seconds: float,
    ) -> None:
        self.store = store
        self.runner_overhead = timedelta(seconds=runner_overhead_seconds)
        self.heartbeat_grace = timedelta(seconds=heartbeat_grace_seconds)
        self.claim_grace = timedelta(seconds=claim_grace_seconds)

    # -- helpers ---------------------------------------------------------------

    def _status_change(
        self,
        task: TaskDoc,
        status: TaskStatus,
        now: datetime,
        read: Reader | None = None,
        **updates,
    ) -> Change:
        data: dict[str, Any] = {"status": status.value}
        if status.terminal:
            updates["finishedAt"] = now
            error = updates.get("error")
            if error:
                data["error"] = error
        updates["status"] = status.value
        change = Change(updates=updates, events=[("status", data)])
        change.increments += _admission_counts(task, status)
        if status.terminal:
            # Counted once: only the first terminal transition gets here.
            counters = {"tasksSettled": 1, f"tasks_{status.value}": 1}
            duration = (updates.get("result") or {}).get("durationMs")
            if isinstance(duration, int):
                counters["sandboxMs"] = duration
            change.increments.append((usage_path(task["owner"], now), counters))
            if task.get("webhookUrl"):
                # Queued for delivery in the transaction that settles the task: it
                # cannot be lost, whatever happens to this instance next.
                change.writes.append(
                    (delivery_path(task["id"]), dict(delivery_record(task, now)), False)
                )
            if task.get("conversationId") and read is not None:
                # The reply joins the conversation in the transaction that settles the
                # turn's task, so a reply is never lost nor written twice.
                change.writes += conversation_turn_ended(
                    task, status.value, updates.get("result"), read, now
                )
        return change

    # -- transitions -----------------------------------------------------------

    def mark_dispatched(
        self,
        task_id: str,
        backend: str,
        dispatch_id: str,
        max_running: int = config.MAX_ACTIVE_TASKS_PER_USER,
    ) -> tuple[TaskDoc | None, bool]:
        """queued -> dispatched, before the executor is asked to launch, if its owner
        has fewer than `max_running` tasks dispatched or running (read in this same
        transaction, so the cap holds across instances). Returns (the task when this
        caller won the right to launch it, else None; whether the owner is at the cap).
        """
        now = utcnow()
        at_cap: list[bool] = []

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            at_cap.clear()
            if task is None or task["status"] != TaskStatus.QUEUED:
                return None
            running = (read(running_path(task["owner"])) or {}).get("running", 0)
            if running >= max_running:
                at_cap.append(True)
                return None
            return self._status_change(
                task,
                TaskStatus.DISPATCHED,
                now,
                dispatchedAt=now,
                checkAt=now + self.claim_grace,
                dispatchAttempts=task.get("dispatchAttempts", 0) + 1,
                execution={"backend": backend, "name": None, "attempt": 0, "logUri": None},
                dispatchId=dispatch_id,
            )

        task, changed = self.store.update_task(task_id, mutate, now)
        return (task if changed else None), bool(at_cap)

    def record_execution(self, task_id: str, dispatch_id: str, execution: dict) -> None:
        """Store what the executor said about the launch (name, log link)."""
        now = utcnow()

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            if task is None or task.get("dispatchId") != dispatch_id or is_terminal(task):
                return None
            current: dict[str, Any] = dict(task.get("execution") or {})
            if task.get("claim") and current.get("name") != execution.get("name"):
                # Another execution (an earlier launch whose RunJob timed out but ran)
                # claimed the task first: its name, set by the claim, is the truth.
                return None
            merged = dict(current, **execution)
            return Change(updates={"execution": merged})

        self.store.update_task(task_id, mutate, now)

    def requeue(self, task_id: str, dispatch_id: str, retry_at: datetime, reason: str) -> None:
        """dispatched -> queued after a retryable launch failure (429, 5xx, timeout)."""
        now = utcnow()

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            if task is None or task["status"] != TaskStatus.DISPATCHED:
                return None
            if task.get("dispatchId") != dispatch_id:
                return None
            change = self._status_change(
                task, TaskStatus.QUEUED, now, nextDispatchAt=retry_at, checkAt=None
            )
            change.events[0][1]["reason"] = reason
            return change

        self.store.update_task(task_id, mutate, now)

    def claim(
        self, task_id: str, execution: str, attempt: int, execution_name: str | None = None
    ) -> TaskDoc:
        """A runner claims its task. Idempotent for the same (execution, attempt); a
        later attempt of the same execution takes over (Cloud Run retried it); any
        other execution is refused, so a duplicate launch cannot run twice."""
        now = utcnow()
        refusal: list[str] = []

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            refusal.clear()
            if task is None:
                refusal.append("no such task")
                return None
            status = TaskStatus(task["status"])
            if status.terminal:
                refusal.append(f"task is already {status.value}")
                return None
            claim = task.get("claim")
            if status == TaskStatus.RUNNING and claim:
                if claim["execution"] != execution or attempt < claim["attempt"]:
                    refusal.append("task is claimed by another execution")
                    return None
                if attempt == claim["attempt"]:
                    return None  # the same claim again: nothing to write
            deadline = (
                now + timedelta(seconds=task["input"]["timeoutSeconds"]) + self.runner_overhead
            )
            execution_info = dict(
                task.get("execution") or {}, name=execution_name or execution, attempt=attempt
            )
            updates: dict[str, Any] = dict(
                claim={"execution": execution, "attempt": attempt},
                execution=execution_info,
                heartbeatAt=now,
                deadlineAt=deadline,
                checkAt=min(deadline, now + self.heartbeat_grace),
            )
            if status == TaskStatus.RUNNING:
                return Change(
                    updates=updates, events=[("status", {"status": "running", "attempt": attempt})]
                )
            return self._status_change(task, TaskStatus.RUNNING, now, startedAt=now, **updates)

        task, _ = self.store.update_task(task_id, mutate, now)
        if refusal:
            raise ClaimRefused(refusal[0])
        assert task is not None
        return task

    def _claim_matches(self, task: TaskDoc, execution: str, attempt: int) -> bool:
        claim: dict[str, Any] = dict(task.get("claim") or {})
        return (
            task["status"] == TaskStatus.RUNNING
            and claim.get("execution") == execution
            and claim.get("attempt") == attempt
        )

    def append_events(
        self,
        task_id: str,
        execution: str,
        attempt: int,
        events: list[tuple[str, Any]],
        max_events: int,
    ) -> TaskDoc | None:
        """Store a batch of runner events (also a heartbeat). Returns the task, or None
        when the caller no longer holds the task (settled, cancelled, taken over)."""
        now = utcnow()

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            if task is None or not self._claim_matches(task, execution, attempt):
                return None
            kept, truncated = _fit_events(task, events, max_events)
            updates: dict[str, Any] = {
                "heartbeatAt": now,
                "checkAt": min(task["deadlineAt"], now + self.heartbeat_grace),
            }
            if truncated:
                updates["eventsTruncated"] = True
            return Change(updates=updates, events=kept)

        task, changed = self.store.update_task(task_id, mutate, now)
        return task if changed else None

    def finish(
        self,
        task_id: str,
        execution: str,
        attempt: int,
        status: TaskStatus,
        result: dict | None,
        error: dict | None,
        events: Sequence[tuple[str, Any]] = (),
        max_events: int = 0,
        sandbox: dict | None = None,
    ) -> tuple[TaskDoc | None, bool]:
        """The runner's final report, with its last events and how it sandboxed the
        task (into `execution`). Only the current claim may settle the task, and only
        once; a duplicate or late report changes nothing."""
        now = utcnow()

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            if task is None or not self._claim_matches(task, execution, attempt):
                return None
            kept, truncated = _fit_events(task, list(events), max_events)
            change = self._status_change(
                task, status, now, read, result=fit_result(task, result), error=error, checkAt=None
            )
            change.events[:0] = kept
            if truncated:
                change.updates["eventsTruncated"] = True
            if sandbox:
                change.updates["execution"] = {**(task.get("execution") or {}), **sandbox}
            return change

        return self.store.update_task(task_id, mutate, now)

    def settle(
        self,
        task_id: str,
        status: TaskStatus,
        error: dict | None = None,
        only_if: set[TaskStatus] | None = None,
    ) -> tuple[TaskDoc | None, bool]:
        """Settle a task from outside the runner: cancel, runner lost, timed out.
        Terminal tasks never change."""
        assert status.terminal
        now = utcnow()

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            if task is None or is_terminal(task):
                return None
            if only_if is not None and TaskStatus(task["status"]) not in only_if:
                return None
            return self._status_change(task, status, now, read, error=error, checkAt=None)

        return self.store.update_task(task_id, mutate, now)

    def postpone_check(self, task_id: str, until: datetime) -> None:
        """Nothing wrong yet: look at this in-flight task again at `until`."""
        now = utcnow()

        def mutate(task: TaskDoc | None, read: Reader) -> Change | None:
            if task is None or is_terminal(task):
                return None
            return Change(updates={"checkAt": until})

        self.store.update_task(task_id, mutate, now)


def _admission_counts(task: TaskDoc, status: TaskStatus) -> list[tuple[str, dict[str, int]]]:
    """The owner's admission counters a transition moves (api/services/admission.py):
    queued tasks on the task's shard, unsettled ones when it settles, and the tasks
    holding a dispatch slot (`running`)."""
    if "admissionShard" not in task:
        return []
    owner = task["owner"]
    shard = unsettled_shard_path(owner, task["admissionShard"])
    running = running_path(owner)
    before = TaskStatus(task["status"])
    counts: list[tuple[str, dict[str, int]]] = []
    if status == TaskStatus.DISPATCHED and before == TaskStatus.QUEUED:
        counts += [(shard, {"queued": -1}), (running, {"running": 1})]
    elif status == TaskStatus.QUEUED and before == TaskStatus.DISPATCHED:
        counts += [(shard, {"queued": 1}), (running, {"running": -1})]
    elif status.terminal:
        shard_counts = {"unsettled": -1}
        if before == TaskStatus.QUEUED:
            shard_counts["queued"] = -1
        counts.append((shard, shard_counts))
        if before.value in IN_FLIGHT:
            counts.append((running, {"running": -1}))
    return counts


def _fit_events(
    task: TaskDoc, events: list[tuple[str, Any]], max_events: int
) -> tuple[list[tuple[str, Any]], bool]:
    """Keep a task's event log bounded: past `max_events`, one `events_truncated`
    marker is stored and the rest dropped (the result still holds the output)."""
    room = max(0, max_events - task.get("eventSeq", 0))
    if len(events) <= room:
        return events, False
    if task.get("eventsTruncated"):
        return [], True
    return events[: max(0, room - 1)] + [("events_truncated", {"limit": max_events})], True
