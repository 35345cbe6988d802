"""Runs a `kind: "code"` task in the sandbox and shapes its result."""

from __future__ import annotations

import os

from job_runner.outputs import remove_tree
from job_runner.sandbox import Limits
from job_runner.task_files import InputsUnavailable, store_outputs, write_inputs
from job_runner.workspace import make_private_dir, prepare_workspace

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from job_runner.file_channel import FileChannel
    from job_runner.sandbox import Sandbox

PROGRAMS = {
    "python": ("main.py", ["python3", "-I", "/task/main.py"]),
    "bash": ("main.sh", ["bash", "--noprofile", "--norc", "/task/main.sh"]),
}


def inputs_unavailable(problem: InputsUnavailable) -> dict:
    return {
        "code": problem.code,
        "message": f"The task's input files could not be fetched: {problem}"[:2000],
    }


def run_code_task(
    spec: dict,
    sandbox: Sandbox,
    on_output,
    cancel: threading.Event,
    channel: FileChannel | None = None,
) -> tuple[str, dict | None, dict | None]:
    """Returns (status, result, error) as the API's result endpoint takes them."""
    task_input = spec["input"]
    limits = spec["limits"]
    filename, command = PROGRAMS[task_input["language"]]
    root = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "task-")
    try:
        # The program is read by the sandbox's own uid: readable, not writable.
        os.chmod(root, 0o755)
        program_dir = os.path.join(root, "program")
        os.mkdir(program_dir, 0o755)
        with open(os.path.join(program_dir, filename), "w", encoding="utf-8") as program:
            program.write(task_input["code"])
        os.chmod(os.path.join(program_dir, filename), 0o644)
        workspace, uid = prepare_workspace(root)
        try:
            write_inputs(spec, channel, workspace, uid)
        except InputsUnavailable as problem:
            return "failed", None, inputs_unavailable(problem)
        outcome = sandbox.run(
            command,
            Limits(
                wall_seconds=task_input["timeoutSeconds"],
                memory_mb=task_input["memoryMb"],
                max_output_bytes=limits["maxOutputBytes"],
                network=limits["network"],
            ),
            workspace=workspace,
            stdin=task_input.get("stdin", "").encode(),
            readonly_binds={"/task": program_dir},
            on_output=on_output,
            cancel=cancel,
        )
        result = {
            "exitCode": outcome.exit_code,
            "stdout": outcome.stdout.decode("utf-8", "replace"),
            "stderr": outcome.stderr.decode("utf-8", "replace"),
            "stdoutTruncated": outcome.stdout_truncated,
            "stderrTruncated": outcome.stderr_truncated,
            "durationMs": outcome.duration_ms,
            **store_outputs(spec, channel, workspace),
        }
        if outcome.timed_out:
            return (
                "timed_out",
                result,
                {
                    "code": "timeout",
                    "message": f"The program ran longer than {task_input['timeoutSeconds']} s.",
                },
            )
        return "completed", result, None
    finally:
        remove_tree(root)
