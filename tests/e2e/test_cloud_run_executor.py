"""The Cloud Run Jobs executor end to end: a real API server process whose run_v2
client talks to a loopback stand-in of the Cloud Run Admin API, which starts the real
job-runner (with real bubblewrap) for each RunJob, as a Cloud Run execution would."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api import config
from devtools.cloud_run_standin import CloudRunStandIn, ExecutionRecord
from tests.conftest import ApiServer, Caller, processes_mentioning, wait_for

JOB = "projects/demo-test/locations/us-central1/jobs/runner"
SLOW = "import time\nprint('up', flush=True)\ntime.sleep(60)"
# Overdue sooner: a grace above the runner's heartbeat interval, and a reconciler
# that sweeps every second.
QUICK_RECONCILE = {
    "HEARTBEAT_GRACE_SECONDS": str(config.HEARTBEAT_INTERVAL_SECONDS + 3),
    "RECONCILE_INTERVAL_SECONDS": "1",
}


@pytest.fixture
def standin(tmp_path):
    standin = CloudRunStandIn(log_path=tmp_path / "runners.log").start()
    yield standin
    standin.stop()


@pytest.fixture
def server_env() -> dict[str, str]:
    return {}


@pytest.fixture
def server(emulator, firestore, standin, tmp_path, server_env):
    server = ApiServer(
        emulator,
        tmp_path / "api.log",
        EXECUTOR="cloudrun",
        CLOUD_RUN_JOB=JOB,
        CLOUD_RUN_ENDPOINT=standin.url,
        **server_env,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def alice(server):
    caller = Caller(server.url, "alice")
    yield caller
    caller.http.close()  # an open keep-alive connection holds gunicorn's graceful stop


def run_calls(standin: CloudRunStandIn) -> list[str]:
    return [
        path for method, path in list(standin.calls) if (method, path) == ("POST", f"/v2/{JOB}:run")
    ]


def status(alice: Caller, task_id: str) -> str:
    return alice.http.get(f"/api/tasks/{task_id}").json()["status"]


def settled(alice: Caller, task_id: str) -> dict | None:
    task = alice.http.get(f"/api/tasks/{task_id}").json()
    return task if task["status"] not in ("queued", "dispatched", "running") else None


def start_slow_task(alice: Caller, standin: CloudRunStandIn) -> tuple[str, ExecutionRecord]:
    task_id = alice.submit(code=SLOW, timeoutSeconds=120)["id"]
    wait_for(lambda: status(alice, task_id) == "running", 30, message="the task to run")
    (record,) = standin.executions.values()
    return task_id, record


def test_a_task_runs_as_one_execution_with_the_runner_env_as_overrides(standin, alice, server):
    task = alice.run(code="print(input())", stdin="hi")

    assert task["status"] == "completed", task
    assert task["result"]["stdout"] == "hi\n"
    assert len(run_calls(standin)) == 1
    (record,) = standin.executions.values()
    assert task["execution"]["backend"] == "cloudrun"
    assert task["execution"]["name"] == record.name
    assert record.name.startswith(f"{JOB}/executions/runner-")
    assert task["execution"]["logUri"].startswith("https://console.cloud.google.com/logs/")
    overrides = record.request.overrides
    (container,) = overrides.container_overrides
    env = {variable.name: variable.value for variable in container.env}
    assert sorted(env) == ["API_URL", "TASK_ID", "TASK_TOKEN"]
    assert env["TASK_ID"] == task["id"]
    assert env["API_URL"] == server.url
    assert env["TASK_TOKEN"]
    assert list(container.args) == [task["id"]]
    assert overrides.task_count == 1
    assert overrides.timeout == timedelta(
        seconds=task["input"]["timeoutSeconds"] + config.RUNNER_OVERHEAD_SECONDS
    )
    wait_for(lambda: record.exit_code is not None, 10, message="the runner to exit")
    assert record.exit_code == 0


def test_polling_a_healthy_running_task_costs_no_admin_api_call(standin, alice):
    task_id, _ = start_slow_task(alice, standin)
    before = len(standin.calls)

    for _ in range(100):
        assert status(alice, task_id) == "running"

    during = standin.calls[before:]
    assert [call for call in during if "/executions/" in call[1]] == []
    assert during == []


@pytest.mark.parametrize("server_env", [QUICK_RECONCILE], ids=["quick-reconcile"])
def test_a_runner_killed_mid_task_ends_failed_runner_lost(standin, alice, server_env):
    task_id, record = start_slow_task(alice, standin)

    standin.kill_runner(record.name)
    wait_for(lambda: record.exit_code is not None, 10, message="the runner to die")
    # Nothing reports the death: the reconciler finds the task overdue once its
    # heartbeats stop (HEARTBEAT_GRACE_SECONDS) and asks the Admin API.
    final = wait_for(
        lambda: settled(alice, task_id),
        float(server_env["HEARTBEAT_GRACE_SECONDS"]) + 20,
        interval=0.5,
        message="the reconciler to settle the task",
    )

    assert final["status"] == "failed", final
    assert final["error"]["code"] == "runner_lost"
    assert ("GET", f"/v2/{record.name}") in standin.calls


def test_cancel_cancels_the_execution_and_its_runner(standin, alice):
    task_id, record = start_slow_task(alice, standin)

    reply = alice.http.post(f"/api/tasks/{task_id}/cancel")

    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "cancelled"
    assert ("POST", f"/v2/{record.name}:cancel") in standin.calls
    wait_for(lambda: record.exit_code is not None, 15, message="the runner to be killed")
    wait_for(lambda: not processes_mentioning(task_id), 15, message="no process of the task")
    assert alice.wait(task_id, 1)["status"] == "cancelled"


def test_a_429_from_run_job_leaves_the_task_queued_and_it_runs_later(standin, alice):
    standin.fail_next_runs.append(429)
    task_id = alice.submit(code="print('late')")["id"]

    wait_for(lambda: run_calls(standin), 10, message="the first RunJob call")
    wait_for(lambda: status(alice, task_id) == "queued", 10, message="the task to be requeued")
    assert len(run_calls(standin)) == 1
    final = alice.wait(task_id, 60)

    assert final["status"] == "completed", final
    assert final["result"]["stdout"] == "late\n"
    assert len(run_calls(standin)) == 2
    events = alice.http.get(f"/api/tasks/{task_id}/events").json()["events"]
    changes = [event["data"] for event in events if event["type"] == "status"]
    assert [change["status"] for change in changes] == [
        "queued", "dispatched", "queued", "dispatched", "running", "completed"
    ]  # fmt: skip
    assert "429" in changes[2]["reason"]
