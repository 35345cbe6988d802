"""Choose the executor from configuration, in one place."""

from __future__ import annotations

from collections.abc import Callable

from api.adapters.executors.base import Executor
from api.config import Settings


def make_executor(settings: Settings, on_exit: Callable[[str, str, int], None]) -> Executor:
    if settings.executor == "local":
        from api.adapters.executors.local import LocalExecutor

        return LocalExecutor(
            settings.public_url,
            max_concurrent=settings.local_max_concurrent_tasks,
            sandbox=settings.sandbox,
            python=settings.runner_python,
            on_exit=on_exit,
        )
    raise ValueError(
        "EXECUTOR=cloudrun is not implemented in this version yet; use EXECUTOR=local."
    )
