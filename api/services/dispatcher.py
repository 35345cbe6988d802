"""Launching queued tasks and settling in-flight tasks that went quiet.

One background thread per API process does both. Submissions wake it at once
(`kick`); otherwise it looks for work every few seconds. Queued tasks start
round-robin across their owners (one task per owner in turn, the owner served
longest ago first), and an owner with MAX_ACTIVE_TASKS_PER_USER tasks in flight is
skipped until one ends: one user's backlog delays another user's task by at most
the time one slot takes to free up. Launching happens only on
this long-lived thread: local runners are tied to the thread that started them
(PR_SET_PDEATHSIG), and a request thread may come and go.

The reconciler asks the executor about a task only when the task is overdue
(`checkAt` passed: no heartbeat, no claim, or past its deadline), then moves
`checkAt` on, so each task costs at most one executor call per interval and a
client poll costs none.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import secrets
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from api import config
from api.adapters.executors.base import DispatchError, ExecutionState, Executor
from api.models.documents import TaskDoc
from api.services.job_classes import job_class
from api.services.launch_rate import LaunchRate
from api.services.state_machine import IN_FLIGHT, TaskStateMachine, TaskStatus, utcnow
from api.services.task_tokens import issue_task_token

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 60
MAX_DISPATCH_ATTEMPTS = 10
# Admission shards with queued tasks read per pass (an owner has up to 16), and each
# owner's queued tasks read. Past that many shards, owners beyond the first are not
# seen in that pass (ADR 0007: a per-owner queue index is the next step).
QUEUED_SHARDS_PER_PASS = 2000
HEADS_PER_OWNER = 20
# Launches a request may do itself at once (Cloud Run); past that the loop does them,
# so a burst of submissions does not queue on one another's launches.
INLINE_LAUNCHES = 2


def runner_lost(message: str) -> dict:
    return {"code": "runner_lost", "message": message}


class Dispatcher:
    def __init__(
        self,
        machine: TaskStateMachine,
        executor: Executor,
        *,
        token_key: bytes,
        runner_overhead_seconds: int,
        interval_seconds: float,
        on_change: Callable[[str], None] | None = None,
        launch_in_request: bool = False,
        max_running_per_owner: int = 1_000_000,
        launch_rate: LaunchRate | None = None,
        small_job_max_memory_mb: int = config.SMALL_JOB_MAX_TASK_MEMORY_MB,
        max_queued_seconds: float = config.MAX_QUEUED_SECONDS,
    ) -> None:
        self.machine = machine
        # The fleet-wide RunJob rate (Cloud Run); None: no limit but the executor's.
        self.launch_rate = launch_rate
        self.small_job_max_memory_mb = small_job_max_memory_mb
        self.max_queued = timedelta(seconds=max_queued_seconds)
        self.store = machine.store
        self.executor = executor
        self.token_key = token_key
        self.runner_overhead = runner_overhead_seconds
        self.interval = interval_seconds
        self.launch_in_request = launch_in_request
        self.max_running_per_owner = max_running_per_owner
        self._inline = threading.BoundedSemaphore(INLINE_LAUNCHES)
        # One claim (queued -> dispatched) at a time in this process: claims of one
        # owner's tasks read the same `admissionRunning` document, and on Firestore two
        # transactions on one document wait on each other's locks.
        self._claiming = threading.Lock()
        # Owner -> the turn it was last served in (this process's view of round-robin).
        self._served: dict[str, int] = {}
        self._turns = itertools.count(1)
        self.on_change = on_change or (lambda task_id: None)
        self._kicks: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        # RunJob takes a while (hundreds of ms on the real Admin API): executors that
        # allow it launch several tasks at once. The local executor launches from this
        # loop's own long-lived thread only (its runners die with the thread that
        # started them, PR_SET_PDEATHSIG).
        workers = executor.parallel_launches
        self._pool = (
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="launch")
            if workers > 1
            else None
        )

    # -- the loop --------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._kicks.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def submitted(self, task_id: str) -> None:
        """A new task was stored. With `launch_in_request` (Cloud Run) it is launched
        now, inside the request: Cloud Run throttles an instance's CPU between requests
        (https://cloud.google.com/run/docs/configuring/cpu-allocation), so a background
        thread cannot be relied on to launch it soon. Otherwise the loop launches it."""
        # The semaphore first: only the requests that will launch count the slots. A
        # request never waits for another claim: then the loop launches its task.
        if self.launch_in_request and self._inline.acquire(blocking=False):
            try:
                if self.executor.free_slots() > 0:
                    self._guard(self.dispatch, task_id, wait_for_claim=False)
                    return
            finally:
                self._inline.release()
        self.kick(task_id)

    def qualify_execution(self, reported: str) -> str:
        """The execution's full name from what its runner reports (CLOUD_RUN_EXECUTION)."""
        return self.executor.qualify_execution(reported)

    def cancel_execution(self, execution_name: str) -> None:
        """Stop a task's execution and everything it started (a cancelled task)."""
        self.executor.cancel(execution_name)

    def kick(self, task_id: str | None = None) -> None:
        """Wake the loop (the task id is only a hint that there is work)."""
        self._kicks.put(task_id)

    def _loop(self) -> None:
        # Settle what an earlier process left behind before taking new work.
        self._guard(self.reconcile, everything=True)
        next_sweep = 0.0
        while not self._stopping.is_set():
            try:
                hinted = self._kicks.get(timeout=self.interval)
            except queue.Empty:
                hinted = None
            if self._stopping.is_set():
                return
            while not self._kicks.empty():  # a burst of kicks is one pass
                self._kicks.get_nowait()
            self._guard(self.dispatch_pending)
            now = utcnow().timestamp()
            if hinted is None or now >= next_sweep:
                next_sweep = now + self.interval
                self._guard(self.reconcile)

    def _guard(self, fn: Callable[..., object], *args: object, **kwargs: object) -> None:
        # A Firestore or executor hiccup must not kill the loop; the next pass retries.
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("dispatcher pass failed")

    # -- launching -------------------------------------------------------------

    def dispatch_pending(self) -> int:
        """Launch queued tasks while slots are free: one task per owner in turn."""
        slots = self.executor.free_slots()
        if slots <= 0:
            return 0
        owners = self.store.owners_with_queued(QUEUED_SHARDS_PER_PASS)
        order = sorted(owners, key=lambda owner: self._served.get(owner, 0))
        heads: dict[str, deque] = {}
        claimed: list[tuple[TaskDoc, str]] = []
        now = utcnow()
        while slots > 0 and order:
            still_queued = []
            for owner in order:
                if slots <= 0:
                    break
                if owner not in heads:
                    due = self.store.oldest_queued(owner, HEADS_PER_OWNER)
                    heads[owner] = deque(t for t in due if t["nextDispatchAt"] <= now)
                if heads[owner] and not self._permit():
                    slots = 0  # the fleet's launch rate is spent: the rest stay queued
                    break
                got = self._claim_next(heads[owner])
                if got is not None:
                    claimed.append(got)
                    slots -= 1
                    self._served[owner] = next(self._turns)
                if heads[owner]:
                    still_queued.append(owner)
            order = still_queued
        if len(self._served) > QUEUED_SHARDS_PER_PASS:
            self._served = {o: t for o, t in self._served.items() if o in owners}
        if self._pool is None:
            return sum(self._launch(task, dispatch_id) for task, dispatch_id in claimed)
        return sum(self._pool.map(lambda pair: self._launch(*pair), claimed))

    def _claim_next(self, queued: deque) -> tuple[TaskDoc, str] | None:
        """Mark the first of an owner's queued tasks that is still queued dispatched;
        at the owner's cap, forget the rest for this pass."""
        while queued:
            task_id = queued.popleft()["id"]
            dispatch_id = secrets.token_hex(8)
            with self._claiming:
                task, at_cap = self.machine.mark_dispatched(
                    task_id, self.executor.backend, dispatch_id, self.max_running_per_owner
                )
            if at_cap:
                queued.clear()
                return None
            if task is not None:
                return task, dispatch_id
        return None

    def dispatch(self, task_id: str, wait_for_claim: bool = True) -> int:
        """Launch one queued task (unless its owner is at the cap); 1 if launched.
        With `wait_for_claim=False`, leave it to the loop if another claim is going on."""
        dispatch_id = secrets.token_hex(8)
        if not self._permit():
            return 0  # it stays queued; the loop launches it once the rate allows
        if not self._claiming.acquire(blocking=wait_for_claim):
            self.kick()
            return 0
        try:
            task, _ = self.machine.mark_dispatched(
                task_id, self.executor.backend, dispatch_id, self.max_running_per_owner
            )
        finally:
            self._claiming.release()
        if task is None:
            return 0  # no longer queued (another instance took it, or it was cancelled)
        self._served[task["owner"]] = next(self._turns)  # its turn, for round-robin
        return self._launch(task, dispatch_id)

    def _permit(self) -> bool:
        """One RunJob call of the fleet's rate (always, without a limit)."""
        return self.launch_rate is None or self.launch_rate.acquire() == 0.0

    def _launch(self, task: TaskDoc, dispatch_id: str) -> int:
        task_id = task["id"]
        timeout = task["input"]["timeoutSeconds"]
        expires = utcnow() + timedelta(seconds=timeout + 2 * self.runner_overhead + 600)
        token = issue_task_token(self.token_key, task_id, expires.timestamp())
        size = job_class(task, self.small_job_max_memory_mb)
        try:
            launched = self.executor.launch(task_id, token, timeout + self.runner_overhead, size)
        except DispatchError as error:
            attempts = task.get("dispatchAttempts", 1)
            if error.rate_limited:
                self._wait_for_quota(task, dispatch_id, error)
            elif error.retryable and attempts < MAX_DISPATCH_ATTEMPTS:
                delay = min(MAX_BACKOFF_SECONDS, 2**attempts) * (0.5 + random.random())
                retry_at = utcnow() + timedelta(seconds=delay)
                log.warning(
                    "launch failed, retrying in %.1fs: %s", delay, error, extra={"task_id": task_id}
                )
                self.machine.requeue(task_id, dispatch_id, retry_at, str(error))
            else:
                # Not retryable (a configuration error), or retried long enough (~8 min):
                # the task must still end, with the reason.
                log.error("launch failed for good: %s", error, extra={"task_id": task_id})
                message = f"The task could not be launched after {attempts} attempt(s): {error}"
                self.machine.settle(
                    task_id, TaskStatus.FAILED, {"code": "dispatch_failed", "message": message}
                )
            self.on_change(task_id)
            return 0
        execution = {"name": launched.name, "logUri": launched.log_uri, **launched.details}
        self.machine.record_execution(task_id, dispatch_id, execution)
        self.on_change(task_id)
        return 1

    def _wait_for_quota(self, task: TaskDoc, dispatch_id: str, error: DispatchError) -> None:
        """RunJob said 429: the quota, not a fault. The task goes back to `queued` until
        Retry-After (or a backoff) has passed, for as long as MAX_QUEUED_SECONDS from its
        creation allows."""
        task_id = task["id"]
        attempts = task.get("dispatchAttempts", 1)
        backoff = min(MAX_BACKOFF_SECONDS, 2**attempts) * (0.5 + random.random())
        retry_at = utcnow() + timedelta(seconds=error.retry_after or backoff)
        if retry_at <= task["createdAt"] + self.max_queued:
            log.warning(
                "RunJob quota: queued until %s: %s", retry_at, error, extra={"task_id": task_id}
            )
            self.machine.requeue(task_id, dispatch_id, retry_at, str(error))
            return
        message = f"Cloud Run's RunJob quota refused the task until its queue deadline: {error}"
        log.error(message, extra={"task_id": task_id})
        self.machine.settle(
            task_id, TaskStatus.FAILED, {"code": "dispatch_failed", "message": message}
        )

    # -- settling --------------------------------------------------------------

    def runner_exited(self, task_id: str, execution_name: str, exit_code: int) -> None:
        """A local runner process ended. If it did not report, its task is lost."""
        task = self.store.get_task(task_id)
        if task is not None and task["status"] in IN_FLIGHT:
            how = (
                f"exited with code {exit_code}"
                if exit_code >= 0
                else f"was killed by signal {-exit_code}"
            )
            self.machine.settle(
                task_id,
                TaskStatus.FAILED,
                runner_lost(f"The job-runner {how} before reporting a result."),
            )
            self.on_change(task_id)
        self.kick()

    def reconcile(self, everything: bool = False) -> int:
        """Settle overdue in-flight tasks from their execution's real state."""
        now = utcnow()
        horizon = now + timedelta(days=3650) if everything else now
        settled = 0
        for task in self.store.tasks_with_status(
            IN_FLIGHT, due_field="checkAt", due_before=horizon, limit=100
        ):
            execution = task.get("execution")
            if execution is None or execution.get("backend") != self.executor.backend:
                continue
            settled += self._reconcile_task(task, execution.get("name"), now)
        return settled

    def _reconcile_task(self, task: TaskDoc, execution_name: str | None, now: datetime) -> int:
        task_id = task["id"]
        state = self.executor.describe(execution_name)
        if state == ExecutionState.RUNNING:
            deadline = task.get("deadlineAt")
            if deadline is not None and now > deadline:
                if execution_name is not None:
                    self.executor.cancel(execution_name)
                self.machine.settle(
                    task_id,
                    TaskStatus.TIMED_OUT,
                    {
                        "code": "deadline_exceeded",
                        "message": "The runner did not report before the task's deadline.",
                    },
                )
                self.on_change(task_id)
                return 1
            self.machine.postpone_check(task_id, now + timedelta(seconds=self.interval))
            return 0
        if state == ExecutionState.CANCELLED:
            status, error = TaskStatus.CANCELLED, None
        elif state == ExecutionState.TIMED_OUT:
            status, error = (
                TaskStatus.TIMED_OUT,
                {"code": "execution_timeout", "message": "The execution hit its time limit."},
            )
        else:
            status, error = (
                TaskStatus.FAILED,
                runner_lost(
                    f"The job-runner's execution is {state.value} and never reported a result."
                ),
            )
        _, changed = self.machine.settle(task_id, status, error)
        if changed:
            log.warning("settled overdue task as %s", status.value, extra={"task_id": task_id})
            self.on_change(task_id)
        return int(changed)
