"""The one retry helper of each package: api.retry (google.api_core's Retry) and
job_runner.retry (the runner's, standard library only)."""

from __future__ import annotations

import pytest
from job_runner.retry import with_retries

from api.retry import retry_call


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def busy(error: Exception) -> bool:
    return isinstance(error, TimeoutError)


def test_the_api_retries_what_it_is_told_to_until_it_succeeds():
    call = Flaky(3, TimeoutError("busy"))
    assert retry_call(call, retry_if=busy, initial=0.001, maximum=0.01, deadline_seconds=5)
    assert call.calls == 4


def test_the_api_raises_the_last_error_itself_past_the_deadline():
    call = Flaky(10**6, TimeoutError("still busy"))
    with pytest.raises(TimeoutError, match="still busy"):
        retry_call(call, retry_if=lambda e: True, initial=0.001, maximum=0.01, deadline_seconds=0.1)
    assert call.calls > 1


def test_the_api_does_not_retry_other_errors():
    call = Flaky(1, KeyError("no"))
    with pytest.raises(KeyError):
        retry_call(call, retry_if=lambda e: False, initial=0.001, maximum=0.01, deadline_seconds=5)
    assert call.calls == 1


def test_the_runner_tries_at_most_its_number_of_times_and_raises_the_last_error():
    call = Flaky(10, ConnectionError("down"))
    with pytest.raises(ConnectionError, match="down"):
        with_retries(call, retry_if=lambda e: True, tries=3, first_delay=0.001)
    assert call.calls == 3


def test_the_runner_returns_once_a_try_succeeds_and_does_not_retry_other_errors():
    assert with_retries(Flaky(2, OSError()), retry_if=lambda e: True, tries=3, first_delay=0.001)
    refused = Flaky(1, ValueError("4xx"))
    with pytest.raises(ValueError):
        with_retries(refused, retry_if=lambda e: False, tries=3, first_delay=0.001)
    assert refused.calls == 1
