"""Forgetting a secret the runner was started with (the task token, issue 18).

os.environ.pop removes a variable from the C library's `environ`, which is what a
child inherits, but /proc/<pid>/environ shows the process's initial environment
block, which the kernel keeps pointing at (env_start..env_end in /proc/<pid>/stat):
the variable's value stays readable there by anything that may read that file. So
the value is also overwritten in place, through /proc/self/mem (a process may always
write its own memory this way).
"""

from __future__ import annotations

import contextlib
import os

ENV_START_FIELD, ENV_END_FIELD = 50, 51  # /proc/<pid>/stat, counting from 1


def forget_environment_variable(name: str) -> bool:
    """Drop name from os.environ and blank its value in the initial environment
    block; True when that block no longer holds it."""
    os.environ.pop(name, None)
    prefix = name.encode() + b"="
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/self/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 (the state): field N is fields[N - 3].
        start, end = int(fields[ENV_START_FIELD - 3]), int(fields[ENV_END_FIELD - 3])
        with open("/proc/self/mem", "r+b", buffering=0) as memory:
            memory.seek(start)
            offset = 0
            for entry in memory.read(end - start).split(b"\0"):
                if entry.startswith(prefix):
                    memory.seek(start + offset + len(prefix))
                    memory.write(b"\0" * (len(entry) - len(prefix)))
                offset += len(entry) + 1
        return _clean(prefix)
    return False


def _clean(prefix: bytes) -> bool:
    with open("/proc/self/environ", "rb") as environ:
        return not any(entry.startswith(prefix) and len(entry) > len(prefix)
                       for entry in environ.read().split(b"\0"))  # fmt: skip
