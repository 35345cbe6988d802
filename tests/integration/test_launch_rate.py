"""The fleet-wide launch rate (api/services/launch_rate.py) against the Firestore
emulator: instances that share nothing but Firestore never launch more than a window's
share together."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from api.adapters.firestore_store import FirestoreStore
from api.services.launch_rate import LaunchRate
from tests.conftest import PROJECT


class Clock:
    """A settable clock: windows are chosen by time, and a test must not wait for one."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def counters(firestore):
    return FirestoreStore(PROJECT)


def instances(counters, clock, per_minute: int, count: int) -> list[LaunchRate]:
    return [LaunchRate(counters, per_minute, clock=clock) for _ in range(count)]


def test_instances_together_launch_no_more_than_the_windows_share(counters):
    clock = Clock(1_000_000.0)  # the start of a 10 s window
    fleet = instances(counters, clock, per_minute=60, count=3)  # 10 per 10 s window
    with ThreadPoolExecutor(12) as pool:
        delays = list(pool.map(lambda i: fleet[i % 3].acquire(), range(30)))
    granted = [d for d in delays if d == 0.0]
    assert len(granted) == 10
    # The others are told to come back in the next window, not before.
    assert all(10.0 <= d <= 12.5 for d in delays if d)


def test_the_next_window_grants_again(counters):
    clock = Clock(2_000_000.0)
    [rate] = instances(counters, clock, per_minute=30, count=1)  # 5 per window
    assert [rate.acquire() for _ in range(6)].count(0.0) == 5
    clock.now += 10
    assert rate.acquire() == 0.0


def test_a_rate_under_one_a_window_gets_longer_windows_and_keeps_its_rate(counters):
    clock = Clock(4_000_020.0)  # the start of a minute
    [rate] = instances(counters, clock, per_minute=1, count=1)
    assert [rate.acquire() for _ in range(3)].count(0.0) == 1
    clock.now += 30
    assert rate.acquire() > 0
    clock.now += 30
    assert rate.acquire() == 0.0


def test_a_rate_of_zero_is_refused(counters):
    with pytest.raises(ValueError):
        LaunchRate(counters, 0)
