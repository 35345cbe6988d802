"""The executor seam: where a task's job-runner runs.

One production implementation (`CloudRunJobsExecutor`, one Cloud Run Job execution
per task) and one local implementation (`LocalExecutor`, one local process per
task); both hand the runner exactly the same environment (DESIGN section 8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

# Told when a runner ended on its own: (task id, execution name, exit code, or minus
# the signal that killed it).
RunnerExited = Callable[[str, str, int], None]


class ExecutionState(StrEnum):
    RUNNING = "running"  # still going (or starting)
    SUCCEEDED = "succeeded"  # ended, the runner exited 0
    FAILED = "failed"  # ended, the runner exited non-zero or was killed
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"  # the execution's own timeout killed it
    MISSING = "missing"  # the executor knows nothing of it


@dataclass
class Launched:
    name: str
    log_uri: str | None = None
    details: dict = field(default_factory=dict)


class DispatchError(Exception):
    """The executor could not launch; `retryable` says whether to try again later.
    `rate_limited` is a quota's refusal (HTTP 429), with the seconds its Retry-After
    asked for, if any: the task waits for the quota, not for a fault to clear."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        rate_limited: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.rate_limited = rate_limited
        self.retry_after = retry_after


class Executor(Protocol):
    backend: str
    parallel_launches: int  # launches the dispatcher may run at once

    def free_slots(self) -> int:
        """How many more tasks may be launched now."""

    def launch(
        self, task_id: str, token: str, timeout_seconds: int, job_class: str = "large"
    ) -> Launched:
        """Start the job-runner for one task, in the job of its class (Cloud Run:
        api/services/job_classes.py); raise DispatchError on failure."""

    def cancel(self, execution_name: str) -> None:
        """Stop an execution and everything it started; unknown names are ignored."""

    def describe(self, execution_name: str | None) -> ExecutionState:
        """The execution's real state, for the reconciler."""

    def notify_exits(self, listener: RunnerExited) -> None:
        """Call `listener` when a runner process ends (the dispatcher settles a task
        whose runner never reported). Set once, after construction: the dispatcher
        needs the executor first. An executor that cannot see its runners end (Cloud
        Run) ignores it; the reconciler asks it instead."""

    def qualify_execution(self, reported: str) -> str:
        """The execution's full name from what its runner reports (CLOUD_RUN_EXECUTION)."""

    def shutdown(self) -> None:
        """Stop what this process started (local processes)."""
