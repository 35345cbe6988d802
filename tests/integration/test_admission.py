"""Admission under bursts and fair dispatch (DESIGN section 13), on the emulator, with
the Cloud Run Jobs executor against the loopback Admin API stand-in (its RunJob
starts nothing, so every launched task stays in flight until cancelled)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from api import create_app
from api.adapters.executors.cloudrun import CloudRunJobsExecutor
from api.adapters.firestore_store import FirestoreStore
from api.services.state_machine import IN_FLIGHT
from devtools.cloud_run_standin import CloudRunStandIn
from tests.conftest import with_settings
from tests.integration.conftest import ALICE, BOB

JOB = "projects/demo-test/locations/us-central1/jobs/runner"
CODE = {"kind": "code", "language": "python", "code": "print(1)"}


@pytest.fixture
def standin():
    server = CloudRunStandIn(launch_runners=False).start()
    yield server
    server.stop()


@pytest.fixture
def make_app(firestore, settings, standin):
    def make(max_in_flight: int = 100, **changes):
        store = FirestoreStore(settings.project)
        executor = CloudRunJobsExecutor(
            JOB,
            "http://127.0.0.1:9",
            endpoint=standin.url,
            max_in_flight=max_in_flight,
            count_in_flight=lambda: store.count_tasks_with_status(IN_FLIGHT),
        )
        changes.setdefault("dispatch_inline", False)
        return create_app(
            with_settings(settings, executor="cloudrun", cloud_run_job=JOB, **changes),
            store=store,
            executor=executor,
            start_background=False,
        )

    return make


def burst(app, count: int, headers=ALICE, body=CODE):
    def one(_):
        return app.test_client().post("/api/tasks", json=body, headers=headers)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def status_of(app, task_id: str, headers=ALICE) -> dict:
    return app.test_client().get(f"/api/tasks/{task_id}", headers=headers).get_json()


def test_a_burst_of_100_submissions_from_one_user_is_accepted_whole(make_app):
    app = make_app()
    replies = burst(app, 100)
    assert [r.status_code for r in replies] == [202] * 100
    assert len({r.get_json()["id"] for r in replies}) == 100
    usage = app.extensions["agent_platform"].tasks.admission.usage("alice", _now())
    assert usage["unsettledTasks"]["used"] == 100
    assert usage["tasksToday"]["used"] == 100


def test_a_burst_past_the_unsettled_limit_gets_exactly_the_limit_and_429s(make_app):
    app = make_app(max_unsettled_tasks_per_user=30)
    replies = burst(app, 100)
    statuses = [r.status_code for r in replies]
    assert statuses.count(202) == 30
    assert statuses.count(429) == 70
    refused = [r for r in replies if r.status_code == 429]
    assert all(int(r.headers["Retry-After"]) > 0 for r in refused)
    assert {r.get_json()["error"]["code"] for r in refused} == {"too_many_unsettled_tasks"}


def test_tasks_over_the_per_user_concurrency_wait_queued(make_app):
    app = make_app(max_active_tasks_per_user=2)
    ids = [r.get_json()["id"] for r in burst(app, 5)]
    dispatcher = app.extensions["agent_platform"].dispatcher
    assert dispatcher.dispatch_pending() == 2
    statuses = sorted(status_of(app, task_id)["status"] for task_id in ids)
    assert statuses == ["dispatched"] * 2 + ["queued"] * 3
    bobs = app.test_client().post("/api/tasks", json=CODE, headers=BOB).get_json()
    assert dispatcher.dispatch_pending() == 1  # another user is not held back
    assert status_of(app, bobs["id"], BOB)["status"] == "dispatched"
    running = [i for i in ids if status_of(app, i)["status"] == "dispatched"]
    app.test_client().post(f"/api/tasks/{running[0]}/cancel", headers=ALICE)
    assert dispatcher.dispatch_pending() == 1  # the slot it gave back is alice's again
    assert sorted(status_of(app, i)["status"] for i in ids).count("queued") == 2


def test_one_users_backlog_delays_another_by_at_most_one_slot(make_app):
    app = make_app(max_in_flight=2)
    dispatcher = app.extensions["agent_platform"].dispatcher
    alices = [r.get_json()["id"] for r in burst(app, 12)]
    assert dispatcher.dispatch_pending() == 2  # every slot taken by alice
    bobs = app.test_client().post("/api/tasks", json=CODE, headers=BOB).get_json()["id"]
    shown = status_of(app, bobs, BOB)
    assert shown["status"] == "queued"
    assert shown["queuePosition"] == 1  # alice's next one, then bob's
    running = [i for i in alices if status_of(app, i)["status"] == "dispatched"]
    app.test_client().post(f"/api/tasks/{running[0]}/cancel", headers=ALICE)
    assert dispatcher.dispatch_pending() == 1
    assert status_of(app, bobs, BOB)["status"] == "dispatched"
    assert [status_of(app, i)["status"] for i in alices].count("queued") == 10


def test_a_queued_task_shows_its_position_and_a_started_one_none(make_app):
    app = make_app(max_in_flight=1)
    ids = [app.test_client().post("/api/tasks", json=CODE, headers=ALICE).get_json()["id"]]
    ids.append(app.test_client().post("/api/tasks", json=CODE, headers=ALICE).get_json()["id"])
    assert [status_of(app, i)["queuePosition"] for i in ids] == [0, 1]
    app.extensions["agent_platform"].dispatcher.dispatch_pending()
    assert [status_of(app, i)["queuePosition"] for i in ids] == [None, 0]


def test_50_concurrent_messages_to_one_conversation_start_exactly_one_turn(make_app):
    app = make_app(anthropic_api_key="sk-test")
    conversation = app.test_client().post("/api/conversations", json={}, headers=ALICE)
    url = f"/api/conversations/{conversation.get_json()['id']}/messages"

    def send(n):
        return app.test_client().post(url, json={"message": f"hi {n}"}, headers=ALICE)

    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(send, range(50)))
    statuses = [r.status_code for r in replies]
    assert statuses.count(202) == 1
    assert statuses.count(409) == 49
    assert {r.get_json()["error"]["code"] for r in replies if r.status_code == 409} == {
        "turn_in_progress"
    }
    shown = app.test_client().get(url.rsplit("/", 1)[0], headers=ALICE).get_json()
    assert len(shown["messages"]) == 1


def _now():
    from api.services.state_machine import utcnow

    return utcnow()
