"""The runner's one retry loop, for its calls to the API: a few tries with exponential
backoff. Standard library only, so the runner starts fast."""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    T = TypeVar("T")


def with_retries(
    call: Callable[[], T],
    *,
    retry_if: Callable[[Exception], bool],
    tries: int,
    first_delay: float,
    factor: float = 3.0,
    max_delay: float = 10.0,
) -> T:
    """`call()`, tried again while it raises an error `retry_if` accepts, `tries` times at most,
    waiting `first_delay` seconds, then `factor` times longer each time (at most
    `max_delay`); the last error is raised."""
    delay = first_delay
    for _ in range(tries - 1):
        try:
            return call()
        except Exception as error:
            if not retry_if(error):
                raise
            time.sleep(delay)  # backoff between tries of a failed call
            delay = min(delay * factor, max_delay)
    return call()
