"""Choose the executor from configuration, in one place."""

from __future__ import annotations

from collections.abc import Callable

from api.adapters.executors.base import Executor
from api.config import Settings


def make_executor(
    settings: Settings,
    on_exit: Callable[[str, str, int], None],
    count_in_flight: Callable[[], int],
) -> Executor:
    if settings.executor == "local":
        from api.adapters.executors.local import LocalExecutor

        return LocalExecutor(
            settings.public_url,
            max_concurrent=settings.local_max_concurrent_tasks,
            sandbox=settings.sandbox,
            python=settings.runner_python,
            on_exit=on_exit,
        )
    from api.adapters.executors.cloudrun import CloudRunJobsExecutor

    return CloudRunJobsExecutor(
        settings.cloud_run_job,
        settings.public_url,
        endpoint=settings.cloud_run_endpoint,
        max_in_flight=settings.max_tasks_in_flight,
        count_in_flight=count_in_flight,
    )
