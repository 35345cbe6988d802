"""The sandbox seam: run one untrusted command with limits, get an `Outcome` back.

`BubblewrapSandbox` is the real implementation (DESIGN section 8): no network, an
empty environment, a read-only system, a private /tmp and workspace, a uid of its
own, rlimits, and the whole process tree killed on timeout or cancel.
`UnsandboxedRunner` is the explicit operator opt-out (`SANDBOX=none`).
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import select
import shutil
import signal
import subprocess
import threading
import time
from collections import namedtuple

from job_runner.logs import log
from job_runner.task_root import TaskRootError, system_mounts
from job_runner.workspace import chown_tree, random_sandbox_uid, sandbox_owner

# Types only: importing typing and pathlib would add ~10 ms to every task's start-up
# (`make bench`); type checkers treat a module-level TYPE_CHECKING = False as theirs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
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
ETC_FILES = ("/etc/ld.so.cache", "/etc/alternatives", "/etc/localtime")
NETWORK_ETC_FILES = ("/etc/resolv.conf", "/etc/hosts", "/etc/nsswitch.conf", "/etc/ssl/certs")
RESERVED_MOUNTS = ("/", "/usr", "/etc", "/proc", "/dev", "/tmp", WORKSPACE_MOUNT)
FIX_HINT = (
    "install bubblewrap 0.8 or later (apt-get install bubblewrap) on a host that allows "
    "unprivileged user namespaces, or set SANDBOX=none to run tasks unsandboxed (opt-out)"
)


class Limits(
    namedtuple(
        "Limits",
        "wall_seconds memory_mb cpu_seconds max_processes max_file_mb max_output_bytes network"
        " address_space_limit report_all_output",
        defaults=(512, None, 64, 64, 131072, False, True, False),
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
    the kept bytes (a program whose output is a stream of events, read as it comes)."""

    __slots__ = ()


class Outcome(
    namedtuple(
        "Outcome",
        "exit_code stdout stderr stdout_truncated stderr_truncated timed_out cancelled duration_ms"
        " memory_exceeded",
        defaults=(False,),
    )
):
    """How a run ended. exit_code is None when we killed it (timeout, cancel) and
    128 + N when signal N ended it; stdout and stderr are the kept bytes.
    memory_exceeded: the task's cgroup ran out of memory, the kernel killed one of its
    processes, and we stopped the rest (exit_code 137, as for SIGKILL)."""

    __slots__ = ()


class SandboxError(Exception):
    """The sandbox itself could not start; the message says how to fix it."""


if TYPE_CHECKING:

    class Sandbox(Protocol):
        def run(
            self,
            command: list[str],
            limits: Limits,
            *,
            workspace: str | os.PathLike,
            stdin: bytes = b"",
            readonly_binds: dict[str, str | os.PathLike] | None = None,
            on_output: OnOutput | None = None,
            cancel: threading.Event | None = None,
            scratch: dict[str, str | os.PathLike] | None = None,
            cgroup: TaskCgroup | None = None,
            env: dict[str, str] | None = None,
        ) -> Outcome:
            """Run command with cwd /workspace (the host's workspace, read-write).

            readonly_binds maps sandbox paths to host paths, e.g. {"/task": program_dir}.
            scratch maps "/tmp" and "/dev/shm" to host directories (the task's tmpfs,
            see task_space.py) bound read-write; without it each is a tmpfs of its own
            of memory_mb. cgroup (cgroups.TaskCgroup) bounds the whole run's memory and
            processes; without it, memory is bounded per process (RLIMIT_AS).
            env adds to (or overrides) the sandbox's minimal environment; never a secret.
            on_output gets ("stdout" | "stderr", chunk) for the kept bytes as they arrive.
            Setting cancel kills the program within CANCEL_POLL_SECONDS.

            :raises SandboxError: the sandbox could not start the program at all.
            """


class BubblewrapSandbox:
    """Runs each command in fresh bubblewrap namespaces.

    As root, bwrap itself runs as a random unprivileged uid (the workspace owner's, see
    `prepare_workspace`) and builds an unprivileged user namespace: the program holds no
    capability on the host, and RLIMIT_NPROC counts only this run's processes. Not as
    root, the host uid is the runner's own (only the uid seen inside differs), so the
    sandbox shares the runner's RLIMIT_NPROC budget and can write files the runner owns
    in the workspace; run the runner as root in its container to get the separate uid.
    Host paths bound in (workspace, readonly_binds) must be reachable by that uid.
    """

    def __init__(self, bwrap: str = "bwrap", uid: int | None = None, task_root: str | None = None):
        self._bwrap = bwrap
        self._uid = uid
        self._path: str | None = None
        self._task_root = task_root
        self._system = system_binds(task_root)

    def run(
        self,
        command: list[str],
        limits: Limits,
        *,
        workspace: str | os.PathLike,
        stdin: bytes = b"",
        readonly_binds: dict[str, str | os.PathLike] | None = None,
        on_output: OnOutput | None = None,
        cancel: threading.Event | None = None,
        scratch: dict[str, str | os.PathLike] | None = None,
        cgroup: TaskCgroup | None = None,
        env: dict[str, str] | None = None,
    ) -> Outcome:
        if self._path is None:
            self._path = shutil.which(self._bwrap)
            if self._path is None:
                raise SandboxError(f"bubblewrap ({self._bwrap}) was not found: {FIX_HINT}")
        uid, popen = self._identity(os.fspath(workspace))
        status_read, status_write = os.pipe()
        with open(status_read, "rb") as status:
            try:
                argv = self._argv(command, limits, uid, workspace, readonly_binds, status_write)
                argv = _with_env(argv, env)
                if scratch:
                    argv = _with_scratch(argv, scratch)
                popen.update(pass_fds=[status_write], cwd="/")
                outcome = _execute(argv, limits, stdin, on_output, cancel, cgroup, **popen)
            finally:
                os.close(status_write)
            # bwrap exited by itself unless we stopped it, so nothing holds the write end.
            stopped = outcome.timed_out or outcome.cancelled or outcome.memory_exceeded
            if stopped or b'"exit-code"' in status.read():
                return outcome
        message = outcome.stderr.decode("utf-8", "replace").strip()
        raise SandboxError(f"bwrap could not start the program ({message}): {FIX_HINT}")

    def _identity(self, workspace: str) -> tuple[int, dict]:
        """The sandbox uid, and how to start bwrap as it."""
        if os.geteuid() != 0:
            return (self._uid if self._uid is not None else random_sandbox_uid()), {}
        uid = self._uid if self._uid is not None else sandbox_owner(workspace)
        chown_tree(workspace, uid)
        # Not as root: unprivileged, bwrap can only build a user namespace in which the
        # program has no capability over anything on the host.
        return uid, {"user": uid, "group": uid, "extra_groups": []}

    def _argv(self, command, limits, uid, workspace, readonly_binds, status_fd) -> list[str]:
        argv = [self._path or self._bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
        if limits.network:
            argv.append("--share-net")
        # --as-pid-1: with bwrap's own init as pid 1, bwrap exits before its init does,
        # the orphaned init waits as a zombie for the host's pid 1 to reap it, and
        # zombies count against RLIMIT_NPROC, so reusing a uid soon fails with EAGAIN.
        # The program as pid 1 is reaped by bwrap; signals it has no handler for are
        # ignored, except SIGKILL, which is what the limits and --die-with-parent send.
        argv += ["--as-pid-1", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        argv += ["--uid", str(uid), "--gid", str(uid), "--hostname", "sandbox"]
        # bwrap writes {"exit-code": N} here only if it exec'd the program: that is how a
        # setup failure is told apart from a program that prints "bwrap: ..." itself.
        argv += ["--json-status-fd", str(status_fd)]
        argv += self._system
        etc_files = () if self._task_root else ETC_FILES
        for path in etc_files + (NETWORK_ETC_FILES if limits.network else ()):
            argv += ["--ro-bind-try", path, path]
        # tmpfs pages are not counted by RLIMIT_AS, so each tmpfs gets a size of its own.
        size = str(limits.memory_mb * MIB)
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        argv += ["--size", size, "--tmpfs", "/tmp", "--bind", str(workspace), WORKSPACE_MOUNT]
        for dest, host in (readonly_binds or {}).items():
            if not dest.startswith("/") or dest in RESERVED_MOUNTS or ".." in dest.split("/"):
                raise ValueError(f"cannot bind over {dest!r} in the sandbox")
            argv += ["--ro-bind", str(host), dest]
        # bwrap's root is a tmpfs the sandbox uid owns: make it read-only last.
        argv += ["--remount-ro", "/", "--chdir", WORKSPACE_MOUNT, "--clearenv"]
        for name, value in SANDBOX_ENV.items():
            argv += ["--setenv", name, value]
        return [*argv, "--", *command]


class UnsandboxedRunner:
    """SANDBOX=none: the command runs directly, with the same limits and a minimal env.

    Only an operator opts into this. Paths under readonly_binds' sandbox paths and
    /workspace in the command are rewritten to their host paths. There is no isolation:
    the program can read anything the runner can, RLIMIT_NPROC does not bind root, and
    children that leave the process group survive a timeout.
    """

    def run(
        self,
        command: list[str],
        limits: Limits,
        *,
        workspace: str | os.PathLike,
        stdin: bytes = b"",
        readonly_binds: dict[str, str | os.PathLike] | None = None,
        on_output: OnOutput | None = None,
        cancel: threading.Event | None = None,
        scratch: dict[str, str | os.PathLike] | None = None,
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
        return _execute(argv, limits, stdin, on_output, cancel, cgroup, cwd=workspace, env=env)


def make_sandbox(kind: str, task_root: str | None = None) -> Sandbox:
    """The sandbox named by SANDBOX: "bwrap" or "none". task_root (TASK_ROOT) is the
    system tasks see as /; without it, the host's /usr."""
    if kind == "bwrap":
        return BubblewrapSandbox(task_root=task_root)
    if kind == "none":
        return UnsandboxedRunner()
    raise ValueError(f"unknown sandbox {kind!r}: expected 'bwrap' or 'none'")


def system_binds(task_root: str | None) -> list[str]:
    """bwrap's options for the system a task sees (task_root.py), read-only over bwrap's
    own tmpfs root, where mount points can still be made."""
    try:
        mounts = system_mounts(task_root, skip=(WORKSPACE_MOUNT.strip("/"),))
    except TaskRootError as error:
        raise SandboxError(str(error)) from None
    return [item for kind, source, dest in mounts for item in (f"--{kind}", source, dest)]


def _with_env(argv: list[str], env: dict[str, str] | None) -> list[str]:
    """bwrap's argv with more --setenv before the "--" that starts the command."""
    if not env:
        return argv
    split = argv.index("--")
    extra = [item for name, value in env.items() for item in ("--setenv", name, value)]
    return [*argv[:split], *extra, *argv[split:]]


def _with_scratch(argv: list[str], scratch: dict) -> list[str]:
    """bwrap's options with the task's own /tmp and /dev/shm bound in place of the
    per-run tmpfs mounts `_argv` asks for (`--size N --tmpfs MOUNT`)."""
    options = list(argv)
    for mount, host in scratch.items():
        for at in range(len(options) - 3):
            if options[at : at + 4 : 2] == ["--size", "--tmpfs"] and options[at + 3] == mount:
                options[at : at + 4] = ["--bind", os.fspath(host), mount]
                break
        else:
            raise ValueError(f"cannot bind scratch over {mount!r}")
    return options


def _execute(argv, limits, stdin, on_output, cancel, cgroup=None, **popen) -> Outcome:
    """Start argv in its own process group, stream its output, kill it on timeout/cancel
    (and, with a cgroup, when the task runs out of memory)."""
    started = time.monotonic()
    attach = cgroup.attach_fds() if cgroup is not None else []
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=_rlimit_setter(limits, attach),
            env=popen.pop("env", {}),  # bwrap too: no secret in any process near the program
            pass_fds=[*popen.pop("pass_fds", ()), *attach],
            **popen,
        )
    except OSError as error:
        raise SandboxError(f"could not start {argv[0]}: {error}") from error
    finally:
        for fd in attach:
            os.close(fd)
    assert proc.stdout is not None and proc.stderr is not None  # both started as PIPE
    readers = [
        _Capture(
            "stdout", proc.stdout, limits.max_output_bytes, on_output, limits.report_all_output
        ),
        _Capture(
            "stderr", proc.stderr, limits.max_output_bytes, on_output, limits.report_all_output
        ),
    ]
    if stdin:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    stopped = _wait(proc, started + limits.wall_seconds, cancel, cgroup)
    if stopped:
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
    if stopped == "memory_exceeded":
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
    )


def _rlimit_setter(limits: Limits, cgroup_fds: list[int]) -> Callable[[], None]:
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


def _wait(proc: subprocess.Popen, deadline: float, cancel, cgroup=None) -> str | None:
    """Wait for exit; "timed_out", "cancelled" or "memory_exceeded" when it must be
    stopped instead (the kernel's OOM killer ends one process of the task's cgroup: the
    task is stopped at once rather than left running without it)."""
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


def _to_host_path(arg: str, mounts: dict[str, str | os.PathLike]) -> str:
    for inside, host in mounts.items():
        if arg == inside or arg.startswith(inside + "/"):
            return str(host) + arg[len(inside) :]
    return arg
