"""The unit tier's sandboxes see the host's /usr unless a test passes a task root.

The session's `task_root` fixture sets TASK_ROOT for the runners the e2e tests start;
without this, which system a unit test's sandbox saw would depend on test order.
"""

import pytest


@pytest.fixture(autouse=True)
def _no_task_root_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TASK_ROOT", raising=False)
