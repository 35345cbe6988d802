"""The sandbox seam's common part: the limits of one run, how it ended, and the one
way every backend starts, watches and stops its process tree (`execute`).

The backends (bwrap.py, gvisor.py, unsandboxed.py) only build an argv; `execute`
streams the output, applies the rlimits, moves the child into the task's cgroup, and
kills the whole tree on timeout, cancel, or a bound passed (the cgroup's, or the
watchdog's where there is no cgroup: watchdog.py).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import select
import signal
import subprocess
import threading
import time
from collections import namedtuple

from job_runner.logs import log
from job_runner.sandboxes.watchdog import Watchdog, kill_tree

# Types only: importing typing and pathlib would add ~10 ms to every task's start-up
# (`make bench`); type checkers treat a module-level TYPE_CHECKING = False as theirs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import IO, Protocol

    from job_runner.cgroups import TaskCgroup

    OnOutput = Callable[[str, bytes], None]

MIB = 1024 * 1024
CANCEL_POLL_SECONDS = 0.05
READER_JOIN_SECONDS = 5.0
WORKSPACE_MOUNT = "/workspace"
# The default environment's venv (environments/default/) comes first on PATH.
SANDBOX_ENV = {
    "PATH": "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE_MOUNT,
    "LANG": "C.UTF-8",
    "TMPDIR": "/tmp",
    "PYTHONDONTWRITEBYTECODE": "1",
    # matplotlib writes its cache there; not in HOME (/workspace), whose files are outputs.
    "MPLCONFIGDIR": "/tmp/matplotlib",
}
MERGED_USR_DIRS = ("bin", "lib", "lib64", "sbin")
ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime")
NETWORK_ETC_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl/certs")
RESERVED_MOUNTS = ("/", "/usr", "/etc", "/proc", "/dev", "/tmp", WORKSPACE_MOUNT)


class Limits(
    namedtuple(
        "Limits",
        "wall_seconds memory_mb cpu_seconds max_processes max_file_mb max_output_bytes network"
        " address_space_limit report_all_output disk_mb",
        defaults=(512, None, 64, 64, 131072, False, True, False, None),
    )
):
    """What one run may use: wall_seconds (the whole tree is killed after it),
    memory_mb (the task's cgroup when one is given, else RLIMIT_AS), cpu_seconds
    (RLIMIT_CPU; default ceil(wall_seconds) + 1), max_processes (RLIMIT_NPROC, and the
    cgroup's pids.max), max_file_mb (RLIMIT_FSIZE), max_output_bytes (kept
    per stream; the rest is read and discarded) and network (share the host's).
    address_space_limit=False leaves RLIMIT_AS off even without a cgroup: Claude
    Code's runtime (Bun) reserves far more address space than it uses and crashes
    under 512 MiB. report_all_output=True hands every chunk to on_output, also past
    the kept bytes (a program whose output is a stream of events, read as it comes).
    disk_mb bounds the blocks under the run's writable directories when they are on
    the host's disk (no task tmpfs): the watchdog stops the run past it."""

    __slots__ = ()


class Outcome(
    namedtuple(
        "Outcome",
        "exit_code stdout stderr stdout_truncated stderr_truncated timed_out cancelled duration_ms"
        " memory_exceeded disk_exceeded",
        defaults=(False, False),
    )
):
    """How a run ended. exit_code is None when we killed it (timeout, cancel) and
    128 + N when signal N ended it; stdout and stderr are the kept bytes.
    memory_exceeded: the task's cgroup ran out of memory, the kernel killed one of its
    processes, and we stopped the rest; or, without a cgroup, the watchdog found the
    tree over memory_mb and killed it (exit_code 137, as for SIGKILL either way).
    disk_exceeded: the watchdog found the writable directories over disk_mb."""

    __slots__ = ()


class SandboxError(Exception):
    """The sandbox itself could not start; the message says how to fix it."""


if TYPE_CHECKING:

    class Sandbox(Protocol):
        name: str  # as SANDBOX names it: "bwrap", "gvisor", "none"...

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
            """Run command with cwd /workspace (the host's workspace, read-write).

            readonly_binds maps sandbox paths to host paths, e.g. {"/task": program_dir}.
            scratch maps "/tmp" and "/dev/shm" to host directories (the task's tmpfs,
            see task_space.py) bound read-write; without it each is a tmpfs of its own
            of memory_mb. cgroup (cgroups.TaskCgroup) bounds the whole run's memory and
            processes; without it, the watchdog bounds the tree's memory (and RLIMIT_AS
            each process when limits.address_space_limit).
            env adds to (or overrides) the sandbox's minimal environment; never a secret.
            on_output gets ("stdout" | "stderr", chunk) for the kept bytes as they arrive.
            Setting cancel kills the program within CANCEL_POLL_SECONDS.

            :raises SandboxError: the sandbox could not start the program at all.
            """


def execute(
    argv: list[str],
    limits: Limits,
    stdin: bytes,
    on_output: OnOutput | None,
    cancel: threading.Event | None,
    cgroup: TaskCgroup | None = None,
    watch_paths: Iterable[str | os.PathLike] = (),
    process_rlimits: bool = True,
    **popen,
) -> Outcome:
    """Start argv in its own process group, stream its output, kill its tree on
    timeout/cancel, and when the task runs out of memory: by its cgroup, or without one
    by the watchdog (which also bounds the blocks under watch_paths to limits.disk_mb).
    process_rlimits=False sets only RLIMIT_CPU and RLIMIT_CORE on argv: a backend
    whose own runtime they would bind (gVisor's) applies the others inside."""
    started = time.monotonic()
    attach = cgroup.attach_fds() if cgroup is not None else []
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_rlimit_setter(limits, attach, process_rlimits),
            env=popen.pop("env", {}),  # the sandbox too: no secret in any process near the program
            pass_fds=[*popen.pop("pass_fds", ()), *attach],
            **popen,
        )
    except OSError as error:
        raise SandboxError(f"could not start {argv[0]}: {error}") from error
    finally:
        for fd in attach:
            os.close(fd)
    readers = [
        _Capture(stream, pipe, limits.max_output_bytes, on_output, limits.report_all_output)
        for stream, pipe in (("stdout", proc.stdout), ("stderr", proc.stderr))
        if pipe is not None  # both are pipes: stdout=PIPE, stderr=PIPE
    ]
    if stdin:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    watchdog = None
    if cgroup is None:
        watchdog = Watchdog(proc.pid, limits.memory_mb, limits.disk_mb, watch_paths)
    stopped = _wait(proc, started + limits.wall_seconds, cancel, cgroup, watchdog)
    if stopped:
        if cgroup is None:  # the tree, before the first process is reaped (its pid reused)
            kill_tree(proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if cgroup is not None:
        if stopped or cgroup.memory_exceeded():
            stopped = stopped or "memory_exceeded"
        cgroup.kill()  # whatever left the process group (and, with bwrap, never did)
    returncode = proc.wait()
    duration_ms = int((time.monotonic() - started) * 1000)
    for reader in readers:
        reader.join(READER_JOIN_SECONDS)
    exit_code = None if stopped else (128 - returncode if returncode < 0 else returncode)
    if stopped in ("memory_exceeded", "disk_exceeded"):
        exit_code = 128 + signal.SIGKILL
    return Outcome(
        exit_code=exit_code,
        stdout=bytes(readers[0].kept),
        stderr=bytes(readers[1].kept),
        stdout_truncated=readers[0].truncated,
        stderr_truncated=readers[1].truncated,
        timed_out=stopped == "timed_out",
        cancelled=stopped == "cancelled",
        duration_ms=duration_ms,
        memory_exceeded=stopped == "memory_exceeded",
        disk_exceeded=stopped == "disk_exceeded",
    )


def _rlimit_setter(limits: Limits, cgroup_fds: list[int], per_process: bool) -> Callable[[], None]:
    cpu = limits.cpu_seconds or math.ceil(limits.wall_seconds) + 1
    # With a cgroup, memory is bounded per task, not per process (RLIMIT_AS would also
    # count address space never used, which some runtimes reserve by the gigabyte).
    memory = [] if cgroup_fds else [(resource.RLIMIT_AS, (limits.memory_mb * MIB,) * 2)]
    settings = [
        # SIGXCPU at the soft limit, SIGKILL a second later if the program ignores it.
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_NPROC, (limits.max_processes,) * 2),
        (resource.RLIMIT_FSIZE, (limits.max_file_mb * MIB,) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ]
    if limits.address_space_limit:
        settings += memory
    if not per_process:
        settings = [settings[0], settings[3]]

    # Runs in the forked child before exec (after the uid switch), so bwrap and the
    # program inherit the limits and the cgroup. Only system calls: nothing that takes
    # a lock. The cgroup fds are closed here, so the program never holds them.
    def set_limits() -> None:
        for fd in cgroup_fds:
            os.write(fd, b"0")
            os.close(fd)
        for which, values in settings:
            resource.setrlimit(which, values)

    return set_limits


def _wait(proc: subprocess.Popen, deadline: float, cancel, cgroup, watchdog) -> str | None:
    """Wait for exit; "timed_out", "cancelled", "memory_exceeded" or "disk_exceeded"
    when it must be stopped instead (the kernel's OOM killer ends one process of the
    task's cgroup: the task is stopped at once rather than left running without it)."""
    try:
        pidfd = os.pidfd_open(proc.pid)  # wakes at exit, without polling waitpid
    except OSError:
        pidfd = -1
    try:
        while True:
            if cancel is not None and cancel.is_set():
                return "cancelled"
            if cgroup is not None and cgroup.memory_exceeded():
                return "memory_exceeded"
            if watchdog is not None and (exceeded := watchdog.check()):
                return exceeded
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timed_out"
            step = min(remaining, CANCEL_POLL_SECONDS)
            if pidfd >= 0:
                if select.select([pidfd], [], [], step)[0]:
                    return None
            else:
                try:
                    proc.wait(step)
                    return None
                except subprocess.TimeoutExpired:
                    pass
    finally:
        if pidfd >= 0:
            os.close(pidfd)


class _Capture(threading.Thread):
    """Reads one stream to its end, keeping the first `limit` bytes."""

    def __init__(
        self, name: str, pipe: IO[bytes], limit: int, on_output: OnOutput | None, all_: bool
    ):
        super().__init__(daemon=True, name=f"sandbox-{name}")
        self.stream, self.pipe, self.limit, self.on_output = name, pipe, limit, on_output
        self.report_all = all_
        self.kept = bytearray()
        self.truncated = False
        self.start()

    def run(self) -> None:
        with self.pipe:
            while chunk := os.read(self.pipe.fileno(), 65536):
                keep = chunk[: max(self.limit - len(self.kept), 0)]
                self.truncated = self.truncated or len(keep) < len(chunk)
                if keep:
                    self.kept += keep
                if self.report_all:
                    self._report(chunk)
                elif keep:
                    self._report(keep)

    def _report(self, chunk: bytes) -> None:
        if self.on_output is None:
            return
        try:
            self.on_output(self.stream, chunk)
        except Exception:  # a failing listener must not stop the draining
            log.error("on_output failed; no more output will be reported")
            self.on_output = None


def _feed(pipe: IO[bytes], data: bytes) -> None:
    # BrokenPipeError: the program exited or closed stdin without reading it all.
    with contextlib.suppress(BrokenPipeError), pipe:
        pipe.write(data)
