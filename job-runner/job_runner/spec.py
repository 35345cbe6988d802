"""The messages between the runner and the API's internal endpoints, declared once:
the claim's answer (the task's spec), the events and the result the runner sends.

Only type checkers read this module: the runner's modules import it under
`TYPE_CHECKING`, so `typing` costs its start nothing (`make bench`). The API builds
the spec in api/services/runner_spec.py; tests/contract/test_runner_spec.py checks
that what it builds matches these declarations, key for key. (No `from __future__
import annotations`: TypedDict could not see `NotRequired` in string annotations.)
"""

from typing import Any, Literal, NotRequired, TypedDict

# -- the claim -----------------------------------------------------------------------


class ClaimRequest(TypedDict):
    execution: str
    attempt: int


class OutputLimitsSpec(TypedDict):
    """What `collect_outputs` keeps of /workspace (outputs.OutputLimits)."""

    maxFiles: int
    maxFileBytes: int
    maxTotalBytes: int
    maxPathChars: int


class LimitsSpec(TypedDict):
    maxOutputBytes: int
    diskMb: int
    network: bool
    heartbeatSeconds: float
    outputs: OutputLimitsSpec
    # agent tasks: what the task may still spend on model calls, in USD (estimated)
    maxBudgetUsd: NotRequired[float]


class InputFileSpec(TypedDict):
    """One input file, in path order: inline text, inline base64, or an upload the
    runner fetches by its `index` (`size` None once the upload has expired)."""

    path: str
    text: NotRequired[str]
    base64: NotRequired[str]
    upload: NotRequired[str]
    size: NotRequired[int | None]
    index: NotRequired[int]


class WorkspaceRestore(TypedDict):
    size: int


class WorkspaceSpec(TypedDict):
    """A conversation turn's workspace: the snapshot to restore (None: start empty),
    and the most a new snapshot may take."""

    restore: WorkspaceRestore | None
    maxBytes: int


class AgentSpec(TypedDict):
    systemPrompt: str
    model: str
    tools: list[str]
    engine: Literal["claude-code", "messages"]
    maxResponseTokens: int


class HistoryMessage(TypedDict):
    role: Literal["user", "assistant"]
    content: str


class TaskSpec(TypedDict):
    """What a task's claim answers with: everything the runner needs to run it.
    `input` is the task's input as submitted (a code or an agent task's)."""

    id: str
    kind: Literal["code", "agent"]
    input: dict[str, Any]
    limits: LimitsSpec
    inputFiles: list[InputFileSpec]
    workspace: NotRequired[WorkspaceSpec]
    # agent tasks only
    agent: NotRequired[AgentSpec]
    conversationId: NotRequired[str | None]
    history: NotRequired[list[HistoryMessage]]


class ClaimAnswer(TypedDict):
    status: str
    claim: ClaimRequest
    spec: TaskSpec


# -- events and the result -----------------------------------------------------------

EventType = Literal[
    "stdout",
    "stderr",
    "log",
    "heartbeat",
    "status",
    "assistant",
    "assistant_delta",
    "tool_call",
    "tool_result",
    "usage",
]


class RunnerEvent(TypedDict):
    type: EventType
    data: str | dict[str, Any]


class EventsRequest(ClaimRequest):
    events: list[RunnerEvent]


class RunnerError(TypedDict):
    code: str
    message: str


Outcome = Literal["completed", "timed_out", "failed"]


class ResultRequest(EventsRequest):
    status: Outcome
    result: dict[str, Any] | None
    error: RunnerError | None
