"""A conversation's workspace between turns: one tar.gz archive, restored before a
turn and saved after it (DESIGN section 11). The hidden `.engine/` directory (an
engine's own state, such as Claude Code's session under HOME=/workspace/.engine/home)
travels in it like any other file.

GNU tar does the walking: it handles any depth, any name and every kind of file
without following symlinks. Python counts the uncompressed stream (the workspace's
size, to enforce its limit) and gzips it into a private file on the host, outside the
workspace, which is then sent to the API in pieces (file_channel.py). The archive is
extracted as the sandbox's uid, so whatever it holds lands with that uid's rights.
"""

from __future__ import annotations

import os
import subprocess
import zlib

READ_BYTES = 1024 * 1024
TAR = "tar"


class WorkspaceTooLarge(Exception):
    pass


def save_archive(workspace: str, archive_path: str, max_bytes: int, compress: bool = True) -> int:
    """Write workspace as a tar.gz (a plain tar without `compress`) to archive_path;
    returns the archive's size.

    :raises WorkspaceTooLarge: the workspace holds more than max_bytes.
    """
    process = subprocess.Popen(
        [TAR, "--create", "--file=-", "--format=gnu", "--numeric-owner", "-C", workspace, "."],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    # Level 1: a turn waits for this, and the fastest level compresses text nearly as
    # well (wbits 31: the gzip format).
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    total = 0
    assert process.stdout is not None  # started with stdout=PIPE
    try:
        with open(archive_path, "wb", opener=_private) as out:
            while chunk := process.stdout.read(READ_BYTES):
                total += len(chunk)
                if total > max_bytes:
                    raise WorkspaceTooLarge(f"the workspace holds more than {max_bytes} bytes")
                out.write(compressor.compress(chunk) if compress else chunk)
            if compress:
                out.write(compressor.flush())
        _, errors = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # 1: "some files differ" (changed while read); the archive is still whole.
    if process.returncode not in (0, 1):
        raise OSError(f"tar could not archive the workspace: {errors.decode()[-500:]}")
    return os.path.getsize(archive_path)


def restore_archive(archive_path: str, workspace: str, uid: int | None) -> None:
    """Extract the tar.gz into the (empty) workspace, as the sandbox uid."""
    command = [TAR, "--extract", "--gzip", f"--file={archive_path}", "-C", workspace]
    command += ["--no-same-owner", "--no-overwrite-dir"]
    if uid is not None:
        os.chown(archive_path, uid, uid)
    done = subprocess.run(
        command,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        user=uid,
        group=uid,
        extra_groups=[] if uid is not None else None,
        check=False,
    )
    if done.returncode != 0:
        raise OSError(f"tar could not restore the workspace: {done.stderr.decode()[-500:]}")


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
