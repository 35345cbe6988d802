"""A cgroup per task: its memory (tmpfs pages included) and its process count bound
the whole task, however many processes it forks, where RLIMIT_AS binds each process
alone (issue 9: six children of 400 MiB under `memoryMb: 512`).

Made under the runner's own cgroup, where the host lets us make one: cgroup v2 with
the memory controller delegated to us (enabled in our parent's subtree_control, or
enabled here after moving the runner into a leaf of its own, as the v2 "no internal
processes" rule asks), else cgroup v1's memory and pids hierarchies (as root). Where
neither can be made, `TaskCgroup.create` returns None, says why in one log line, and
the sandbox falls back to per-process rlimits.
https://docs.kernel.org/admin-guide/cgroup-v2.html#delegation
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from job_runner.logs import log

ROOT = "/sys/fs/cgroup"
# Task cgroups are named task-<taskId>-<runner pid> under the runner's own cgroup; the
# local executor removes what a killed runner left (api/adapters/executors/local_cleanup.py).
PREFIX = "task-"
REMOVE_SECONDS = 5.0


def _own_paths() -> dict[str, str]:
    """Controller (or "" for v2) -> our cgroup's path, from /proc/self/cgroup."""
    paths = {}
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                paths[name] = path
    return paths


def _write(path: str, value: str) -> None:
    with open(path, "w") as out:
        out.write(value)


def _read(path: str) -> str:
    with open(path) as source:
        return source.read()


def _counter(path: str, name: str) -> int:
    """`name N` from a flat keyed file (memory.events, memory.oom_control)."""
    with contextlib.suppress(OSError):
        for line in _read(path).splitlines():
            key, _, value = line.partition(" ")
            if key == name:
                return int(value)
    return 0


def _v2_parent(own: str) -> str | None:
    """Our v2 cgroup, with memory and pids enabled for its children, or None."""
    mount = ROOT if os.path.exists(f"{ROOT}/cgroup.controllers") else f"{ROOT}/unified"
    here = mount + own.rstrip("/")
    try:
        available = _read(f"{here}/cgroup.controllers").split()
        if "memory" not in available:
            return None
        enabled = _read(f"{here}/cgroup.subtree_control").split()
        if "memory" not in enabled:
            # Processes may not sit in a cgroup whose children get controllers: the
            # runner moves into a leaf first, if it is alone here (as in its container).
            if _read(f"{here}/cgroup.procs").split() != [str(os.getpid())]:
                return None
            leaf = f"{here}/runner"
            os.makedirs(leaf, exist_ok=True)
            _write(f"{leaf}/cgroup.procs", "0")
            wanted = [c for c in ("memory", "pids") if c in available]
            _write(f"{here}/cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))
    except OSError:
        return None
    return here


class TaskCgroup:
    """One task's cgroup directories (one for v2; memory and pids for v1)."""

    def __init__(self, version: int, memory_dir: str, pids_dir: str | None) -> None:
        self.version = version
        self.memory_dir = memory_dir
        self.dirs = [d for d in (memory_dir, pids_dir) if d]
        self._oom_seen = self.oom_kills()

    @classmethod
    def create(cls, name: str, memory_mb: int, max_processes: int) -> TaskCgroup | None:
        """A new cgroup `name` bounded to memory_mb (no swap) and max_processes, or
        None (logged once, with the reason) where the host gives us none."""
        try:
            own = _own_paths()
        except OSError as error:
            log.warning("no per-task cgroup (%s): per-process limits only", error)
            return None
        v2 = _v2_parent(own.get("", "/")) if "" in own else None
        try:
            if v2 is not None:
                return cls._make_v2(f"{v2}/{name}", memory_mb, max_processes)
            if "memory" in own and os.path.isdir(f"{ROOT}/memory"):
                return cls._make_v1(own, name, memory_mb, max_processes)
        except OSError as error:
            log.warning("no per-task cgroup (%s): per-process limits only", error)
            return None
        log.warning("no per-task cgroup (no writable memory controller): per-process limits only")
        return None

    @classmethod
    def _make_v2(cls, path: str, memory_mb: int, max_processes: int) -> TaskCgroup:
        os.mkdir(path, 0o755)
        try:
            _write(f"{path}/memory.max", str(memory_mb * 1024 * 1024))
            with contextlib.suppress(FileNotFoundError):  # no swap accounting: no swap
                _write(f"{path}/memory.swap.max", "0")
            _write(f"{path}/memory.oom.group", "1")
            with contextlib.suppress(FileNotFoundError):
                _write(f"{path}/pids.max", str(max_processes))
        except OSError:
            os.rmdir(path)
            raise
        return cls(2, path, None)

    @classmethod
    def _make_v1(cls, own: dict, name: str, memory_mb: int, max_processes: int) -> TaskCgroup:
        memory = f"{ROOT}/memory{own['memory'].rstrip('/')}/{name}"
        os.mkdir(memory, 0o755)
        pids = None
        try:
            limit = str(memory_mb * 1024 * 1024)
            _write(f"{memory}/memory.limit_in_bytes", limit)
            with contextlib.suppress(FileNotFoundError):  # memsw >= limit: set it after
                _write(f"{memory}/memory.memsw.limit_in_bytes", limit)
            if "pids" in own and os.path.isdir(f"{ROOT}/pids"):
                pids = f"{ROOT}/pids{own['pids'].rstrip('/')}/{name}"
                os.mkdir(pids, 0o755)
                _write(f"{pids}/pids.max", str(max_processes))
        except OSError:
            for path in (pids, memory):
                if path:
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
            raise
        return cls(1, memory, pids)

    def set_max_processes(self, count: int) -> None:
        """A new pids.max (gVisor's own threads count here; its program's processes
        are bounded inside it, by RLIMIT_NPROC)."""
        for path in self.dirs:
            if os.path.exists(f"{path}/pids.max"):  # v1: the pids directory only
                _write(f"{path}/pids.max", str(count))

    def attach_fds(self) -> list[int]:
        """Open `cgroup.procs` of each directory, for the sandbox's child to write "0"
        to (moving itself) after it has dropped root: the open-time credentials are
        the runner's, which may move a process there."""
        return [os.open(f"{d}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC) for d in self.dirs]

    def oom_kills(self) -> int:
        if self.version == 2:
            return _counter(f"{self.memory_dir}/memory.events", "oom_kill")
        return _counter(f"{self.memory_dir}/memory.oom_control", "oom_kill")

    def memory_exceeded(self) -> bool:
        """Whether the kernel killed a process of this task for memory since the last
        call (the cgroup outlives one sandbox run: an agent's tool calls share it)."""
        seen, self._oom_seen = self._oom_seen, self.oom_kills()
        return self._oom_seen > seen

    def kill(self) -> None:
        """SIGKILL every process in the task's cgroup."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                _write(f"{self.memory_dir}/cgroup.kill", "1")
                return
        kill_members(self.dirs)

    def remove(self) -> None:
        """Kill what is left and remove the directories (waiting for the exits)."""
        remove_cgroups(self.dirs)


def kill_members(dirs: list[str]) -> None:
    for path in dirs:
        with contextlib.suppress(OSError):
            for pid in _read(f"{path}/cgroup.procs").split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)


def remove_cgroups(dirs: list[str]) -> None:
    deadline = time.monotonic() + REMOVE_SECONDS
    for path in dirs:
        while os.path.isdir(path):
            kill_members([path])
            try:
                os.rmdir(path)
            except OSError as error:  # EBUSY until its killed processes have exited
                if time.monotonic() > deadline:
                    log.warning("could not remove cgroup %s: %s", path, error)
                    break
                time.sleep(0.01)
