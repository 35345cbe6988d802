"""Self-service API keys (`/api/keys`, DESIGN section 6.1): any signed-in user makes,
lists and revokes their own keys; the key is shown once and stored as a hash. Against
the Firestore emulator, through the Flask test client."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import with_settings

ALICE = {"X-User-Id": "alice"}
BOB = {"X-User-Id": "bob"}


def bearer(key: str) -> dict:
    return {"Authorization": f"Bearer {key}"}


def create(client, headers=ALICE, **body):
    reply = client.post("/api/keys", json={"name": "laptop", **body}, headers=headers)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def test_a_new_key_is_shown_once_and_stored_only_as_its_hash(client, app):
    made = create(client)
    key = made["key"]
    assert key.startswith("ak_") and made["prefix"] == key[:12]
    assert made["name"] == "laptop" and made["lastUsedAt"] is None
    listed = client.get("/api/keys", headers=ALICE).get_json()["keys"]
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0]
    assert set(listed[0]) == {"id", "name", "prefix", "createdAt", "lastUsedAt"}
    stored = app.extensions["agent_platform"].store.client.collection("apiKeys").stream()
    documents = repr([doc.to_dict() for doc in stored])
    assert key not in documents and key[12:] not in documents
    assert hashlib.sha256(key.encode()).hexdigest() in documents


def test_the_key_authenticates_as_its_owner_in_dev_mode_too(client):
    key = create(client)["key"]
    agent = client.post("/api/agents", json={"name": "k"}, headers=bearer(key))
    assert agent.status_code == 201
    mine = client.get("/api/agents", headers=ALICE).get_json()["agents"]
    assert [a["id"] for a in mine] == [agent.get_json()["id"]]
    (listed,) = client.get("/api/keys", headers=bearer(key)).get_json()["keys"]
    assert listed["lastUsedAt"] is not None


def test_a_revoked_key_stops_working_and_leaves_the_list(client):
    made = create(client)
    assert client.delete(f"/api/keys/{made['id']}", headers=ALICE).status_code == 204
    refused = client.get("/api/tasks", headers=bearer(made["key"]))
    assert refused.status_code == 401
    assert refused.get_json()["error"]["code"] == "unauthenticated"
    assert client.get("/api/keys", headers=ALICE).get_json()["keys"] == []
    assert client.delete(f"/api/keys/{made['id']}", headers=ALICE).status_code == 404


def test_another_users_key_is_not_found_and_keeps_working(client):
    made = create(client)
    assert client.delete(f"/api/keys/{made['id']}", headers=BOB).status_code == 404
    assert client.get("/api/keys", headers=BOB).get_json()["keys"] == []
    assert client.get("/api/tasks", headers=bearer(made["key"])).status_code == 200


@pytest.mark.parametrize("body", [{"name": "x" * 101}, {"name": 3}, {"nom": "laptop"}])
def test_a_bad_name_is_a_validation_error(client, body):
    reply = client.post("/api/keys", json=body, headers=ALICE)
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == "invalid_request"


def test_keys_need_a_signed_in_caller(client):
    assert client.post("/api/keys", json={"name": "x"}).status_code == 401
    assert client.get("/api/keys").status_code == 401


def test_a_key_can_make_keys_for_its_owner(client):
    key = create(client)["key"]
    second = create(client, headers=bearer(key), name="ci")
    names = sorted(k["name"] for k in client.get("/api/keys", headers=ALICE).get_json()["keys"])
    assert names == ["ci", "laptop"] and second["key"] != key


def test_keys_also_work_where_auth_mode_is_apikey(firestore, settings):
    from api import create_app

    app = create_app(with_settings(settings, auth_mode="apikey"), start_background=False)
    key = app.extensions["agent_platform"].api_keys.create("carol", "operator-made")[0]
    client = app.test_client()
    made = client.post("/api/keys", json={"name": "self-made"}, headers=bearer(key))
    assert made.status_code == 201
    listed = client.get("/api/keys", headers=bearer(key)).get_json()["keys"]
    assert sorted(k["name"] for k in listed) == ["operator-made", "self-made"]
