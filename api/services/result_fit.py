"""A result that fits in its task's Firestore document (1 MiB in all, input included).

The runner keeps 128 KiB of each output stream, but what those bytes become once
stored can be larger: invalid UTF-8 decodes to U+FFFD (3 bytes each), quotes and
backslashes are escaped. Rather than let Firestore refuse the document, and lose the
task's result, the longest text of the result is cut, and marked truncated, until it
fits beside the task's input.
"""

from __future__ import annotations

from typing import Any

from api.adapters.firestore_codec import stored_size
from api.models.documents import TaskDoc

# Firestore's limit is 1,048,576 bytes per document; the rest of a task's fields
# (status, times, execution, claim, error) take a few KiB.
MAX_TASK_DOCUMENT_BYTES = 960_000
TRIMMED_TEXTS = {"stdout": "stdoutTruncated", "stderr": "stderrTruncated", "text": None}


def fit_result(task: TaskDoc, result: dict[str, Any] | None) -> dict[str, Any] | None:
    """`result`, cut down (if need be) to fit in `task`'s document."""
    if result is None:
        return None
    room = MAX_TASK_DOCUMENT_BYTES - stored_size(task.get("input")) - stored_size(task.get("agent"))
    size = stored_size(result)
    if size <= room:
        return result
    fitted = dict(result)
    if fitted.get("files"):  # inline contents go first: files are listed all the same
        fitted["files"] = [dict(f, content=None) for f in fitted["files"]]
        size = stored_size(fitted)
    while size > room:
        texts = [name for name in TRIMMED_TEXTS if isinstance(fitted.get(name), str)]
        longest = max(texts, key=lambda name: len(fitted[name]), default=None)
        if longest is None or not fitted[longest]:
            break
        fitted[longest] = fitted[longest][: len(fitted[longest]) * 3 // 4]
        flag = TRIMMED_TEXTS[longest]
        if flag:
            fitted[flag] = True
        size = stored_size(fitted)
    return fitted
