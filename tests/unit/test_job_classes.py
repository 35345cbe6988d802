"""Which job a task runs in: the small one for code (and built-in-loop agents) within
its memory, the large one for the rest and for Claude Code."""

from __future__ import annotations

import pytest

from api.services.job_classes import LARGE, SMALL, job_class


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ({"input": {"kind": "code", "memoryMb": 512}}, SMALL),
        ({"input": {"kind": "code", "memoryMb": 1024}}, SMALL),
        ({"input": {"kind": "code", "memoryMb": 1025}}, LARGE),
        ({"input": {"kind": "code", "memoryMb": 4096}}, LARGE),
        ({"input": {"kind": "agent", "memoryMb": 512}, "agent": {"engine": "messages"}}, SMALL),
        ({"input": {"kind": "agent", "memoryMb": 512}, "agent": {"engine": "claude-code"}}, LARGE),
        ({"input": {"kind": "agent", "memoryMb": 2048}, "agent": {"engine": "messages"}}, LARGE),
    ],
)
def test_a_task_runs_in_the_smallest_job_that_holds_it(task, expected):
    assert job_class(task, small_max_memory_mb=1024) == expected
