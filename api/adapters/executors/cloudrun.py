"""CloudRunJobsExecutor: each task is one execution of the job-runner Cloud Run Job.

RunJob is called with per-execution overrides (the runner's env contract, the task
id as the container's args so the Cloud Console shows which task an execution ran,
one task, and a timeout). See
https://cloud.google.com/run/docs/execute/jobs#override-job-configuration

The clients use the REST transport: it honours an `http://` CLOUD_RUN_ENDPOINT
(a loopback stand-in in tests), and `responses` can intercept it. Every call has an
explicit timeout and no client-side retry: the dispatcher owns retries (with
backoff, leaving the task queued), so a slow Admin API never holds a request.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from api.adapters.executors.base import DispatchError, ExecutionState, Launched, RunnerExited

if TYPE_CHECKING:
    from google.cloud import run_v2

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 20.0
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _is_loopback(endpoint: str) -> bool:
    return (urlparse(endpoint).hostname or "") in LOOPBACK_HOSTS


def console_url(execution_name: str) -> str | None:
    """The execution's page in the Cloud Console, from its full resource name."""
    parts = execution_name.split("/")
    # projects/P/locations/L/jobs/J/executions/E
    if len(parts) != 8:
        return None
    project, region, execution = parts[1], parts[3], parts[7]
    return (
        f"https://console.cloud.google.com/run/jobs/executions/details/{region}/"
        f"{execution}/tasks?project={project}"
    )


class CloudRunJobsExecutor:
    backend = "cloudrun"
    # RunJob calls in flight at once from one API instance (see Dispatcher).
    parallel_launches = 8

    def __init__(
        self,
        job: str,
        api_url: str,
        *,
        endpoint: str,
        max_in_flight: int,
        count_in_flight: Callable[[], int],
        extra_env: dict[str, str] | None = None,
        small_job: str | None = None,
    ) -> None:
        self.job = job
        # By job class (api/services/job_classes.py); without a small job, one for all.
        self.jobs_by_class = {"large": job, "small": small_job or job}
        self.api_url = api_url
        self.endpoint = endpoint.rstrip("/")
        self.max_in_flight = max_in_flight
        self.count_in_flight = count_in_flight
        self.extra_env = extra_env or {}
        self._lock = threading.Lock()
        self._jobs: run_v2.JobsClient | None = None
        self._executions: run_v2.ExecutionsClient | None = None

    # -- clients, built on first use ---------------------------------------------

    def _client_kwargs(self) -> dict:
        kwargs: dict = {"transport": "rest", "client_options": {"api_endpoint": self.endpoint}}
        if _is_loopback(self.endpoint):
            # A loopback stand-in takes no Google credentials, the same way the
            # Firestore client goes anonymous when FIRESTORE_EMULATOR_HOST is set.
            from google.auth.credentials import AnonymousCredentials

            kwargs["credentials"] = AnonymousCredentials()
        return kwargs

    @property
    def jobs(self) -> run_v2.JobsClient:
        with self._lock:
            if self._jobs is None:
                from google.cloud import run_v2

                self._jobs = run_v2.JobsClient(**self._client_kwargs())
            return self._jobs

    @property
    def executions(self) -> run_v2.ExecutionsClient:
        with self._lock:
            if self._executions is None:
                from google.cloud import run_v2

                self._executions = run_v2.ExecutionsClient(**self._client_kwargs())
            return self._executions

    # -- the executor seam -------------------------------------------------------

    def free_slots(self) -> int:
        # Cloud Run runs at most 1,000 executions per region at once; the configured
        # cap keeps us under it (and under what the project's quota allows).
        return max(0, self.max_in_flight - self.count_in_flight())

    def launch(
        self, task_id: str, token: str, timeout_seconds: int, job_class: str = "large"
    ) -> Launched:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2
        from google.protobuf import duration_pb2

        env = {"TASK_ID": task_id, "TASK_TOKEN": token, "API_URL": self.api_url}
        env.update(self.extra_env)
        request = run_v2.RunJobRequest(
            name=self.jobs_by_class.get(job_class, self.job),
            overrides=run_v2.RunJobRequest.Overrides(
                container_overrides=[
                    run_v2.RunJobRequest.Overrides.ContainerOverride(
                        args=[task_id],
                        env=[run_v2.EnvVar(name=k, value=v) for k, v in env.items()],
                    )
                ],
                task_count=1,
                timeout=duration_pb2.Duration(seconds=timeout_seconds),
            ),
        )
        try:
            operation = self.jobs.run_job(
                request=request, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
        except gexc.TooManyRequests as error:
            # The "Job run requests per minute per region" quota (or another): the task
            # waits for it, as long as Retry-After asks when it says.
            raise DispatchError(
                f"RunJob: {error}",
                retryable=True,
                rate_limited=True,
                retry_after=_retry_after(error),
            ) from error
        except (gexc.ServerError, gexc.DeadlineExceeded) as error:
            raise DispatchError(f"RunJob: {error}", retryable=True) from error
        except gexc.GoogleAPICallError as error:
            raise DispatchError(f"RunJob refused: {error}", retryable=False) from error
        except Exception as error:  # connection reset, read timeout: it may have run
            raise DispatchError(
                f"RunJob: {type(error).__name__}: {error}", retryable=True
            ) from error
        execution = operation.metadata
        name = getattr(execution, "name", "") or ""
        log.info("started execution %s", name, extra={"task_id": task_id})
        return Launched(
            name=name,
            log_uri=getattr(execution, "log_uri", None) or None,
            details={"consoleUri": console_url(name)},
        )

    def cancel(self, execution_name: str) -> None:
        from google.api_core import exceptions as gexc

        try:
            self.executions.cancel_execution(
                name=execution_name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
        except (gexc.NotFound, gexc.FailedPrecondition, gexc.BadRequest):
            # Already gone, or already finished. Over REST, api_core maps an error by
            # its HTTP status only, so FAILED_PRECONDITION (HTTP 400) is a BadRequest.
            pass
        except gexc.GoogleAPICallError as error:
            log.warning("cancel_execution %s failed: %s", execution_name, error)

    def describe(self, execution_name: str | None) -> ExecutionState:
        from google.api_core import exceptions as gexc
        from google.cloud import run_v2

        if not execution_name:
            return ExecutionState.MISSING
        try:
            execution = self.executions.get_execution(
                name=execution_name, timeout=REQUEST_TIMEOUT_SECONDS, retry=None
            )
        except gexc.NotFound:
            return ExecutionState.MISSING
        reasons = {c.execution_reason for c in execution.conditions}
        reason = run_v2.Condition.ExecutionReason
        if reason.CANCELLED in reasons or execution.cancelled_count > 0:
            return ExecutionState.CANCELLED
        if not execution.completion_time:
            return ExecutionState.RUNNING
        if execution.succeeded_count > 0:
            return ExecutionState.SUCCEEDED
        if _hit_its_timeout(execution):
            return ExecutionState.TIMED_OUT
        return ExecutionState.FAILED

    def notify_exits(self, listener: RunnerExited) -> None:
        """Ignored: an execution's end is seen by the reconciler (describe)."""

    def qualify_execution(self, reported: str) -> str:
        # Cloud Run sets CLOUD_RUN_EXECUTION to the execution's short id, which starts
        # with its job's name and a dash: the longest such job is its own
        # ("agent-runner-small-x7k2p" is agent-runner-small's, not agent-runner's).
        if "/" in reported:
            return reported
        owners = [
            j for j in set(self.jobs_by_class.values()) if reported.startswith(_short(j) + "-")
        ]
        job = max(owners, key=len, default=self.job)
        return f"{job}/executions/{reported}"

    def shutdown(self) -> None:
        pass


def _short(job: str) -> str:
    return job.rsplit("/", 1)[-1]


def _retry_after(error: Exception) -> float | None:
    """Seconds from a Retry-After header of the REST response (delta-seconds form)."""
    response = getattr(error, "response", None)
    value = getattr(response, "headers", {}).get("Retry-After") if response is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _hit_its_timeout(execution) -> bool:
    """Cloud Run gives no execution reason for a task timeout; an attempt that ran
    for its whole configured timeout is taken as one."""
    timeout = execution.template.timeout  # a timedelta; zero when unset
    if not timeout or not execution.start_time or not execution.completion_time:
        return False
    ran = execution.completion_time - execution.start_time
    return ran.total_seconds() >= timeout.total_seconds() - 1
