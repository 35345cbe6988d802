"""Output files: what a program left in its workspace, walked once, after it ended.

Whatever is there, the walk finishes and the task's result is reported: a file that
cannot be kept (a name that is not UTF-8, a path too long or too deep, a fifo, a
socket, a device, something unreadable or changing as it is read, a limit reached)
is listed under `skipped` with its reason. The walk is iterative (no recursion
limit), holds at most MAX_DEPTH directory handles, and never follows a symlink: every
name is opened relative to its directory's handle with O_NOFOLLOW.

The hidden directory `.engine/` at the top (an agent engine's own state, which
travels in a conversation's workspace snapshot) is never listed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections import namedtuple

ENGINE_DIR = ".engine"
MAX_DEPTH = 128
READ_BYTES = 1024 * 1024

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from job_runner.spec import OutputLimitsSpec

    # store(fd, size, index) -> sha256 of the bytes stored
    Store = Callable[[int, int, int], str]


class OutputLimits(
    namedtuple(
        "OutputLimits",
        "max_files max_file_bytes max_total_bytes max_path_chars max_skipped_listed "
        "inline_bytes inline_total_bytes max_listing_chars",
        # The first four come from the task's spec (the API's limits); the rest are the
        # runner's own. The listing lives in the task's Firestore document (1 MiB at
        # most): its paths together (max_listing_chars) stay well below that.
        defaults=(100, 8192, 65536, 200_000),
    )
):
    """What collect_outputs keeps. A namedtuple, not a dataclass: `dataclasses`
    (with `inspect`) adds ~10 ms to every runner's start (`make bench`)."""

    __slots__ = ()

    @classmethod
    def from_spec(cls, spec: OutputLimitsSpec) -> OutputLimits:
        """The limits of the spec's `limits.outputs` (the API's, never copied here)."""
        return cls(
            spec["maxFiles"], spec["maxFileBytes"], spec["maxTotalBytes"], spec["maxPathChars"]
        )


class SkipFile(Exception):
    """This file cannot be kept; the message is the reason listed."""


def shown(path: str) -> str:
    """A path as a person can read it: bytes that are not UTF-8 and control
    characters (a newline, an ESC sequence for a terminal) as \\xNN escapes, and at
    most 300 characters."""
    text = os.fsencode(path).decode("utf-8", "backslashreplace")
    text = "".join(f"\\x{ord(c):02x}" if _is_control(c) else c for c in text)
    return text if len(text) <= 300 else text[:299] + "…"


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0


class _Collector:
    def __init__(self, limits: OutputLimits, store: Store | None) -> None:
        self.limits, self.store = limits, store
        self.files: list[dict] = []
        self.skipped: list[dict] = []
        self.skipped_count = 0
        self.total_bytes = 0
        self.inline_budget = limits.inline_total_bytes
        self.listing_budget = limits.max_listing_chars

    def skip(self, path: str, reason: str) -> None:
        self.skipped_count += 1
        if len(self.skipped) < self.limits.max_skipped_listed:
            self.skipped.append({"path": shown(path), "reason": reason})

    def entry(self, dir_fd: int, name: str, path: str, depth: int) -> int | None:
        """Handle one directory entry; returns a directory's handle to descend into."""
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            self.skip(path, "name_not_utf8")
            return None
        if any(_is_control(char) for char in name):
            # Names go into result.files, archives' listings, logs and terminals.
            self.skip(path, "name_has_control_characters")
            return None
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as error:
            self.skip(path, f"unreadable: {error.strerror}")
            return None
        if len(path) > self.limits.max_path_chars:
            self.skip(path, f"path_too_long: over {self.limits.max_path_chars} characters")
            return None
        if stat.S_ISDIR(info.st_mode):
            if depth >= MAX_DEPTH:
                self.skip(path + "/", f"too_deep: over {MAX_DEPTH} levels")
                return None
            try:
                return _open(name, dir_fd, os.O_DIRECTORY)
            except OSError as error:
                self.skip(path + "/", f"unreadable: {error.strerror}")
                return None
        if len(self.files) >= self.limits.max_files:
            self.skip(path, f"too_many_files: over {self.limits.max_files}")
            return None
        if len(path) > self.listing_budget:
            self.skip(path, "listing_full: the paths listed fill the result")
            return None
        self.listing_budget -= len(path)
        if stat.S_ISLNK(info.st_mode):
            target = _target(name, dir_fd)
            self.files.append({"path": path, "size": 0, "symlink": True, "target": target})
            return None
        if not stat.S_ISREG(info.st_mode):
            self.skip(path, f"not_a_regular_file: {_kind(info.st_mode)}")
            return None
        try:
            self.regular(dir_fd, name, path, info)
        except SkipFile as reason:
            self.skip(path, str(reason))
        return None

    def regular(self, dir_fd: int, name: str, path: str, info: os.stat_result) -> None:
        limits = self.limits
        if info.st_size > limits.max_file_bytes:
            raise SkipFile(f"too_large: over {limits.max_file_bytes} bytes")
        if self.total_bytes + info.st_size > limits.max_total_bytes:
            raise SkipFile(f"total_too_large: the task's files pass {limits.max_total_bytes} bytes")
        try:
            fd = _open(name, dir_fd, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as error:
            raise SkipFile(f"unreadable: {error.strerror}") from None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode) or before.st_ino != info.st_ino:
                raise SkipFile("changed_while_read: replaced since it was listed")
            size = before.st_size
            head = os.pread(fd, limits.inline_bytes + 1, 0) if size <= limits.inline_bytes else b""
            index = len(self.files)
            store = self.store or (lambda fd, size, _index: _sha256(fd, size))
            sha256 = store(fd, size, index)
            after = os.fstat(fd)
            if (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns):
                raise SkipFile("changed_while_read: it changed while it was stored")
        except OSError as error:
            raise SkipFile(f"unreadable: {error.strerror}") from None
        finally:
            os.close(fd)
        entry = {"path": path, "size": size, "sha256": sha256, "content": None}
        if self.store is not None:
            entry["stored"] = index
        if len(head) == size and size <= self.inline_budget:
            with contextlib.suppress(UnicodeDecodeError):
                entry["content"] = head.decode("utf-8")
                self.inline_budget -= size
        self.total_bytes += size
        self.files.append(entry)


def collect_outputs(
    workspace: str | os.PathLike, limits: OutputLimits, store: Store | None = None
) -> dict:
    """{"files", "skipped", "skippedCount"} for the workspace, in path order."""
    collector = _Collector(limits, store)
    root_fd = os.open(workspace, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    # A stack of (handle, path prefix, names still to visit): one handle per level.
    stack = [(root_fd, "", _names(root_fd, top=True))]
    try:
        while stack:
            dir_fd, prefix, names = stack[-1]
            if not names:
                os.close(dir_fd)
                stack.pop()
                continue
            name = names.pop()
            child = collector.entry(dir_fd, name, prefix + name, len(stack))
            if child is not None:
                stack.append((child, prefix + name + "/", _names(child)))
    finally:
        for dir_fd, _, _ in stack:
            os.close(dir_fd)
    return {
        "files": collector.files,
        "skipped": collector.skipped,
        "skippedCount": collector.skipped_count,
    }


def _names(dir_fd: int, top: bool = False) -> list[str]:
    """A directory's names, reversed so that pop() yields them in sorted order."""
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return []
    if top:
        names = [n for n in names if n != ENGINE_DIR]
    return sorted(names, key=os.fsencode, reverse=True)


def _open(name: str, dir_fd: int, flags: int) -> int:
    return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)


def _target(name: str, dir_fd: int) -> str | None:
    try:
        target = os.readlink(name, dir_fd=dir_fd)
    except OSError:
        return None
    return shown(target)


def _kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return kind
    return "unknown"


def _sha256(fd: int, size: int) -> str:
    import hashlib  # here: a task that leaves no file does not pay for it at start-up

    digest, offset = hashlib.sha256(), 0
    while offset < size:
        data = os.pread(fd, min(READ_BYTES, size - offset), offset)
        if not data:
            raise SkipFile("changed_while_read: it shrank while it was read")
        digest.update(data)
        offset += len(data)
    return digest.hexdigest()


def remove_tree(path: str | os.PathLike) -> None:
    """Delete a directory tree of any depth and any names, without recursion and with
    one directory handle at a time: go down into the first subdirectory, delete what
    is not a directory, step back up through ".." and remove the emptied one. Safe
    because nothing below `path` can change meanwhile: the sandbox has ended."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        os.unlink(path)
        return
    trail: list[str] = []  # the names from `path` down to fd's directory
    while True:
        child = None
        for name in os.listdir(fd):
            try:
                os.unlink(name, dir_fd=fd)
            except IsADirectoryError:
                child = name
                break
        if child is not None:
            below = _open(child, fd, os.O_RDONLY | os.O_DIRECTORY)
            os.close(fd)
            fd = below
            trail.append(child)
            continue
        if not trail:
            os.close(fd)
            break
        parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        os.close(fd)
        os.rmdir(trail.pop(), dir_fd=parent)
        fd = parent
    os.rmdir(path)
