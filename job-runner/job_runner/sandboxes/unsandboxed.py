"""`SANDBOX=none`: the explicit operator opt-out, no isolation at all."""

from __future__ import annotations

import os

from job_runner.sandboxes.process import SANDBOX_ENV, WORKSPACE_MOUNT, Limits, Outcome, execute

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from job_runner.cgroups import TaskCgroup
    from job_runner.sandboxes.process import OnOutput


class UnsandboxedRunner:
    """SANDBOX=none: the command runs directly, with the same limits and a minimal env.

    Only an operator opts into this. Paths under readonly_binds' sandbox paths and
    /workspace in the command are rewritten to their host paths. There is no isolation:
    the program can read anything the runner can, RLIMIT_NPROC does not bind root, and
    children that leave the process group survive a timeout.
    """

    name = "none"

    def run(
        self,
        command: list[str],
        limits: Limits,
        *,
        workspace: str | os.PathLike,
        stdin: bytes = b"",
        readonly_binds: Mapping[str, str | os.PathLike] | None = None,
        on_output: OnOutput | None = None,
        cancel: threading.Event | None = None,
        scratch: Mapping[str, str | os.PathLike] | None = None,
        cgroup: TaskCgroup | None = None,
        env: dict[str, str] | None = None,
    ) -> Outcome:
        mounts = {WORKSPACE_MOUNT: os.fspath(workspace), **(readonly_binds or {})}
        argv = [_to_host_path(arg, mounts) for arg in command]
        extra = {name: _to_host_path(value, mounts) for name, value in (env or {}).items()}
        env = {**SANDBOX_ENV, "HOME": str(workspace)}
        if scratch and "/tmp" in scratch:
            env["TMPDIR"] = os.fspath(scratch["/tmp"])
        env.update(extra)
        watched = [workspace]
        return execute(
            argv, limits, stdin, on_output, cancel, cgroup, watched, cwd=workspace, env=env
        )


def _to_host_path(arg: str, mounts: dict[str, str | os.PathLike]) -> str:
    for inside, host in mounts.items():
        if arg == inside or arg.startswith(inside + "/"):
            return str(host) + arg[len(inside) :]
    return arg
