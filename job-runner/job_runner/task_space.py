"""A task's place on the host and its per-task bounds.

Each task gets one private directory (0700, owned by the sandbox's uid) holding its
workspace and the sandbox's /tmp and /dev/shm. Where the runner may mount (root with
CAP_SYS_ADMIN, in a mount namespace of its own), that directory is one tmpfs of the
task's disk size: /workspace, /tmp and /dev/shm together hold at most that much
(ENOSPC inside past it), their pages count toward the task's memory cgroup, and the
mount, seen by no other process, vanishes with the runner however it dies. Elsewhere
the directory is on the host's disk, each file bounded by RLIMIT_FSIZE, and the local
executor removes it after the runner (api/adapters/executors/local_cleanup.py).
"""

from __future__ import annotations

import contextlib
import os

from job_runner.cgroups import PREFIX, TaskCgroup
from job_runner.logs import log
from job_runner.outputs import remove_tree
from job_runner.workspace import make_private_dir, random_sandbox_uid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from job_runner.sandboxes.process import Limits

CLONE_NEWNS = 0x00020000
MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 1 << 14, 1 << 18
MNT_DETACH = 2
_state = {"private_mounts": False}
_bounds: dict[str, str] = {}  # how the last task space was bounded, for main.py to report


def bounds_used() -> dict[str, str]:
    """How the task's memory and disk were bounded: {"memoryBound": "cgroup" or
    "watchdog", "diskBound": "tmpfs" or "watchdog"}; empty before any task space."""
    return dict(_bounds)


def _libc():
    import ctypes  # only as root, where a tmpfs may be mounted

    return ctypes, ctypes.CDLL(None, use_errno=True)


def enter_private_mounts() -> bool:
    """As root, before any thread starts: a mount namespace of the runner's own, whose
    mounts do not propagate to the host. False (and one log line) where not allowed."""
    if os.geteuid() != 0:
        log.warning(
            "the runner is not root: task files go to the host's disk, bounded per file "
            "(RLIMIT_FSIZE), not per task"
        )
        return False
    ctypes, libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None):
        problem = os.strerror(ctypes.get_errno())
        log.warning(
            "no private mount namespace (%s): task files go to the host's disk, "
            "bounded per file (RLIMIT_FSIZE), not per task",
            problem,
        )
        return False
    _state["private_mounts"] = True
    return True


def _mount_tmpfs(path: str, size_mb: int, uid: int | None) -> bool:
    if not _state["private_mounts"]:
        return False
    ctypes, libc = _libc()
    owner = f",uid={uid},gid={uid}" if uid is not None else ""
    options = f"size={size_mb}m,mode=0700{owner}".encode()
    if libc.mount(b"tmpfs", path.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options) != 0:
        log.warning("cannot mount the task's tmpfs: %s", os.strerror(ctypes.get_errno()))
        return False
    return True


class TaskSpace:
    """A task's directories (workspace, /tmp, /dev/shm) and its cgroup."""

    def __init__(
        self, root: str, uid: int | None, disk_bounded: bool, cgroup, disk_mb: int
    ) -> None:
        self.root, self.uid, self.disk_bounded, self.cgroup = root, uid, disk_bounded, cgroup
        self.disk_mb = disk_mb
        self.workspace = self._subdir("workspace")
        # Without the task's tmpfs, the sandbox makes its own /tmp and /dev/shm.
        self.scratch: dict[str, str | os.PathLike] | None = (
            {"/tmp": self._subdir("tmp"), "/dev/shm": self._subdir("shm")} if disk_bounded else None
        )

    @classmethod
    def create(
        cls, task_id: str, prefix: str, *, memory_mb: int, disk_mb: int, max_processes: int
    ) -> TaskSpace:
        root = make_private_dir(os.environ.get("TMPDIR", "/tmp"), prefix)
        uid = random_sandbox_uid() if os.geteuid() == 0 else None
        try:
            bounded = _mount_tmpfs(root, disk_mb, uid)
            if uid is not None and not bounded:
                os.chown(root, uid, uid)
            # The runner's pid in the name: a cgroup whose runner is gone is garbage.
            name = f"{PREFIX}{task_id}-{os.getpid()}"
            cgroup = TaskCgroup.create(name, memory_mb, max_processes)
            _bounds["memoryBound"] = "cgroup" if cgroup is not None else "watchdog"
            _bounds["diskBound"] = "tmpfs" if bounded else "watchdog"
            return cls(root, uid, bounded, cgroup, disk_mb)
        except BaseException:
            _remove_root(root)
            raise

    def _subdir(self, name: str) -> str:
        path = os.path.join(self.root, name)
        os.mkdir(path, 0o700)
        if self.uid is not None:
            os.chown(path, self.uid, self.uid)
        return path

    def bound(self, limits: Limits) -> Limits:
        """limits with the task's disk bound: the tmpfs holds the files in all (each
        file may take it whole); without it, the sandbox's watchdog sums the blocks
        under the task's directories (and, without a cgroup, the tree's memory)."""
        if self.disk_bounded:
            return limits._replace(max_file_mb=self.disk_mb)
        return limits._replace(disk_mb=self.disk_mb)

    def write_program(self, filename: str, text: str) -> str:
        """The program's directory (bound read-only into the sandbox), with the file."""
        program_dir = self._subdir("program")
        fd = os.open(
            os.path.join(program_dir, filename), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600
        )
        with open(fd, "w", encoding="utf-8") as program:
            if self.uid is not None:
                os.fchown(fd, self.uid, self.uid)
            program.write(text)
        return program_dir

    def close(self) -> None:
        """Stop whatever of the task still runs, then remove all of it."""
        if self.cgroup is not None:
            self.cgroup.remove()
        if self.disk_bounded:
            _, libc = _libc()
            libc.umount2(self.root.encode(), MNT_DETACH)
        _remove_root(self.root)

    def __enter__(self) -> TaskSpace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove_root(root: str) -> None:
    # remove_tree, not shutil.rmtree: a program may leave 1,100 nested directories,
    # which rmtree's recursion cannot remove (issue 9).
    try:
        remove_tree(root)
    except OSError as error:
        log.warning("could not remove all of %s: %s", root, error)
    with contextlib.suppress(FileNotFoundError):
        if os.path.exists(root):
            log.warning("could not remove all of %s", root)
