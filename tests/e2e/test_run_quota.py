"""Cloud Run's RunJob quota end to end: a real API server launching on the loopback
stand-in of the Admin API, which answers 429 (with Retry-After) above its quota or at
random. Tasks wait `queued` and run later; none fails while its queue deadline allows;
the API's own fleet-wide rate keeps RunJob calls under the setting."""

from __future__ import annotations

from datetime import datetime

import pytest

from devtools.cloud_run_standin import CloudRunStandIn
from tests.conftest import ApiServer, Caller, wait_for

JOB = "projects/demo-test/locations/us-central1/jobs/runner"


@pytest.fixture
def standin(tmp_path):
    standin = CloudRunStandIn(log_path=tmp_path / "runners.log").start()
    yield standin
    standin.stop()


def serve(emulator, standin, tmp_path, **env: str) -> ApiServer:
    server = ApiServer(
        emulator,
        tmp_path / "api.log",
        EXECUTOR="cloudrun",
        CLOUD_RUN_JOB=JOB,
        CLOUD_RUN_ENDPOINT=standin.url,
        RECONCILE_INTERVAL_SECONDS="1",
        **env,
    )
    server.start()
    return server


@pytest.fixture
def alice_on(emulator, firestore, standin, tmp_path):
    servers, callers = [], []

    def start(**env: str) -> Caller:
        servers.append(serve(emulator, standin, tmp_path, **env))
        callers.append(Caller(servers[-1].url, "alice"))
        return callers[-1]

    yield start
    for caller in callers:
        caller.http.close()
    for server in servers:
        server.stop()


def status_events(alice: Caller, task_id: str) -> list[dict]:
    events = alice.http.get(f"/api/tasks/{task_id}/events").json()["events"]
    return [event for event in events if event["type"] == "status"]


def test_tasks_refused_with_429_wait_queued_for_retry_after_and_none_fails(standin, alice_on):
    alice = alice_on()
    standin.refuse_share = 0.5  # half of the RunJob calls: 429, Retry-After: 1
    ids = [alice.submit(code=f"print({n} * 7)")["id"] for n in range(6)]
    finals = [alice.wait(task_id, 60) for task_id in ids]

    assert [f["status"] for f in finals] == ["completed"] * 6, finals
    assert [f["result"]["stdout"] for f in finals] == [f"{n * 7}\n" for n in range(6)]
    assert standin.refused >= 1
    waits = []
    for task_id in ids:
        changes = status_events(alice, task_id)
        for refused, retried in zip(changes, changes[1:], strict=False):
            if refused["data"]["status"] == "queued" and "429" in refused["data"].get("reason", ""):
                assert retried["data"]["status"] == "dispatched"
                waits.append(
                    datetime.fromisoformat(retried["at"]) - datetime.fromisoformat(refused["at"])
                )
    # Each retry came no sooner than the Retry-After it was given.
    assert waits and min(w.total_seconds() for w in waits) >= 0.9


def test_a_task_the_quota_refuses_past_its_queue_deadline_fails_dispatch_failed(standin, alice_on):
    alice = alice_on(MAX_QUEUED_SECONDS="2")
    standin.run_quota = 0  # every RunJob: 429, Retry-After 60 (past the deadline)
    task = alice.wait(alice.submit(code="print(1)")["id"], 30)

    assert task["status"] == "failed"
    assert task["error"]["code"] == "dispatch_failed"
    assert "quota" in task["error"]["message"]
    assert standin.executions == {}


def test_the_api_keeps_its_run_job_calls_under_the_launch_rate(standin, alice_on):
    # 12 a minute: windows of 10 s, 2 launches each, whatever the burst.
    alice = alice_on(RUN_JOB_LAUNCHES_PER_MINUTE="12")
    ids = [alice.submit(code="print(42)")["id"] for _ in range(5)]
    wait_for(
        lambda: all(alice.wait(task_id, 1)["status"] == "completed" for task_id in ids),
        90,
        message="the five tasks to complete",
    )
    windows: dict[int, int] = {}
    for record in standin.executions.values():
        window = int(record.created.timestamp() // 10)
        windows[window] = windows.get(window, 0) + 1
    assert sum(windows.values()) == 5 and max(windows.values()) <= 2, windows
    assert standin.refused == 0
