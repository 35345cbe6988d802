"""Custom environments through the SDK and the CLI: a real API server process, real
runners in bubblewrap, the runner's egress proxy, and a loopback package index as
`pypi.test` (as in test_custom_environments.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json

import pytest
from agentplatform import AsyncClient, Client, Environment, NotFound
from agentplatform.cli.main import main as cli

from devtools.package_index import PackageIndex
from tests.conftest import ApiServer

BUILD_SECONDS = 120  # a build in a sandbox, on a busy two-core machine


@pytest.fixture(scope="module")
def index():
    with PackageIndex() as served:
        served.add_wheel("tinypkg", "1.0")
        yield served


@pytest.fixture(scope="module")
def env_server(emulator, tmp_path_factory, index):
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("sdk-environments") / "api.log",
        PACKAGE_INDEX_URL="http://pypi.test/simple/",
        PACKAGE_INDEX_DOMAINS="pypi.test",
        EGRESS_DEV_HOSTS=f"pypi.test=127.0.0.1:{index.port}",
    ).start()
    yield server
    server.stop()


@pytest.fixture
def sdk(env_server, firestore):
    with Client(env_server.url, user="alice") as client:
        yield client


def test_an_environment_created_and_awaited_runs_code_tasks_and_agents(sdk):
    building = sdk.environments.create("tiny", ["tinypkg==1.0"])
    assert building.status == "building" and building.build_task_id
    ready = sdk.environments.wait(building, timeout=BUILD_SECONDS)
    assert ready.is_ready and ready.size_bytes and ready.python == ["tinypkg==1.0"], ready.raw
    assert sdk.get(building.build_task_id).kind == "environment"
    assert [e.name for e in sdk.environments.list()] == ["tiny"]
    assert sdk.environments.get("tiny").id == ready.id

    task = sdk.run("import tinypkg; print(tinypkg.VALUE)", environment=ready, check=True)
    assert task.stdout == "42\n" and task.input["environment"] == ready.id
    bash = sdk.run("tinypkg", language="bash", environment="tiny", check=True)
    assert bash.stdout == "tinypkg ran\n"

    agent = sdk.agents.create("uses tinypkg", engine="messages", environment="tiny")
    assert agent.environment == "tiny"
    assert sdk.agents.update(agent, description="same").environment == "tiny"
    assert sdk.agents.update(agent, environment=None).environment is None

    # The same packages under another name: ready at once, from the same build.
    again = sdk.environments.create("tiny-again", ["tinypkg==1.0"], wait=True, timeout=30)
    assert again.is_ready and again.build_task_id is None and again.hash == ready.hash
    sdk.environments.delete(again)
    with pytest.raises(NotFound):
        sdk.environments.get("tiny-again")


def test_a_failed_build_reaches_the_async_client_and_the_cli_with_pips_message(
    env_server, firestore, capsys, tmp_path, monkeypatch
):
    async def create_and_wait() -> Environment:
        async with AsyncClient(env_server.url, user="alice") as client:
            return await client.environments.create(
                "broken", ["nosuchpkg==1.0"], wait=True, timeout=BUILD_SECONDS
            )

    # In a thread of its own, as test_sdk.py's async test (Playwright's loop).
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        failed = thread.submit(asyncio.run, create_and_wait()).result(BUILD_SECONDS + 30)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "build_failed"
    assert "No matching distribution found for nosuchpkg==1.0" in failed.error.message

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no stored login of the host's
    who = ["--url", env_server.url, "--user", "alice"]
    assert cli(["environments", "get", "broken", *who]) == 125
    shown = capsys.readouterr()
    assert "broken" in shown.out and "failed" in shown.out
    assert "build_failed" in shown.err and "nosuchpkg" in shown.err
    assert cli(["environments", "list", "--json", *who]) == 0
    assert [e["name"] for e in json.loads(capsys.readouterr().out)] == ["broken"]
    assert cli(["environments", "delete", "broken", *who]) == 0
    assert cli(["environments", *who]) == 0
    assert "No environments yet" in capsys.readouterr().out
