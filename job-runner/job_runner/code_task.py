"""Runs a `kind: "code"` task in the sandbox and shapes its result."""

from __future__ import annotations

from job_runner.sandbox import Limits
from job_runner.task_access import TaskAccess
from job_runner.task_files import InputsUnavailable, store_outputs, write_inputs
from job_runner.task_space import TaskSpace

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from job_runner.file_channel import FileChannel
    from job_runner.sandbox import Sandbox
    from job_runner.spec import TaskSpec

PROGRAMS = {
    # -s -P (not -I): a custom environment's PYTHONPATH counts; no user site, and not
    # the script's directory first.
    "python": ("main.py", ["python3", "-s", "-P", "/task/main.py"]),
    "bash": ("main.sh", ["bash", "--noprofile", "--norc", "/task/main.sh"]),
    # Node.js from the default environment (environments/default/debian.txt).
    "javascript": ("main.js", ["node", "/task/main.js"]),
}


def inputs_unavailable(problem: InputsUnavailable) -> dict:
    return {
        "code": problem.code,
        "message": f"The task's input files could not be placed: {problem}"[:2000],
    }


def run_code_task(
    spec: TaskSpec,
    sandbox: Sandbox,
    on_output,
    cancel: threading.Event,
    channel: FileChannel | None = None,
    access: TaskAccess | None = None,
) -> tuple[str, dict | None, dict | None]:
    """Returns (status, result, error) as the API's result endpoint takes them.
    `access`: the task's secrets and egress (none without it)."""
    access = access or TaskAccess()
    task_input = spec["input"]
    limits = spec["limits"]
    filename, command = PROGRAMS[task_input["language"]]
    memory_mb = task_input["memoryMb"]
    disk_mb = limits["diskMb"]
    run_limits = Limits(
        wall_seconds=task_input["timeoutSeconds"],
        memory_mb=memory_mb,
        max_output_bytes=limits["maxOutputBytes"],
        network=limits["network"],
    )
    with TaskSpace.create(
        spec["id"],
        "task-",
        memory_mb=memory_mb,
        disk_mb=disk_mb,
        max_processes=run_limits.max_processes,
    ) as space:
        run_limits = space.bound(run_limits)
        # Bound read-only into the sandbox: its uid may read the program, not change it.
        program_dir = space.write_program(filename, task_input["code"])
        workspace = space.workspace
        try:
            write_inputs(spec, channel, workspace, space.uid)
        except InputsUnavailable as problem:
            return "failed", None, inputs_unavailable(problem)
        with access.opened(space):
            launch = access.launch(command, task_input.get("stdin", "").encode())
            outcome = sandbox.run(
                launch.command,
                run_limits,
                workspace=workspace,
                stdin=launch.stdin,
                readonly_binds={"/task": program_dir, **launch.readonly_binds},
                on_output=on_output,
                cancel=cancel,
                scratch=space.scratch,
                cgroup=space.cgroup,
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
        if outcome.memory_exceeded:
            return "failed", result, memory_exceeded_error(memory_mb)
        if outcome.disk_exceeded:
            return "failed", result, disk_exceeded_error(disk_mb)
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


def memory_exceeded_error(memory_mb: int) -> dict:
    return {
        "code": "memory_exceeded",
        "message": f"The task used more than its {memory_mb} MiB of memory (memoryMb; files "
        "in /workspace, /tmp and /dev/shm count too) and was stopped; its output so far is "
        "in the result.",
    }


def disk_exceeded_error(disk_mb: int) -> dict:
    return {
        "code": "disk_exceeded",
        "message": f"The task's files in /workspace, /tmp and /dev/shm took more than its "
        f"{disk_mb} MiB (diskMb) and it was stopped; its output so far is in the result.",
    }
