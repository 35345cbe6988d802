"""The sandbox seam: run one untrusted command with limits, get an `Outcome` back.

Every backend (job_runner/sandboxes/) gives the same guarantees (DESIGN section 8):
no network unless allowed, an empty environment, a read-only system, a private /tmp
and workspace, a uid of its own (never root, never the runner's), rlimits, the task's
bounds (its cgroup, or the watchdog), and the whole process tree killed on timeout or
cancel. `make_sandbox(SANDBOX)` picks one: "auto" (the default) probes them strongest
first (sandboxes/choice.py); "none" is the operator's explicit opt-out.
"""

from __future__ import annotations

from job_runner.sandboxes.bwrap import BubblewrapRootSandbox, BubblewrapSandbox
from job_runner.sandboxes.choice import make_sandbox
from job_runner.sandboxes.gvisor import GvisorSandbox
from job_runner.sandboxes.process import (
    CANCEL_POLL_SECONDS,
    MIB,
    SANDBOX_ENV,
    WORKSPACE_MOUNT,
    Limits,
    Outcome,
    SandboxError,
)
from job_runner.sandboxes.unsandboxed import UnsandboxedRunner

TYPE_CHECKING = False
if TYPE_CHECKING:
    from job_runner.sandboxes.process import Sandbox

__all__ = [
    "CANCEL_POLL_SECONDS",
    "MIB",
    "SANDBOX_ENV",
    "WORKSPACE_MOUNT",
    "BubblewrapRootSandbox",
    "BubblewrapSandbox",
    "GvisorSandbox",
    "Limits",
    "Outcome",
    "Sandbox",
    "SandboxError",
    "UnsandboxedRunner",
    "make_sandbox",
]
