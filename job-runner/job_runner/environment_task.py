"""A `kind: "environment"` task: build a custom environment in the sandbox, send its
archive to the API, and restore one for a task that names it (DESIGN section 17).

The build's program is pip, in the sandbox with no network of its own: its only way
out is the task's egress proxy, whose list the API made of the package index's hosts.
pip's output is the task's output, so a failed build's events say why.
"""

from __future__ import annotations

import os
import shutil

from job_runner.environments import build_environment, restore_environment
from job_runner.sandbox import Limits
from job_runner.task_access import TaskAccess
from job_runner.task_space import TaskSpace
from job_runner.workspace import make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading

    from job_runner.environments import Restored
    from job_runner.file_channel import FileChannel
    from job_runner.sandbox import Sandbox
    from job_runner.spec import EnvironmentSpec, TaskSpec

ARCHIVE_PATH = "/environment"  # the internal endpoint, under the task's
# Ranged requests at once when fetching an environment: a 100 MiB archive came down in
# about 0.45 s one piece after another (`make bench`).
FETCH_PARALLEL = 4


def run_environment_build(
    spec: TaskSpec,
    sandbox: Sandbox,
    on_output,
    cancel: threading.Event,
    channel: FileChannel,
    access: TaskAccess,
) -> tuple[str, dict | None, dict | None]:
    """(status, result, error) as the API's result endpoint takes them: completed once
    the archive is stored, failed with pip's message otherwise."""
    task_input, build = spec["input"], spec["build"]
    limits = Limits(
        wall_seconds=task_input["timeoutSeconds"],
        memory_mb=task_input["memoryMb"],
        max_output_bytes=spec["limits"]["maxOutputBytes"],
        network=False,
    )
    staging = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "environment-")
    try:
        with (
            TaskSpace.create(
                spec["id"],
                "build-",
                memory_mb=task_input["memoryMb"],
                disk_mb=spec["limits"]["diskMb"],
                max_processes=limits.max_processes,
            ) as space,
            access.opened(space),
        ):
            built = build_environment(
                sandbox,
                space.workspace,
                build["python"],
                build["indexUrl"],
                os.path.join(staging, "environment.tar"),
                space.bound(limits),
                max_bytes=build["maxBytes"],
                npm=build["npm"],
                npm_registry_url=build["npmRegistryUrl"],
                launch=access.launch,
                on_output=on_output,
                cancel=cancel,
                scratch=space.scratch,
                cgroup=space.cgroup,
            )
        result = {"exitCode": 0 if built.ok else 1, "durationMs": int(built.seconds * 1000)}
        if not built.ok:
            return "failed", result, {"code": "build_failed", "message": built.message[-2000:]}
        fd = os.open(built.archive, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            channel.send_file(ARCHIVE_PATH, fd, built.size_bytes)
        finally:
            os.close(fd)
        return "completed", result, None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def fetch_environment(environment: EnvironmentSpec, channel: FileChannel, place: str) -> Restored:
    """The task's custom environment, fetched from the API into `place` (a private
    directory of the runner's) and unpacked there, once."""
    archive = os.path.join(place, "archive.tar")
    fd = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        channel.fetch(ARCHIVE_PATH, fd, environment["size"], parallel=FETCH_PARALLEL)
    finally:
        os.close(fd)
    restored = restore_environment(archive, environment["hash"], place)
    os.unlink(archive)
    # The `bwrap` backend runs bubblewrap as the sandbox's uid, which must reach the
    # bind's source: it may pass through (not list, not write) the runner's directory.
    os.chmod(place, 0o711)
    return restored
