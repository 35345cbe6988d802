"""The task's workspace on the host: created for the sandbox's uid, input files
written in, output files read back. Nothing here follows a symlink, at any level:
the workspace is written by untrusted code, so every path is opened relative to a
directory handle with O_NOFOLLOW."""

from __future__ import annotations

import contextlib
import errno
import os
import random

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


def write_input_files(workspace: str | os.PathLike, files: dict, owner_uid: int | None) -> None:
    """Write the task's input files; relative paths only, never through a symlink.
    A value is the file's text, its bytes, or a function that fills the open fd.

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
            with open(fd, "wb") as out:
                _give(fd, owner_uid)
                value = files[name]
                if callable(value):
                    value(fd)
                else:
                    out.write(value.encode() if isinstance(value, str) else value)
        finally:
            os.close(dir_fd)


def ensure_dirs(workspace: str | os.PathLike, parts: list[str], owner: int | None) -> list[str]:
    """Make workspace/parts[0]/parts[1]/... directories owned by owner, never through
    a symlink: the workspace is the sandbox's, which may have planted one there (a
    conversation's workspace comes back from its last turn) to steer root's mkdir and
    chown onto a host path (issue 18). Whatever is in the way that is not a real
    directory (a symlink, dangling or not, a file) is removed and replaced: these are
    the runner's own directories, and refusing would stop the conversation for good.
    Returns what was replaced, for the log."""
    replaced = []
    dir_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=dir_fd)
            except FileNotFoundError:
                child = _make_dir_at(part, dir_fd)
            except OSError as error:
                if error.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                os.unlink(part, dir_fd=dir_fd)  # unlink never follows the symlink
                replaced.append(part)
                child = _make_dir_at(part, dir_fd)
            os.close(dir_fd)
            dir_fd = child
            _give(dir_fd, owner)
    finally:
        os.close(dir_fd)
    return replaced


def exists_beneath(workspace: str | os.PathLike, parts: list[str]) -> bool:
    """Whether workspace/parts... is a regular file, reached through no symlink."""
    fd = -1
    try:
        fd = os.open(workspace, _DIR_FLAGS)
        for part in parts[:-1]:
            fd, parent = os.open(part, _DIR_FLAGS, dir_fd=fd), fd
            os.close(parent)
        found = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False)
    except OSError:
        return False
    finally:
        if fd >= 0:
            os.close(fd)
    return (found.st_mode & 0o170000) == 0o100000  # S_ISREG


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _make_dir_at(name: str, dir_fd: int) -> int:
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)


def random_sandbox_uid() -> int:
    return random.randrange(*SANDBOX_UID_RANGE)


def sandbox_owner(workspace: str | os.PathLike) -> int:
    owner = os.lstat(workspace).st_uid
    return owner if SANDBOX_UID_RANGE[0] <= owner < SANDBOX_UID_RANGE[1] else random_sandbox_uid()


def chown_tree(workspace: str | os.PathLike, uid: int) -> None:
    if os.lstat(workspace).st_uid == uid:
        return
    os.chown(workspace, uid, uid, follow_symlinks=False)
    for parent, dirs, files in os.walk(os.fspath(workspace)):
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
