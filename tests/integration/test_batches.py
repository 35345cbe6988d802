"""POST /api/tasks/batch: up to 100 tasks, admitted all or none, idempotent, in a
fixed number of Firestore calls."""

from __future__ import annotations

import pytest

from api import create_app
from tests.conftest import with_settings
from tests.integration.conftest import ALICE


def code(n: int) -> dict:
    return {"kind": "code", "language": "python", "code": f"print({n})"}


def batch_app(settings, **changes):
    return create_app(with_settings(settings, **changes), start_background=False)


def own_tasks(client) -> list[dict]:
    return client.get("/api/tasks?limit=100", headers=ALICE).get_json()["tasks"]


def test_a_batch_answers_202_with_its_tasks_in_order(firestore, settings):
    client = batch_app(settings).test_client()
    reply = client.post(
        "/api/tasks/batch", json={"tasks": [code(n) for n in range(5)]}, headers=ALICE
    )
    assert reply.status_code == 202
    tasks = reply.get_json()["tasks"]
    assert [t["input"]["code"] for t in tasks] == [f"print({n})" for n in range(5)]
    assert {t["status"] for t in tasks} == {"queued"}
    assert len(own_tasks(client)) == 5


def test_an_invalid_item_makes_the_batch_400_naming_its_index(firestore, settings):
    client = batch_app(settings).test_client()
    items = [code(0), code(1), {"kind": "code", "language": "cobol", "code": "x"}]
    reply = client.post("/api/tasks/batch", json={"tasks": items}, headers=ALICE)
    assert reply.status_code == 400
    assert "tasks.2" in reply.get_json()["error"]["message"]
    assert own_tasks(client) == []


@pytest.mark.parametrize("count", [0, 101])
def test_a_batch_holds_1_to_100_tasks(firestore, settings, count):
    client = batch_app(settings).test_client()
    reply = client.post("/api/tasks/batch", json={"tasks": [code(1)] * count}, headers=ALICE)
    assert reply.status_code == 400
    assert own_tasks(client) == []


def test_a_batch_over_a_limit_is_refused_whole_with_429(firestore, settings):
    client = batch_app(settings, max_unsettled_tasks_per_user=5).test_client()
    refused = client.post(
        "/api/tasks/batch", json={"tasks": [code(n) for n in range(6)]}, headers=ALICE
    )
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "too_many_unsettled_tasks"
    assert int(refused.headers["Retry-After"]) > 0
    assert own_tasks(client) == []
    accepted = client.post(
        "/api/tasks/batch", json={"tasks": [code(n) for n in range(5)]}, headers=ALICE
    )
    assert accepted.status_code == 202
    assert client.post("/api/tasks", json=code(9), headers=ALICE).status_code == 429


def test_the_daily_limit_counts_a_batch_whole(firestore, settings):
    client = batch_app(settings, max_tasks_per_user_per_day=3).test_client()
    refused = client.post(
        "/api/tasks/batch", json={"tasks": [code(n) for n in range(4)]}, headers=ALICE
    )
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "daily_task_limit"


def test_an_idempotency_key_returns_the_same_batch(firestore, settings):
    client = batch_app(settings).test_client()
    headers = {**ALICE, "Idempotency-Key": "batch-1"}
    body = {"tasks": [code(n) for n in range(3)]}
    first = client.post("/api/tasks/batch", json=body, headers=headers).get_json()["tasks"]
    again = client.post("/api/tasks/batch", json=body, headers=headers)
    assert again.status_code == 202
    assert [t["id"] for t in again.get_json()["tasks"]] == [t["id"] for t in first]
    assert len(own_tasks(client)) == 3
    other = client.post("/api/tasks/batch", json={"tasks": [code(7)]}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"


def test_a_batch_of_100_costs_no_transaction_and_one_commit_of_tasks(firestore, settings):
    app = batch_app(settings)
    store = app.extensions["agent_platform"].store
    calls = {"transactions": 0, "task commits": 0}
    update_task, run_transaction, create_tasks = (
        store.update_task,
        store.run_transaction,
        store.create_tasks,
    )

    def counted(name, fn):
        def call(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return call

    store.update_task = counted("transactions", update_task)
    store.run_transaction = counted("transactions", run_transaction)
    store.create_tasks = counted("task commits", create_tasks)
    reply = app.test_client().post(
        "/api/tasks/batch", json={"tasks": [code(n) for n in range(100)]}, headers=ALICE
    )
    assert reply.status_code == 202
    assert len(reply.get_json()["tasks"]) == 100
    assert calls == {"transactions": 0, "task commits": 1}


def test_an_agent_item_keeps_its_engine_as_a_single_agent_task_does(firestore, settings):
    app = batch_app(settings)
    client = app.test_client()
    agent_item = {"kind": "agent", "prompt": "hi", "engine": "messages"}
    single = client.post("/api/tasks", json=agent_item, headers=ALICE).get_json()
    batch = client.post("/api/tasks/batch", json={"tasks": [agent_item]}, headers=ALICE)
    (batched,) = batch.get_json()["tasks"]
    store = app.extensions["agent_platform"].store
    engines = [store.get_task(t["id"])["agent"]["engine"] for t in (single, batched)]
    assert engines == ["messages", "messages"]
