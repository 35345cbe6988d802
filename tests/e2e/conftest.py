"""Fixtures of the agent tests: the scripted Messages API on loopback as Anthropic, and
a real API server whose LLM proxy forwards to it. A module names the key the server
holds with `REAL_KEY` (its tests look for it where it must and must not be)."""

from __future__ import annotations

import pytest

from devtools.scripted_anthropic import ScriptedAnthropic
from tests.conftest import ApiServer

DEFAULT_KEY = "sk-ant-e2e-test-key"


@pytest.fixture(scope="session", autouse=True)
def runners_use_the_task_root(task_root):
    """Every runner these tests start gives its tasks the default environment's root."""
    return task_root


@pytest.fixture(scope="module")
def anthropic_api():
    with ScriptedAnthropic() as server:
        yield server


@pytest.fixture(scope="module")
def agent_server(request, emulator, tmp_path_factory, anthropic_api):
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("agents") / "api.log",
        ANTHROPIC_API_KEY=getattr(request.module, "REAL_KEY", DEFAULT_KEY),
        ANTHROPIC_BASE_URL=anthropic_api.url,
    ).start()
    yield server
    server.stop()
