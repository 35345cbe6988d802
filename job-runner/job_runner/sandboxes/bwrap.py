"""The bubblewrap backends: `bwrap` (an unprivileged user namespace, as before) and
`bwrap-root` (real root builds the namespaces, no user namespace, and the program is
dropped to its own uid with no capability before it starts).

Both give the same guarantees (DESIGN section 8): no network unless allowed, an
empty environment, a read-only system, a private /tmp and /workspace, a uid of its
own, the seccomp filter of seccomp.py, rlimits, and the whole tree killed on timeout
or cancel. Why two: a container runtime's masked /proc (the OCI default) stops a user
namespace from mounting a fresh /proc, which real root in the container's own user
namespace still may (issue 18's table).
"""

from __future__ import annotations

import os
import shutil

from job_runner.sandboxes.process import (
    ETC_FILES,
    MIB,
    NETWORK_ETC_FILES,
    RESERVED_MOUNTS,
    SANDBOX_ENV,
    WORKSPACE_MOUNT,
    Limits,
    Outcome,
    SandboxError,
    execute,
)
from job_runner.sandboxes.seccomp import SeccompUnavailable, filter_fd
from job_runner.task_root import TaskRootError, configured_task_root, system_mounts
from job_runner.workspace import chown_tree, random_sandbox_uid, sandbox_owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from job_runner.cgroups import TaskCgroup
    from job_runner.sandboxes.process import OnOutput

FIX_HINT = (
    "install bubblewrap 0.8 or later (apt-get install bubblewrap) on a host that allows "
    "unprivileged user namespaces, or set SANDBOX=none to run tasks unsandboxed (opt-out)"
)
# bwrap-root's namespaces: --unshare-all would also try a user namespace, which is
# what a masked /proc forbids to mount proc in.
ROOT_NAMESPACES = ("--unshare-ipc", "--unshare-pid", "--unshare-uts", "--unshare-cgroup-try")


class BubblewrapSandbox:
    """Runs each command in fresh bubblewrap namespaces, inside a user namespace.

    As root, bwrap itself runs as a random unprivileged uid (the workspace owner's, see
    `prepare_workspace`) and builds an unprivileged user namespace: the program holds no
    capability on the host, and RLIMIT_NPROC counts only this run's processes. Not as
    root, the host uid is the runner's own (only the uid seen inside differs), so the
    sandbox shares the runner's RLIMIT_NPROC budget and can write files the runner owns
    in the workspace; run the runner as root in its container to get the separate uid.
    Host paths bound in (workspace, readonly_binds) must be reachable by that uid.
    """

    name = "bwrap"

    def __init__(self, bwrap: str = "bwrap", uid: int | None = None, task_root: str | None = None):
        self._bwrap = bwrap
        self._uid = uid
        self._path: str | None = None
        # The system the program sees (task_root.py): TASK_ROOT's, or the host's /usr.
        self._task_root = task_root if task_root is not None else configured_task_root()
        self._system = system_binds(self._task_root)

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
        if self._path is None:
            self._path = shutil.which(self._bwrap)
            if self._path is None:
                raise SandboxError(f"bubblewrap ({self._bwrap}) was not found: {FIX_HINT}")
        uid, popen = self._identity(os.fspath(workspace))
        try:
            seccomp = filter_fd()
        except SeccompUnavailable as problem:
            raise SandboxError(f"no seccomp filter: {problem}") from problem
        status_read, status_write = os.pipe()
        with open(status_read, "rb") as status:
            try:
                argv = self._argv(command, limits, uid, workspace, readonly_binds, status_write)
                argv = _with_options(argv, ["--seccomp", str(seccomp)])
                argv = _with_env(argv, env)
                if scratch:
                    argv = _with_scratch(argv, scratch)
                popen.update(pass_fds=[status_write, seccomp], cwd="/")
                watched = [workspace, *(scratch or {}).values()]
                outcome = execute(argv, limits, stdin, on_output, cancel, cgroup, watched, **popen)
            finally:
                os.close(status_write)
                os.close(seccomp)
            # bwrap exited by itself unless we stopped it, so nothing holds the write end.
            stopped = outcome.timed_out or outcome.cancelled
            stopped = stopped or outcome.memory_exceeded or outcome.disk_exceeded
            if stopped or b'"exit-code"' in status.read():
                return outcome
        message = outcome.stderr.decode("utf-8", "replace").strip()
        raise SandboxError(f"bwrap could not start the program ({message}): {self._fix()}")

    def _fix(self) -> str:
        return FIX_HINT

    def _identity(self, workspace: str) -> tuple[int, dict]:
        """The sandbox uid, and how to start bwrap as it."""
        if os.geteuid() != 0:
            return (self._uid if self._uid is not None else random_sandbox_uid()), {}
        uid = self._uid if self._uid is not None else sandbox_owner(workspace)
        chown_tree(workspace, uid)
        # Not as root: unprivileged, bwrap can only build a user namespace in which the
        # program has no capability over anything on the host.
        return uid, {"user": uid, "group": uid, "extra_groups": []}

    def _namespaces(self, uid: int) -> list[str]:
        argv = ["--unshare-all", "--unshare-user", "--disable-userns"]
        return argv + ["--cap-drop", "ALL", "--uid", str(uid), "--gid", str(uid)]

    def _argv(self, command, limits, uid, workspace, readonly_binds, status_fd) -> list[str]:
        argv = [self._path or self._bwrap, *self._namespaces(uid)]
        if limits.network:
            argv.append("--share-net")
        # --as-pid-1: with bwrap's own init as pid 1, bwrap exits before its init does,
        # the orphaned init waits as a zombie for the host's pid 1 to reap it, and
        # zombies count against RLIMIT_NPROC, so reusing a uid soon fails with EAGAIN.
        # The program as pid 1 is reaped by bwrap; signals it has no handler for are
        # ignored, except SIGKILL, which is what the limits and --die-with-parent send.
        argv += ["--as-pid-1", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
        # bwrap writes {"exit-code": N} here only if it exec'd the program: that is how a
        # setup failure is told apart from a program that prints "bwrap: ..." itself.
        argv += ["--json-status-fd", str(status_fd)]
        argv += self._system
        etc_files: tuple[str, ...] = () if self._task_root else ETC_FILES  # the root's own /etc
        etc_files += NETWORK_ETC_FILES if limits.network else ()
        # bwrap makes a bind's missing parents 0700 and root's: bwrap-root's program,
        # not root, could not pass through them (/etc, /engine). Made first, 0755.
        for parent in _parents([*etc_files, *(readonly_binds or {})]):
            argv += ["--perms", "0755", "--dir", parent]
        for path in etc_files:
            argv += ["--ro-bind-try", path, path]
        # tmpfs pages are not counted by RLIMIT_AS, so each tmpfs gets a size of its own.
        size = str(limits.memory_mb * MIB)
        argv += ["--proc", "/proc", "--dev", "/dev"]
        argv += ["--size", size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        argv += ["--size", size, "--tmpfs", "/tmp", "--bind", str(workspace), WORKSPACE_MOUNT]
        for dest, host in (readonly_binds or {}).items():
            check_mount_point(dest)
            argv += ["--ro-bind", str(host), dest]
        # bwrap's root is a tmpfs the sandbox uid owns: make it read-only last.
        argv += ["--remount-ro", "/", "--chdir", WORKSPACE_MOUNT, "--clearenv"]
        for name, value in SANDBOX_ENV.items():
            argv += ["--setenv", name, value]
        return [*argv, "--", *self._program(command, uid)]

    def _program(self, command: list[str], uid: int) -> list[str]:
        return command


class BubblewrapRootSandbox(BubblewrapSandbox):
    """bwrap run by real root without a user namespace: it may mount a fresh /proc
    where the container's /proc is masked. Its capabilities are root's until the
    last moment, so the program is started by setpriv (util-linux, in every Debian
    image), which drops to the workspace's own uid and gid, no supplementary group,
    an empty bounding set and no_new_privs. bwrap's --uid needs a user namespace and
    cannot do it; seccomp.py refuses the user namespaces --disable-userns would."""

    name = "bwrap-root"

    def __init__(self, bwrap: str = "bwrap", uid: int | None = None, setpriv: str = "setpriv"):
        super().__init__(bwrap, uid)
        self._setpriv = shutil.which(setpriv) or setpriv

    def _fix(self) -> str:
        return (
            "bwrap-root needs the runner to be root with CAP_SYS_ADMIN in its container "
            "(and setpriv from util-linux)"
        )

    def _identity(self, workspace: str) -> tuple[int, dict]:
        if os.geteuid() != 0:
            raise SandboxError(f"bwrap-root: the runner is not root: {self._fix()}")
        uid = self._uid if self._uid is not None else sandbox_owner(workspace)
        chown_tree(workspace, uid)
        return uid, {}

    def _namespaces(self, uid: int) -> list[str]:
        return [*ROOT_NAMESPACES, "--unshare-net"]

    def _argv(self, command, limits, uid, workspace, readonly_binds, status_fd) -> list[str]:
        argv = super()._argv(command, limits, uid, workspace, readonly_binds, status_fd)
        if limits.network:  # the base class adds --share-net for a user namespace's sake
            argv.remove("--unshare-net")
            argv.remove("--share-net")
        return argv

    def _program(self, command: list[str], uid: int) -> list[str]:
        ids = ["--reuid", str(uid), "--regid", str(uid), "--clear-groups"]
        caps = ["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"]
        return [self._setpriv, *ids, *caps, "--", *command]


def system_binds(task_root: str | None) -> list[str]:
    """bwrap's options for the system a task sees, read-only over bwrap's own tmpfs
    root, where mount points can still be made."""
    try:
        mounts = system_mounts(task_root, skip=(WORKSPACE_MOUNT.strip("/"),))
    except TaskRootError as error:
        raise SandboxError(str(error)) from None
    return [item for kind, source, dest in mounts for item in (f"--{kind}", source, dest)]


def _parents(paths: list[str]) -> list[str]:
    """The directories above paths, outermost first, but "/" and the mounts'."""
    mounted = ("/", "", "/usr", "/proc", "/dev", "/tmp", WORKSPACE_MOUNT)
    found: set[str] = set()
    for path in paths:
        parent = os.path.dirname(path)
        while parent not in mounted:
            found.add(parent)
            parent = os.path.dirname(parent)
    return sorted(found, key=lambda path: (path.count("/"), path))


def check_mount_point(dest: str) -> None:
    if not dest.startswith("/") or dest in RESERVED_MOUNTS or ".." in dest.split("/"):
        raise ValueError(f"cannot bind over {dest!r} in the sandbox")


def _with_options(argv: list[str], options: list[str]) -> list[str]:
    """bwrap's argv with more options before the "--" that starts the command."""
    split = argv.index("--")
    return [*argv[:split], *options, *argv[split:]]


def _with_env(argv: list[str], env: dict[str, str] | None) -> list[str]:
    if not env:
        return argv
    return _with_options(
        argv, [item for name, value in env.items() for item in ("--setenv", name, value)]
    )


def _with_scratch(argv: list[str], scratch: Mapping[str, str | os.PathLike]) -> list[str]:
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
