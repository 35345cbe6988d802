"""The Claude Code engine end to end: a real API server (with the LLM proxy), real
runner processes, the real Claude Code CLI in real bubblewrap, and the scripted
Messages API (streaming SSE) on loopback as Anthropic."""

from __future__ import annotations

import json
import threading

import pytest

from api import config
from devtools.scripted_anthropic import Failure, Reply, reply, tool_use
from tests.conftest import Caller, processes_mentioning, wait_for

REAL_KEY = "sk-ant-e2e-claude-code-canary-4815162342"


class AgentCaller(Caller):
    seen = 0  # the scripted API's requests before this test's


@pytest.fixture
def alice(agent_server, firestore, anthropic_api):
    anthropic_api.fallback = None
    seen = len(anthropic_api.requests)
    caller = AgentCaller(agent_server.url, "alice")
    caller.seen = seen
    yield caller
    caller.http.close()


def new_conversation(alice, **agent) -> str:
    created = alice.http.post("/api/agents", json={"name": "coder", **agent})
    assert created.status_code == 201, created.text
    assert created.json()["engine"] == agent.get("engine", "claude-code")
    conversation = alice.http.post("/api/conversations", json={"agentId": created.json()["id"]})
    return conversation.json()["id"]


def post_message(alice, conversation_id: str, text: str) -> str:
    sent = alice.http.post(f"/api/conversations/{conversation_id}/messages", json={"message": text})
    assert sent.status_code == 202, sent.text
    return sent.json()["task"]["id"]


def events_of(alice, task_id: str) -> list[dict]:
    return alice.http.get(f"/api/tasks/{task_id}/events").json()["events"]


def keys_of(request) -> set[str]:
    """Every credential a request carried (x-api-key, or authorization: Bearer)."""
    found = {request.headers.get("x-api-key")}
    found.add(request.headers.get("authorization", "").removeprefix("Bearer ") or None)
    return found - {None}


def settled(alice, task_id: str) -> dict | None:
    task = alice.wait(task_id)
    return task if task["status"] not in ("queued", "dispatched", "running") else None


def requests_since(anthropic_api, alice):
    return anthropic_api.requests[alice.seen :]


def test_a_bash_tool_call_writes_a_file_and_the_reply_lands_in_the_conversation(
    alice, anthropic_api
):
    anthropic_api.add(
        reply("Writing it.", tool_use("Bash", command="echo 42 > answer.txt"), usage=(120, 30)),
        reply("Saved 42 in answer.txt.", usage=(200, 12)),
    )
    conversation = new_conversation(alice)
    task = alice.wait(post_message(alice, conversation, "Put 42 in answer.txt."))
    assert task["status"] == "completed", task.get("error")
    assert task["result"]["text"] == "Saved 42 in answer.txt."
    files = {f["path"]: f for f in task["result"]["files"]}
    assert files["answer.txt"]["content"] == "42\n"
    assert not [path for path in files if path.startswith(".engine")]
    events = events_of(alice, task["id"])
    (call,) = [e["data"] for e in events if e["type"] == "tool_call"]
    assert (call["name"], call["input"]["command"]) == ("Bash", "echo 42 > answer.txt")
    (result,) = [e["data"] for e in events if e["type"] == "tool_result"]
    assert result["id"] == call["id"] and result["isError"] is False
    kinds = [e["type"] for e in events]
    assert "assistant_delta" in kinds and "assistant" in kinds and "status" in kinds
    shown = alice.http.get(f"/api/conversations/{conversation}").json()["messages"]
    assert shown[-1]["role"] == "assistant"
    assert shown[-1]["content"] == "Saved 42 in answer.txt."
    # Usage once per call, with the stream's own figures (not the CLI's repeats), and its
    # cost from the price table: Sonnet's $3 and $15 per million input and output tokens.
    assert task["result"]["usage"] == {
        "inputTokens": 320,
        "outputTokens": 42,
        "costUsd": pytest.approx((320 * 3 + 42 * 15) / 1e6),
    }
    usage_events = [e["data"] for e in events if e["type"] == "usage"]
    assert [u["inputTokens"] for u in usage_events] == [120, 200]
    assert usage_events[-1]["costUsd"] == task["result"]["usage"]["costUsd"]
    # Anthropic saw the real key on every request, and only the real key.
    sent = requests_since(anthropic_api, alice)
    assert len(sent) == 2
    assert all(keys_of(r) == {REAL_KEY} for r in sent)
    assert all(r.body["stream"] is True and r.body["model"] for r in sent)
    # The pinned CLI (2.1.332) sends only the agent's model here; a helper it may use
    # (its small model) is paired with it by HELPER_MODELS, and nothing else passes.
    assert {r.body["model"] for r in sent} <= {"claude-sonnet-4-6", *config.HELPER_MODELS}


def test_nothing_in_the_sandbox_shows_the_key_or_a_task_token(alice, anthropic_api, agent_server):
    snoop = "printenv; cat /proc/*/environ | tr '\\0' '\\n'; ls -la / /engine /engine/channel"
    anthropic_api.add(
        reply(tool_use("Bash", command=snoop)),
        lambda body: reply("Looked."),
    )
    conversation = new_conversation(alice)
    task = alice.wait(post_message(alice, conversation, "Show me your environment."))
    assert task["status"] == "completed", task.get("error")
    sent = requests_since(anthropic_api, alice)
    tool_output = json.dumps(sent[-1].tool_results())
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in tool_output  # it did run
    assert "llm.sock" in tool_output
    everything = tool_output + json.dumps(events_of(alice, task["id"])) + json.dumps(task)
    assert REAL_KEY not in everything
    assert "tt1." not in everything
    assert all(keys_of(r) == {REAL_KEY} for r in sent)


def test_a_second_turn_resumes_the_session_and_its_files(alice, anthropic_api):
    anthropic_api.add(
        reply(tool_use("Bash", command="echo 42 > answer.txt")),
        reply("Done."),
        reply(tool_use("Bash", command="cat answer.txt")),
        reply("It says 42."),
    )
    conversation = new_conversation(alice)
    first = alice.wait(post_message(alice, conversation, "Put 42 in answer.txt."))
    assert first["status"] == "completed", first
    second = alice.wait(post_message(alice, conversation, "What is in answer.txt?"))
    assert second["status"] == "completed", second
    (result,) = [e["data"] for e in events_of(alice, second["id"]) if e["type"] == "tool_result"]
    assert result["output"].strip() == "42"
    resumed = requests_since(anthropic_api, alice)[2].body["messages"]
    assert "echo 42 > answer.txt" in json.dumps(resumed)  # turn 1, from the session


def test_cancel_mid_stream_ends_cancelled_with_no_process_left(alice, anthropic_api):
    release = threading.Event()
    anthropic_api.add(
        Reply([{"type": "text", "text": "A long answer that never ends"}], hold=release)
    )
    try:
        conversation = new_conversation(alice)
        task_id = post_message(alice, conversation, "Talk for a while.")
        wait_for(
            lambda: any(e["type"] == "assistant_delta" for e in events_of(alice, task_id)),
            60,
            message="the first assistant_delta",
        )
        assert alice.http.post(f"/api/tasks/{task_id}/cancel").status_code in (200, 202)
        task = alice.wait(task_id)
        assert task["status"] == "cancelled", task
        session = _session_id(conversation)
        wait_for(
            lambda: not processes_mentioning(task_id) and not processes_mentioning(session),
            5,
            message="the runner and the CLI to be gone",
        )
    finally:
        release.set()


def test_a_budget_crossed_mid_turn_ends_budget_exceeded(alice, anthropic_api):
    # The first call fits (its input is reserved as bytes / 3: Claude Code's requests
    # are tens of kilobytes); what it used leaves no room for the next one.
    anthropic_api.add(reply(tool_use("Bash", command="true"), usage=(99_000, 900)))
    anthropic_api.fallback = lambda body: reply("never reached")
    conversation = new_conversation(alice, maxTokens=100_000)
    task = alice.wait(post_message(alice, conversation, "Spend it all."))
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "budget_exceeded"
    assert len(requests_since(anthropic_api, alice)) == 1  # the next call never went out


def test_claude_code_stops_itself_at_the_tasks_cost_budget(alice, anthropic_api):
    # $0.60 of Sonnet by Claude Code's own count, over the agent's $0.50: the CLI, given
    # --max-budget-usd, stops before a second call, and the task ends budget_exceeded.
    anthropic_api.add(reply(tool_use("Bash", command="true"), usage=(200_000, 100)))
    anthropic_api.fallback = lambda body: reply("never reached")
    conversation = new_conversation(alice, maxTokens=1_000_000, maxCostUsd=0.5)
    task = alice.wait(post_message(alice, conversation, "Spend it."))
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "budget_exceeded"
    assert "Claude Code stopped" in task["error"]["message"]
    assert task["result"]["usage"]["costUsd"] == pytest.approx((200_000 * 3 + 100 * 15) / 1e6)
    assert len(requests_since(anthropic_api, alice)) == 1


def test_the_cli_exiting_with_an_error_fails_the_task_engine_error(alice, anthropic_api):
    anthropic_api.fallback = lambda body: reply("x", stop_reason="refusal")
    conversation = new_conversation(alice, model="claude-sonnet-4-6")
    anthropic_api.fallback = None  # the script is empty: every call is refused with 400
    task = alice.wait(post_message(alice, conversation, "Hello?"))
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "engine_error"
    assert "the script has no more steps" in task["error"]["message"]


def _session_id(conversation_id: str) -> str:
    import uuid

    namespace = uuid.UUID("6b3f1d2e-8c4a-4e59-9a7b-2f0c5d1e8a93")
    return str(uuid.uuid5(namespace, conversation_id))


def test_a_persistent_rate_limit_is_retried_by_claude_code_alone(alice, anthropic_api):
    # One retry layer: Claude Code's own (CLAUDE_CODE_MAX_RETRIES=3), none in the proxy.
    anthropic_api.fallback = lambda body: Failure(429, "rate_limit_error", "slow", retry_after=0)
    conversation = new_conversation(alice)
    task_id = post_message(alice, conversation, "Hello?")
    task = wait_for(lambda: settled(alice, task_id), 120, message="the task to end")
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "engine_error"
    assert len(requests_since(anthropic_api, alice)) == 4


def test_a_spend_limit_is_never_retried(alice, anthropic_api):
    spent = Failure(429, "rate_limit_error", "You have reached your spend limit.", retry_after=0)
    anthropic_api.fallback = lambda body: spent
    conversation = new_conversation(alice)
    task_id = post_message(alice, conversation, "Hello?")
    task = wait_for(lambda: settled(alice, task_id), 120, message="the task to end")
    assert task["status"] == "failed", task
    assert "spend limit" in task["error"]["message"]
    assert len(requests_since(anthropic_api, alice)) == 1


def test_max_turns_stops_claude_code_as_it_stops_the_other_engine(alice, anthropic_api):
    anthropic_api.fallback = lambda body: reply(tool_use("Bash", command="echo again"))
    conversation = new_conversation(alice, maxTurns=2)
    task = alice.wait(post_message(alice, conversation, "Loop forever."))
    assert task["status"] == "completed", task.get("error")
    assert task["result"]["stopReason"] == "max_turns"
    assert len(requests_since(anthropic_api, alice)) == 2
