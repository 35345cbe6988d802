"""The runner's side of the API: task tokens, idempotent claims, events, results.
The test plays the runner over HTTP against the app and the real emulator."""

from __future__ import annotations

import pytest

from tests.integration.conftest import runner_headers

EXECUTION = "exec-1"


@pytest.fixture
def task_id(client, services):
    reply = client.post(
        "/api/tasks",
        json={"kind": "code", "language": "python", "code": "print(1)"},
        headers={"X-User-Id": "alice"},
    )
    task_id = reply.get_json()["id"]
    assert services.machine.mark_dispatched(task_id, "local", "d1", max_running=10)[0]
    return task_id


def claim(client, services, task_id, execution=EXECUTION, attempt=0):
    return client.post(
        f"/internal/v1/tasks/{task_id}/claim",
        json={"execution": execution, "attempt": attempt},
        headers=runner_headers(services, task_id),
    )


def report(client, services, task_id, stdout, execution=EXECUTION, attempt=0):
    return client.post(
        f"/internal/v1/tasks/{task_id}/result",
        json={
            "execution": execution,
            "attempt": attempt,
            "status": "completed",
            "result": {"exitCode": 0, "stdout": stdout, "durationMs": 5},
            "events": [{"type": "stdout", "data": stdout}],
        },
        headers=runner_headers(services, task_id),
    )


def public(client, task_id):
    return client.get(f"/api/tasks/{task_id}", headers={"X-User-Id": "alice"}).get_json()


def status_events(client, task_id):
    events = client.get(f"/api/tasks/{task_id}/events", headers={"X-User-Id": "alice"})
    return [e["data"]["status"] for e in events.get_json()["events"] if e["type"] == "status"]


def test_claim_gives_the_runner_its_input_and_limits(client, services, task_id):
    reply = claim(client, services, task_id)
    assert reply.status_code == 200
    spec = reply.get_json()["spec"]
    assert spec["input"]["code"] == "print(1)"
    assert spec["limits"]["network"] is False
    assert spec["limits"]["maxOutputBytes"] == 128 * 1024


def test_claim_is_idempotent_for_the_same_execution_and_attempt(client, services, task_id):
    assert claim(client, services, task_id).status_code == 200
    assert claim(client, services, task_id).status_code == 200
    assert public(client, task_id)["status"] == "running"
    assert status_events(client, task_id) == ["queued", "dispatched", "running"]


def test_a_duplicate_execution_cannot_claim_a_claimed_task(client, services, task_id):
    assert claim(client, services, task_id).status_code == 200
    reply = claim(client, services, task_id, execution="exec-2")
    assert reply.status_code == 409
    assert reply.get_json()["error"]["code"] == "claim_refused"


def test_a_retried_attempt_takes_over_and_the_old_attempt_is_ignored(client, services, task_id):
    assert claim(client, services, task_id, attempt=0).status_code == 200
    assert claim(client, services, task_id, attempt=1).status_code == 200
    assert report(client, services, task_id, "old\n", attempt=0).get_json()["accepted"] is False
    assert report(client, services, task_id, "new\n", attempt=1).get_json()["accepted"] is True
    task = public(client, task_id)
    assert task["result"]["stdout"] == "new\n"
    assert task["execution"]["attempt"] == 1


def test_a_second_result_post_is_ignored_and_usage_counts_once(client, services, task_id):
    claim(client, services, task_id)
    first = report(client, services, task_id, "first\n")
    second = report(client, services, task_id, "second\n")
    assert first.get_json() == {"accepted": True, "status": "completed"}
    assert second.status_code == 200
    assert second.get_json() == {"accepted": False, "status": "completed"}
    assert public(client, task_id)["result"]["stdout"] == "first\n"
    assert status_events(client, task_id).count("completed") == 1
    usage = [doc.to_dict() for doc in services.store.client.collection("usage").stream()]
    assert len(usage) == 1
    assert usage[0]["tasksSettled"] == 1


def test_a_result_after_cancel_does_not_change_the_task(client, services, task_id):
    claim(client, services, task_id)
    cancel = client.post(f"/api/tasks/{task_id}/cancel", headers={"X-User-Id": "alice"})
    assert cancel.get_json()["status"] == "cancelled"
    assert report(client, services, task_id, "late\n").get_json()["accepted"] is False
    assert public(client, task_id)["status"] == "cancelled"
    assert public(client, task_id)["result"] is None


def test_a_claim_on_a_settled_task_is_refused(client, services, task_id):
    client.post(f"/api/tasks/{task_id}/cancel", headers={"X-User-Id": "alice"})
    assert claim(client, services, task_id).status_code == 409


def test_events_from_an_execution_that_lost_the_task_answer_409(client, services, task_id):
    claim(client, services, task_id)
    body = {"execution": "exec-2", "attempt": 0, "events": [{"type": "stdout", "data": "x"}]}
    reply = client.post(
        f"/internal/v1/tasks/{task_id}/events", json=body, headers=runner_headers(services, task_id)
    )
    assert reply.status_code == 409


def test_events_are_stored_in_order_with_increasing_seq(client, services, task_id):
    claim(client, services, task_id)
    for chunk in ("a", "b", "c"):
        body = {"execution": EXECUTION, "attempt": 0, "events": [{"type": "stdout", "data": chunk}]}
        reply = client.post(
            f"/internal/v1/tasks/{task_id}/events",
            json=body,
            headers=runner_headers(services, task_id),
        )
        assert reply.status_code == 200
    events = client.get(f"/api/tasks/{task_id}/events", headers={"X-User-Id": "alice"})
    stdout = [e for e in events.get_json()["events"] if e["type"] == "stdout"]
    assert "".join(e["data"] for e in stdout) == "abc"
    assert [e["seq"] for e in stdout] == sorted(e["seq"] for e in stdout)


@pytest.mark.parametrize("endpoint", ["claim", "events", "result"])
def test_a_token_for_another_task_is_refused(client, services, task_id, endpoint):
    other = runner_headers(services, "0" * 24)
    body = {"execution": EXECUTION, "attempt": 0}
    reply = client.post(f"/internal/v1/tasks/{task_id}/{endpoint}", headers=other, json=body)
    assert reply.status_code == 401
    assert reply.get_json()["error"]["code"] == "invalid_task_token"


def test_an_expired_token_or_none_is_refused(client, services, task_id):
    expired = runner_headers(services, task_id, expires_in=-1)
    body = {"execution": EXECUTION, "attempt": 0}
    url = f"/internal/v1/tasks/{task_id}/claim"
    assert client.post(url, headers=expired, json=body).status_code == 401
    assert client.post(url, json=body).status_code == 401
