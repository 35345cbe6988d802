"""An agent's tools: bash, python and four file tools, all run in the task's sandbox.

Every call, file tools included, is a program run by the sandbox on the task's one
workspace. The file tools could have been done on the host with O_NOFOLLOW opens,
like `workspace.py`; running them inside bubblewrap instead means a path the model
makes up (`../../etc/passwd`) or a symlink an earlier `bash` call planted resolves in
the sandbox's own filesystem, where no host file exists. The helper also refuses any
path that resolves outside /workspace, so the model gets a clear error rather than a
"not found" from some other part of the sandbox.
"""

from __future__ import annotations

import json
from collections import namedtuple

from job_runner.sandbox import WORKSPACE_MOUNT

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from job_runner.sandbox import Limits, Outcome, Sandbox
    from job_runner.task_access import TaskAccess
    from job_runner.task_space import TaskSpace

# One argv string may not exceed the kernel's MAX_ARG_STRLEN (128 KiB); say so in
# words before execve fails with E2BIG.
MAX_PROGRAM_BYTES = 100_000
# What goes back to the model per call: ~8,000 tokens at most. Program output keeps
# its head and tail; read_file and list_files stop at MAX_READ_BYTES themselves.
MAX_RESULT_CHARS = 32_000
MAX_READ_BYTES = 32 * 1024
# edit_file rewrites the whole file: it refuses larger ones rather than cut them.
MAX_EDIT_BYTES = 8 * 1024 * 1024
# The file helper's exit status for "refused": the message is its stdout.
REFUSED = 3


def _schema(name: str, description: str, properties: dict, required: list[str]) -> dict:
    schema = {"type": "object", "properties": properties, "required": required}
    return {"name": name, "description": description, "input_schema": schema}


def _text(description: str) -> dict:
    return {"type": "string", "description": description}


_PATH = _text("A path relative to the workspace (/workspace), e.g. 'src/main.py'.")
# The Messages API's `tools` parameter, in the order tools are offered.
# https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
TOOL_SCHEMAS = {
    "bash": _schema(
        "bash",
        "Run a bash command in /workspace, in an isolated sandbox with no network unless "
        "the task allows it. Returns stdout, stderr and a non-zero exit code.",
        {"command": _text("The command to run, e.g. 'ls -la && python3 app.py'.")},
        ["command"],
    ),
    "python": _schema(
        "python",
        "Run a Python 3 program in /workspace, in the same sandbox; modules in the "
        "workspace can be imported. Returns stdout and stderr.",
        {"code": _text("The program's source code.")},
        ["code"],
    ),
    "read_file": _schema(
        "read_file",
        f"Read a UTF-8 text file from the workspace (at most {MAX_READ_BYTES} bytes).",
        {"path": _PATH},
        ["path"],
    ),
    "write_file": _schema(
        "write_file",
        "Create or overwrite a file in the workspace, creating parent directories.",
        {"path": _PATH, "content": _text("The file's whole new content.")},
        ["path", "content"],
    ),
    "edit_file": _schema(
        "edit_file",
        "Replace text in a workspace file. `old` must occur exactly once in the file; "
        "include enough surrounding lines to make it unique.",
        {"path": _PATH, "old": _text("The exact text to replace."), "new": _text("Its new text.")},
        ["path", "old", "new"],
    ),
    "list_files": _schema(
        "list_files",
        "List files and directories under a workspace directory, recursively.",
        {"path": _text("A directory relative to the workspace; default: the workspace.")},
        [],
    ),
}
TOOL_NAMES = tuple(TOOL_SCHEMAS)


class ToolResult(namedtuple("ToolResult", "output is_error timed_out", defaults=(False,))):
    """What one call gives back to the model; timed_out: the call hit its wall time."""

    __slots__ = ()


class Toolbox:
    """The tools one agent may use, on one workspace, with the task's sandbox limits."""

    def __init__(
        self,
        sandbox: Sandbox,
        workspace: str,
        limits: Limits,
        names: list[str],
        cancel: threading.Event,
        space: TaskSpace | None = None,
        access: TaskAccess | None = None,
    ) -> None:
        unknown = sorted(set(names) - set(TOOL_NAMES))
        if unknown:
            raise ValueError(f"unknown tools {unknown}: the runner has {list(TOOL_NAMES)}")
        self.sandbox, self.workspace, self.limits, self.cancel = sandbox, workspace, limits, cancel
        self.names = [name for name in TOOL_NAMES if name in names]
        # The task's /tmp, /dev/shm and cgroup, shared by all its calls.
        self.scratch = space.scratch if space is not None else None
        self.cgroup = space.cgroup if space is not None else None
        # The task's secrets and egress proxy reach the programs (bash, python) it runs.
        self.access = access

    def schemas(self) -> list[dict]:
        return [TOOL_SCHEMAS[name] for name in self.names]

    def run(self, name: str, tool_input: dict, wall_seconds: float) -> ToolResult:
        """Run one call; a bad call comes back as an error result, never as an exception."""
        if name not in self.names:
            return ToolResult(f"There is no tool {name!r}; available: {self.names}.", True)
        try:
            if name == "bash":
                command = ["bash", "--noprofile", "--norc", "-c", _program(tool_input, "command")]
                return self._run_program(command, wall_seconds)
            if name == "python":
                # Not -I: the program's cwd (/workspace) stays on sys.path, so the model
                # can import the modules it wrote. The environment is the sandbox's own.
                command = ["python3", "-c", _program(tool_input, "code")]
                return self._run_program(command, wall_seconds)
            return self._run_file_tool(name, tool_input, wall_seconds)
        except _BadInput as problem:
            return ToolResult(str(problem), True)

    def _sandboxed(
        self, command: list[str], wall_seconds: float, stdin: bytes = b"", program: bool = False
    ) -> Outcome:
        limits = self.limits._replace(wall_seconds=wall_seconds)
        binds: dict = {}
        if program and self.access is not None:
            command, stdin, binds = self.access.launch(command, stdin)
        return self.sandbox.run(
            command,
            limits,
            workspace=self.workspace,
            stdin=stdin,
            readonly_binds=binds,
            cancel=self.cancel,
            scratch=self.scratch,
            cgroup=self.cgroup,
        )

    def _run_program(self, command: list[str], wall_seconds: float) -> ToolResult:
        outcome = self._sandboxed(command, wall_seconds, program=True)
        parts = [outcome.stdout.decode("utf-8", "replace")]
        if outcome.stderr:
            parts.append("[stderr]\n" + outcome.stderr.decode("utf-8", "replace"))
        if outcome.stdout_truncated or outcome.stderr_truncated:
            parts.append(f"[output truncated at {self.limits.max_output_bytes} bytes per stream]")
        if outcome.timed_out:
            parts.append(f"[stopped: it ran longer than {wall_seconds:.0f} s]")
        elif outcome.cancelled:
            parts.append("[stopped: the task was cancelled]")
        elif outcome.memory_exceeded:
            parts.append(f"[stopped: the task's memory ({self.limits.memory_mb} MiB) ran out]")
        elif outcome.exit_code:
            parts.append(f"[exit code {outcome.exit_code}]")
        output = "\n".join(part.rstrip("\n") for part in parts if part) or "(no output)"
        failed = outcome.exit_code != 0  # None when we stopped it
        return ToolResult(clip(output), failed, outcome.timed_out)

    def _run_file_tool(self, name: str, tool_input: dict, wall_seconds: float) -> ToolResult:
        request = {"tool": name, "limit": min(MAX_READ_BYTES, self.limits.max_output_bytes - 1024)}
        schema = TOOL_SCHEMAS[name]["input_schema"]
        for key in schema["properties"]:
            if key in schema["required"] or tool_input.get(key) is not None:
                request[key] = _string(tool_input, key)
        # The request goes in on stdin, so content of any size avoids argv's limit.
        command = ["python3", "-I", "-c", FILE_HELPER]
        outcome = self._sandboxed(command, wall_seconds, json.dumps(request).encode())
        output = outcome.stdout.decode("utf-8", "replace")
        if outcome.exit_code == 0:
            return ToolResult(output or "(empty file)", False)
        if outcome.exit_code == REFUSED:
            return ToolResult(output, True)
        if outcome.timed_out or outcome.cancelled:
            return ToolResult(f"{name} was stopped before it finished.", True, outcome.timed_out)
        stderr = outcome.stderr.decode("utf-8", "replace")[-2000:]
        return ToolResult(f"{name} failed: {stderr or outcome.exit_code}", True)


class _BadInput(Exception):
    pass


def _string(tool_input: dict, key: str) -> str:
    value = tool_input.get(key)
    if not isinstance(value, str):
        raise _BadInput(f"The input needs {key!r} as a string.")
    return value


def _program(tool_input: dict, key: str) -> str:
    value = _string(tool_input, key)
    if len(value.encode()) > MAX_PROGRAM_BYTES:
        raise _BadInput(
            f"{key!r} is longer than {MAX_PROGRAM_BYTES} bytes: write it to a file with "
            "write_file and run that file instead."
        )
    if "\0" in value:
        raise _BadInput(f"{key!r} contains a NUL character.")
    return value


def clip(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """Keep the head and the tail: errors usually come last."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[... {len(text) - 2 * half} characters omitted ...]\n{text[-half:]}"


# Runs as `python3 -I -c FILE_HELPER` inside the sandbox, the request as JSON on stdin.
FILE_HELPER = f"""
import json, os, stat, sys
ROOT = {WORKSPACE_MOUNT!r}
REFUSED = {REFUSED}
MAX_EDIT_BYTES = {MAX_EDIT_BYTES}

def answer(text, status=0):
    # File names are bytes: show undecodable ones with U+FFFD rather than fail.
    sys.stdout.buffer.write(text.encode("utf-8", "replace"))
    sys.exit(status)

def refuse(message):
    answer(message, REFUSED)

def resolve(path):
    if not path or "\\0" in path:
        refuse("The path must be a non-empty string without NUL characters.")
    full = os.path.realpath(os.path.join(ROOT, path))
    if full != ROOT and not full.startswith(ROOT + "/"):
        refuse(f"{{path!r}} is outside the workspace ({{ROOT}}).")
    return full

def show(full):
    return os.path.relpath(full, ROOT)

def read_text(full, limit):
    fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK)
    with open(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            refuse(f"{{show(full)!r}} is not a regular file.")
        return handle.read(limit + 1), os.fstat(fd).st_size

def read_file(request):
    full = resolve(request["path"])
    data, size = read_text(full, request["limit"])
    if b"\\0" in data:
        refuse(f"{{show(full)!r}} is a binary file ({{size}} bytes); not shown.")
    text = data[: request["limit"]].decode("utf-8", "replace")
    if size > request["limit"]:
        text += f"\\n[truncated: the first {{request['limit']}} of {{size}} bytes]"
    return text

def write_file(request):
    full = resolve(request["path"])
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w", encoding="utf-8") as handle:
        handle.write(request["content"])
    return f"Wrote {{len(request['content'].encode())}} bytes to {{show(full)}}."

def edit_file(request):
    full = resolve(request["path"])
    data, size = read_text(full, MAX_EDIT_BYTES)
    if size > MAX_EDIT_BYTES:
        refuse(f"{{show(full)!r}} is larger than {{MAX_EDIT_BYTES}} bytes; use bash to edit it.")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        refuse(f"{{show(full)!r}} is not UTF-8 text.")
    old = request["old"]
    count = text.count(old) if old else 0
    if count != 1:
        found = "not found" if count == 0 else f"found {{count}} times"
        refuse(f"`old` was {{found}} in {{show(full)!r}}; it must match exactly once.")
    with open(full, "w", encoding="utf-8") as handle:
        handle.write(text.replace(old, request["new"], 1))
    return f"Edited {{show(full)}}."

def list_files(request):
    top = resolve(request.get("path") or ".")
    if not os.path.isdir(top):
        refuse(f"{{show(top)!r}} is not a directory.")
    lines, used = [], 0

    def visit(directory, prefix):
        nonlocal used
        for entry in sorted(os.scandir(directory), key=lambda e: e.name):
            name = prefix + entry.name
            if entry.is_symlink():
                line = f"{{name}} -> {{os.readlink(entry.path)}}"
            elif entry.is_dir():
                line = name + "/"
            else:
                line = f"{{name}}  ({{entry.stat(follow_symlinks=False).st_size}} bytes)"
            used += len(line.encode("utf-8", "replace")) + 1
            if used > request["limit"]:
                raise OverflowError
            lines.append(line)
            if entry.is_dir(follow_symlinks=False):
                visit(entry.path, name + "/")

    try:
        visit(top, "")
    except OverflowError:
        lines.append("[... more entries not shown]")
    return "\\n".join(lines) or "(empty directory)"

request = json.load(sys.stdin)
try:
    answer(globals()[request["tool"]](request))
except OSError as error:
    refuse(f"{{error.strerror or error}}: {{request.get('path') or '.'}}")
"""
