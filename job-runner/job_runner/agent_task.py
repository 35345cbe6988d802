"""Runs a `kind: "agent"` task: Claude's tool loop, with the tools in the sandbox.

The runner talks to Claude with the official `anthropic` SDK, through the API's LLM
proxy: base_url is `{API_URL}/internal/v1/llm` and the "API key" is the task token.
The proxy checks the token, the model and the budgets, adds the real key and
forwards; no real key ever reaches this process (DESIGN section 8).

The SDK is imported inside the functions that use it, never at module level: it
costs ~0.3 s, and code tasks, whose start-up is measured (`make bench`), must not
pay for it (tests/unit/test_layering.py holds this).
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time

from job_runner.logs import log
from job_runner.outputs import remove_tree
from job_runner.sandbox import Limits
from job_runner.task_access import TaskAccess
from job_runner.task_files import (
    InputsUnavailable,
    restore_workspace,
    save_turn_workspace,
    store_outputs,
)
from job_runner.task_space import TaskSpace
from job_runner.tools import Toolbox, clip
from job_runner.workspace import make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from job_runner.file_channel import FileChannel
    from job_runner.sandbox import Sandbox
    from job_runner.spec import TaskSpec

    Emit = Callable[[str, dict | str], None]

# One model call may take this long at most (and never past the task's deadline).
LLM_CALL_TIMEOUT_SECONDS = 300
# One tool call may take this long at most (and never past the task's deadline).
TOOL_TIMEOUT_SECONDS = 60
# Rate limits, overload and server errors: this many attempts per model call in all.
# This loop is the one retry layer of the messages engine: the LLM proxy passes the
# upstream's answer (and its retry-after) back without retrying itself.
LLM_ATTEMPTS = 4
RETRYABLE_STATUSES = (408, 429, 500, 502, 503, 504, 529)
# How often a pending model call looks at `cancel`.
CANCEL_POLL_SECONDS = 0.1
# Events are for people following along; each stays small (Firestore documents).
MAX_EVENT_CHARS = 4096
MAX_TEXT_EVENT_CHARS = 32_768


class _Stop(Exception):
    """Ends the loop: status, error code and message (the message None when the
    status is not a failure)."""

    def __init__(self, status: str, code: str, message: str | None = None) -> None:
        super().__init__(message or code)
        self.status, self.code, self.message = status, code, message


def run_agent_task(
    spec: TaskSpec,
    sandbox: Sandbox,
    api_url: str,
    token: str,
    emit: Emit,
    cancel: threading.Event,
    channel: FileChannel | None = None,
    access: TaskAccess | None = None,
) -> tuple[str, dict | None, dict | None]:
    """Returns (status, result, error) as the API's result endpoint takes them.
    `access`: the task's secrets and egress, for the programs its tools run.

    `completed` covers a cancelled loop too (stopReason "cancelled"): main.py knows
    why `cancel` was set and reports accordingly, as it does for code tasks.
    """
    task_input = spec["input"]
    deadline = time.monotonic() + task_input["timeoutSeconds"]
    limits = Limits(
        wall_seconds=TOOL_TIMEOUT_SECONDS,
        memory_mb=task_input["memoryMb"],
        max_output_bytes=spec["limits"]["maxOutputBytes"],
        network=spec["limits"]["network"],
    )
    disk_mb = spec["limits"]["diskMb"]
    # The workspace archive lives beside the task's space, not in it: it must not take
    # the task's own disk (a tmpfs of diskMb).
    archives = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "snapshot-")
    os.chmod(archives, 0o711)  # the sandbox uid reads the archive it restores
    try:
        with TaskSpace.create(
            spec["id"],
            "agent-",
            memory_mb=limits.memory_mb,
            disk_mb=disk_mb,
            max_processes=limits.max_processes,
        ) as space:
            limits = space.bound(limits)
            workspace = space.workspace
            if channel is not None:
                try:
                    restore_workspace(spec, channel, archives, workspace, space.uid)
                except (InputsUnavailable, OSError) as problem:
                    message = f"The conversation's workspace could not be restored: {problem}"
                    return (
                        "failed",
                        None,
                        {"code": "storage_unavailable", "message": message[:2000]},
                    )
            access = access or TaskAccess()
            try:
                toolbox = Toolbox(
                    sandbox,
                    workspace,
                    limits,
                    spec["agent"]["tools"],
                    cancel,
                    space=space,
                    access=access,
                )
            except ValueError as problem:  # the API validates tools; a mismatch is a bug
                return "failed", None, {"code": "invalid_task", "message": str(problem)}
            client = _make_client(api_url, token)
            try:
                with access.opened(space):
                    loop = AgentLoop(spec, client, toolbox, emit, cancel, deadline)
                    status, error = loop.run()
            finally:
                client.close()
            result = loop.result()
            if status == "completed" and channel is not None and not cancel.is_set():
                status, error = save_turn_workspace(spec, channel, archives, workspace, result)
            result.update(store_outputs(spec, channel, workspace))
            return status, result, error
    finally:
        remove_tree(archives)


def _make_client(api_url: str, token: str):
    import anthropic

    # max_retries=0: the SDK would retry every 429, and a 429 from our proxy may be
    # `budget_exceeded`, which must never be retried. AgentLoop._call_model retries
    # the rest itself, honouring retry-after and the task's deadline.
    return anthropic.Anthropic(
        api_key=token,
        base_url=f"{api_url.rstrip('/')}/internal/v1/llm",
        max_retries=0,
        timeout=LLM_CALL_TIMEOUT_SECONDS,
    )


class AgentLoop:
    """One agent turn: the model and the tools, until the model is done or a limit hits."""

    def __init__(self, spec, client, toolbox: Toolbox, emit: Emit, cancel, deadline: float):
        task_input, agent = spec["input"], spec["agent"]
        self.client, self.toolbox, self.emit, self.cancel = client, toolbox, emit, cancel
        self.deadline = deadline
        self.timeout_seconds = task_input["timeoutSeconds"]
        self.max_turns = task_input["maxTurns"]
        self.max_tokens = task_input["maxTokens"]
        self.model = agent["model"]
        self.max_response_tokens = agent["maxResponseTokens"]
        self.system = agent.get("systemPrompt") or ""
        self.messages = _initial_messages(spec.get("history") or [], task_input["prompt"])
        self.turns = self.input_tokens = self.output_tokens = 0
        self.text = ""
        self.stop_reason: str | None = None

    def result(self) -> dict:
        return {
            "text": self.text,
            "usage": {"inputTokens": self.input_tokens, "outputTokens": self.output_tokens},
            "turns": self.turns,
            "stopReason": self.stop_reason,
        }

    def run(self) -> tuple[str, dict | None]:
        try:
            while self._turn():
                pass
        except _Stop as stop:
            self.stop_reason = stop.code
            error = {"code": stop.code, "message": stop.message[:2000]} if stop.message else None
            return stop.status, error
        return "completed", None

    def _turn(self) -> bool:
        """One model call and its tool calls; False once the loop is done."""
        self._check_time()
        budget_left = self.max_tokens - self.input_tokens - self.output_tokens
        if budget_left <= 0:
            raise self._budget_spent()
        max_tokens = min(self.max_response_tokens, budget_left)
        response = self._call_model(max_tokens)
        self.turns += 1
        usage = response.usage
        spent_in = usage.input_tokens
        spent_in += (usage.cache_creation_input_tokens or 0) + (usage.cache_read_input_tokens or 0)
        self.input_tokens += spent_in
        self.output_tokens += usage.output_tokens
        texts = [block.text for block in response.content if block.type == "text"]
        for text in texts:
            self.emit("assistant", {"text": clip(text, MAX_TEXT_EVENT_CHARS)})
        self.text = "\n".join(texts)
        try:
            return self._after(response, max_tokens < self.max_response_tokens)
        finally:  # last in the turn's events, however the turn ended
            turn = {"inputTokens": spent_in, "outputTokens": usage.output_tokens}
            total = {"totalInputTokens": self.input_tokens, "totalOutputTokens": self.output_tokens}
            self.emit("usage", {**turn, **total})

    def _after(self, response, clamped_by_budget: bool) -> bool:
        """Decide what the response means; run its tool calls if the loop goes on."""
        if response.stop_reason != "tool_use":
            self.stop_reason = response.stop_reason
            if response.stop_reason == "max_tokens" and clamped_by_budget:
                raise self._budget_spent()
            return False
        # The pending tool calls are not run when no model call may follow: their
        # results would go nowhere.
        if self.turns >= self.max_turns:
            self.stop_reason = "max_turns"
            return False
        if self.input_tokens + self.output_tokens >= self.max_tokens:
            raise self._budget_spent()
        results = [self._use_tool(b) for b in response.content if b.type == "tool_use"]
        assistant = [block.model_dump(mode="json", exclude_none=True) for block in response.content]
        self.messages += [
            {"role": "assistant", "content": assistant},
            {"role": "user", "content": results},
        ]
        return True

    def _use_tool(self, block) -> dict:
        self._check_time()
        tool_input = block.input if isinstance(block.input, dict) else {}
        # Tool inputs can be long (write_file's content): events show their start.
        shown = {
            k: clip(v, MAX_EVENT_CHARS) if isinstance(v, str) else v for k, v in tool_input.items()
        }
        call = {"id": block.id, "name": block.name}
        self.emit("tool_call", {**call, "input": shown})
        wall = min(TOOL_TIMEOUT_SECONDS, self.deadline - time.monotonic())
        outcome = self.toolbox.run(block.name, tool_input, wall)
        output = clip(outcome.output, MAX_EVENT_CHARS)
        self.emit("tool_result", {**call, "output": output, "isError": outcome.is_error})
        self._check_time()
        return {
            "type": "tool_result",
            "tool_use_id": block.id,
            "content": outcome.output,
            "is_error": outcome.is_error,
        }

    def _check_time(self) -> None:
        if self.cancel.is_set():
            raise _Stop("completed", "cancelled")
        if time.monotonic() >= self.deadline:
            message = f"The agent ran longer than {self.timeout_seconds} s."
            raise _Stop("timed_out", "timeout", message)

    def _budget_spent(self) -> _Stop:
        used = self.input_tokens + self.output_tokens
        message = f"The task's token budget ({self.max_tokens}) is spent: {used} tokens used."
        return _Stop("failed", "budget_exceeded", message)

    def _call_model(self, max_tokens: int):
        """One model call with bounded retries; raises _Stop when it cannot succeed."""
        import anthropic

        request = {"model": self.model, "max_tokens": max_tokens, "messages": self.messages}
        if self.system:
            request["system"] = self.system
        if self.toolbox.names:
            request["tools"] = self.toolbox.schemas()
        for attempt in range(LLM_ATTEMPTS):
            self._check_time()
            timeout = min(LLM_CALL_TIMEOUT_SECONDS, self.deadline - time.monotonic())
            call = functools.partial(self.client.messages.create, **request, timeout=timeout)
            try:
                return self._interruptible(call)
            except anthropic.APIStatusError as error:
                kind, message = _error_of(error)
                if kind in ("budget_exceeded", "llm_not_configured"):
                    raise _Stop("failed", kind, message) from None
                problem = f"the LLM proxy answered {error.status_code} {kind}: {message}"
                # Invalid requests, authentication, and what the upstream says cannot
                # succeed (a spend limit: x-should-retry: false) are never retried.
                hopeless = error.response.headers.get("x-should-retry") == "false"
                if error.status_code not in RETRYABLE_STATUSES or hopeless:
                    raise _Stop("failed", "llm_error", problem) from None
                delay = _retry_after(error.response.headers)
                if delay is not None and time.monotonic() + delay >= self.deadline:
                    raise _Stop(
                        "failed",
                        "llm_rate_limited",
                        f"{problem}; it asked to retry after {delay:g} s, past the task's deadline",
                    ) from None
            except anthropic.APIConnectionError as error:  # timeouts included
                self._check_time()
                problem, delay = f"the LLM proxy could not be reached: {error}", None
            if delay is None:
                delay = 0.5 * 2**attempt * random.uniform(0.75, 1.25)
            if attempt == LLM_ATTEMPTS - 1:
                raise _Stop("failed", "llm_error", f"gave up after {attempt + 1} tries: {problem}")
            if time.monotonic() + delay >= self.deadline:
                raise _Stop("failed", "llm_error", f"no time left to retry: {problem}")
            log.warning("model call failed (%s); retrying in %.1f s", problem, delay)
            if self.cancel.wait(delay):
                self._check_time()
        raise AssertionError("unreachable")

    def _interruptible(self, call):
        """Run `call` in a thread and stop waiting when `cancel` is set: a model call
        may take minutes, and a cancelled task (or SIGTERM, with its 10 s grace)
        should not wait for it. The abandoned call ends with its own timeout."""
        outcome: dict = {}
        done = threading.Event()

        def target() -> None:
            try:
                outcome["value"] = call()
            except BaseException as error:  # handed to the waiting thread
                outcome["error"] = error
            finally:
                done.set()

        threading.Thread(target=target, name="llm-call", daemon=True).start()
        while not done.wait(CANCEL_POLL_SECONDS):
            self._check_time()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


def _initial_messages(history: list[dict], prompt: str) -> list[dict]:
    """The conversation so far, then the new prompt. The Messages API starts with a
    user turn and refuses empty text, so leading assistant and empty turns are
    dropped; consecutive user turns (a reply that never came) are merged by the API."""
    messages = [
        {"role": item["role"], "content": item["content"]}
        for item in history
        if item.get("role") in ("user", "assistant")
        and isinstance(item.get("content"), str)
        and item["content"].strip()
    ]
    while messages and messages[0]["role"] == "assistant":
        messages.pop(0)
    return [*messages, {"role": "user", "content": prompt}]


def _error_of(error) -> tuple[str, str]:
    """(error.type, error.message) from an error body in the Messages API's shape,
    `{"type": "error", "error": {"type", "message"}}`, which our proxy also uses."""
    body = error.body if isinstance(error.body, dict) else {}
    nested = body.get("error")
    inner = nested if isinstance(nested, dict) else body
    return str(inner.get("type") or "unknown_error"), str(inner.get("message") or error.message)


def _retry_after(headers) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds; dates are not used)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            return max(0.0, float(headers.get(name)) * scale)
        except (TypeError, ValueError):
            continue
    return None
