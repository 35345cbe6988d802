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
    ]
    data: str | dict[str, Any] = ""


class EventsBody(ClaimBody):
    events: list[RunnerEvent] = Field(default_factory=list, max_length=config.MAX_EVENT_BATCH)


class OutputFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(max_length=1000)
    size: int = Field(ge=0)
    content: str | None = Field(None, max_length=16384)
    symlink: bool = False


class RunnerResult(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    exit_code: int | None = Field(None, alias="exitCode")
    stdout: str = Field("", max_length=config.MAX_OUTPUT_BYTES * 4)
    stderr: str = Field("", max_length=config.MAX_OUTPUT_BYTES * 4)
    stdout_truncated: bool = Field(False, alias="stdoutTruncated")
    stderr_truncated: bool = Field(False, alias="stderrTruncated")
    duration_ms: int = Field(0, alias="durationMs", ge=0)
    files: list[OutputFile] = Field(default_factory=list, max_length=100)


class TokenUsage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    input_tokens: int = Field(0, alias="inputTokens", ge=0)
    output_tokens: int = Field(0, alias="outputTokens", ge=0)


class AgentResult(BaseModel):
    """An agent task's outcome: its final text and what it used."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    text: str = Field(max_length=config.MAX_OUTPUT_BYTES * 2)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    turns: int = Field(0, ge=0)
    stop_reason: str | None = Field(None, alias="stopReason", max_length=50)
    files: list[OutputFile] = Field(default_factory=list, max_length=100)


class RunnerError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: Annotated[str, StringConstraints(pattern=r"^[a-z_]{1,50}$")]
    message: str = Field(max_length=2000)


class ResultBody(EventsBody):
    status: Literal["completed", "timed_out", "failed"]
    result: AgentResult | RunnerResult | None = None
    error: RunnerError | None = None
