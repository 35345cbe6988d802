"""The Claude Code engine's parts on their own: the stream-json mapping, what the
sandbox gives the CLI (no RLIMIT_AS, its env, every output chunk), and a missing CLI.
End to end with the real CLI: tests/e2e/test_claude_code.py."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
from typing import Any, cast

import pytest
from job_runner.claude_code import cli_arguments, run_claude_code_task
from job_runner.claude_stream import DELTA_INTERVAL_SECONDS, StreamMapper
from job_runner.llm_relay import LlmRelay
from job_runner.sandbox import BubblewrapSandbox, Limits
from job_runner.spec import TaskSpec
from job_runner.workspace import prepare_workspace

from devtools.scripted_anthropic import ScriptedAnthropic, reply


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def line(**fields) -> bytes:
    return json.dumps(fields).encode() + b"\n"


def text_delta(text: str) -> bytes:
    delta = {"type": "text_delta", "text": text}
    return line(type="stream_event", event={"type": "content_block_delta", "delta": delta})


def mapped(*chunks: bytes, clock=None) -> tuple[StreamMapper, list[tuple[str, Any]]]:
    events: list[tuple[str, Any]] = []
    mapper = StreamMapper(lambda kind, data: events.append((kind, data)), clock or Clock())
    for chunk in chunks:
        mapper.feed(chunk)
    mapper.close()
    return mapper, events


def test_text_deltas_are_batched_to_a_few_events_a_second():
    clock = Clock()
    events: list[tuple[str, Any]] = []
    mapper = StreamMapper(lambda kind, data: events.append((kind, data)), clock)
    for step in range(100):  # 100 tokens over one second
        mapper.feed(text_delta(f"t{step} "))
        clock.now += 0.01
    mapper.close()
    deltas = [data["text"] for kind, data in events if kind == "assistant_delta"]
    assert len(deltas) <= 1 / DELTA_INTERVAL_SECONDS + 2
    assert "".join(deltas) == "".join(f"t{step} " for step in range(100))


def test_lines_split_across_chunks_are_joined():
    whole = text_delta("hello")
    _, events = mapped(whole[:7], whole[7:])
    assert events == [("assistant_delta", {"text": "hello"})]


def test_assistant_tool_call_and_tool_result_lines_become_events():
    assistant = {
        "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
        ],
        "usage": {"input_tokens": 99, "output_tokens": 1},  # repeated per block: not summed
    }
    result_block = {
        "type": "tool_result",
        "tool_use_id": "toolu_1",
        "content": [{"type": "text", "text": "a.txt"}],
        "is_error": False,
    }
    mapper, events = mapped(
        line(type="assistant", message=assistant),
        line(type="user", message={"role": "user", "content": [result_block]}),
        line(type="result", subtype="success", is_error=False, result="Done.", num_turns=2),
    )
    assert events == [
        ("assistant", {"text": "Checking."}),
        ("tool_call", {"id": "toolu_1", "name": "Bash", "input": {"command": "ls"}}),
        ("tool_result", {"id": "toolu_1", "output": "a.txt", "isError": False}),
    ]
    assert mapper.result is not None
    assert mapper.result["result"] == "Done." and mapper.texts == ["Checking."]


def test_init_and_api_retry_lines_become_status_events():
    _, events = mapped(
        line(type="system", subtype="init", session_id="s", claude_code_version="2.1.332"),
        line(type="system", subtype="api_retry", attempt=1, max_retries=3, error="rate_limit"),
        b"not json at all\n",
    )
    assert [data["state"] for _, data in events] == ["engine_started", "model_call_retrying"]
    assert events[0][1]["version"] == "2.1.332"


def test_tools_map_onto_claude_codes_and_the_session_is_resumed_when_it_exists():
    spec = cast(  # only what cli_arguments reads
        TaskSpec,
        {
            "agent": {
                "model": "claude-sonnet-4-6",
                "tools": ["bash", "read_file"],
                "systemPrompt": "Be brief.",
            },
            "input": {"maxTurns": 4},
        },
    )
    first = cli_arguments(spec, "sid", resume=False)
    assert first[first.index("--tools") + 1] == "Bash,Read,Task"
    assert first[first.index("--session-id") + 1] == "sid" and "--resume" not in first
    assert first[first.index("--append-system-prompt") + 1] == "Be brief."
    assert first[first.index("--max-turns") + 1] == "4"
    assert first[first.index("--permission-mode") + 1] == "bypassPermissions"
    later = cli_arguments(spec, "sid", resume=True)
    assert later[later.index("--resume") + 1] == "sid" and "--session-id" not in later


def test_the_cli_is_given_the_tasks_remaining_budget_in_dollars():
    spec = cast(  # only what cli_arguments reads
        TaskSpec,
        {
            "agent": {"model": "claude-sonnet-4-6", "tools": []},
            "input": {"maxTurns": 4},
            "limits": {"maxBudgetUsd": 0.25},
        },
    )
    arguments = cli_arguments(spec, "sid", resume=False)
    assert arguments[arguments.index("--max-budget-usd") + 1] == "0.250000"
    spent = cast(
        TaskSpec, {**spec, "limits": {"maxBudgetUsd": 0.0}}
    )  # the proxy refuses; the CLI is not told 0
    assert "--max-budget-usd" not in cli_arguments(spent, "sid", resume=False)


@pytest.fixture
def workspace():
    # Not under tmp_path: pytest's base directory is 0700, and the sandbox's uid must
    # reach the workspace.
    root = tempfile.mkdtemp(prefix="engine-test-")
    os.chmod(root, 0o711)
    yield prepare_workspace(root)[0]
    shutil.rmtree(root, ignore_errors=True)


def test_the_cli_gets_no_address_space_limit_its_env_and_every_output_chunk(workspace):
    chunks: list[bytes] = []
    script = (
        "import os, sys; print(open('/proc/self/limits').read()); "
        "print(os.environ['HOME']); sys.stdout.write('x' * 5000)"
    )
    limits = Limits(
        wall_seconds=20,
        memory_mb=256,
        max_output_bytes=100,
        address_space_limit=False,
        report_all_output=True,
    )
    outcome = BubblewrapSandbox().run(
        ["python3", "-c", script],
        limits,
        workspace=workspace,
        on_output=lambda stream, chunk: chunks.append(chunk),
        env={"HOME": "/workspace/.engine/home"},
    )
    assert outcome.exit_code == 0, outcome
    seen = b"".join(chunks).decode()
    (address_space,) = [row for row in seen.splitlines() if row.startswith("Max address space")]
    assert address_space.split()[3] == "unlimited"
    assert "/workspace/.engine/home" in seen
    assert seen.endswith("x" * 5000)  # past max_output_bytes, still reported
    assert len(outcome.stdout) == 100 and outcome.stdout_truncated


def test_other_programs_keep_their_address_space_limit(workspace):
    outcome = BubblewrapSandbox().run(
        ["python3", "-c", "print(open('/proc/self/limits').read())"],
        Limits(wall_seconds=20, memory_mb=256),
        workspace=workspace,
    )
    (address_space,) = [
        row for row in outcome.stdout.decode().splitlines() if row.startswith("Max address space")
    ]
    assert address_space.split()[3] == str(256 * 1024 * 1024)


def test_a_missing_cli_fails_the_task_engine_unavailable_without_a_fallback(monkeypatch):
    monkeypatch.setenv("CLAUDE_CODE_CLI", "/nonexistent/claude")
    spec = cast(TaskSpec, {"id": "t", "input": {}, "agent": {}, "limits": {}})  # never read
    status, result, error = run_claude_code_task(
        spec, BubblewrapSandbox(), "http://127.0.0.1:9", "tt1.x", lambda *a: None, threading.Event()
    )
    assert error is not None
    assert (status, result, error["code"]) == ("failed", None, "engine_unavailable")
    assert "/nonexistent/claude" in error["message"] and "claude-agent-sdk" in error["message"]


def post_over_socket(path: str, url_path: str, key: str, body: dict) -> tuple[int, bytes]:
    data = json.dumps(body).encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.connect(path)
        head = f"POST {url_path} HTTP/1.1\r\nHost: x\r\nx-api-key: {key}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
        conn.sendall((head + "Connection: close\r\n\r\n").encode() + data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest


def test_the_relay_takes_only_this_runs_key_and_sends_the_task_token_on():
    calls: list[dict] = []
    with ScriptedAnthropic([reply("relayed")]) as upstream, tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "llm.sock")
        relay = LlmRelay(path, upstream.url, "tt1.the-task-token", calls.append, run_key="k1")
        relay.start()
        try:
            body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            assert post_over_socket(path, "/v1/messages", "other", body)[0] == 401
            assert post_over_socket(path, "/v1/models", "k1", body)[0] == 404
            status, answer = post_over_socket(path, "/v1/messages?beta=true", "k1", body)
        finally:
            relay.close()
        assert status == 200 and b"relayed" in answer
        (sent,) = upstream.requests
        assert sent.path == "/internal/v1/llm/v1/messages"
        assert sent.headers["x-api-key"] == "tt1.the-task-token"
        assert calls == [
            {"inputTokens": 10, "outputTokens": 5, "totalInputTokens": 10, "totalOutputTokens": 5}
        ]


def test_the_relay_caps_its_connections_and_closes_idle_ones():
    with (
        ScriptedAnthropic([reply("after the flood")]) as upstream,
        tempfile.TemporaryDirectory() as d,
    ):
        path = os.path.join(d, "llm.sock")
        relay = LlmRelay(
            path, upstream.url, "tt1.x", lambda usage: None, run_key="k1", max_connections=4,
            read_timeout=1.0,
        )  # fmt: skip
        relay.start()
        threads_before = threading.active_count()
        idle = []
        try:
            for _ in range(40):  # idle connections, as a hostile program would hold
                conn = socket.socket(socket.AF_UNIX)
                conn.connect(path)
                idle.append(conn)
            # Past the cap, connections are closed at once, with no thread made.
            closed = 0
            for conn in idle[4:]:
                conn.settimeout(5)
                closed += conn.recv(1) == b""
            assert closed == 36
            assert threading.active_count() <= threads_before + 4
            # The four held ones are closed after the read timeout, freeing the slots.
            for conn in idle[:4]:
                conn.settimeout(10)
                assert conn.recv(1) == b""
            body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            status, answer = post_over_socket(path, "/v1/messages", "k1", body)
        finally:
            for conn in idle:
                conn.close()
            relay.close()
        assert status == 200 and b"after the flood" in answer
