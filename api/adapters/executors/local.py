"""LocalExecutor: the job-runner as a local process per task.

It mirrors a Cloud Run Job execution: the runner gets exactly the env contract of
DESIGN section 8 (TASK_ID, TASK_TOKEN, API_URL and Cloud Run's own CLOUD_RUN_*
variables), plus PATH so it can find bubblewrap, SANDBOX and TASK_ROOT, the sandbox
policy and the task environment the job image would carry, and TMPDIR, a directory of
its own that the executor removes when the runner is gone (local_cleanup.py). Nothing
of the API's own environment leaks into it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from api.adapters.executors.base import DispatchError, ExecutionState, Launched, RunnerExited
from api.adapters.executors.local_cleanup import (
    make_runner_dir,
    remove_orphaned_runner_dirs,
    remove_orphaned_task_cgroups,
    remove_runner_leftovers,
)

log = logging.getLogger(__name__)

# If the API process dies, its runners die with it (and their sandboxes with them,
# through bwrap --die-with-parent), so no orphan keeps running user code; the
# restarted API settles their tasks. The parent-death signal is set by util-linux's
# setpriv rather than a preexec_fn: a Python preexec_fn forces a real fork() of this
# multi-threaded, gRPC-using process, whose fork handlers can abort the child
# (seen here as SIGABRT); without one, subprocess uses vfork and runs no handlers.
DIE_WITH_PARENT = ["setpriv", "--pdeathsig", "KILL", "--"]


class LocalExecutor:
    backend = "local"
    parallel_launches = 1  # from the dispatcher's own thread: see DIE_WITH_PARENT

    def __init__(
        self,
        api_url: str,
        *,
        max_concurrent: int,
        sandbox: str,
        python: str | None = None,
        task_root: str | None = None,
    ) -> None:
        self.api_url = api_url
        self.max_concurrent = max_concurrent
        self.sandbox = sandbox
        self.task_root = task_root
        self.python = python or sys.executable
        self.on_exit: RunnerExited | None = None
        self._lock = threading.Lock()
        self._running: dict[str, subprocess.Popen] = {}
        self._watchers: dict[str, threading.Thread] = {}
        self._counter = 0
        self._prefix = f"local-{socket.gethostname()}-{os.getpid()}"
        remove_orphaned_runner_dirs()
        remove_orphaned_task_cgroups()
        self._wrapper = DIE_WITH_PARENT if shutil.which("setpriv") else []
        if not self._wrapper:
            log.warning("setpriv (util-linux) not found: runners may outlive the API process")

    def free_slots(self) -> int:
        with self._lock:
            return max(0, self.max_concurrent - len(self._running))

    def launch(
        self, task_id: str, token: str, timeout_seconds: int, job_class: str = "large"
    ) -> Launched:
        # One kind of process: the class only picks a Cloud Run job.
        with self._lock:
            self._counter += 1
            name = f"{self._prefix}-{self._counter}"
        env = {
            "TASK_ID": task_id,
            "TASK_TOKEN": token,
            "API_URL": self.api_url,
            "CLOUD_RUN_EXECUTION": name,
            "CLOUD_RUN_TASK_INDEX": "0",
            "CLOUD_RUN_TASK_ATTEMPT": "0",
            "CLOUD_RUN_TASK_COUNT": "1",
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "SANDBOX": self.sandbox,
        }
        if self.task_root:
            env["TASK_ROOT"] = self.task_root
        try:
            env["TMPDIR"] = runner_dir = make_runner_dir(str(self._counter))
            process = subprocess.Popen(
                [*self._wrapper, self.python, "-m", "job_runner", task_id],
                env=env,
                cwd=runner_dir,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as error:
            if "TMPDIR" in env:
                remove_runner_leftovers(task_id, env["TMPDIR"])
            raise DispatchError(f"cannot start the job-runner: {error}", retryable=False) from error
        with self._lock:
            self._running[name] = process
        watcher = threading.Thread(
            target=self._watch,
            args=(task_id, name, process, runner_dir),
            name=f"watch-{name}",
            daemon=True,
        )
        with self._lock:
            self._watchers[name] = watcher
        watcher.start()
        log.info("launched local runner %s (pid %d)", name, process.pid, extra={"task_id": task_id})
        return Launched(name=name, details={"pid": process.pid})

    def _watch(self, task_id: str, name: str, process: subprocess.Popen, runner_dir: str) -> None:
        code = process.wait()
        # Whatever the runner could not remove itself (killed, cancelled), before the
        # slot is given to another runner.
        remove_runner_leftovers(task_id, runner_dir)
        with self._lock:
            self._running.pop(name, None)
            self._watchers.pop(name, None)
        log.info("local runner %s exited with %d", name, code, extra={"task_id": task_id})
        if self.on_exit is not None:
            self.on_exit(task_id, name, code)

    def cancel(self, execution_name: str) -> None:
        with self._lock:
            process = self._running.get(execution_name)
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def describe(self, execution_name: str | None) -> ExecutionState:
        if not execution_name:
            return ExecutionState.MISSING
        with self._lock:
            process = self._running.get(execution_name)
        if process is not None:
            return ExecutionState.RUNNING
        # Not ours: it may belong to another API process on this host (its name holds
        # that process's pid); it is alive only while that process is.
        prefix, _, rest = execution_name.rpartition("-")
        host_pid = prefix.rsplit("-", 1)[-1]
        if not execution_name.startswith(f"local-{socket.gethostname()}-") or not rest:
            return ExecutionState.MISSING
        if prefix == self._prefix:
            return ExecutionState.FAILED  # ours, and already exited
        try:
            os.kill(int(host_pid), 0)
        except (ProcessLookupError, ValueError):
            return ExecutionState.MISSING
        except PermissionError:
            pass
        return ExecutionState.RUNNING

    def notify_exits(self, listener: RunnerExited) -> None:
        self.on_exit = listener

    def qualify_execution(self, reported: str) -> str:
        return reported  # local runners are given their full name

    def shutdown(self, wait_seconds: float = 5.0) -> None:
        """Kill the runners, and give their watchers a moment to remove what they left."""
        with self._lock:
            names = list(self._running)
            watchers = list(self._watchers.values())
        for name in names:
            self.cancel(name)
        deadline = time.monotonic() + wait_seconds
        for watcher in watchers:
            watcher.join(max(0.0, deadline - time.monotonic()))
