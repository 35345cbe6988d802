"""A deadline on every Firestore call, so that an outage is a quick 503.

The generated Firestore client retries each call for up to 60 s (`get_document`) to
300 s (`commit`, `run_query`), and waits up to 60 s for each attempt: a request thread
waited minutes on an emulator that was stopped, and as long as one was frozen (issue
21). The client takes `retry=`/`timeout=` per call but no client-wide default, so the
defaults it wrapped each method with are shortened here, once, where it is built.
https://googleapis.dev/python/google-api-core/latest/retry.html
"""

from __future__ import annotations

from typing import Any


def bound_every_call(client: Any, deadline_seconds: float) -> None:
    """Cap every RPC of a `google.cloud.firestore.Client`: its retries end after
    `deadline_seconds`, and so does each attempt (a frozen backend answers nothing)."""
    transport = client._firestore_api._transport
    for method in transport._wrapped_methods.values():
        retry = getattr(method, "_retry", None)
        if retry is not None:
            method._retry = retry.with_timeout(deadline_seconds)
        timeout = getattr(method, "_timeout", None)
        if timeout is None or (isinstance(timeout, int | float) and timeout > deadline_seconds):
            method._timeout = deadline_seconds
