"""Choose the executor from configuration, in one place."""

from __future__ import annotations

from collections.abc import Callable

from api.adapters.executors.base import Executor
from api.config import Settings


def make_executor(settings: Settings, count_in_flight: Callable[[], int]) -> Executor:
    """The executor EXECUTOR names; `count_in_flight` counts the tasks in flight
    everywhere (Cloud Run's cap is for the whole deployment)."""
    if settings.public_url is None:
        raise ValueError("PUBLIC_URL must be set: the job-runner calls the API there.")
    if settings.executor == "local":
        from api.adapters.executors.local import LocalExecutor

        return LocalExecutor(
            settings.public_url,
            max_concurrent=settings.local_max_concurrent_tasks,
            sandbox=settings.sandbox,
            task_root=settings.task_root,
            python=settings.runner_python,
        )
    from api.adapters.executors.cloudrun import CloudRunJobsExecutor

    if settings.cloud_run_job is None:  # Settings.validate refuses this too
        raise ValueError("EXECUTOR=cloudrun needs CLOUD_RUN_JOB.")
    return CloudRunJobsExecutor(
        settings.cloud_run_job,
        settings.public_url,
        endpoint=settings.cloud_run_endpoint,
        max_in_flight=settings.max_tasks_in_flight,
        count_in_flight=count_in_flight,
        small_job=settings.cloud_run_job_small,
    )
