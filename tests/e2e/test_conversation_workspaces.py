"""A conversation's workspace across its turns: a real API server, real runners in
real bubblewrap, the built-in `messages` engine against the scripted Messages API,
and the Firestore and Cloud Storage emulators."""

from __future__ import annotations

import os

import pytest

from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import BUCKET, ApiServer, Caller, wait_for

REAL_KEY = "sk-ant-e2e-workspaces"


@pytest.fixture
def alice(agent_server, firestore, anthropic_api):
    anthropic_api.fallback = None
    caller = Caller(agent_server.url, "alice")
    yield caller
    caller.http.close()


@pytest.fixture
def bob(agent_server, firestore):
    caller = Caller(agent_server.url, "bob")
    yield caller
    caller.http.close()


def objects_under(prefix: str) -> list[str]:
    from google.cloud import storage

    client = storage.Client(project="demo-test")
    return sorted(blob.name for blob in client.list_blobs(BUCKET, prefix=prefix))


def start_turn(alice, conversation_id: str, text: str) -> dict:
    sent = alice.http.post(f"/api/conversations/{conversation_id}/messages", json={"message": text})
    assert sent.status_code == 202, sent.text
    return sent.json()["task"]


def conversation_with_a_file(alice, anthropic_api) -> dict:
    """A conversation whose first turn wrote notes.txt and the engine's own state."""
    anthropic_api.add(
        reply(tool_use("write_file", path="notes.txt", content="remember: 42")),
        reply(tool_use("write_file", path=".engine/session.json", content='{"turn": 1}')),
        reply("Noted."),
    )
    agent = alice.http.post("/api/agents", json={"name": "scribe", "engine": "messages"}).json()
    conversation = alice.http.post("/api/conversations", json={"agentId": agent["id"]}).json()
    first = alice.wait(start_turn(alice, conversation["id"], "Note 42.")["id"])
    assert first["status"] == "completed", first
    return conversation


def test_the_second_turn_reads_what_the_first_turn_wrote(alice, anthropic_api):
    conversation = conversation_with_a_file(alice, anthropic_api)
    anthropic_api.add(
        reply(tool_use("read_file", path="notes.txt")),
        reply(tool_use("read_file", path=".engine/session.json")),
        reply("It says 42."),
    )
    second = alice.wait(start_turn(alice, conversation["id"], "What did you note?")["id"])
    assert second["status"] == "completed", second
    results = [r["content"] for r in anthropic_api.messages_requests[-1].tool_results()]
    assert any("remember: 42" in str(c) for c in anthropic_api.messages_requests[-2].tool_results())
    assert any('{"turn": 1}' in str(c) for c in results)

    listing = alice.http.get(f"/api/conversations/{conversation['id']}/files").json()
    assert [f["path"] for f in listing["files"]] == ["notes.txt"]  # .engine/ is never listed
    download = alice.http.get(f"/api/conversations/{conversation['id']}/files/notes.txt")
    assert download.status_code == 200 and download.content == b"remember: 42"
    hidden = alice.http.get(f"/api/conversations/{conversation['id']}/files/.engine/session.json")
    assert hidden.status_code == 404
    # One snapshot: the first turn's was deleted when the second took its place.
    snapshots = objects_under(f"conversations/{conversation['id']}/snapshots/")
    assert snapshots == [f"conversations/{conversation['id']}/snapshots/{second['id']}.tar.gz"]


def test_a_cancelled_turn_leaves_the_previous_workspace(alice, anthropic_api):
    conversation = conversation_with_a_file(alice, anthropic_api)
    # Cancelled during this tool call: the model is not asked again in this turn.
    anthropic_api.add(reply(tool_use("bash", command="echo changed > notes.txt; sleep 30")))
    turn = start_turn(alice, conversation["id"], "Change it, slowly.")

    def tool_started():
        events = alice.http.get(f"/api/tasks/{turn['id']}/events").json()["events"]
        return any(e["type"] == "tool_call" for e in events)

    wait_for(tool_started, timeout=60, message="the slow tool call")
    cancelled = alice.http.post(f"/api/tasks/{turn['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    download = alice.http.get(f"/api/conversations/{conversation['id']}/files/notes.txt")
    assert download.content == b"remember: 42"
    anthropic_api.add(reply(tool_use("read_file", path="notes.txt")), reply("Still 42."))
    third = alice.wait(start_turn(alice, conversation["id"], "And now?")["id"])
    assert third["status"] == "completed", third
    tool_results = anthropic_api.messages_requests[-1].tool_results()
    assert any("remember: 42" in str(r["content"]) for r in tool_results)


def test_a_workspace_over_its_limit_fails_the_turn_and_keeps_the_previous_one(
    alice, anthropic_api, emulator, tmp_path
):
    server = ApiServer(
        emulator,
        tmp_path / "api.log",
        ANTHROPIC_API_KEY=REAL_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
        MAX_WORKSPACE_MB="1",
    ).start()
    try:
        small = Caller(server.url, "alice")
        conversation = conversation_with_a_file(small, anthropic_api)
        anthropic_api.add(
            reply(tool_use("bash", command="head -c 3000000 /dev/urandom > big.bin")),
            reply("Made it."),
        )
        turn = small.wait(start_turn(small, conversation["id"], "Make a big file.")["id"])
        assert turn["status"] == "failed"
        assert turn["error"]["code"] == "workspace_too_large"
        listing = small.http.get(f"/api/conversations/{conversation['id']}/files").json()
        assert [f["path"] for f in listing["files"]] == ["notes.txt"]
        small.http.close()
    finally:
        server.stop()


def test_deleting_a_conversation_deletes_its_objects(alice, anthropic_api):
    conversation = conversation_with_a_file(alice, anthropic_api)
    prefix = f"conversations/{conversation['id']}/"
    assert objects_under(prefix) != []
    assert alice.http.delete(f"/api/conversations/{conversation['id']}").status_code == 204
    assert objects_under(prefix) == []


def test_another_user_cannot_see_a_conversations_files(alice, bob, anthropic_api):
    conversation = conversation_with_a_file(alice, anthropic_api)
    for path in ("files", "files/notes.txt"):
        reply_ = bob.http.get(f"/api/conversations/{conversation['id']}/{path}")
        assert reply_.status_code == 404, reply_.text
    assert os.environ["STORAGE_EMULATOR_HOST"]  # the session's emulator holds the bytes
