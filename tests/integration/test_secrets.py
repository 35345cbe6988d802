"""User secrets through the API (the Firestore emulator; no runner): names and sizes
bounded, values never answered back, sealed at rest, and given to a task's runner
only while it holds its running task. End to end: tests/e2e/test_egress.py."""

from __future__ import annotations

import json

import pytest

from api.adapters.firestore_paths import secret_value_path
from tests.conftest import with_settings
from tests.integration.conftest import ALICE, BOB, runner_headers


@pytest.fixture
def settings(settings):
    return with_settings(
        settings,
        max_secrets_per_user=2,
        max_secret_bytes=32,
        egress_allowed_domains=("api.test", "*.example.org"),
    )


def put(client, name: str, value: str, headers=ALICE):
    return client.put(f"/api/secrets/{name}", json={"value": value}, headers=headers)


def test_a_secret_is_created_then_replaced_and_listed_without_its_value(client):
    first = put(client, "DEMO_KEY", "value-one")
    assert first.status_code == 201
    assert set(first.json) == {"name", "size", "createdAt", "updatedAt"}
    again = put(client, "DEMO_KEY", "value-two!")
    assert again.status_code == 200 and again.json["size"] == 10
    assert again.json["createdAt"] == first.json["createdAt"]
    listed = client.get("/api/secrets", headers=ALICE).json["secrets"]
    assert [(s["name"], s["size"]) for s in listed] == [("DEMO_KEY", 10)]
    assert "value-two" not in json.dumps(listed)


def test_the_value_is_sealed_at_rest(client, services):
    put(client, "DEMO_KEY", "plain-text-value")
    stored = services.store.get_doc(secret_value_path("alice", "DEMO_KEY"))
    assert "plain-text-value" not in json.dumps(stored, default=str)
    assert set(stored["sealed"]) == {"keyName", "wrappedKey", "nonce", "ciphertext"}


@pytest.mark.parametrize(
    "name", ["1ABC", "with-dash", "PATH", "HTTPS_PROXY", "LD_PRELOAD", "X" * 65]
)
def test_a_name_that_cannot_be_a_variable_of_the_program_is_400(client, name):
    answer = put(client, name, "v")
    assert answer.status_code in (400, 404), answer.json  # 404: Flask refuses the path
    assert client.get("/api/secrets", headers=ALICE).json["secrets"] == []


def test_sizes_and_counts_are_bounded(client):
    assert put(client, "BIG", "x" * 33).status_code == 413
    assert put(client, "EMPTY", "").status_code == 400
    assert put(client, "ONE", "1").status_code == 201
    assert put(client, "TWO", "2").status_code == 201
    third = put(client, "THREE", "3")
    assert third.status_code == 409 and third.json["error"]["code"] == "too_many_secrets"
    assert put(client, "ONE", "replaced").status_code == 200  # replacing is not adding


def test_another_users_secret_is_not_theirs_to_list_delete_or_name(client):
    put(client, "BOBS", "bob-value", headers=BOB)
    assert client.get("/api/secrets", headers=ALICE).json["secrets"] == []
    assert client.delete("/api/secrets/BOBS", headers=ALICE).status_code == 404
    task = {"kind": "code", "language": "python", "code": "print(1)", "secrets": ["BOBS"]}
    refused = client.post("/api/tasks", json=task, headers=ALICE)
    assert refused.status_code == 422 and refused.json["error"]["code"] == "unknown_secret"
    assert client.get("/api/tasks", headers=ALICE).json["tasks"] == []


def test_network_patterns_are_checked_against_the_ceiling(client):
    def submit(network):
        body = {"kind": "code", "language": "python", "code": "print(1)", "network": network}
        return client.post("/api/tasks", json=body, headers=ALICE)

    assert submit({"allow": ["api.test", "a.b.example.org", "*.x.example.org"]}).status_code == 202
    beyond = submit({"allow": ["example.org"]})
    assert beyond.status_code == 422
    assert "EGRESS_ALLOWED_DOMAINS: api.test, *.example.org" in beyond.json["error"]["message"]
    assert submit({"allow": ["169.254.169.254"]}).status_code == 400
    assert submit({"allow": []}).status_code == 400
    assert submit(True).json["error"]["code"] == "network_not_allowed"


def test_the_runner_gets_the_values_only_while_it_holds_the_running_task(client, services):
    put(client, "DEMO_KEY", "runner-value")
    body = {"kind": "code", "language": "python", "code": "print(1)", "secrets": ["DEMO_KEY"]}
    task_id = client.post("/api/tasks", json=body, headers=ALICE).json["id"]
    who = {"execution": "exec-1", "attempt": 0}
    url = f"/internal/v1/tasks/{task_id}/secrets"
    headers = runner_headers(services, task_id)
    assert client.post(url, json=who, headers=headers).status_code == 409  # not claimed yet
    claimed = client.post(f"/internal/v1/tasks/{task_id}/claim", json=who, headers=headers)
    assert claimed.status_code == 200 and claimed.json["spec"]["secrets"] == ["DEMO_KEY"]
    assert "runner-value" not in json.dumps(claimed.json)
    answer = client.post(url, json=who, headers=headers)
    assert answer.status_code == 200 and answer.json == {"secrets": {"DEMO_KEY": "runner-value"}}
    other = client.post(url, json={"execution": "exec-2", "attempt": 0}, headers=headers)
    assert other.status_code == 409
    assert client.post(url, json=who, headers=runner_headers(services, "x" * 24)).status_code == 401
    client.delete("/api/secrets/DEMO_KEY", headers=ALICE)
    gone = client.post(url, json=who, headers=headers)
    assert gone.status_code == 409 and gone.json["error"]["code"] == "secret_missing"
