"""Keys that Firestore refuses or treats specially, sent through every route and
every runner report that takes a map: each answers 2xx or 4xx, never 5xx, and
nothing the runner reports is dropped (issue 9, item 1)."""

from __future__ import annotations

import pytest

from tests.integration.conftest import ALICE, runner_headers

# Reserved by Firestore (`__.*__`), empty, field-path syntax, and too long for a
# field name (1,500 bytes).
RESERVED_KEYS = ["__main__", "__x__", "", "a.b", "a/b", "`a`", "a" * 1600, "__name__"]


def reserved_map(value="v") -> dict:
    return {key: value for key in RESERVED_KEYS} | {"nested": {k: {k: 1} for k in RESERVED_KEYS}}


def running_task(client, services) -> str:
    reply = client.post(
        "/api/tasks", json={"kind": "code", "language": "python", "code": "1"}, headers=ALICE
    )
    task_id = reply.get_json()["id"]
    services.machine.mark_dispatched(task_id, "local", "d1")
    who = {"execution": "exec-1", "attempt": 0}
    claimed = client.post(
        f"/internal/v1/tasks/{task_id}/claim", json=who, headers=runner_headers(services, task_id)
    )
    assert claimed.status_code == 200, claimed.get_json()
    return task_id


def public_events(client, task_id: str) -> list[dict]:
    return client.get(f"/api/tasks/{task_id}/events", headers=ALICE).get_json()["events"]


@pytest.mark.parametrize("key", RESERVED_KEYS)
def test_a_files_key_firestore_reserves_is_a_2xx_or_a_4xx(client, key):
    body = {"kind": "code", "language": "python", "code": "print(1)", "files": {key: "x"}}
    reply = client.post("/api/tasks", json=body, headers=ALICE)
    assert reply.status_code < 500, reply.get_json()
    if reply.status_code == 202:
        task = client.get(f"/api/tasks/{reply.get_json()['id']}", headers=ALICE).get_json()
        assert task["input"]["files"] == {key: "x"}


def test_a_task_whose_files_are_named_like_dunders_is_stored_and_listed(client):
    files = {"__main__": "a", "__x__/__init__.py": "b", "a.b/c.d": "c"}
    body = {"kind": "code", "language": "python", "code": "print(1)", "files": files}
    reply = client.post("/api/tasks", json=body, headers=ALICE)
    assert reply.status_code == 202, reply.get_json()
    listed = client.get("/api/tasks", headers=ALICE).get_json()["tasks"]
    assert listed[0]["input"]["files"] == files


@pytest.mark.parametrize(
    "route, body",
    [
        ("/api/agents", {"name": "a", **reserved_map()}),
        ("/api/conversations", reserved_map()),
        ("/api/conversation", {"message": "hi", **reserved_map()}),
        ("/api/tasks", {"kind": "agent", "prompt": "hi", **reserved_map()}),
        ("/api/tasks", {"kind": "code", "language": "python", "code": "1", **reserved_map()}),
    ],
)
def test_public_routes_answer_reserved_keys_without_a_5xx(client, route, body):
    assert client.post(route, json=body, headers=ALICE).status_code < 500


def test_agent_and_message_routes_answer_reserved_keys_without_a_5xx(client):
    agent = client.post("/api/agents", json={"name": "a"}, headers=ALICE).get_json()
    patched = client.patch(f"/api/agents/{agent['id']}", json=reserved_map(), headers=ALICE)
    assert patched.status_code < 500
    conversation = client.post("/api/conversations", json={}, headers=ALICE).get_json()
    sent = client.post(
        f"/api/conversations/{conversation['id']}/messages",
        json={"message": "hi", **reserved_map()},
        headers=ALICE,
    )
    assert sent.status_code < 500


@pytest.mark.parametrize("user", ["__x__", "__main__", ".", "..", "a.b"])
def test_user_ids_that_look_like_reserved_document_ids_are_a_2xx_or_a_4xx(client, user):
    body = {"kind": "code", "language": "python", "code": "print(1)"}
    reply = client.post("/api/tasks", json=body, headers={"X-User-Id": user})
    assert reply.status_code < 500, reply.get_json()
    if reply.status_code == 202:
        task_id = reply.get_json()["id"]
        assert client.get(f"/api/tasks/{task_id}", headers={"X-User-Id": user}).status_code == 200
        cancelled = client.post(f"/api/tasks/{task_id}/cancel", headers={"X-User-Id": user})
        assert cancelled.get_json()["status"] == "cancelled"


def test_tool_calls_with_reserved_keys_are_stored_and_shown_as_sent(client, services):
    task_id = running_task(client, services)
    tool_input = reserved_map()
    events = [
        {"type": "tool_call", "data": {"id": "t1", "name": "bash", "input": tool_input}},
        {"type": "tool_result", "data": {"id": "t1", "name": "bash", "output": "ok", **tool_input}},
        {"type": "log", "data": tool_input},
    ]
    reply = client.post(
        f"/internal/v1/tasks/{task_id}/events",
        json={"execution": "exec-1", "attempt": 0, "events": events},
        headers=runner_headers(services, task_id),
    )
    assert reply.status_code == 200, reply.get_json()
    shown = [e for e in public_events(client, task_id) if e["type"] != "status"]
    assert [e["data"] for e in shown] == [e["data"] for e in events]


def test_a_result_whose_last_events_hold_reserved_keys_settles_the_task(client, services):
    task_id = running_task(client, services)
    tool_call = {"id": "t1", "name": "write_file", "input": {"__x__": "1", "": "2"}}
    reply = client.post(
        f"/internal/v1/tasks/{task_id}/result",
        json={
            "execution": "exec-1",
            "attempt": 0,
            "status": "completed",
            "result": {"exitCode": 0, "stdout": "__x__", "durationMs": 1},
            "events": [{"type": "tool_call", "data": tool_call}],
        },
        headers=runner_headers(services, task_id),
    )
    assert reply.status_code == 200, reply.get_json()
    task = client.get(f"/api/tasks/{task_id}", headers=ALICE).get_json()
    assert task["status"] == "completed"
    assert task["result"]["stdout"] == "__x__"
    assert [e["data"] for e in public_events(client, task_id) if e["type"] == "tool_call"] == [
        tool_call
    ]


def test_a_tool_input_with_a_lone_surrogate_is_kept_not_refused(client, services):
    # JSON allows "\ud800" and a model may send it; UTF-8 (so Firestore) does not.
    task_id = running_task(client, services)
    raw = (
        '{"execution": "exec-1", "attempt": 0, "events": [{"type": "tool_call", '
        '"data": {"id": "t1", "name": "bash", "input": {"\\ud800": "\\udfff"}}}]}'
    )
    reply = client.post(
        f"/internal/v1/tasks/{task_id}/events",
        data=raw,
        content_type="application/json",
        headers=runner_headers(services, task_id),
    )
    assert reply.status_code == 200, reply.get_json()
    [call] = [e for e in public_events(client, task_id) if e["type"] == "tool_call"]
    assert call["data"]["input"] == {"\ufffd": "\ufffd"}
