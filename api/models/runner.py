"""What the job-runner sends to the internal API (claim, events, result)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api import config


class ClaimBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    execution: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    attempt: int = Field(ge=0, le=100)


class RunnerEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # status and assistant_delta: the Claude Code engine's (engine state, text as
    # it is written, batched).
    type: Literal[
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
        "egress",  # one connection through the runner's egress proxy
    ]
    data: str | dict[str, Any] = ""


class EventsBody(ClaimBody):
    events: list[RunnerEvent] = Field(default_factory=list, max_length=config.MAX_EVENT_BATCH)


class OutputFile(BaseModel):
    """A file the task left in /workspace. `content` is inline for small UTF-8 text
    only; the bytes are at `GET /api/tasks/{id}/files/{path}`. A symlink is listed
    with its target and never followed."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    path: str = Field(max_length=config.MAX_OUTPUT_PATH_CHARS)
    size: int = Field(ge=0)
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    content_type: str | None = Field(None, alias="contentType", max_length=200)
    content: str | None = Field(None, max_length=16384)
    symlink: bool = False
    target: str | None = Field(None, max_length=400)
    # Which output object holds it (runner to API only; never shown).
    stored: int | None = Field(None, ge=0, lt=config.MAX_OUTPUT_FILES)


class SkippedFile(BaseModel):
    """Something in /workspace that could not be kept, and why."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=400)
    reason: str = Field(max_length=2000)


class WorkspaceSnapshot(BaseModel):
    """The conversation workspace this turn saved (compressed archive)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class OutputListing(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    files: list[OutputFile] = Field(default_factory=list, max_length=config.MAX_OUTPUT_FILES)
    skipped: list[SkippedFile] = Field(default_factory=list, max_length=config.MAX_SKIPPED_LISTED)
    skipped_count: int = Field(0, alias="skippedCount", ge=0)


class RunnerResult(OutputListing):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    exit_code: int | None = Field(None, alias="exitCode")
    stdout: str = Field("", max_length=config.MAX_OUTPUT_BYTES * 4)
    stderr: str = Field("", max_length=config.MAX_OUTPUT_BYTES * 4)
    stdout_truncated: bool = Field(False, alias="stdoutTruncated")
    stderr_truncated: bool = Field(False, alias="stderrTruncated")
    duration_ms: int = Field(0, alias="durationMs", ge=0)


class TokenUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    input_tokens: int = Field(0, alias="inputTokens", ge=0)
    output_tokens: int = Field(0, alias="outputTokens", ge=0)
    # Set by the API from what its LLM proxy metered (a runner's is replaced).
    cost_usd: float | None = Field(
        None,
        alias="costUsd",
        ge=0,
        description="What the task's model calls cost in USD: an estimate from the price "
        "table (MODEL_PRICES), not Anthropic's invoice.",
    )


class AgentResult(OutputListing):
    """An agent task's outcome: its final text and what it used."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str = Field(max_length=config.MAX_OUTPUT_BYTES * 2)
    usage: TokenUsage = Field(default_factory=lambda: TokenUsage.model_validate({}))
    turns: int = Field(0, ge=0)
    stop_reason: str | None = Field(None, alias="stopReason", max_length=50)
    workspace: WorkspaceSnapshot | None = None


class RunnerError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,50}$")]
    message: str = Field(max_length=2000)


class SandboxReport(BaseModel):
    """How the runner isolated and bounded the task (kept in the task's execution)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    sandbox: Literal[config.SANDBOXES]  # type: ignore[valid-type]  # a tuple of names, as Literal's
    memory_bound: Literal["cgroup", "watchdog"] | None = Field(None, alias="memoryBound")
    disk_bound: Literal["tmpfs", "watchdog"] | None = Field(None, alias="diskBound")


class ResultBody(EventsBody):
    status: Literal["completed", "timed_out", "failed"]
    sandbox: SandboxReport | None = None
    result: AgentResult | RunnerResult | None = None
    error: RunnerError | None = None
