"""The API's one way to retry a call: google.api_core's `Retry`, as the Google clients
retry (exponential backoff with jitter, bounded by a deadline)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def retry_call(
    call: Callable[[], T],
    *,
    retry_if: Callable[[Exception], bool],
    initial: float,
    maximum: float,
    deadline_seconds: float,
) -> T:
    """`call()`, tried again while it raises an error `retry_if` accepts, waiting from
    `initial` up to `maximum` seconds between tries, for `deadline_seconds` at most.
    Past the deadline the last error is raised, so callers handle it as their own."""
    from google.api_core import exceptions, retry

    policy = retry.Retry(
        predicate=retry_if, initial=initial, maximum=maximum, timeout=deadline_seconds
    )
    try:
        return policy(call)()
    except exceptions.RetryError as error:
        if isinstance(error.cause, Exception):
            raise error.cause from None
        raise
