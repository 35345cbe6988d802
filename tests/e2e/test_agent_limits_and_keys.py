"""A model's tool calls are untrusted input too. Keys Firestore reserves in a tool_use
input must neither fail the task's reports nor drop its events (issue 9, item 1), and
a tool call over the task's memory is stopped without ending the task (item 4).
Real server, runner and sandbox; a scripted Messages API as Anthropic."""

from __future__ import annotations

from typing import Any

from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import Caller

REAL_KEY = "sk-ant-test-model-keys"
RESERVED: dict[str, Any] = {"__x__": "1", "": "2", "__main__": {"__y__": 3}, "a.b": "4"}


def test_a_tool_call_with_reserved_keys_completes_with_all_its_events(
    agent_server, firestore, anthropic_api
):
    anthropic_api.add(
        reply(tool_use("bash", command="echo hello", **RESERVED), stop_reason="tool_use"),
        reply("The command said hello."),
    )
    alice = Caller(agent_server.url, "alice")
    task = alice.submit(
        kind="agent", engine="messages", prompt="Say hello with bash.", timeoutSeconds=60
    )
    done = alice.wait(task["id"])
    assert done["status"] == "completed", done
    assert done["result"]["text"] == "The command said hello."
    events = alice.http.get(f"/api/tasks/{task['id']}/events").json()["events"]
    [call] = [e["data"] for e in events if e["type"] == "tool_call"]
    assert call["input"] == {"command": "echo hello", **RESERVED}
    [result] = [e["data"] for e in events if e["type"] == "tool_result"]
    assert "hello" in result["output"]
    alice.http.close()


def test_a_tool_call_over_the_tasks_memory_is_stopped_and_the_agent_goes_on(
    agent_server, firestore, anthropic_api
):
    hog = "import os\nfor _ in range(4):\n    os.fork()\nblock = bytearray(200 * 1024 * 1024)"
    anthropic_api.add(
        reply(tool_use("python", code=hog), stop_reason="tool_use"),
        reply("That ran out of memory."),
    )
    alice = Caller(agent_server.url, "alice")
    task = alice.submit(
        kind="agent", engine="messages", prompt="Use memory.", memoryMb=256, timeoutSeconds=60
    )
    done = alice.wait(task["id"])
    assert done["status"] == "completed", done
    [result] = anthropic_api.messages_requests[-1].tool_results()
    assert result["is_error"] is True
    assert "memory (256 MiB) ran out" in result["content"]
    alice.http.close()
