"""The system a task sees: the task root (TASK_ROOT), or without one the host's /usr.

The task root is the default environment (environments/default/), the same in the
runner image (/opt/task-root) and locally (devtools/task_root.py): a tool only the
host has is not visible to a task. Every sandbox backend takes its system from
`system_mounts`, each in its own terms (bwrap options, an OCI spec's mounts).
"""

from __future__ import annotations

import os

# Debian/Ubuntu merge /bin, /lib... into /usr as symlinks; the host's layout is kept.
MERGED_USR_DIRS = ("bin", "lib", "lib64", "sbin")
# A root's top-level entries that are not the system: the sandbox makes its own.
NOT_SYSTEM = frozenset(
    ("proc", "dev", "sys", "tmp", "run", "home", "root", "mnt", "media", "boot", "srv")
)


def configured_task_root() -> str | None:
    """The runner's TASK_ROOT (the image sets /opt/task-root), or None: the host's /usr."""
    return os.environ.get("TASK_ROOT") or None


class TaskRootError(Exception):
    """TASK_ROOT names no root filesystem."""


def system_mounts(task_root: str | None, skip: tuple[str, ...] = ()) -> list[tuple[str, str, str]]:
    """("ro-bind", source, destination) and ("symlink", target, destination) entries,
    read-only, for the sandbox's own root: the task root's top-level directories and
    symlinks (skip names more the sandbox mounts itself, e.g. "workspace"), or, with
    no task root, the host's /usr and its merged directories.

    :raises TaskRootError: task_root is set but holds no usr/.
    """
    if task_root is None:
        mounts = [("ro-bind", "/usr", "/usr")]
        for name in MERGED_USR_DIRS:
            host = f"/{name}"
            if os.path.islink(host):
                mounts.append(("symlink", os.readlink(host), host))
            elif os.path.isdir(host):
                mounts.append(("ro-bind", host, host))
        return mounts
    if not os.path.isdir(os.path.join(task_root, "usr")):
        raise TaskRootError(f"the task root {task_root!r} (TASK_ROOT) is not a root filesystem")
    mounts = []
    for name in sorted(os.listdir(task_root)):
        path = os.path.join(task_root, name)
        if name in NOT_SYSTEM or name in skip:
            continue
        if os.path.islink(path):
            mounts.append(("symlink", os.readlink(path), f"/{name}"))
        elif os.path.isdir(path):
            mounts.append(("ro-bind", path, f"/{name}"))
    return mounts
