"""Every document the API stores in Firestore, declared once (where each lives:
api/adapters/firestore_paths.py), and the names a task's documents are made of:
statuses, engines, tools.

These are `TypedDict`s, not models: the store hands back plain dicts (decoded by
api/adapters/firestore_codec.py), and nothing is validated on the way out. Keys marked
`NotRequired` are written by later transitions (or were added after older documents
were stored). Requests are validated by the pydantic models beside this module;
responses by api/models/responses.py. (No `from __future__ import annotations`:
TypedDict could not see `NotRequired` in string annotations.)
"""

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, NotRequired, TypedDict, get_args

# -- names ---------------------------------------------------------------------------

TaskStatusName = Literal[
    "queued", "dispatched", "running", "completed", "failed", "timed_out", "cancelled"
]


class TaskStatus(StrEnum):
    QUEUED = "queued"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


# The Literal is what pydantic models and the OpenAPI document spell; the enum what
# code compares with. They name the same statuses, checked here at import.
assert tuple(TaskStatus) == get_args(TaskStatusName), "TaskStatus and TaskStatusName differ"

TERMINAL = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.TIMED_OUT, TaskStatus.CANCELLED}
)
IN_FLIGHT = [TaskStatus.DISPATCHED.value, TaskStatus.RUNNING.value]
NOT_SETTLED = [TaskStatus.QUEUED.value, *IN_FLIGHT]

# "environment": a custom environment's build (api/services/environments.py).
TaskKind = Literal["code", "agent", "environment"]
Engine = Literal["claude-code", "messages"]
ENGINES: tuple[Engine, ...] = get_args(Engine)
ToolName = Literal["bash", "python", "read_file", "write_file", "edit_file", "list_files"]
TOOLS: tuple[ToolName, ...] = get_args(ToolName)
MessageRole = Literal["user", "assistant"]
UploadStatus = Literal["pending", "joining", "complete"]
DeliveryStatus = Literal["pending", "delivered", "failed", "refused", "gone"]


# -- tasks ---------------------------------------------------------------------------


class AgentSnapshot(TypedDict):
    """An agent task's settings, taken from its agent when it is submitted."""

    systemPrompt: str
    model: str
    tools: list[ToolName]
    engine: Engine
    maxResponseTokens: int


class ExecutionInfo(TypedDict):
    backend: str
    name: str | None
    attempt: int
    logUri: str | None
    consoleUri: NotRequired[str | None]
    # How the runner isolated and bounded the task (its result's report).
    sandbox: NotRequired[str]
    memoryBound: NotRequired[str]
    diskBound: NotRequired[str]


class Claim(TypedDict):
    execution: str
    attempt: int


class LlmUsage(TypedDict):
    inputTokens: int
    outputTokens: int
    calls: int


class TaskDoc(TypedDict):
    """`tasks/{id}`. `input` and `result` are stored as JSON strings (the codec)."""

    id: str
    owner: str
    kind: TaskKind
    status: TaskStatusName
    createdAt: datetime
    startedAt: datetime | None
    finishedAt: datetime | None
    input: dict[str, Any]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    execution: ExecutionInfo | None
    nextDispatchAt: datetime
    checkAt: datetime | None
    eventSeq: NotRequired[int]
    admissionShard: NotRequired[int]
    webhookUrl: NotRequired[str]
    agent: NotRequired[AgentSnapshot]
    conversationId: NotRequired[str]
    conversationMessageId: NotRequired[str]
    conversationMessageAt: NotRequired[datetime]
    # written by transitions (api/services/state_machine.py)
    dispatchedAt: NotRequired[datetime]
    dispatchAttempts: NotRequired[int]
    dispatchId: NotRequired[str]
    claim: NotRequired[Claim]
    heartbeatAt: NotRequired[datetime]
    deadlineAt: NotRequired[datetime]
    eventsTruncated: NotRequired[bool]
    llmUsage: NotRequired[LlmUsage]
    # A task that uses a custom environment: which, and the build it restores.
    environment: NotRequired["TaskEnvironment"]
    # Firestore's TTL deletes the task and its events after this (TASK_RETENTION_DAYS).
    expireAt: NotRequired[datetime]


class EventDoc(TypedDict):
    """`tasks/{id}/events/{seq}`. `data` is stored as a JSON string (the codec)."""

    seq: int
    type: str
    data: Any
    at: datetime
    expireAt: NotRequired[datetime]  # its task's


class IdempotencyDoc(TypedDict):
    """`idempotency/{hash}`: what an Idempotency-Key created."""

    taskId: str
    bodyHash: str
    createdAt: datetime
    expireAt: datetime
    taskIds: NotRequired[list[str]]  # a batch
    messageId: NotRequired[str]  # a conversation message


class UsageDoc(TypedDict, total=False):
    """`usage/{owner}_{yyyymmdd}`: counters only ever incremented."""

    tasksSettled: int
    sandboxMs: int
    llmInputTokens: int
    llmOutputTokens: int
    llmTokens: int
    llmCalls: int
    # and tasks_{status} for each terminal status


class UnsettledShardDoc(TypedDict):
    """`admissionShards/{owner}:u{k}` (api/services/admission.py)."""

    owner: str
    shard: int
    unsettled: int  # tasks queued, dispatched or running
    queued: int


class DailyShardDoc(TypedDict):
    """`admissionDaily/{owner}:d{yyyymmdd}s{k}`."""

    shard: int
    created: int
    expireAt: datetime


class RunningDoc(TypedDict):
    """`admissionRunning/{owner}`: tasks holding a dispatch slot."""

    running: int


# -- agents and conversations --------------------------------------------------------


class AgentDoc(TypedDict):
    """`agents/{id}`."""

    id: str
    owner: str
    name: str
    description: str
    systemPrompt: str
    model: str | None
    tools: list[ToolName]
    engine: Engine
    maxTurns: int
    maxTokens: int
    createdAt: datetime
    updatedAt: datetime
    maxCostUsd: NotRequired[float | None]


class WorkspacePointer(TypedDict):
    object: str
    size: int
    sha256: str
    taskId: str
    savedAt: datetime
    previous: str | None


class ConversationDoc(TypedDict):
    """`conversations/{id}`."""

    id: str
    owner: str
    agentId: str | None
    title: str
    activeTaskId: str | None
    createdAt: datetime
    updatedAt: datetime
    turns: NotRequired[int]
    workspace: NotRequired[WorkspacePointer]


class MessageDoc(TypedDict):
    """`conversations/{id}/messages/{messageId}`."""

    id: str
    role: MessageRole
    content: str
    taskId: str | None
    createdAt: datetime


class TurnClaim(TypedDict):
    """`conversations/{id}/turns/{n}`: which request is starting turn n."""

    createdAt: datetime
    idempotencyKey: str | None


# -- uploads, webhooks, API keys -----------------------------------------------------


class UploadDoc(TypedDict):
    """`uploads/{id}`. A record without `status` (the single-request form) is complete."""

    id: str
    owner: str
    createdAt: datetime
    expireAt: datetime
    size: NotRequired[int]
    sha256: NotRequired[str]
    status: NotRequired[UploadStatus]
    parts: NotRequired[int]
    received: NotRequired[dict[str, int]]  # part -> its size
    joiningSince: NotRequired[datetime]


class DeliveryDoc(TypedDict):
    """`webhookDeliveries/{taskId}`: written by the transaction settling the task."""

    taskId: str
    owner: str
    url: str
    status: DeliveryStatus
    attempts: int
    createdAt: datetime
    nextAttemptAt: datetime
    lastStatusCode: NotRequired[int | None]
    finishedAt: NotRequired[datetime]


class WebhookSecretsDoc(TypedDict):
    """`webhookSecrets/{owner}`."""

    secret: str
    createdAt: datetime
    previous: NotRequired[str]
    previousUntil: NotRequired[datetime]


class SecretEntry(TypedDict):
    """One secret as its owner's listing shows it: never its value."""

    size: int
    createdAt: datetime
    updatedAt: datetime


class UserSecretsDoc(TypedDict):
    """`userSecrets/{owner}`: the owner's secrets by name (bounded in number, so the
    listing and its count are one small document)."""

    secrets: dict[str, SecretEntry]


class SealedValue(TypedDict):
    """A value encrypted under a fresh data key, itself wrapped by the key encryption
    key named (api/adapters/secret_box.py); bytes as base64."""

    keyName: str
    wrappedKey: str
    nonce: str
    ciphertext: str


class SecretValueDoc(TypedDict):
    """`userSecrets/{owner}/values/{name}`."""

    sealed: SealedValue
    updatedAt: datetime


class ApiKeyDoc(TypedDict):
    """`apiKeys/{sha256 of the key}`: never the key itself."""

    id: str
    owner: str
    name: str
    prefix: str
    createdAt: datetime
    lastUsedAt: NotRequired[datetime | None]
    revokedAt: NotRequired[datetime | None]


# -- custom environments -------------------------------------------------------------

# `expired`: its archive went unused for ENVIRONMENT_ARCHIVE_DAYS and the bucket's
# lifecycle rule deleted it; the next environment that needs it builds it again.
EnvironmentBuildStatus = Literal["building", "ready", "expired"]


class TaskEnvironment(TypedDict):
    """The custom environment a task restores: the owner's environment, the manifest
    hash its archive is stored under, and the archive's size (the runner's spec)."""

    id: str
    name: str
    hash: str
    size: int


class EnvironmentEntry(TypedDict):
    """One custom environment as its owner's listing holds it."""

    id: str
    name: str
    python: list[str]
    npm: NotRequired[list[str]]
    hash: str
    # The owner's own build task, whose events are the build's output; None when
    # another build of the same manifest was used.
    buildTaskId: str | None
    createdAt: datetime


class UserEnvironmentsDoc(TypedDict):
    """`userEnvironments/{owner}`: the owner's environments by id (bounded in number,
    so names are unique and counted in one small document)."""

    environments: dict[str, EnvironmentEntry]


class EnvironmentBuildDoc(TypedDict):
    """`environmentBuilds/{hash}`: the one build of a manifest, anyone's. While it is
    `building`, `taskId` builds it; once `ready`, its archive is `object`. A failed
    build's document is deleted: nothing is cached and the next asks build again."""

    hash: str
    status: EnvironmentBuildStatus
    taskId: str
    object: str
    sizeBytes: NotRequired[int]
    createdAt: datetime
    readyAt: NotRequired[datetime]
    # When an environment of it was last read or used (the archive's Custom-Time is
    # moved to then, at most once a day, so the lifecycle rule keeps it).
    usedAt: NotRequired[datetime]
