"""The API's resources as typed, read-only objects.

Each model names the OpenAPI schemas it reads (`__schema__`); tests/contract checks
every field against the API's own `/openapi.json`, so the SDK and the API cannot
drift apart. Every model also keeps the whole JSON it came from in `raw`."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar

TERMINAL_STATUSES = frozenset({"completed", "failed", "timed_out", "cancelled"})


def _json(name: str, default: Any = None) -> Any:
    return field(default=default, metadata={"json": name})


def _raw() -> Any:
    return field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ErrorDetail:
    __schema__: ClassVar[tuple[str, ...]] = ("ErrorDetail",)
    code: str
    message: str
    raw: dict = _raw()


@dataclass(frozen=True)
class Execution:
    """Where a task ran: a local runner process or a Cloud Run Job execution."""

    __schema__: ClassVar[tuple[str, ...]] = ("Execution",)
    backend: str
    name: str | None = None
    attempt: int = 0
    log_uri: str | None = _json("logUri")
    console_uri: str | None = _json("consoleUri")
    sandbox: str | None = None
    memory_bound: str | None = _json("memoryBound")
    disk_bound: str | None = _json("diskBound")
    raw: dict = _raw()


@dataclass(frozen=True)
class OutputFile:
    """A file a task left in its workspace; `content` inline for small UTF-8 text."""

    __schema__: ClassVar[tuple[str, ...]] = ("OutputFile",)
    path: str
    size: int
    sha256: str | None = None
    content_type: str | None = _json("contentType")
    content: str | None = None
    symlink: bool = False
    target: str | None = None
    raw: dict = _raw()


@dataclass(frozen=True)
class SkippedFile:
    __schema__: ClassVar[tuple[str, ...]] = ("SkippedFile",)
    path: str
    reason: str
    raw: dict = _raw()


@dataclass(frozen=True)
class TaskResult:
    """A code task's exit code and output, or an agent task's answer (`text`)."""

    __schema__: ClassVar[tuple[str, ...]] = ("RunnerResult", "AgentResult")
    exit_code: int | None = _json("exitCode")
    stdout: str = ""
    stderr: str = ""
    stdout_truncated: bool = _json("stdoutTruncated", False)
    stderr_truncated: bool = _json("stderrTruncated", False)
    duration_ms: int = _json("durationMs", 0)
    text: str | None = None
    usage: dict[str, Any] | None = None
    turns: int = 0
    stop_reason: str | None = _json("stopReason")
    files: list[OutputFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    skipped_count: int = _json("skippedCount", 0)
    raw: dict = _raw()

    @property
    def cost_usd(self) -> float | None:
        """What the agent's model calls cost, where the API prices them."""
        value = self.raw.get("costUsd")
        return float(value) if isinstance(value, int | float) else None


@dataclass(frozen=True)
class Task:
    __schema__: ClassVar[tuple[str, ...]] = ("Task", "CancelledTask")
    id: str
    kind: str
    status: str
    created_at: datetime = _json("createdAt")
    started_at: datetime | None = _json("startedAt")
    finished_at: datetime | None = _json("finishedAt")
    input: dict[str, Any] = field(default_factory=dict)
    result: TaskResult | None = None
    error: ErrorDetail | None = None
    execution: Execution | None = None
    queue_position: int | None = _json("queuePosition")
    webhook_url: str | None = _json("webhookUrl")
    # Only in a cancel's answer: the task had ended before, and the cancel changed nothing.
    already_ended: bool = _json("alreadyEnded", False)
    raw: dict = _raw()

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def exit_code(self) -> int | None:
        """The program's exit code (code tasks that ran), else None."""
        return self.result.exit_code if self.result else None

    @property
    def stdout(self) -> str:
        return self.result.stdout if self.result else ""

    @property
    def stderr(self) -> str:
        return self.result.stderr if self.result else ""

    @property
    def text(self) -> str | None:
        """An agent task's answer."""
        return self.result.text if self.result else None

    @property
    def succeeded(self) -> bool:
        """Completed, and (for code) its program exited 0."""
        return self.status == "completed" and (self.kind != "code" or self.exit_code == 0)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class TaskEvent:
    """One event of a task: `status`, `stdout`, `stderr`, and for agents `assistant`,
    `assistant_delta`, `tool_call`, `tool_result`, `usage`, ..."""

    __schema__: ClassVar[tuple[str, ...]] = ("TaskEvent",)
    seq: int
    type: str
    data: str | dict[str, Any]
    at: datetime
    raw: dict = _raw()

    @property
    def text(self) -> str:
        """Output or reply text the event carries (stdout/stderr, assistant deltas)."""
        if isinstance(self.data, str):
            return self.data
        value = self.data.get("text")
        return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class Agent:
    __schema__: ClassVar[tuple[str, ...]] = ("Agent",)
    id: str
    name: str
    description: str = ""
    system_prompt: str = _json("systemPrompt", "")
    model: str = ""
    tools: list[str] = field(default_factory=list)
    engine: str = ""
    max_turns: int = _json("maxTurns", 0)
    max_tokens: int = _json("maxTokens", 0)
    max_cost_usd: float | None = _json("maxCostUsd")
    # False, True (ALLOW_TASK_NETWORK) or {"allow": [domain patterns]}.
    network: bool | dict = False
    secrets: list[str] = field(default_factory=list)
    # The custom environment its tasks run with (name or id); None: the default one.
    environment: str | None = None
    created_at: datetime | None = _json("createdAt")
    updated_at: datetime | None = _json("updatedAt")
    raw: dict = _raw()


@dataclass(frozen=True)
class Environment:
    """A custom environment: Python (and npm) packages on top of the default one, built
    once by a task of kind `environment`. Tasks and agents name it by name or id once
    it is `ready`; a `failed` one has an `error`, and its build task's events hold
    pip's output."""

    __schema__: ClassVar[tuple[str, ...]] = ("Environment",)
    id: str
    name: str
    status: str
    python: list[str] = field(default_factory=list)
    npm: list[str] = field(default_factory=list)
    # Environments with the same packages share one build and one archive.
    hash: str = ""
    size_bytes: int | None = _json("sizeBytes")
    # None when an earlier build of the same packages was used.
    build_task_id: str | None = _json("buildTaskId")
    error: ErrorDetail | None = None
    created_at: datetime | None = _json("createdAt")
    raw: dict = _raw()

    @property
    def is_building(self) -> bool:
        return self.status == "building"

    @property
    def is_ready(self) -> bool:
        return self.status == "ready"


@dataclass(frozen=True)
class Message:
    __schema__: ClassVar[tuple[str, ...]] = ("Message",)
    id: str
    role: str
    content: str
    task_id: str | None = _json("taskId")
    created_at: datetime | None = _json("createdAt")
    raw: dict = _raw()


@dataclass(frozen=True)
class Conversation:
    __schema__: ClassVar[tuple[str, ...]] = ("Conversation", "ConversationWithMessages")
    id: str
    title: str = ""
    agent_id: str | None = _json("agentId")
    active_task_id: str | None = _json("activeTaskId")
    created_at: datetime | None = _json("createdAt")
    updated_at: datetime | None = _json("updatedAt")
    messages: list[Message] = field(default_factory=list)
    next_messages_after: str | None = _json("nextMessagesAfter")
    raw: dict = _raw()


@dataclass(frozen=True)
class Upload:
    """An upload, for a task's files as `{"upload": id}`; complete once every part
    is in."""

    __schema__: ClassVar[tuple[str, ...]] = ("Upload", "UploadInParts")
    id: str
    status: str = "complete"
    size: int | None = None
    sha256: str | None = None
    parts: int | None = None
    missing: list[int] | None = None
    expires_at: datetime | None = _json("expiresAt")
    raw: dict = _raw()

    def ref(self) -> dict[str, str]:
        """The value that names this upload in a task's `files`."""
        return {"upload": self.id}


@dataclass(frozen=True)
class FileListing:
    __schema__: ClassVar[tuple[str, ...]] = ("FileListing",)
    files: list[OutputFile] = field(default_factory=list)
    skipped: list[SkippedFile] = field(default_factory=list)
    raw: dict = _raw()


@dataclass(frozen=True)
class UsageCounter:
    __schema__: ClassVar[tuple[str, ...]] = ("UsageCounter",)
    used: int
    limit: int
    raw: dict = _raw()


@dataclass(frozen=True)
class CostCounter:
    """USD, estimated from the operator's price table (not Anthropic's invoice); a
    limit of 0 means none."""

    __schema__: ClassVar[tuple[str, ...]] = ("CostCounter",)
    used: float
    limit: float
    raw: dict = _raw()


@dataclass(frozen=True)
class Usage:
    """Today's counters against their limits; `raw` has any the API adds."""

    __schema__: ClassVar[tuple[str, ...]] = ("Usage",)
    day: date
    tasks_today: UsageCounter = _json("tasksToday")
    unsettled_tasks: UsageCounter = _json("unsettledTasks")
    active_tasks: UsageCounter = _json("activeTasks")
    llm_tokens_today: UsageCounter = _json("llmTokensToday")
    cost_usd_today: CostCounter | None = _json("costUsdToday")
    cost_usd_month: float = _json("costUsdMonth", 0.0)
    resets_at: datetime | None = _json("resetsAt")
    raw: dict = _raw()

    def counters(self) -> dict[str, UsageCounter]:
        """Every `{used, limit}` counter by its API name, including ones this SDK
        version does not name."""
        return {
            name: UsageCounter(used=value["used"], limit=value["limit"], raw=value)
            for name, value in self.raw.items()
            if isinstance(value, dict) and {"used", "limit"} <= value.keys()
        }


@dataclass(frozen=True)
class ApiKey:
    """A self-service API key. `key` is the secret itself, present only in the answer
    that created it: the API keeps a hash."""

    __schema__: ClassVar[tuple[str, ...]] = ("ApiKey", "ApiKeyCreated")
    id: str
    name: str = ""
    prefix: str = ""
    created_at: datetime | None = _json("createdAt")
    last_used_at: datetime | None = _json("lastUsedAt")
    key: str | None = None
    raw: dict = _raw()
