"""Which Cloud Run job runs a task (DESIGN section 9): executions cannot override CPU
or memory, so sizes are separate jobs, and each task runs in the smallest that holds it.

  small  code tasks (and built-in-loop agent tasks) of up to SMALL_JOB_MAX_TASK_MEMORY_MB:
         1 CPU, billed about half the large job's rate per second
  large  everything else, and Claude Code agents (its CLI needs the room and the CPU)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SMALL, LARGE = "small", "large"
# Engines whose work runs in the runner's own process, light enough for the small job.
LIGHT_ENGINES = ("messages",)


def job_class(task: Mapping[str, Any], small_max_memory_mb: int) -> str:
    """ "small" or "large" for a task document: its input's kind and memoryMb, and for
    an agent task the engine of its agent snapshot."""
    task_input = task["input"]
    if task_input.get("memoryMb", 0) > small_max_memory_mb:
        return LARGE
    engine = (task.get("agent") or {}).get("engine")
    if task_input.get("kind") == "agent" and engine not in LIGHT_ENGINES:
        return LARGE
    return SMALL
