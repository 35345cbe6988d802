"""What a local runner leaves on the host, removed once its process is gone.

A runner cleans up after its task itself, but a runner that is cancelled or killed
(SIGKILL of its process group) runs no `finally`: its task directory (the program,
the workspace: the user's data) and its task cgroups would stay. So each runner gets
a directory of its own as TMPDIR, and the executor removes that directory and the
runner's task cgroups when the runner has exited, however it ended. A task's tmpfs
needs no removal: it lives in the runner's own mount namespace, which ends with it.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import signal
import tempfile
import time

log = logging.getLogger(__name__)

CGROUP_ROOT = "/sys/fs/cgroup"
# job-runner/job_runner/cgroups.py names a task's cgroups task-<taskId>-<runner pid>.
TASK_CGROUP_PREFIX = "task-"
RUNNER_DIR_PREFIX = "agent-runner-"
REMOVE_SECONDS = 5.0


def make_runner_dir(name: str) -> str:
    """A fresh TMPDIR for one runner. 0711: nobody may list it, and the sandbox's uid
    may pass through it to the task directory below it, which it owns (0700)."""
    path = tempfile.mkdtemp(prefix=f"{RUNNER_DIR_PREFIX}{os.getpid()}-{name}-")
    os.chmod(path, 0o711)
    return path


def remove_runner_leftovers(task_id: str, runner_dir: str) -> None:
    """Kill what is left of the task's processes, remove its cgroups and the runner's
    directory. Called once the runner process has exited."""
    for path in task_cgroups(task_id):
        _remove_cgroup(path)
    shutil.rmtree(runner_dir, ignore_errors=True)
    if os.path.exists(runner_dir):
        log.warning("could not remove all of %s", runner_dir, extra={"task_id": task_id})


def remove_orphaned_runner_dirs() -> None:
    """Runner directories of API processes that died (their runners died with them)."""
    for path in glob.glob(os.path.join(tempfile.gettempdir(), f"{RUNNER_DIR_PREFIX}*")):
        pid = os.path.basename(path)[len(RUNNER_DIR_PREFIX) :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def remove_orphaned_task_cgroups() -> None:
    """Task cgroups whose runner is gone (its API process died with it, say)."""
    for path in task_cgroups("*"):
        pid = path.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            _remove_cgroup(path)


def task_cgroups(task_id: str) -> list[str]:
    """The task's cgroup directories under this process's cgroups (v1 and v2); "*" for
    every task's."""
    if not (task_id.isalnum() or task_id == "*"):
        return []
    found = []
    try:
        with open("/proc/self/cgroup") as lines:
            entries = [line.rstrip("\n").split(":", 2) for line in lines]
    except OSError:
        return []
    for _, controllers, path in entries:
        if controllers == "":
            bases = [CGROUP_ROOT, f"{CGROUP_ROOT}/unified"]
        else:
            bases = [
                f"{CGROUP_ROOT}/{c}" for c in controllers.split(",") if c in ("memory", "pids")
            ]
        for base in bases:
            pattern = f"{base}{path.rstrip('/')}/{TASK_CGROUP_PREFIX}{task_id}-*"
            found += [p for p in glob.glob(pattern) if os.path.isdir(p)]
    return found


def _remove_cgroup(path: str) -> None:
    deadline = time.monotonic() + REMOVE_SECONDS
    while os.path.isdir(path):
        with contextlib.suppress(OSError), open(f"{path}/cgroup.procs") as procs:
            for pid in procs.read().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            os.rmdir(path)
        except OSError as error:  # EBUSY until the killed processes have exited
            if time.monotonic() > deadline:
                log.warning("could not remove cgroup %s: %s", path, error)
                return
            time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
