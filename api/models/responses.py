"""Response models: the bodies the public API answers with (DESIGN section 6).

The routes build their bodies with the `render_*` functions, not with these models;
the models are the contract those functions must keep. `api/openapi.py` publishes
them and the contract tests (tests/contract) check every response against them, so
a render function that drifts from them fails a test rather than a client.

Where a response echoes what was validated on the way in (a task's `input`) or what
a runner reported (its `result`), it reuses the model that validated it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.models.agents import AgentTaskInput
from api.models.deployment import DeploymentConfig, Usage
from api.models.documents import Engine, MessageRole, TaskKind, TaskStatusName, ToolName
from api.models.runner import AgentResult, OutputFile, RunnerResult, SkippedFile
from api.models.tasks import CodeTaskInput

# `heartbeat` never reaches the API's event log: the events route drops it.
EventType = Literal[
    "status",
    "stdout",
    "stderr",
    "log",
    "assistant",
    "assistant_delta",
    "tool_call",
    "tool_result",
    "usage",
    "webhook",
]
# Times are RFC 3339 in UTC; a task's start and finish are null until they happen.
Timestamp = datetime | None


class Contract(BaseModel):
    """A response body: no field beyond the ones listed, so a render function that
    leaks one (an owner, a claim) breaks the contract tests."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ErrorDetail(Contract):
    code: str = Field(description="snake_case, for programs", examples=["not_found"])
    message: str = Field(description="for a person")


class ErrorResponse(Contract):
    """Every error the API answers: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class Health(Contract):
    status: Literal["ok"]
    service: str
    # Only on Cloud Run: the revision that answered (its K_REVISION).
    revision: str | None = None


class Execution(Contract):
    """Where the task runs: a local runner process or a Cloud Run Job execution."""

    backend: str = Field(examples=["local", "cloudrun"])
    name: str | None
    attempt: int = Field(ge=0)
    log_uri: str | None = Field(alias="logUri")
    console_uri: str | None = Field(None, alias="consoleUri")


class Task(Contract):
    id: str
    kind: TaskKind
    status: TaskStatusName
    created_at: datetime = Field(alias="createdAt")
    started_at: Timestamp = Field(alias="startedAt")
    finished_at: Timestamp = Field(alias="finishedAt")
    input: Annotated[CodeTaskInput | AgentTaskInput, Field(discriminator="kind")] = Field(
        description="The request as validated, with every default filled in."
    )
    result: RunnerResult | AgentResult | None = Field(
        description="A code task's exit code and output, or an agent task's answer; "
        "partial output is kept when the task timed out."
    )
    error: ErrorDetail | None = Field(
        description="Why the platform could not run the task (e.g. `runner_lost`, "
        "`sandbox_error`, `llm_not_configured`, `budget_exceeded`)."
    )
    execution: Execution | None
    queue_position: int | None = Field(
        alias="queuePosition",
        ge=0,
        description="While queued, on GET /api/tasks/{taskId}: an estimate of how many "
        "queued tasks (anyone's) start before this one (0: it is next). Queued tasks start "
        "round-robin across users. Null otherwise, and in lists and submit answers.",
    )
    webhook_url: str | None = Field(
        alias="webhookUrl", description="Where the finished task is POSTed, if anywhere."
    )


class TaskBatchAccepted(Contract):
    """`POST /api/tasks/batch`: the queued tasks, in the order they were given."""

    tasks: list[Task]


class WebhookSecret(Contract):
    """The secret that signs your webhooks (Standard Webhooks: `webhook-id`,
    `webhook-timestamp`, `webhook-signature`)."""

    secret: str = Field(description="`whsec_` and the base64 key, as the spec's libraries take it.")
    created_at: datetime = Field(alias="createdAt")
    previous_valid_until: datetime | None = Field(
        alias="previousValidUntil",
        description="After a rotation, deliveries are also signed with the previous secret "
        "until then.",
    )


class TaskList(Contract):
    tasks: list[Task]
    next_page_token: str | None = Field(alias="nextPageToken")


class TaskEvent(Contract):
    seq: int = Field(ge=1)
    type: EventType
    data: str | dict[str, Any]
    at: datetime


class TaskEventList(Contract):
    events: list[TaskEvent]
    next: int = Field(ge=0, description="Pass as `?after=` to read the events after these.")


class Agent(Contract):
    id: str
    name: str
    description: str
    system_prompt: str = Field(alias="systemPrompt")
    model: str
    tools: list[ToolName]
    engine: Engine
    max_turns: int = Field(alias="maxTurns")
    max_tokens: int = Field(alias="maxTokens")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")


class AgentList(Contract):
    agents: list[Agent]


class Conversation(Contract):
    id: str
    title: str
    agent_id: str | None = Field(alias="agentId")
    active_task_id: str | None = Field(
        alias="activeTaskId", description="The turn being answered; null between turns."
    )
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")


class ConversationList(Contract):
    conversations: list[Conversation]


class Message(Contract):
    id: str
    role: MessageRole
    content: str
    task_id: str | None = Field(alias="taskId")
    created_at: datetime = Field(alias="createdAt")


class ConversationWithMessages(Conversation):
    messages: list[Message] = Field(description="A page of messages, oldest first.")
    next_messages_after: str | None = Field(
        alias="nextMessagesAfter", description="Pass as `?after=` for the next page."
    )


class MessageAccepted(Contract):
    """`POST /api/conversations/{id}/messages`: the stored message and its turn's task."""

    message: Message
    task: Task


class CompatConversationReply(Contract):
    """The old clients' `POST /api/conversation` reply (DESIGN section 6.5)."""

    conversation_id: str = Field(alias="conversationId")
    text: str | None = Field(description="The agent's reply; null if it is not ready.")
    status: TaskStatusName
    component: None
    agent_created: Literal[False] = Field(alias="agentCreated")
    task_id: str = Field(alias="taskId")
    error: ErrorDetail | None


class Upload(Contract):
    """Bytes stored by `POST /api/uploads`, for a task's `files` as `{"upload": id}`."""

    id: str
    size: int
    sha256: str
    expires_at: datetime = Field(alias="expiresAt")


class UploadInParts(Contract):
    """An upload sent in parts (`POST /api/uploads?parts=N`, then `PUT
    /api/uploads/{id}/parts/{i}`): pending, with the parts still missing, or complete,
    with the whole file's size and sha256."""

    id: str
    status: Literal["pending", "complete"]
    parts: int | None = Field(None, description="Pending: how many parts it takes.")
    missing: list[int] | None = Field(None, description="Pending: the parts not yet sent.")
    size: int | None = Field(None, description="Complete: the whole file's bytes.")
    sha256: str | None = Field(None, description="Complete: the whole file's hash.")
    expires_at: datetime = Field(alias="expiresAt")


class FileListing(Contract):
    """A task's (or a conversation's current workspace's) files, and what was skipped."""

    files: list[OutputFile]
    skipped: list[SkippedFile]


RESPONSE_MODELS: tuple[type[BaseModel], ...] = (
    ErrorResponse,
    Health,
    Task,
    TaskBatchAccepted,
    WebhookSecret,
    TaskList,
    TaskEvent,
    TaskEventList,
    Agent,
    AgentList,
    Conversation,
    ConversationList,
    ConversationWithMessages,
    MessageAccepted,
    CompatConversationReply,
    Usage,
    DeploymentConfig,
    Upload,
    UploadInParts,
    FileListing,
)
