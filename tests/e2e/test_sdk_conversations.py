"""Conversations through the SDK and the CLI: a real API server with the LLM proxy,
real runners, the real Claude Code CLI in real bubblewrap, and the scripted Messages
API (streaming SSE) on loopback as Anthropic."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agentplatform import Client, Conflict

from devtools.scripted_anthropic import reply

CLI = str(Path(sys.executable).parent / "agentplatform")


@pytest.fixture
def sdk(agent_server, firestore, anthropic_api):
    anthropic_api.fallback = None
    with Client(agent_server.url, user="alice") as client:
        yield client


def test_send_streams_the_reply_as_deltas_and_ends_with_the_finished_turn(sdk, anthropic_api):
    answer = "Forty-two is the answer, streamed in pieces."
    anthropic_api.add(reply(answer))
    agent = sdk.agents.create("streamer")  # the default engine: Claude Code
    conversation = sdk.conversations.create(agent)
    turn = sdk.conversations.send(conversation, "What is the answer?")
    deltas = list(turn)
    assert deltas and "".join(deltas) == answer
    assert turn.task.status == "completed" and turn.text == answer
    kinds = [e.type for e in sdk.events(turn.task)]
    assert "assistant_delta" in kinds
    messages = sdk.conversations.get(conversation).messages
    assert [(m.role, m.content) for m in messages] == [
        ("user", "What is the answer?"),
        ("assistant", answer),
    ]


def test_the_messages_engine_streams_its_whole_messages(sdk, anthropic_api):
    anthropic_api.add(reply("Hello from the tool loop."))
    agent = sdk.agents.create("looper", engine="messages")
    turn = sdk.conversations.send(sdk.conversations.create(agent), "Hi")
    assert "".join(turn).strip() == "Hello from the tool loop."


def test_a_second_message_while_a_turn_runs_is_a_conflict(sdk, anthropic_api):
    anthropic_api.add(reply("first"))
    conversation = sdk.conversations.create(sdk.agents.create("busy", engine="messages"))
    turn = sdk.conversations.send(conversation, "one")
    with pytest.raises(Conflict):
        sdk.conversations.send(conversation, "two")
    assert turn.wait().status == "completed"


def test_cli_chat_streams_each_reply(agent_server, firestore, anthropic_api, tmp_path):
    anthropic_api.fallback = None
    anthropic_api.add(reply("Hi Ada."), reply("Bye Ada."))
    with Client(agent_server.url, user="alice") as client:
        agent = client.agents.create("chatty", engine="messages")
    env = {**os.environ, "AGENTPLATFORM_URL": agent_server.url, "AGENTPLATFORM_USER": "alice",
           "XDG_CONFIG_HOME": str(tmp_path)}  # fmt: skip
    done = subprocess.run(
        [CLI, "chat", agent.id], input="I am Ada.\nGoodbye.\n", env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["Hi Ada.", "Bye Ada."]
