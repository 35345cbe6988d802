"""Keep the server's memory flat while it streams big files.

Uploads and downloads move through the API in pieces of a few MiB (file_store.py).
glibc's malloc then works against that in two ways: its mmap threshold rises to the
size of the last large block freed (up to 32 MiB), so later pieces come from the heap
and stay there after they are freed; and each gunicorn thread may get an arena of its
own, which keeps its freed pieces too. Fixing the threshold (which also stops its
rise) gives every piece back to the system when it is freed, and two arenas are
plenty for a server whose threads mostly wait on I/O. See mallopt(3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 1024 * 1024
ARENA_MAX = 2


def tune_malloc() -> bool:
    """Apply the settings above when the C library is glibc; False elsewhere."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt): nothing to tune
    ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = mallopt(M_ARENA_MAX, ARENA_MAX) == 1 and ok
    if not ok:
        logging.getLogger(__name__).warning("mallopt refused the memory settings")
    return ok
