"""The local executor's promises: a concurrency cap, and nothing left running forever
when the API process dies."""

from __future__ import annotations

from datetime import datetime

import pytest

from api.adapters.firestore_store import FirestoreStore
from tests.conftest import PROJECT, ApiServer, Caller, wait_for

SLOW = "import time\nprint('up', flush=True)\ntime.sleep({seconds})"


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture
def server_factory(emulator, firestore, tmp_path):
    servers: list[ApiServer] = []

    def start(**env: str) -> ApiServer:
        server = ApiServer(emulator, tmp_path / f"api-{len(servers)}.log", **env).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_tasks_beyond_the_cap_wait_queued_and_start_as_slots_free(server_factory):
    server = server_factory(LOCAL_MAX_CONCURRENT_TASKS="1")
    alice = Caller(server.url, "alice")
    ids = [alice.submit(code=SLOW.format(seconds=1))["id"] for _ in range(3)]

    def statuses():
        return [alice.http.get(f"/api/tasks/{i}").json()["status"] for i in ids]

    wait_for(lambda: statuses()[0] == "running", 30, message="the first task to run")
    assert statuses()[1:] == ["queued", "queued"]
    done = [alice.wait(i) for i in ids]
    assert [t["status"] for t in done] == ["completed"] * 3
    # One at a time: each started after the one before it finished.
    for before, after in zip(done, done[1:], strict=False):
        assert _at(after["startedAt"]) >= _at(before["finishedAt"])


def test_a_restarted_api_settles_what_the_dead_one_left(server_factory):
    first = server_factory(LOCAL_MAX_CONCURRENT_TASKS="1")
    alice = Caller(first.url, "alice")
    running = alice.submit(code=SLOW.format(seconds=60), timeoutSeconds=120)["id"]
    waiting = alice.submit(code="print('second')")["id"]
    wait_for(
        lambda: alice.http.get(f"/api/tasks/{running}").json()["status"] == "running",
        30,
        message="the first task to run",
    )
    first.kill()  # its runner dies with it (PR_SET_PDEATHSIG); nothing settles the task
    store = FirestoreStore(PROJECT)
    first_task, second_task = store.get_task(running), store.get_task(waiting)
    assert first_task is not None and first_task["status"] == "running"
    assert second_task is not None and second_task["status"] == "queued"

    second = server_factory()
    alice = Caller(second.url, "alice")
    lost = alice.wait(running, 30)
    assert lost["status"] == "failed"
    assert lost["error"]["code"] == "runner_lost"
    relaunched = alice.wait(waiting, 30)
    assert relaunched["status"] == "completed"
    assert relaunched["result"]["stdout"] == "second\n"
