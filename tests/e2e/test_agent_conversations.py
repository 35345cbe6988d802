"""Agents end to end: a real API server (with the LLM proxy), real runner processes,
real bubblewrap, and a scripted Messages API on loopback as Anthropic."""

from __future__ import annotations

import glob
import json
import os
import re
import subprocess

import pytest

from devtools.scripted_anthropic import Failure, reply, tool_use
from tests.conftest import ROOT, Caller

REAL_KEY = "sk-ant-e2e-real-key-canary-8675309"


@pytest.fixture
def alice(agent_server, firestore, anthropic_api):
    anthropic_api.fallback = None
    caller = Caller(agent_server.url, "alice")
    yield caller
    caller.http.close()


def converse(alice, conversation_id: str, text: str) -> dict:
    reply_ = alice.http.post(
        f"/api/conversations/{conversation_id}/messages", json={"message": text}
    )
    assert reply_.status_code == 202, reply_.text
    return alice.wait(reply_.json()["task"]["id"])


def test_a_two_turn_conversation_sees_its_first_turn(alice, anthropic_api):
    anthropic_api.add(reply("Nice to meet you, Ada."), reply("Your name is Ada."))
    agent = alice.http.post(
        "/api/agents",
        json={"name": "friend", "systemPrompt": "Remember names.", "engine": "messages"},
    ).json()
    conversation = alice.http.post("/api/conversations", json={"agentId": agent["id"]}).json()
    first = converse(alice, conversation["id"], "My name is Ada.")
    assert first["status"] == "completed"
    assert first["result"]["text"] == "Nice to meet you, Ada."
    second = converse(alice, conversation["id"], "What is my name?")
    assert second["result"]["text"] == "Your name is Ada."
    sent = anthropic_api.messages_requests[-1].body
    assert sent["system"] == "Remember names."
    assert [m["content"] for m in sent["messages"]][:3] == [
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "What is my name?",
    ]
    shown = alice.http.get(f"/api/conversations/{conversation['id']}").json()
    assert [(m["role"], m["content"]) for m in shown["messages"]] == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you, Ada."),
        ("user", "What is my name?"),
        ("assistant", "Your name is Ada."),
    ]
    assert shown["messages"][1]["taskId"] == first["id"]


def test_an_agent_writes_a_file_and_then_runs_it(alice, anthropic_api):
    anthropic_api.add(
        reply(tool_use("write_file", path="hello.py", content="print(6 * 7)")),
        reply(tool_use("bash", command="python3 hello.py")),
        lambda body: reply(f"It printed {body['messages'][-1]['content'][0]['content'].strip()}"),
    )
    task = alice.run(kind="agent", engine="messages", prompt="Write hello.py and run it.")
    assert task["status"] == "completed", task
    assert "42" in task["result"]["text"]
    assert task["result"]["turns"] == 3
    files = {f["path"]: f for f in task["result"]["files"]}
    assert files["hello.py"]["content"] == "print(6 * 7)"
    events = alice.http.get(f"/api/tasks/{task['id']}/events").json()["events"]
    kinds = [e["type"] for e in events]
    assert kinds.count("tool_call") == 2 and kinds.count("tool_result") == 2
    assert "assistant" in kinds and "usage" in kinds
    (bash_result,) = [
        e for e in events if e["type"] == "tool_result" and e["data"]["name"] == "bash"
    ]
    assert "42" in bash_result["data"]["output"]


def test_max_turns_stops_the_loop(alice, anthropic_api):
    anthropic_api.fallback = lambda body: reply(tool_use("bash", command="echo again"))
    task = alice.run(kind="agent", engine="messages", prompt="Loop forever.", maxTurns=2)
    assert task["status"] == "completed"
    assert task["result"]["turns"] == 2
    assert task["result"]["stopReason"] == "max_turns"


def test_a_spent_token_budget_fails_the_task_with_budget_exceeded(alice, anthropic_api):
    anthropic_api.fallback = lambda body: reply(tool_use("bash", command="true"), usage=(700, 200))
    task = alice.run(
        kind="agent", engine="messages", prompt="Spend it all.", maxTokens=1000, maxTurns=10
    )
    assert task["status"] == "failed"
    assert task["error"]["code"] == "budget_exceeded"


def test_the_real_key_is_never_seen_by_the_runner_or_the_sandbox(
    alice, anthropic_api, agent_server
):
    anthropic_api.add(
        reply(
            tool_use(
                "bash",
                command="env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; echo done",
            )
        ),
        reply("ok"),
    )
    task = alice.run(kind="agent", engine="messages", prompt="Show me your environment.")
    assert task["status"] == "completed"
    tool_output = anthropic_api.messages_requests[-1].tool_results()[0]["content"]
    assert "done" in str(tool_output)
    everything = json.dumps(task) + json.dumps(
        alice.http.get(f"/api/tasks/{task['id']}/events").json()
    )
    for text in (everything, str(tool_output), agent_server.logs()):
        assert REAL_KEY not in text
    assert "tt1." not in str(tool_output)  # nor the runner's own task token
    # The runner's own environment: the local executor passes only the env contract.
    runner_env = _environments_of("job_runner")
    assert all(REAL_KEY not in env for env in runner_env)
    # Upstream got the real key; the runner only ever had its task token.
    assert all(REAL_KEY in str(r.headers) for r in anthropic_api.messages_requests)


def test_the_old_clients_conversation_call_returns_the_reply(alice, anthropic_api):
    anthropic_api.add(reply("Hello from the agent."))
    answer = alice.http.post("/api/conversation", json={"message": "hi"}).json()
    assert answer["status"] == "completed"
    assert answer["text"] == "Hello from the agent."
    assert answer["component"] is None and answer["agentCreated"] is False
    anthropic_api.add(reply("Still here."))
    again = alice.http.post(
        "/api/conversation", json={"message": "again", "conversationId": answer["conversationId"]}
    ).json()
    assert again["conversationId"] == answer["conversationId"]
    assert again["text"] == "Still here."


def test_the_readme_conversation_example_works_as_printed(alice, anthropic_api, agent_server):
    # The README's agent runs Claude Code, which runs python with its Bash tool.
    anthropic_api.add(
        reply(tool_use("Bash", command="python3 -c 'print(2**100)'")),
        lambda body: reply(_tool_output(body).strip().splitlines()[0]),
    )
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Agents and conversations", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    (script,) = [b for b in blocks if "/api/agents" in b]
    script = script.replace("http://127.0.0.1:8080", agent_server.url)
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    task_json, conversation_json = done.stdout.strip().split("\n")[-2:]
    assert json.loads(task_json)["result"]["text"] == str(2**100)
    messages = json.loads(conversation_json)["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[1]["content"] == str(2**100)


def _tool_output(body: dict) -> str:
    (result,) = [b for b in body["messages"][-1]["content"] if b.get("type") == "tool_result"]
    content = result["content"]
    return content if isinstance(content, str) else content[0]["text"]


def _environments_of(marker: str) -> list[str]:
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                if marker.encode() not in f.read():
                    continue
            with open(os.path.join(os.path.dirname(path), "environ"), "rb") as f:
                found.append(f.read().decode(errors="replace"))
        except OSError:
            continue
    return found


def test_a_persistent_rate_limit_costs_four_upstream_calls_not_sixteen(alice, anthropic_api):
    # One retry layer: the runner's loop; the proxy passes each 429 back as it came.
    seen = len(anthropic_api.requests)
    anthropic_api.fallback = lambda body: Failure(429, "rate_limit_error", "slow", retry_after=0)
    task = alice.run(kind="agent", engine="messages", prompt="Hello?")
    assert (task["status"], task["error"]["code"]) == ("failed", "llm_error")
    assert len(anthropic_api.requests) - seen == 4


def test_a_spend_limit_costs_one_upstream_call(alice, anthropic_api):
    seen = len(anthropic_api.requests)
    spent = Failure(429, "rate_limit_error", "You have reached your spend limit.", retry_after=0)
    anthropic_api.fallback = lambda body: spent
    task = alice.run(kind="agent", engine="messages", prompt="Hello?")
    assert (task["status"], task["error"]["code"]) == ("failed", "llm_error")
    assert "spend limit" in task["error"]["message"]
    assert len(anthropic_api.requests) - seen == 1
