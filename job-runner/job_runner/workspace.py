"""The task's workspace on the host: created for the sandbox's uid, input files
written in, output files read back. Nothing here follows a symlink, at any level:
the workspace is written by untrusted code, so every path is opened relative to a
directory handle with O_NOFOLLOW."""

from __future__ import annotations

import contextlib
import errno
import os
import random
import stat

SANDBOX_UID_RANGE = (200_000, 260_000)  # per-run uids, far from any real account


def make_private_dir(parent: str | os.PathLike, prefix: str) -> str:
    """A new 0700 directory under `parent`, like tempfile.mkdtemp.

    Our own few lines: the runner starts once per task, and tempfile (with pathlib and
    typing, which the runner also avoids) adds ~10 ms to every task's start-up on this
    project's machines (`make bench`)."""
    for _ in range(100):
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free directory name under {parent}")


def prepare_workspace(root: str | os.PathLike) -> tuple[str, int | None]:
    """A fresh 0700 workspace under root, owned by a new sandbox uid when we are root.

    root is created traversable (0711) if missing, as the sandbox uid must reach it.
    """
    os.makedirs(root, mode=0o711, exist_ok=True)
    workspace = make_private_dir(root, "workspace-")
    if os.geteuid() != 0:
        return workspace, None
    uid = random_sandbox_uid()
    os.chown(workspace, uid, uid)
    return workspace, uid


def write_input_files(
    workspace: str | os.PathLike, files: dict[str, str], owner_uid: int | None
) -> None:
    """Write the task's input files; relative paths only, never through a symlink.

    :raises ValueError: a path is absolute, empty, has "..", "." or NUL, or already exists.
    """
    checked = {name: _relative_parts(name) for name in files}
    for name, parts in checked.items():
        dir_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            for part in parts[:-1]:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=dir_fd)
                parent_fd, dir_fd = dir_fd, _open_at(part, dir_fd, os.O_DIRECTORY, name)
                os.close(parent_fd)
                _give(dir_fd, owner_uid)
            fd = _open_at(parts[-1], dir_fd, os.O_CREAT | os.O_EXCL | os.O_WRONLY, name)
            with open(fd, "w", encoding="utf-8") as out:
                _give(fd, owner_uid)
                out.write(files[name])
        finally:
            os.close(dir_fd)


def collect_output_files(
    workspace: str | os.PathLike,
    *,
    max_files: int = 100,
    max_inline_bytes: int = 8192,
    max_total_inline: int = 65536,
) -> list[dict]:
    """List the workspace's files, in path order (component by component), capped.

    Nothing is followed: symlinks are listed as such and never read, other
    non-regular files are skipped. Small UTF-8 files come back with their content.
    """
    items: list[dict] = []
    budget = max_total_inline

    def visit(dir_fd: int, prefix: str) -> None:
        with os.scandir(dir_fd) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
        for entry in entries:
            path = prefix + entry.name
            if len(items) >= max_files:
                return
            if entry.is_symlink():
                items.append({"path": path, "size": 0, "content": None, "symlink": True})
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            try:
                fd = _open_at(entry.name, dir_fd, os.O_DIRECTORY if is_dir else os.O_NONBLOCK, path)
            except (ValueError, OSError):
                continue  # gone, swapped or unreadable since the scan
            try:
                if is_dir:
                    visit(fd, path + "/")
                else:
                    read(fd, path)
            finally:
                os.close(fd)

    def read(fd: int, path: str) -> None:
        nonlocal budget
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return  # fifos, sockets
        content = None
        if info.st_size <= min(max_inline_bytes, budget):
            data = os.read(fd, max_inline_bytes + 1)
            with contextlib.suppress(UnicodeDecodeError):
                if len(data) <= min(max_inline_bytes, budget):
                    content = data.decode("utf-8")
                    budget -= len(data)
        items.append({"path": path, "size": info.st_size, "content": content})

    root_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        visit(root_fd, "")
    finally:
        os.close(root_fd)
    return items


def random_sandbox_uid() -> int:
    return random.randrange(*SANDBOX_UID_RANGE)


def sandbox_owner(workspace: str | os.PathLike) -> int:
    owner = os.lstat(workspace).st_uid
    return owner if SANDBOX_UID_RANGE[0] <= owner < SANDBOX_UID_RANGE[1] else random_sandbox_uid()


def chown_tree(workspace: str | os.PathLike, uid: int) -> None:
    if os.lstat(workspace).st_uid == uid:
        return
    os.chown(workspace, uid, uid, follow_symlinks=False)
    for parent, dirs, files in os.walk(workspace):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, uid, follow_symlinks=False)


def _relative_parts(name: str) -> list[str]:
    parts = name.split("/")
    if "\0" in name or any(part in ("", ".", "..") for part in parts):  # "/a" starts with ""
        raise ValueError(f"input file path {name!r} must be relative, without '..' or '.'")
    return parts


def _open_at(name: str, dir_fd: int, flags: int, shown: str) -> int:
    try:
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dir_fd)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ELOOP, errno.ENOTDIR):
            raise ValueError(f"{shown!r} already exists or goes through a symlink") from None
        raise


def _give(fd: int, uid: int | None) -> None:
    if uid is not None:
        os.fchown(fd, uid, uid)
