"""CloudRunJobsExecutor through the real run_v2 REST client, with `responses` at the
HTTP edge answering with payloads built from run_v2 types, and the real emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import any_pb2, json_format

from api import create_app
from api.adapters.executors.base import DispatchError, ExecutionState
from api.adapters.executors.cloudrun import CloudRunJobsExecutor
from api.services.state_machine import IN_FLIGHT
from tests.conftest import with_settings
from tests.integration.conftest import ALICE, task_token

ENDPOINT = "http://127.0.0.1:9"  # loopback: anonymous credentials, like the emulator
JOB = "projects/demo-test/locations/us-central1/jobs/runner"
RUN_URL = f"{ENDPOINT}/v2/{JOB}:run"


def execution_name(short: str) -> str:
    return f"{JOB}/executions/{short}"


def operation_json(short: str) -> str:
    execution = run_v2.Execution(
        name=execution_name(short), log_uri=f"https://console.cloud.google.com/logs?{short}"
    )
    metadata = any_pb2.Any()
    metadata.Pack(run_v2.Execution.pb(execution))
    operation = operations_pb2.Operation(
        name="projects/demo-test/locations/us-central1/operations/op-" + short,
        metadata=metadata,
        done=False,
    )
    return json_format.MessageToJson(operation)


def execution_json(short: str, **fields) -> str:
    return run_v2.Execution.to_json(run_v2.Execution(name=execution_name(short), **fields))


def finished(**fields) -> dict:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return dict(start_time=start, completion_time=start + timedelta(seconds=5), **fields)


def calls_to(rsps, method: str, fragment: str) -> int:
    return sum(1 for c in rsps.calls if c.request.method == method and fragment in c.request.url)


@pytest.fixture
def rsps():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def executor():
    return CloudRunJobsExecutor(
        JOB,
        "https://api.example.run.app",
        endpoint=ENDPOINT,
        max_in_flight=3,
        count_in_flight=lambda: 0,
    )


# -- the executor alone ----------------------------------------------------------


def test_launch_sends_the_env_contract_args_task_count_and_timeout(rsps, executor):
    rsps.post(RUN_URL, body=operation_json("runner-a1"))
    launched = executor.launch("task123", "tt1.task123.9.sig", 90)
    body = json.loads(rsps.calls[0].request.body)
    assert body == {
        "overrides": {
            "containerOverrides": [
                {
                    "args": ["task123"],
                    "env": [
                        {"name": "TASK_ID", "value": "task123"},
                        {"name": "TASK_TOKEN", "value": "tt1.task123.9.sig"},
                        {"name": "API_URL", "value": "https://api.example.run.app"},
                    ],
                }
            ],
            "taskCount": 1,
            "timeout": "90s",
        }
    }
    assert launched.name == execution_name("runner-a1")
    assert launched.log_uri == "https://console.cloud.google.com/logs?runner-a1"
    assert launched.details["consoleUri"] == (
        "https://console.cloud.google.com/run/jobs/executions/details/us-central1/"
        "runner-a1/tasks?project=demo-test"
    )


@pytest.mark.parametrize("status", [429, 500, 503])
def test_launch_throttled_or_server_error_is_retryable(rsps, executor, status):
    rsps.post(RUN_URL, status=status, json={"error": {"code": status, "message": "nope"}})
    with pytest.raises(DispatchError) as raised:
        executor.launch("task123", "token", 90)
    assert raised.value.retryable is True


@pytest.mark.parametrize("status", [400, 403, 404])
def test_launch_refused_for_configuration_is_not_retryable(rsps, executor, status):
    rsps.post(RUN_URL, status=status, json={"error": {"code": status, "message": "no"}})
    with pytest.raises(DispatchError) as raised:
        executor.launch("task123", "token", 90)
    assert raised.value.retryable is False


def test_launch_timeout_is_ambiguous_and_retryable(rsps, executor):
    rsps.post(RUN_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(DispatchError) as raised:
        executor.launch("task123", "token", 90)
    assert raised.value.retryable is True


@pytest.mark.parametrize(
    ("fields", "state"),
    [
        ({"running_count": 1}, ExecutionState.RUNNING),
        (finished(succeeded_count=1), ExecutionState.SUCCEEDED),
        (
            finished(
                failed_count=1,
                conditions=[
                    run_v2.Condition(
                        type_="Completed",
                        execution_reason=run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE,
                    )
                ],
            ),
            ExecutionState.FAILED,
        ),
        (
            finished(
                cancelled_count=1,
                conditions=[
                    run_v2.Condition(
                        type_="Completed",
                        execution_reason=run_v2.Condition.ExecutionReason.CANCELLED,
                    )
                ],
            ),
            ExecutionState.CANCELLED,
        ),
        (
            finished(failed_count=1, template=run_v2.TaskTemplate(timeout={"seconds": 5})),
            ExecutionState.TIMED_OUT,
        ),
    ],
)
def test_describe_reads_the_executions_real_state(rsps, executor, fields, state):
    rsps.get(
        f"{ENDPOINT}/v2/{execution_name('runner-a1')}", body=execution_json("runner-a1", **fields)
    )
    assert executor.describe(execution_name("runner-a1")) == state


def test_describe_an_unknown_execution_is_missing(rsps, executor):
    rsps.get(
        f"{ENDPOINT}/v2/{execution_name('gone')}",
        status=404,
        json={"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}},
    )
    assert executor.describe(execution_name("gone")) == ExecutionState.MISSING


def test_a_runners_short_execution_id_is_qualified_with_the_job(executor):
    assert executor.qualify_execution("runner-a1") == execution_name("runner-a1")
    assert executor.qualify_execution(execution_name("x")) == execution_name("x")


# -- the executor inside the app -------------------------------------------------


@pytest.fixture
def cloud_app(firestore, settings):
    from api.adapters.firestore_store import FirestoreStore

    store = FirestoreStore(settings.project)
    executor = CloudRunJobsExecutor(
        JOB,
        "http://127.0.0.1:9",
        endpoint=ENDPOINT,
        max_in_flight=10,
        count_in_flight=lambda: store.count_tasks_with_status(IN_FLIGHT),
    )
    return create_app(
        with_settings(
            settings,
            executor="cloudrun",
            cloud_run_job=JOB,
            reconcile_secret="s3",
            reconcile_interval_seconds=60,  # "once per interval" must not depend on speed
            dispatch_inline=False,  # these tests launch explicitly, to count calls
            # The fleet-wide launch rate has tests of its own (test_launch_rate.py,
            # e2e/test_run_quota.py): here it must never be what stops a launch.
            run_job_launches_per_minute=1_000_000,
        ),
        store=store,
        executor=executor,
        start_background=False,
    )


@pytest.fixture
def platform(cloud_app):
    return cloud_app.extensions["agent_platform"]


@pytest.fixture
def api(cloud_app):
    return cloud_app.test_client()


def submit(api) -> str:
    body = {"kind": "code", "language": "python", "code": "print(1)", "timeoutSeconds": 30}
    reply = api.post("/api/tasks", json=body, headers=ALICE)
    assert reply.status_code == 202
    return reply.get_json()["id"]


def runner_claims(api, platform, task_id: str, short: str):
    token = task_token(platform, task_id)
    return api.post(
        f"/internal/v1/tasks/{task_id}/claim",
        json={"execution": short, "attempt": 0},
        headers={"Authorization": f"Bearer {token}"},
    )


def task(api, task_id: str) -> dict:
    return api.get(f"/api/tasks/{task_id}", headers=ALICE).get_json()


def test_a_task_is_launched_once_and_records_its_execution(rsps, api, platform):
    rsps.post(RUN_URL, body=operation_json("runner-a1"))
    task_id = submit(api)
    assert platform.dispatcher.dispatch_pending() == 1
    assert platform.dispatcher.dispatch_pending() == 0
    assert calls_to(rsps, "POST", ":run") == 1
    execution = task(api, task_id)["execution"]
    assert execution["backend"] == "cloudrun"
    assert execution["name"] == execution_name("runner-a1")
    assert execution["logUri"] == "https://console.cloud.google.com/logs?runner-a1"
    assert execution["consoleUri"].startswith(
        "https://console.cloud.google.com/run/jobs/executions/details/us-central1/runner-a1/"
    )


def test_runjob_429_leaves_the_task_queued_and_it_is_dispatched_later(rsps, api, platform):
    rsps.post(RUN_URL, status=429, json={"error": {"code": 429, "message": "slow down"}})
    task_id = submit(api)
    assert platform.dispatcher.dispatch(task_id) == 0
    assert task(api, task_id)["status"] == "queued"
    stored = platform.store.get_task(task_id)
    assert stored["nextDispatchAt"] > datetime.now(UTC)  # backing off, not hammering
    rsps.replace(responses.POST, RUN_URL, body=operation_json("runner-a2"))
    assert platform.dispatcher.dispatch(task_id) == 1
    assert task(api, task_id)["status"] == "dispatched"
    assert calls_to(rsps, "POST", ":run") == 2


def test_an_ambiguous_runjob_timeout_cannot_produce_two_runs(rsps, api, platform):
    rsps.post(RUN_URL, body=requests.exceptions.ReadTimeout("read timed out"))
    task_id = submit(api)
    platform.dispatcher.dispatch(task_id)  # it timed out, yet execution e1 may exist
    rsps.replace(responses.POST, RUN_URL, body=operation_json("runner-e2"))
    platform.dispatcher.dispatch(task_id)  # launched again as e2
    assert runner_claims(api, platform, task_id, "runner-e1").status_code == 200
    duplicate = runner_claims(api, platform, task_id, "runner-e2")
    assert duplicate.status_code == 409
    assert task(api, task_id)["execution"]["name"] == execution_name("runner-e1")


def test_a_hundred_polls_of_a_healthy_task_cost_no_admin_api_call(rsps, api, platform):
    rsps.post(RUN_URL, body=operation_json("runner-a1"))
    task_id = submit(api)
    platform.dispatcher.dispatch(task_id)
    assert runner_claims(api, platform, task_id, "runner-a1").status_code == 200
    for _ in range(100):
        assert task(api, task_id)["status"] == "running"
    platform.dispatcher.reconcile()  # nothing is overdue yet
    assert calls_to(rsps, "GET", "/executions/") == 0
    assert calls_to(rsps, "POST", ":run") == 1


def make_overdue(platform, task_id: str) -> None:
    platform.machine.postpone_check(task_id, datetime.now(UTC) - timedelta(seconds=1))


def test_a_crashed_runner_is_settled_from_the_execution_state(rsps, api, platform):
    rsps.post(RUN_URL, body=operation_json("runner-a1"))
    crashed = finished(
        failed_count=1,
        conditions=[
            run_v2.Condition(
                type_="Completed",
                execution_reason=run_v2.Condition.ExecutionReason.NON_ZERO_EXIT_CODE,
            )
        ],
    )
    rsps.get(
        f"{ENDPOINT}/v2/{execution_name('runner-a1')}", body=execution_json("runner-a1", **crashed)
    )
    task_id = submit(api)
    platform.dispatcher.dispatch(task_id)
    runner_claims(api, platform, task_id, "runner-a1")
    make_overdue(platform, task_id)
    assert platform.dispatcher.reconcile() == 1
    settled = task(api, task_id)
    assert settled["status"] == "failed"
    assert settled["error"]["code"] == "runner_lost"
    assert calls_to(rsps, "GET", "/executions/") == 1


def test_an_overdue_but_running_execution_is_asked_at_most_once_per_interval(rsps, api, platform):
    rsps.post(RUN_URL, body=operation_json("runner-a1"))
    rsps.get(
        f"{ENDPOINT}/v2/{execution_name('runner-a1')}",
        body=execution_json("runner-a1", running_count=1),
    )
    task_id = submit(api)
    platform.dispatcher.dispatch(task_id)
    runner_claims(api, platform, task_id, "runner-a1")
    make_overdue(platform, task_id)
    for _ in range(5):
        platform.dispatcher.reconcile()
    assert calls_to(rsps, "GET", "/executions/") == 1
    assert task(api, task_id)["status"] == "running"


def test_cancel_cancels_the_execution(rsps, api, platform):
    rsps.post(RUN_URL, body=operation_json("runner-a1"))
    rsps.post(f"{ENDPOINT}/v2/{execution_name('runner-a1')}:cancel", body=operation_json("x"))
    task_id = submit(api)
    platform.dispatcher.dispatch(task_id)
    reply = api.post(f"/api/tasks/{task_id}/cancel", headers=ALICE)
    assert reply.get_json()["status"] == "cancelled"
    assert calls_to(rsps, "POST", ":cancel") == 1


def test_submissions_beyond_the_pending_cap_answer_503_with_retry_after(rsps, api, platform):
    platform.tasks.max_pending = 2
    submit(api)
    submit(api)
    body = {"kind": "code", "language": "python", "code": "print(1)"}
    reply = api.post("/api/tasks", json=body, headers=ALICE)
    assert reply.status_code == 503
    assert reply.headers["Retry-After"]
    assert reply.get_json()["error"]["code"] == "over_capacity"


def test_dispatch_stops_at_the_in_flight_cap(rsps, api, platform):
    for n in range(12):
        rsps.post(RUN_URL, body=operation_json(f"runner-{n}"))
    for _ in range(12):
        submit(api)
    assert platform.dispatcher.dispatch_pending() == 10
    assert calls_to(rsps, "POST", ":run") == 10


def test_reconcile_endpoint_needs_the_secret_or_an_oidc_token(rsps, api):
    assert api.post("/internal/v1/reconcile").status_code == 401
    wrong = api.post("/internal/v1/reconcile", headers={"X-Reconcile-Secret": "nope"})
    assert wrong.status_code == 401
    forged = api.post("/internal/v1/reconcile", headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401
    reply = api.post("/internal/v1/reconcile", headers={"X-Reconcile-Secret": "s3"})
    assert reply.status_code == 200
    assert reply.get_json() == {"dispatched": 0, "settled": 0, "webhooksSent": 0}


def test_a_task_that_cannot_be_launched_for_good_fails_with_the_reason(rsps, api, platform):
    rsps.post(RUN_URL, status=403, json={"error": {"code": 403, "message": "run.jobs.run"}})
    task_id = submit(api)
    platform.dispatcher.dispatch(task_id)
    failed = task(api, task_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "dispatch_failed"
    assert "run.jobs.run" in failed["error"]["message"]


def test_retryable_launch_failures_end_in_failed_after_the_last_attempt(rsps, api, platform):
    from api.services.dispatcher import MAX_DISPATCH_ATTEMPTS

    rsps.post(RUN_URL, status=503, json={"error": {"code": 503, "message": "unavailable"}})
    task_id = submit(api)
    for _ in range(MAX_DISPATCH_ATTEMPTS):
        assert task(api, task_id)["status"] == "queued"
        platform.dispatcher.dispatch(task_id)
    assert task(api, task_id)["status"] == "failed"
    assert task(api, task_id)["error"]["code"] == "dispatch_failed"
    assert calls_to(rsps, "POST", ":run") == MAX_DISPATCH_ATTEMPTS


def test_on_cloud_run_a_task_is_launched_within_its_submission(rsps, firestore, settings):
    """Cloud Run throttles CPU between requests: the launch cannot wait for a
    background thread."""
    from api.adapters.firestore_store import FirestoreStore

    store = FirestoreStore(settings.project)
    executor = CloudRunJobsExecutor(
        JOB,
        "http://127.0.0.1:9",
        endpoint=ENDPOINT,
        max_in_flight=10,
        count_in_flight=lambda: store.count_tasks_with_status(IN_FLIGHT),
    )
    app = create_app(
        with_settings(settings, executor="cloudrun", cloud_run_job=JOB),
        store=store,
        executor=executor,
        start_background=False,
    )
    rsps.post(RUN_URL, body=operation_json("runner-now"))
    task_id = submit(app.test_client())
    assert calls_to(rsps, "POST", ":run") == 1
    assert task(app.test_client(), task_id)["execution"]["name"] == execution_name("runner-now")
