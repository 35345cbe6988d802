"""Runs a `kind: "agent"` task with `engine: "claude-code"`: the real Claude Code CLI,
inside the sandbox (DESIGN section 12).

- The CLI is the one the locked `claude-agent-sdk` wheel bundles
  (`claude_agent_sdk/_bundled/claude`, a self-contained executable), or
  CLAUDE_CODE_CLI. Missing, the task fails `engine_unavailable`: never a fallback
  to the other engine.
- It runs as the sandbox's unprivileged uid (Claude Code refuses
  bypassPermissions as root; the sandbox is the boundary), cwd /workspace,
  HOME=/workspace/.engine/home (its session files travel with the conversation's
  workspace), a private /tmp, no network, no RLIMIT_AS (see sandbox.Limits).
- Its one way out: loopback_forwarder.py inside pipes 127.0.0.1:PORT to a Unix
  socket bound in; outside, llm_relay.py adds the task token and calls the LLM
  proxy. Inside, the "API key" is a placeholder; neither the Anthropic key nor the
  task token is in any process, file or environment the sandbox can read. A task
  with an allow-list also gets the egress proxy (task_access.py) as HTTPS_PROXY, and
  its owner's secrets as variables: the CLI's Bash tool inherits both.
- A conversation's turns continue one session: its id is derived from the
  conversation's, `--session-id` on the first turn, `--resume` once the session's
  file is in the (restored) workspace.
"""

from __future__ import annotations

import os
import secrets
import threading
import uuid

from job_runner.claude_stream import StreamMapper
from job_runner.code_task import disk_exceeded_error, memory_exceeded_error
from job_runner.llm_relay import LlmRelay
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
from job_runner.workspace import ensure_dirs, exists_beneath, make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from job_runner.file_channel import FileChannel
    from job_runner.sandbox import Sandbox
    from job_runner.spec import TaskSpec

    Emit = Callable[[str, dict | str], None]

ENGINE_DIR = "/engine"
CLI_IN_SANDBOX = f"{ENGINE_DIR}/claude"
CHANNEL_IN_SANDBOX = f"{ENGINE_DIR}/channel"
SOCKET_NAME = "llm.sock"
ENGINE_STATE = ".engine"  # in /workspace; never listed as a user file
HOME_IN_SANDBOX = f"/workspace/{ENGINE_STATE}/home"
# Session ids are UUIDs; this namespace makes one per conversation, reproducibly.
SESSION_NAMESPACE = uuid.UUID("6b3f1d2e-8c4a-4e59-9a7b-2f0c5d1e8a93")
# Claude Code's own API retries: the only retry layer for this engine (issue 9).
MAX_RETRIES = 3
MAX_PROCESSES = 512  # RLIMIT_NPROC counts threads; Bun and its tools use many
STDERR_TAIL_CHARS = 2000
FIX_CLI = (
    "install the locked claude-agent-sdk (uv sync, or the runner image), whose wheel "
    "bundles the Claude Code CLI, or point CLAUDE_CODE_CLI at the binary"
)
# Our tool names (the agent's `tools`) as Claude Code's built-in tools.
TOOL_NAMES = {
    "bash": ("Bash",),
    "python": ("Bash",),
    "read_file": ("Read",),
    "write_file": ("Write",),
    "edit_file": ("Edit", "NotebookEdit"),
    "list_files": ("Glob", "Grep"),
}
ALWAYS_TOOLS = ("Task",)  # sub-agents: the same tools, the same sandbox


class EngineUnavailable(Exception):
    """The Claude Code CLI is not installed where the runner looks."""


def find_cli() -> str:
    """The CLI's path.

    :raises EngineUnavailable: it is not there; the message says how to fix it.
    """
    path = os.environ.get("CLAUDE_CODE_CLI")
    if not path:
        import importlib.util  # only here: code tasks never pay for it

        spec = importlib.util.find_spec("claude_agent_sdk")
        if spec is None or not spec.submodule_search_locations:
            raise EngineUnavailable(f"the Claude Code CLI was not found: {FIX_CLI}")
        path = os.path.join(list(spec.submodule_search_locations)[0], "_bundled", "claude")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise EngineUnavailable(f"the Claude Code CLI is not at {path}: {FIX_CLI}")
    return path


def session_id_for(spec: TaskSpec) -> str:
    """One session per conversation; a lone task gets its own."""
    return str(uuid.uuid5(SESSION_NAMESPACE, spec.get("conversationId") or spec["id"]))


def run_claude_code_task(
    spec: TaskSpec,
    sandbox: Sandbox,
    api_url: str,
    token: str,
    emit: Emit,
    cancel: threading.Event,
    channel: FileChannel | None = None,
    access: TaskAccess | None = None,
) -> tuple[str, dict | None, dict | None]:
    """Returns (status, result, error) as the API's result endpoint takes them;
    `completed` with stopReason "cancelled" when `cancel` stopped it (main.py knows
    why and reports accordingly). `access`: the task's secrets and egress."""
    access = access or TaskAccess()
    try:
        cli = find_cli()
    except EngineUnavailable as missing:
        return "failed", None, {"code": "engine_unavailable", "message": str(missing)}
    # The workspace archive lives beside the task's space, not in it (agent_task.py).
    archives = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "snapshot-")
    os.chmod(archives, 0o711)  # the sandbox uid reads the archive it restores
    try:
        return _in_task_space(
            spec, sandbox, cli, api_url, token, emit, cancel, channel, archives, access
        )
    finally:
        remove_tree(archives)


def _in_task_space(spec, sandbox, cli, api_url, token, emit, cancel, channel, archives, access):
    task_input = spec["input"]
    # The task's bounds (task_space.py): a memory and pids cgroup where one can be
    # made, and one tmpfs for /workspace, /tmp and /dev/shm where the runner may mount.
    with TaskSpace.create(
        spec["id"],
        "agent-",
        memory_mb=task_input["memoryMb"],
        disk_mb=spec["limits"]["diskMb"],
        max_processes=MAX_PROCESSES,
    ) as space:
        if channel is not None:
            try:  # the conversation's files, Claude Code's session (.engine/) among them
                restore_workspace(spec, channel, archives, space.workspace, space.uid)
            except (InputsUnavailable, OSError) as problem:
                message = f"The conversation's workspace could not be restored: {problem}"
                return "failed", None, {"code": "storage_unavailable", "message": message[:2000]}
        socket_dir = make_private_dir(space.root, "channel-")
        relay = LlmRelay(
            os.path.join(socket_dir, SOCKET_NAME),
            api_url,
            token,
            lambda usage: emit("usage", usage),
            run_key=f"sandbox-run-{secrets.token_hex(16)}",
        )
        os.chmod(os.path.join(socket_dir, SOCKET_NAME), 0o600)
        if space.uid is not None:  # only the sandbox's uid may connect
            for path in (socket_dir, os.path.join(socket_dir, SOCKET_NAME)):
                os.chown(path, space.uid, space.uid)
        relay.start()
        try:
            with access.opened(space):
                status, result, error = _run(
                    spec, sandbox, cli, space, socket_dir, relay, emit, cancel, access
                )
        finally:
            relay.close()
        if status == "completed" and channel is not None and not cancel.is_set():
            status, error = save_turn_workspace(spec, channel, archives, space.workspace, result)
        result.update(store_outputs(spec, channel, space.workspace))
        return status, result, error


def _run(spec, sandbox, cli, space: TaskSpace, socket_dir: str, relay, emit, cancel, access):
    workspace = space.workspace
    # The sandbox's uid writes its session files there. No path is followed: the
    # sandbox may have made .engine a symlink to a host directory (workspace.py).
    owner = os.lstat(workspace).st_uid if os.geteuid() == 0 else None
    replaced = ensure_dirs(workspace, [ENGINE_STATE, "home"], owner)
    if replaced:
        emit("log", f"the workspace's {'/'.join(replaced)} was not a directory: replaced")
    session = session_id_for(spec)
    session_file = [ENGINE_STATE, "home", ".claude", "projects", "-workspace", f"{session}.jsonl"]
    resume = exists_beneath(workspace, session_file)
    mapper = StreamMapper(emit)
    stderr = bytearray()

    def on_output(stream: str, chunk: bytes) -> None:
        if stream == "stdout":
            mapper.feed(chunk)
        else:
            stderr[:] = (stderr + chunk)[-4 * STDERR_TAIL_CHARS :]

    task_input = spec["input"]
    limits = Limits(
        wall_seconds=task_input["timeoutSeconds"],
        memory_mb=task_input["memoryMb"],
        max_processes=MAX_PROCESSES,
        max_output_bytes=spec["limits"]["maxOutputBytes"],
        network=spec["limits"]["network"],
        address_space_limit=False,  # bounded by the cgroup, or not per process at all
        report_all_output=True,
    )
    limits = space.bound(limits)
    launch = access.launch(
        [CLI_IN_SANDBOX, *cli_arguments(spec, session, resume)],
        _prompt(spec, resume).encode(),
        llm_socket=f"{CHANNEL_IN_SANDBOX}/{SOCKET_NAME}",
    )
    outcome = sandbox.run(
        launch.command,
        limits,
        workspace=workspace,
        stdin=launch.stdin,
        readonly_binds={
            CLI_IN_SANDBOX: cli,
            CHANNEL_IN_SANDBOX: socket_dir,
            **launch.readonly_binds,
        },
        on_output=on_output,
        cancel=cancel,
        scratch=space.scratch,
        cgroup=space.cgroup,
        env=engine_env(spec["agent"], relay.run_key),
    )
    mapper.close()
    result = _result(mapper, relay)
    tail = stderr.decode("utf-8", "replace")[-STDERR_TAIL_CHARS:].strip()
    return _report(outcome, mapper.result or {}, relay, result, tail, task_input, space.disk_mb)


def _report(
    outcome, line: dict, relay: LlmRelay, result: dict, stderr_tail: str, task_input, disk_mb
):
    """(status, result, error) from how the CLI ended and what it said last."""
    if relay.refusal is not None:
        return "failed", {**result, "stopReason": "budget_exceeded"}, relay.refusal
    if outcome.cancelled:
        return "completed", {**result, "stopReason": "cancelled"}, None
    if outcome.memory_exceeded:
        return "failed", result, memory_exceeded_error(task_input["memoryMb"])
    if outcome.disk_exceeded:
        return "failed", result, disk_exceeded_error(disk_mb)
    if outcome.timed_out:
        message = f"Claude Code ran longer than {task_input['timeoutSeconds']} s."
        return "timed_out", result, {"code": "timeout", "message": message}
    if line.get("subtype") == "error_max_turns":  # as the messages engine reports it
        return "completed", {**result, "stopReason": "max_turns"}, None
    if line.get("subtype") == "error_max_budget_usd":  # it stopped at --max-budget-usd
        message = "Claude Code stopped at the task's remaining budget (maxCostUsd)."
        return (
            "failed",
            {**result, "stopReason": "budget_exceeded"},
            {
                "code": "budget_exceeded",
                "message": message,
            },
        )
    if outcome.exit_code != 0 or line.get("is_error") or not line:
        reason = line.get("terminal_reason") or line.get("subtype") or "no result line"
        said = line.get("result") if isinstance(line.get("result"), str) else ""
        message = f"Claude Code failed (exit {outcome.exit_code}, {reason}): {said} {stderr_tail}"
        return "failed", result, {"code": "engine_error", "message": message.strip()[:4000]}
    return "completed", result, None


def cli_arguments(spec: TaskSpec, session: str, resume: bool) -> list[str]:
    agent, task_input = spec["agent"], spec["input"]
    tools = sorted({name for tool in agent.get("tools") or [] for name in TOOL_NAMES[tool]})
    arguments = [
        "--print",
        "--output-format",
        "stream-json",
        "--verbose",
        "--include-partial-messages",
        "--permission-mode",
        "bypassPermissions",
        "--model",
        agent["model"],
        "--max-turns",
        str(task_input["maxTurns"]),
        "--tools",
        ",".join([*tools, *ALWAYS_TOOLS]),
        "--strict-mcp-config",
        *(["--resume", session] if resume else ["--session-id", session]),
    ]
    if agent.get("systemPrompt"):
        arguments += ["--append-system-prompt", agent["systemPrompt"]]
    # The CLI stops cleanly at the task's remaining budget; the proxy stays the authority
    # (and refuses a call past it, which ends the task budget_exceeded).
    budget = (spec.get("limits") or {}).get("maxBudgetUsd")
    if budget is not None and budget > 0:
        arguments += ["--max-budget-usd", f"{budget:.6f}"]
    return arguments


def engine_env(agent: dict, run_key: str = "") -> dict[str, str]:
    """What the CLI sees besides the sandbox's minimal environment: no secret.
    run_key, a random "key" for this run only, is all the relay takes from inside
    (with `network: true` the loopback port is the host's, and other local programs
    must not use the channel); it is worth nothing anywhere else."""
    return {
        "HOME": HOME_IN_SANDBOX,
        "TMPDIR": "/tmp",
        # A placeholder: the relay outside replaces it with the task token.
        "ANTHROPIC_API_KEY": run_key or "sandboxed-no-key",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "CLAUDE_CODE_MAX_RETRIES": str(MAX_RETRIES),
    }


def _prompt(spec: TaskSpec, resume: bool) -> str:
    """The turn's prompt. A conversation whose session did not come back (its
    workspace snapshot is gone) gets its earlier turns as text instead."""
    prompt = spec["input"]["prompt"]
    history = [m for m in spec.get("history") or [] if isinstance(m.get("content"), str)]
    if resume or not history:
        return prompt
    lines = [f"{m['role']}: {m['content']}" for m in history]
    return "The conversation so far:\n\n" + "\n\n".join(lines) + f"\n\nThe new message:\n\n{prompt}"


def _result(mapper: StreamMapper, relay: LlmRelay) -> dict:
    """The result but its files (store_outputs adds them; .engine/ is never listed)."""
    line = mapper.result or {}
    text = line.get("result") if isinstance(line.get("result"), str) else "\n".join(mapper.texts)
    return {
        "text": text,
        "usage": {"inputTokens": relay.input_tokens, "outputTokens": relay.output_tokens},
        "turns": int(line.get("num_turns") or 0),
        "stopReason": line.get("stop_reason") or line.get("terminal_reason"),
    }
