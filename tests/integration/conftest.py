"""What the integration tests share: the callers' headers (AUTH_MODE=dev), the app's
services, and the task tokens a runner would hold."""

from __future__ import annotations

import time

import pytest

from api.services.task_tokens import issue_task_token

ALICE = {"X-User-Id": "alice"}
BOB = {"X-User-Id": "bob"}


@pytest.fixture
def services(app):
    """The app's services (what `create_app` wires)."""
    return app.extensions["agent_platform"]


def task_token(services, task_id: str, expires_in: float = 600) -> str:
    """A token for `task_id`'s runner, signed with the app's key."""
    return issue_task_token(services.settings.task_token_key, task_id, time.time() + expires_in)


def runner_headers(services, task_id: str, expires_in: float = 600) -> dict:
    """The headers of `task_id`'s runner: its token as a bearer credential."""
    return {"Authorization": f"Bearer {task_token(services, task_id, expires_in)}"}
