"""Agents and conversations through the app, against the real emulator. The turn's
agent task is not run here (no dispatcher); tests/e2e/test_agent_conversations.py
runs whole conversations with the real runner and a scripted Messages API."""

from __future__ import annotations

from typing import get_args

import anthropic
import pytest
from anthropic.types import model_param

from api import config, create_app
from tests.conftest import with_settings
from tests.integration.conftest import ALICE, BOB


@pytest.fixture
def llm_app(firestore, settings):
    """An app that has an Anthropic key configured (the upstream is never called)."""
    return create_app(with_settings(settings, anthropic_api_key="sk-test"), start_background=False)


@pytest.fixture
def api(llm_app):
    return llm_app.test_client()


def make_agent(api, **fields) -> dict:
    reply = api.post("/api/agents", json={"name": "helper", **fields}, headers=ALICE)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def test_the_default_models_are_current_models_the_sdk_knows():
    known = set(get_args(get_args(model_param.ModelParam)[0]))
    deprecated = set(anthropic.resources.messages.messages.DEPRECATED_MODELS)
    assert set(config.ALLOWED_MODELS) <= known
    assert not set(config.ALLOWED_MODELS) & deprecated
    assert config.DEFAULT_MODEL in config.ALLOWED_MODELS


def test_an_old_client_creates_and_lists_agents_with_name_and_description(api):
    reply = api.post("/api/agents", json={"name": "a", "description": "d"}, headers=ALICE)
    assert reply.status_code == 201
    agent = reply.get_json()
    assert agent["name"] == "a" and agent["description"] == "d"
    assert agent["model"] == config.DEFAULT_MODEL
    assert agent["tools"] == list(config.RUNNER_TOOLS)
    listed = api.get("/api/agents", headers=ALICE).get_json()["agents"]
    assert [a["id"] for a in listed] == [agent["id"]]


def test_an_agent_can_be_read_patched_and_deleted_by_its_owner(api):
    agent = make_agent(api, systemPrompt="Be brief.", tools=["python"], maxTurns=3)
    url = f"/api/agents/{agent['id']}"
    assert api.get(url, headers=ALICE).get_json()["systemPrompt"] == "Be brief."
    patched = api.patch(url, json={"maxTurns": 5, "description": "new"}, headers=ALICE)
    assert patched.status_code == 200
    assert patched.get_json()["maxTurns"] == 5
    assert patched.get_json()["systemPrompt"] == "Be brief."
    assert api.delete(url, headers=ALICE).status_code == 204
    assert api.get(url, headers=ALICE).status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": "a", "tools": ["rm_rf"]},
        {"name": "a", "tools": ["bash", "bash"]},
        {"name": "a", "maxTurns": 0},
        {"name": "a", "maxTurns": "3"},
        {"name": "a", "maxTokens": 10},
        {"name": "a", "owner": "bob"},
        {"name": "a", "id": "chosen"},
        {"name": "a", "systemPrompt": "x" * (config.MAX_SYSTEM_PROMPT_CHARS + 1)},
    ],
)
def test_invalid_agents_are_refused_with_400(api, body):
    reply = api.post("/api/agents", json=body, headers=ALICE)
    assert reply.status_code == 400
    assert reply.get_json()["error"]["code"] == "invalid_request"


def test_a_model_outside_the_allow_list_is_refused_with_422(api):
    reply = api.post("/api/agents", json={"name": "a", "model": "claude-2.0"}, headers=ALICE)
    assert reply.status_code == 422
    assert reply.get_json()["error"]["code"] == "model_not_allowed"


def test_another_users_agent_and_conversation_are_not_found(api):
    agent = make_agent(api)
    conversation = api.post("/api/conversations", json={}, headers=ALICE).get_json()
    for method, path, body in [
        ("GET", f"/api/agents/{agent['id']}", None),
        ("PATCH", f"/api/agents/{agent['id']}", {"name": "x"}),
        ("DELETE", f"/api/agents/{agent['id']}", None),
        ("GET", f"/api/conversations/{conversation['id']}", None),
        ("DELETE", f"/api/conversations/{conversation['id']}", None),
        ("POST", f"/api/conversations/{conversation['id']}/messages", {"message": "hi"}),
    ]:
        reply = api.open(path, method=method, json=body, headers=BOB)
        assert reply.status_code == 404, (method, path)
        assert reply.get_json()["error"]["code"] == "not_found"
    assert api.get(f"/api/agents/{agent['id']}", headers=ALICE).get_json()["name"] == "helper"
    assert api.get("/api/agents", headers=BOB).get_json()["agents"] == []
    assert api.get("/api/conversations", headers=BOB).get_json()["conversations"] == []
    bob_conversation = api.post("/api/conversations", json={"agentId": agent["id"]}, headers=BOB)
    assert bob_conversation.status_code == 404


def test_a_message_is_stored_at_once_and_starts_an_agent_task(api):
    agent = make_agent(api, systemPrompt="Be brief.", tools=["bash"])
    conversation = api.post(
        "/api/conversations", json={"agentId": agent["id"], "title": "t"}, headers=ALICE
    ).get_json()
    url = f"/api/conversations/{conversation['id']}"
    reply = api.post(f"{url}/messages", json={"message": "hello"}, headers=ALICE)
    assert reply.status_code == 202
    body = reply.get_json()
    assert body["message"]["role"] == "user" and body["message"]["content"] == "hello"
    assert body["task"]["kind"] == "agent"
    assert body["task"]["status"] == "queued"
    assert body["message"]["taskId"] == body["task"]["id"]
    shown = api.get(url, headers=ALICE).get_json()
    assert [m["content"] for m in shown["messages"]] == ["hello"]
    assert shown["activeTaskId"] == body["task"]["id"]


def test_a_message_while_a_turn_is_running_is_refused_with_409(api):
    conversation = api.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}/messages"
    assert api.post(url, json={"message": "one"}, headers=ALICE).status_code == 202
    second = api.post(url, json={"message": "two"}, headers=ALICE)
    assert second.status_code == 409
    assert second.get_json()["error"]["code"] == "turn_in_progress"
    shown = api.get(f"/api/conversations/{conversation['id']}", headers=ALICE).get_json()
    assert [m["content"] for m in shown["messages"]] == ["one"]


def test_cancelling_the_turn_frees_the_conversation(api):
    conversation = api.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}/messages"
    task = api.post(url, json={"message": "one"}, headers=ALICE).get_json()["task"]
    api.post(f"/api/tasks/{task['id']}/cancel", headers=ALICE)
    assert api.post(url, json={"message": "two"}, headers=ALICE).status_code == 202


def test_messages_are_paginated_oldest_first(api, llm_app):
    conversation = api.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}"
    for text in ("m1", "m2", "m3"):
        task = api.post(f"{url}/messages", json={"message": text}, headers=ALICE).get_json()
        api.post(f"/api/tasks/{task['task']['id']}/cancel", headers=ALICE)
    first = api.get(f"{url}?limit=2", headers=ALICE).get_json()
    assert [m["content"] for m in first["messages"]] == ["m1", "m2"]
    rest = api.get(f"{url}?limit=2&after={first['nextMessagesAfter']}", headers=ALICE)
    assert [m["content"] for m in rest.get_json()["messages"]] == ["m3"]
    assert rest.get_json()["nextMessagesAfter"] is None


def test_deleting_a_conversation_removes_it_and_its_messages(api):
    conversation = api.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}"
    task = api.post(f"{url}/messages", json={"message": "x"}, headers=ALICE).get_json()["task"]
    assert api.delete(url, headers=ALICE).status_code == 204
    assert api.get(url, headers=ALICE).status_code == 404
    assert api.get(f"/api/tasks/{task['id']}", headers=ALICE).get_json()["status"] == "cancelled"


def test_without_a_key_agent_tasks_fail_at_once_saying_what_to_set(client):
    reply = client.post("/api/tasks", json={"kind": "agent", "prompt": "hi"}, headers=ALICE)
    assert reply.status_code == 202
    task = reply.get_json()
    assert task["status"] == "failed"
    assert task["error"]["code"] == "llm_not_configured"
    assert "ANTHROPIC_API_KEY" in task["error"]["message"]
    conversation = client.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}/messages"
    turn = client.post(url, json={"message": "hi"}, headers=ALICE).get_json()
    assert turn["task"]["status"] == "failed"
    assert client.post(url, json={"message": "again"}, headers=ALICE).status_code == 202


def test_the_old_clients_conversation_call_answers_in_its_shape(client):
    reply = client.post("/api/conversation", json={"message": "hi"}, headers=ALICE)
    assert reply.status_code == 200
    body = reply.get_json()
    assert set(body) >= {"conversationId", "text", "status", "component", "agentCreated", "taskId"}
    assert body["component"] is None and body["agentCreated"] is False
    assert body["status"] == "failed" and body["text"] is None  # no key configured here


def test_agent_task_validation(api):
    for body, status in [
        ({"kind": "agent"}, 400),
        ({"kind": "agent", "prompt": ""}, 400),
        ({"kind": "agent", "prompt": "x" * (config.MAX_PROMPT_CHARS + 1)}, 400),
        ({"kind": "agent", "prompt": "hi", "agentId": "nope"}, 404),
        ({"kind": "agent", "prompt": "hi", "maxTurns": 51}, 400),
        ({"kind": "agent", "prompt": "hi", "network": True}, 422),
    ]:
        reply = api.post("/api/tasks", json=body, headers=ALICE)
        assert reply.status_code == status, (body, reply.get_json())
