"""Bounds that hold without a cgroup: a watchdog over one run's process tree and its
writable space (issue 18).

Where no per-task cgroup can be made (cgroups.py logs why), RLIMIT_AS binds each
process alone and not at all for Claude Code (see Limits.address_space_limit), and
without the task's tmpfs (task_space.py) its files go to the host's disk. The
watchdog sums the proportional set size (Pss: shared pages split among their users,
so forked children are not counted twice) of every process descending from the
sandbox's first process, and the blocks under the run's writable directories; past
a bound, the run is stopped (`memory_exceeded` / `disk_exceeded`) and every process
of the tree is killed. Checked every few hundred milliseconds: a program may
overshoot for that long, which is the price of having no kernel bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

MEMORY_EVERY_SECONDS = 0.2
DISK_EVERY_SECONDS = 1.0
PAGE = os.sysconf("SC_PAGE_SIZE")


def process_tree(root: int) -> list[int]:
    """root and every live process descending from it (by parent pid, from /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def memory_of(pid: int) -> int:
    """Bytes of memory a process holds (Pss, else resident pages), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def disk_usage(path: str) -> int:
    """Bytes allocated under path, never following a symlink."""
    total, todo = 0, [path]
    while todo:
        with contextlib.suppress(OSError), os.scandir(todo.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += entry.stat(follow_symlinks=False).st_blocks * 512
                    if entry.is_dir(follow_symlinks=False):
                        todo.append(entry.path)
    return total


def kill_tree(root: int) -> None:
    """SIGKILL root's whole tree, parents first so that none forks again."""
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


class Watchdog:
    """Watches one run: `check()` says "memory_exceeded" or "disk_exceeded" once
    the tree's memory or the directories' blocks pass their bound."""

    def __init__(self, root: int, memory_mb: int | None, disk_mb: int | None, paths=()) -> None:
        self.root = root
        self.memory_bytes = memory_mb * 1024 * 1024 if memory_mb else None
        self.disk_bytes = disk_mb * 1024 * 1024 if disk_mb and paths else None
        self.paths = [os.fspath(path) for path in paths]
        self.peak_memory = 0
        self._next_memory = self._next_disk = 0.0

    def check(self) -> str | None:
        now = time.monotonic()
        if self.memory_bytes is not None and now >= self._next_memory:
            self._next_memory = now + MEMORY_EVERY_SECONDS
            held = sum(memory_of(pid) for pid in process_tree(self.root))
            self.peak_memory = max(self.peak_memory, held)
            if held > self.memory_bytes:
                return "memory_exceeded"
        if self.disk_bytes is not None and now >= self._next_disk:
            self._next_disk = now + DISK_EVERY_SECONDS
            if sum(disk_usage(path) for path in self.paths) > self.disk_bytes:
                return "disk_exceeded"
        return None
