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


class EgressSpec(TypedDict):
    """Where the task's egress proxy may connect (task_access.py): hosts matching
    `allow`, within the task's bounds. `devHosts` maps a host to a loopback stand-in
    (the operator's EGRESS_DEV_HOSTS, local development only; refused on Cloud Run)."""

    allow: list[str]
    maxConnections: int
    maxBytes: int
    devHosts: NotRequired[dict[str, str]]


class LimitsSpec(TypedDict):
    maxOutputBytes: int
    diskMb: int
    network: bool
    heartbeatSeconds: float
    outputs: OutputLimitsSpec
    # Absent or None: no egress (and none where `network` shares the host's).
    egress: NotRequired[EgressSpec | None]
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


class BuildSpec(TypedDict):
    """An environment build's packages, where from, and the archive's bound."""

    python: list[str]
    npm: list[str]
    indexUrl: str
    npmRegistryUrl: str
    maxBytes: int


class EnvironmentSpec(TypedDict):
    """The custom environment a task restores: its archive (`size` bytes, fetched
    from GET .../environment) and the manifest hash it is stored under."""

    id: str
    name: str
    hash: str
    size: int


class TaskSpec(TypedDict):
    """What a task's claim answers with: everything the runner needs to run it.
    `input` is the task's input as submitted (a code, an agent or a build task's)."""

    id: str
    kind: Literal["code", "agent", "environment"]
    input: dict[str, Any]
    limits: LimitsSpec
    inputFiles: list[InputFileSpec]
    workspace: NotRequired[WorkspaceSpec]
    # The names of the owner's secrets the task gets; their values come from
    # `POST .../secrets` (SecretsAnswer), never in the spec.
    secrets: NotRequired[list[str]]
    # A custom environment to restore (code and agent tasks that name one).
    environment: NotRequired[EnvironmentSpec]
    # environment builds only (their egress is the package index's hosts)
    build: NotRequired[BuildSpec]
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
    "egress",
]


class EgressEvent(TypedDict):
    """One connection through the egress proxy, reported when it ends."""

    method: str
    host: str | None
    port: int | None
    allowed: bool
    reason: NotRequired[str]
    address: NotRequired[str]
    bytesSent: NotRequired[int]
    bytesReceived: NotRequired[int]
    durationMs: int


class SecretsAnswer(TypedDict):
    """`POST .../secrets` (with a ClaimRequest): the values of the secrets the spec
    names, by name; only while this execution holds the task."""

    secrets: dict[str, str]


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
