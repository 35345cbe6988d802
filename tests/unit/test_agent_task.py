"""Agent tasks: the tool loop against a scripted Messages API, with the real SDK and
the real bubblewrap sandbox. The scripted server stands where the API's LLM proxy
would be: the runner's SDK posts to `{api_url}/internal/v1/llm/v1/messages`."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from job_runner.agent_task import run_agent_task
from job_runner.sandbox import BubblewrapSandbox
from job_runner.tools import TOOL_NAMES

from devtools.scripted_anthropic import Failure, ScriptedAnthropic, reply, tool_use

TOKEN = "task-token-4f1e9c-for-this-test"
HOST_PASSWD_ROOT_LINE = Path("/etc/passwd").read_text().splitlines()[0]


@pytest.fixture
def llm():
    with ScriptedAnthropic() as server:
        yield server


def agent_spec(prompt="Hello", *, tools=TOOL_NAMES, history=(), system="", **task_input):
    return {
        "id": "task-1",
        "kind": "agent",
        "input": {
            "kind": "agent",
            "prompt": prompt,
            "agentId": None,
            "maxTurns": 10,
            "maxTokens": 100_000,
            "timeoutSeconds": 60,
            "memoryMb": 512,
            "network": False,
            **task_input,
        },
        "agent": {
            "systemPrompt": system,
            "model": "claude-sonnet-4-6",
            "tools": list(tools),
            "maxResponseTokens": 4096,
        },
        "history": list(history),
        "limits": {
            "maxOutputBytes": 131072,
            "diskMb": 2048,
            "network": False,
            "heartbeatSeconds": 5,
            "outputs": {
                "maxFiles": 500,
                "maxFileBytes": 1024**3,
                "maxTotalBytes": 2 * 1024**3,
                "maxPathChars": 1000,
            },
        },
    }


@dataclass
class AgentRun:
    status: str
    # A dict, or None: typed Any so a test indexes what it expects (a wrong guess
    # fails the test all the same).
    result: Any
    error: Any
    events: list[tuple[str, Any]]

    def of_type(self, kind: str) -> list[Any]:
        return [data for event_type, data in self.events if event_type == kind]


def run_agent(llm, spec, cancel=None, on_event=lambda kind, data: None) -> AgentRun:
    events: list[tuple[str, Any]] = []

    def emit(kind: str, data: dict | str) -> None:
        events.append((kind, data))
        on_event(kind, data)

    cancel = cancel or threading.Event()
    status, result, error = run_agent_task(spec, BubblewrapSandbox(), llm.url, TOKEN, emit, cancel)
    return AgentRun(status, result, error, events)


def credential(request) -> str:
    """The SDK sends its api_key as `Authorization: Bearer` (2.x) or `x-api-key` (0.x)."""
    bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
    return request.headers.get("x-api-key") or bearer


def test_end_turn_on_the_first_reply_returns_its_text_and_usage(llm):
    llm.add(reply("Hello!", "How can I help?", usage=(12, 7)))

    run = run_agent(llm, agent_spec())

    assert (run.status, run.error) == ("completed", None)
    assert run.result == {
        "text": "Hello!\nHow can I help?",
        "usage": {"inputTokens": 12, "outputTokens": 7},
        "turns": 1,
        "stopReason": "end_turn",
        "files": [],
        "skipped": [],
        "skippedCount": 0,
    }
    assert len(llm.requests) == 1


def test_tool_result_goes_back_for_the_right_tool_use_id_and_usage_is_summed(llm):
    llm.add(
        reply("Let me look.", tool_use("bash", id="toolu_A", command="echo from-the-sandbox")),
        reply("It printed from-the-sandbox.", usage=(30, 6)),
    )

    run = run_agent(llm, agent_spec())

    assert run.status == "completed"
    first_input = {"command": "echo from-the-sandbox"}
    first, second = llm.requests
    assert second.body["messages"][-2] == {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_A", "name": "bash", "input": first_input},
        ],
    }
    assert second.tool_results() == [
        {
            "type": "tool_result",
            "tool_use_id": "toolu_A",
            "content": "from-the-sandbox",
            "is_error": False,
        }
    ]
    assert run.result["usage"] == {"inputTokens": 40, "outputTokens": 11}
    assert run.result["turns"] == 2
    assert run.result["text"] == "It printed from-the-sandbox."


def test_agent_writes_a_file_then_runs_it_with_bash_and_imports_it_with_python(llm):
    llm.add(
        reply(tool_use("write_file", path="calc.py", content="ANSWER = 6 * 7\nprint(ANSWER)\n")),
        reply(tool_use("bash", command="python3 calc.py")),
        reply(tool_use("python", code="import calc; print('imported', calc.ANSWER)")),
        reply("The answer is 42."),
    )

    run = run_agent(llm, agent_spec("Compute 6*7 with a script"))

    assert run.status == "completed"
    outputs = [r.tool_results()[0]["content"] for r in llm.requests[1:]]
    assert outputs == ["Wrote 29 bytes to calc.py.", "42", "42\nimported 42"]
    assert run.result["files"] == [
        {
            "path": "calc.py",
            "size": 29,
            "sha256": hashlib.sha256(b"ANSWER = 6 * 7\nprint(ANSWER)\n").hexdigest(),
            "content": "ANSWER = 6 * 7\nprint(ANSWER)\n",
        }
    ]


def test_file_tools_cannot_reach_host_files_by_path_or_planted_symlink(llm):
    llm.add(
        reply(
            tool_use("bash", command="ln -s /etc/passwd leak && ln -s / root && echo planted"),
            tool_use("read_file", path="../../etc/passwd"),
            tool_use("read_file", path="leak"),
            tool_use("read_file", path="root/etc/passwd"),
            tool_use("write_file", path="../../tmp/escaped.txt", content="x"),
            tool_use("edit_file", path="leak", old="root", new="toor"),
        ),
        reply("Nothing to see."),
    )

    run = run_agent(llm, agent_spec())

    planted, *attempts = llm.requests[1].tool_results()
    assert planted["content"] == "planted" and not planted["is_error"]
    assert all(result["is_error"] for result in attempts)
    assert all("outside the workspace" in result["content"] for result in attempts)
    everything = str(llm.requests[1].body) + str(run.events) + str(run.result)
    assert HOST_PASSWD_ROOT_LINE not in everything
    assert not Path("/tmp/escaped.txt").exists()


def test_edit_file_replaces_exactly_one_match_and_refuses_zero_or_many(llm):
    llm.add(
        reply(
            tool_use("write_file", path="notes/todo.txt", content="one two two\n"),
            tool_use("edit_file", path="notes/todo.txt", old="one", new="1"),
            tool_use("edit_file", path="notes/todo.txt", old="two", new="2"),
            tool_use("edit_file", path="notes/todo.txt", old="three", new="3"),
            tool_use("read_file", path="notes/todo.txt"),
            tool_use("list_files"),
        ),
        reply("Done."),
    )

    run = run_agent(llm, agent_spec())

    wrote, edited, many, none, content, listing = llm.requests[1].tool_results()
    assert (edited["content"], edited["is_error"]) == ("Edited notes/todo.txt.", False)
    assert many["is_error"] and "found 2 times" in many["content"]
    assert none["is_error"] and "not found" in none["content"]
    assert (content["content"], content["is_error"]) == ("1 two two\n", False)
    assert listing["content"] == "notes/\nnotes/todo.txt  (10 bytes)"
    assert run.result["files"][0]["content"] == "1 two two\n"


def test_max_turns_stops_the_loop_after_exactly_that_many_model_calls(llm):
    llm.fallback = lambda body: reply("Again.", tool_use("bash", command="true"))

    run = run_agent(llm, agent_spec(maxTurns=3))

    assert run.status == "completed"
    assert run.result["stopReason"] == "max_turns"
    assert run.result["turns"] == 3
    assert len(llm.requests) == 3
    assert len(run.of_type("tool_result")) == 2  # the last turn's call is not run


def test_spent_token_budget_fails_with_budget_exceeded_and_keeps_the_partial_result(llm):
    llm.add(
        reply(tool_use("bash", command="echo 1"), usage=(60, 10)),
        reply(tool_use("bash", command="echo 2"), usage=(25, 5)),
    )

    run = run_agent(llm, agent_spec(maxTokens=100))

    assert run.status == "failed"
    assert run.error["code"] == "budget_exceeded"
    assert llm.requests[1].body["max_tokens"] == 30  # what was left of the budget
    assert len(llm.requests) == 2
    assert run.result["usage"] == {"inputTokens": 85, "outputTokens": 15}
    assert run.result["stopReason"] == "budget_exceeded"


def test_proxy_budget_exceeded_fails_at_once_without_a_retry(llm):
    llm.add(Failure(429, "budget_exceeded", "The user's daily token budget is spent."))

    run = run_agent(llm, agent_spec())

    assert run.status == "failed"
    assert run.error == {
        "code": "budget_exceeded",
        "message": "The user's daily token budget is spent.",
    }
    assert len(llm.requests) == 1


def test_llm_not_configured_fails_with_the_proxys_message(llm):
    message = "No Anthropic API key is configured: set ANTHROPIC_API_KEY."
    llm.add(Failure(503, "llm_not_configured", message))

    run = run_agent(llm, agent_spec())

    assert (run.status, run.error) == ("failed", {"code": "llm_not_configured", "message": message})
    assert len(llm.requests) == 1


def test_a_request_the_api_refuses_fails_with_llm_error_without_a_retry(llm):
    llm.add(Failure(400, "invalid_request_error", "prompt is too long"))

    run = run_agent(llm, agent_spec())

    assert run.status == "failed"
    assert run.error["code"] == "llm_error"
    assert "prompt is too long" in run.error["message"]
    assert len(llm.requests) == 1


def test_rate_limit_is_retried_after_the_retry_after_delay(llm):
    llm.add(Failure(429, "rate_limit_error", "slow down", retry_after=1), reply("Made it."))

    run = run_agent(llm, agent_spec())

    assert (run.status, run.result["text"]) == ("completed", "Made it.")
    first, second = llm.requests
    assert second.at - first.at >= 0.95


def test_a_persistent_rate_limit_is_tried_four_times_in_all(llm):
    llm.fallback = lambda body: Failure(429, "rate_limit_error", "slow down", retry_after=0)

    run = run_agent(llm, agent_spec())

    assert (run.status, run.error["code"]) == ("failed", "llm_error")
    assert "gave up after 4 tries" in run.error["message"]
    assert len(llm.requests) == 4


def test_a_retry_after_past_the_deadline_fails_at_once(llm):
    llm.add(Failure(429, "rate_limit_error", "slow down", retry_after=100), reply("late"))
    started = time.monotonic()

    run = run_agent(llm, agent_spec(timeoutSeconds=60))

    assert (run.status, run.error["code"]) == ("failed", "llm_rate_limited")
    assert "retry after 100 s" in run.error["message"]
    assert len(llm.requests) == 1
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "failure",
    [
        Failure(
            429,
            "rate_limit_error",
            "You have reached your spend limit.",
            retry_after=0,
            headers={"x-should-retry": "false"},
        ),
        Failure(401, "authentication_error", "invalid x-api-key"),
        Failure(403, "permission_error", "not allowed"),
        Failure(400, "invalid_request_error", "messages: bad"),
    ],
    ids=["spend-limit", "authentication", "permission", "invalid-request"],
)
def test_errors_that_cannot_succeed_are_never_retried(llm, failure):
    llm.add(failure, reply("never sent"))

    run = run_agent(llm, agent_spec())

    assert (run.status, run.error["code"]) == ("failed", "llm_error")
    assert len(llm.requests) == 1


@pytest.mark.parametrize("status, kind", [(529, "overloaded_error"), (500, "api_error")])
def test_overload_and_server_errors_are_retried(llm, status, kind):
    llm.add(Failure(status, kind), reply("Made it."))

    run = run_agent(llm, agent_spec())

    assert (run.status, run.result["text"]) == ("completed", "Made it.")
    assert len(llm.requests) == 2


def test_system_prompt_history_and_new_prompt_are_sent(llm):
    history = [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
    ]

    def recall(body: dict):
        first_message = body["messages"][0]["content"]
        return reply(f"You first said: {first_message}")

    llm.add(recall)

    run = run_agent(llm, agent_spec("What did I say first?", history=history, system="Be brief."))

    (request,) = llm.requests
    assert request.body["system"] == "Be brief."
    assert request.body["model"] == "claude-sonnet-4-6"
    assert request.body["messages"] == [
        *history,
        {"role": "user", "content": "What did I say first?"},
    ]
    assert run.result["text"] == "You first said: My name is Ada."


def test_only_the_agents_tools_are_offered_and_others_are_refused(llm):
    llm.add(reply(tool_use("bash", command="id")), reply("I cannot run commands."))

    run = run_agent(llm, agent_spec(tools=["list_files", "read_file"]))

    first, second = llm.requests
    assert [tool["name"] for tool in first.body["tools"]] == ["read_file", "list_files"]
    (refused,) = second.tool_results()
    assert refused["is_error"] and "no tool 'bash'" in refused["content"]
    assert run.status == "completed"


def test_an_agent_without_tools_sends_no_tools(llm):
    llm.add(reply("Just talking."))

    run_agent(llm, agent_spec(tools=[]))

    assert "tools" not in llm.requests[0].body


def test_each_step_emits_its_events_in_order(llm):
    llm.add(
        reply("Listing.", tool_use("bash", id="toolu_1", command="echo hi"), usage=(20, 4)),
        reply("There it is.", usage=(30, 3)),
    )

    run = run_agent(llm, agent_spec())

    assert run.events == [
        ("assistant", {"text": "Listing."}),
        ("tool_call", {"id": "toolu_1", "name": "bash", "input": {"command": "echo hi"}}),
        ("tool_result", {"id": "toolu_1", "name": "bash", "output": "hi", "isError": False}),
        (
            "usage",
            {"inputTokens": 20, "outputTokens": 4, "totalInputTokens": 20, "totalOutputTokens": 4},
        ),
        ("assistant", {"text": "There it is."}),
        (
            "usage",
            {"inputTokens": 30, "outputTokens": 3, "totalInputTokens": 50, "totalOutputTokens": 7},
        ),
    ]


def test_tool_result_events_are_truncated(llm):
    llm.add(reply(tool_use("python", code="print('x' * 20000)")), reply("Long."))

    run = run_agent(llm, agent_spec())

    (event,) = run.of_type("tool_result")
    assert len(event["output"]) < 4200
    assert len(llm.requests[1].tool_results()[0]["content"]) == 20000  # the model gets it all


def test_the_task_token_is_the_api_key_and_runner_secrets_never_reach_tools(llm, monkeypatch):
    monkeypatch.setenv("TASK_TOKEN", TOKEN)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-never-in-the-runner")
    script = "env; for f in /proc/*/environ; do tr '\\0' '\\n' < $f; done 2>/dev/null"
    llm.add(reply(tool_use("bash", command=script)), reply("Seen."))

    run = run_agent(llm, agent_spec())

    assert [credential(request) for request in llm.requests] == [TOKEN, TOKEN]
    (output,) = llm.requests[1].tool_results()
    assert "PATH=/opt/venv/bin:/usr/local/bin" in output["content"]  # env did run
    for secret in ("TASK_TOKEN", TOKEN, "sk-ant-canary"):
        assert secret not in output["content"]
        assert secret not in str(run.events)


def test_wall_time_passing_ends_the_task_timed_out(llm):
    llm.add(reply(tool_use("bash", command="sleep 30")))
    started = time.monotonic()

    run = run_agent(llm, agent_spec(timeoutSeconds=2))

    assert run.status == "timed_out"
    assert run.error["code"] == "timeout"
    assert time.monotonic() - started < 10
    (event,) = run.of_type("tool_result")
    assert event["isError"]


def test_cancel_during_a_model_call_ends_the_loop_without_waiting_for_it(llm):
    cancel, release = threading.Event(), threading.Event()

    def answer_late(body: dict):
        cancel.set()
        release.wait(30)  # the model is slow; the runner must not wait for it
        return reply("Too late.")

    llm.add(answer_late)
    started = time.monotonic()
    try:
        run = run_agent(llm, agent_spec(), cancel=cancel)
    finally:
        release.set()

    assert (run.status, run.result["stopReason"]) == ("completed", "cancelled")
    assert time.monotonic() - started < 5
    assert run.result["turns"] == 0


def test_cancel_stops_a_running_tool(llm):
    cancel = threading.Event()
    llm.add(reply(tool_use("bash", command="sleep 30")))
    started = time.monotonic()

    def cancel_on_tool_call(kind: str, data: dict) -> None:
        if kind == "tool_call":
            cancel.set()

    run = run_agent(llm, agent_spec(), cancel=cancel, on_event=cancel_on_tool_call)

    assert (run.status, run.result["stopReason"]) == ("completed", "cancelled")
    assert time.monotonic() - started < 5
    (event,) = run.of_type("tool_result")
    assert event["isError"] and "cancelled" in event["output"]
    assert len(llm.requests) == 1
