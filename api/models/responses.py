"""Response models: the bodies the public API answers with (DESIGN section 6).

The routes answer with these models: each resource's `of(document)` reads the stored
document (the one place that maps stored fields to public ones) and `body()` is the
JSON. `api/openapi.py` publishes them and the contract tests (tests/contract) check
every response against them.

Where a response echoes what was validated on the way in (a task's `input`) or what
a runner reported (its `result`), it reuses the model that validated it, and echoes
the stored value as it is (`AS_STORED`): it was validated when it was stored, and a
page of tasks should not run every input's checks again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WrapValidator

from api.config import STORED_AGENT_ENGINE
from api.models.agents import AgentTaskInput
from api.models.deployment import DeploymentConfig, Usage
from api.models.documents import Engine, MessageRole, TaskKind, TaskStatusName, ToolName
from api.models.environments import EnvironmentBuildInput
from api.models.runner import AgentResult, OutputFile, RunnerResult, SkippedFile
from api.models.tasks import CodeTaskInput, Network

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
    "egress",
]
# Times are RFC 3339 in UTC; a task's start and finish are null until they happen.
Timestamp = datetime | None
# A stored value echoed as it is; its schema is still the annotated model's.
AS_STORED = (WrapValidator(lambda value, _: value), PlainSerializer(lambda value: value))
Document = Mapping[str, Any]


class Contract(BaseModel):
    """A response body: no field beyond the ones listed, so a document that leaks
    one (an owner, a claim) is refused here and breaks the contract tests."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        """The JSON body: camelCase names, RFC 3339 times, optional fields that were
        not given left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


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

    @classmethod
    def of(cls, service: str, revision: str | None) -> Self:
        return cls.model_validate(
            {"status": "ok", "service": service} | ({"revision": revision} if revision else {})
        )


class Execution(Contract):
    """Where the task runs: a local runner process or a Cloud Run Job execution."""

    backend: str = Field(examples=["local", "cloudrun"])
    name: str | None
    attempt: int = Field(ge=0)
    log_uri: str | None = Field(alias="logUri")
    console_uri: str | None = Field(None, alias="consoleUri")
    sandbox: str | None = Field(
        None,
        description="The sandbox backend the runner isolated the task with (SANDBOX=auto "
        "picks the strongest that works where it runs); absent until the runner reports.",
        examples=["gvisor", "bwrap-root", "bwrap"],
    )
    memory_bound: Literal["cgroup", "watchdog"] | None = Field(
        None,
        alias="memoryBound",
        description="How the task's memory was bounded: its own cgroup, or, where none "
        "could be made, a watchdog over its process tree.",
    )
    disk_bound: Literal["tmpfs", "watchdog"] | None = Field(
        None,
        alias="diskBound",
        description="How the task's files were bounded: a tmpfs of diskMb, or a watchdog.",
    )

    @classmethod
    def of(cls, execution: Document) -> Self:
        shown = {
            "backend": execution.get("backend"),
            "name": execution.get("name"),
            "attempt": execution.get("attempt", 0),
            "logUri": execution.get("logUri"),
        }
        if execution.get("consoleUri"):  # Cloud Run: the execution's page in the Console
            shown["consoleUri"] = execution["consoleUri"]
        for key in ("sandbox", "memoryBound", "diskBound"):  # once the runner reported
            if execution.get(key):
                shown[key] = execution[key]
        return cls.model_validate(shown)


class Task(Contract):
    id: str
    kind: TaskKind
    status: TaskStatusName
    created_at: datetime = Field(alias="createdAt")
    started_at: Timestamp = Field(alias="startedAt")
    finished_at: Timestamp = Field(alias="finishedAt")
    input: Annotated[
        Annotated[
            CodeTaskInput | AgentTaskInput | EnvironmentBuildInput, Field(discriminator="kind")
        ],
        *AS_STORED,
    ] = Field(description="The request as validated, with every default filled in.")
    result: Annotated[RunnerResult | AgentResult | None, *AS_STORED] = Field(
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

    @classmethod
    def of(cls, task: Document, queue_position: int | None = None) -> Self:
        """The public task: no owner, claim or bookkeeping fields."""
        execution = task.get("execution")
        return cls.model_validate(
            {
                "id": task["id"],
                "kind": task["kind"],
                "status": task["status"],
                "createdAt": task.get("createdAt"),
                "startedAt": task.get("startedAt"),
                "finishedAt": task.get("finishedAt"),
                "input": task["input"],
                "result": _public_result(task.get("result")),
                "error": task.get("error"),
                "execution": Execution.of(execution) if execution is not None else None,
                "queuePosition": queue_position if task["status"] == "queued" else None,
                "webhookUrl": task.get("webhookUrl"),
            }
        )


class CancelledTask(Task):
    """`POST /api/tasks/{taskId}/cancel`: the task, cancelled unless it had ended."""

    already_ended: bool = Field(
        alias="alreadyEnded",
        description="True if the task had already ended: the cancel changed nothing and "
        "the task stays as it ended.",
    )

    @classmethod
    def after_cancel(cls, task: Document, already_ended: bool) -> Self:
        return cls.model_validate(Task.of(task).model_dump(by_alias=True) | {
            "alreadyEnded": already_ended})  # fmt: skip


def public_file(entry: Document) -> dict[str, Any]:
    """A result.files entry as clients see it, without the object index it is
    stored under."""
    return {k: v for k, v in entry.items() if k != "stored"}


def _public_result(result: Document | None) -> Document | None:
    if not result or not result.get("files"):
        return result
    return {**result, "files": [public_file(entry) for entry in result["files"]]}


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

    @classmethod
    def of(cls, record: Document) -> Self:
        return cls.model_validate(
            {
                "secret": record["secret"],
                "createdAt": record.get("createdAt"),
                "previousValidUntil": record.get("previousUntil"),
            }
        )


class TaskList(Contract):
    tasks: list[Task]
    next_page_token: str | None = Field(alias="nextPageToken")


class TaskEvent(Contract):
    seq: int = Field(ge=1)
    type: EventType
    data: str | dict[str, Any]
    at: datetime

    @classmethod
    def of(cls, event: Document) -> Self:
        return cls.model_validate(
            {"seq": event["seq"], "type": event["type"], "data": event["data"], "at": event["at"]}
        )


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
    network: Network
    secrets: list[str]
    max_cost_usd: float | None = Field(
        None, alias="maxCostUsd", description="Each task's cost limit in USD (an estimate)."
    )
    environment: str | None = Field(
        None, description="The custom environment its tasks run with (name or id)."
    )
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")

    @classmethod
    def of(cls, agent: Document) -> Self:
        cost = agent.get("maxCostUsd")
        fields = ("name", "description", "systemPrompt", "model", "tools")
        return cls.model_validate(
            {
                "id": agent["id"],
                **{name: agent.get(name) for name in fields},
                # Agents stored before engines existed ran on the SDK loop.
                "engine": agent.get("engine") or STORED_AGENT_ENGINE,
                "maxTurns": agent.get("maxTurns"),
                "maxTokens": agent.get("maxTokens"),
                # Agents stored before secrets and egress had neither.
                "network": agent.get("network") or False,
                "secrets": agent.get("secrets") or [],
                **({"maxCostUsd": cost} if cost is not None else {}),
                "environment": agent.get("environment"),
                "createdAt": agent.get("createdAt"),
                "updatedAt": agent.get("updatedAt"),
            }
        )


class Secret(Contract):
    """One of your secrets: never its value."""

    name: str
    size: int = Field(description="The value's length in bytes (UTF-8).")
    created_at: datetime = Field(alias="createdAt")
    updated_at: datetime = Field(alias="updatedAt")

    @classmethod
    def of(cls, entry: Document) -> Self:
        return cls.model_validate(dict(entry))


class SecretList(Contract):
    secrets: list[Secret]


class Environment(Contract):
    """A custom environment: Python packages on top of the default environment."""

    id: str
    name: str
    python: list[str] = Field(description="The requirements it was built from, normalised.")
    npm: list[str] = Field(description="The npm packages it was built from.")
    status: Literal["building", "ready", "failed"] = Field(
        description="`ready`: tasks may name it. `failed`: see `error`, and the build "
        "task's events (GET /api/tasks/{buildTaskId}/events) for pip's output."
    )
    hash: str = Field(
        description="The manifest's hash: environments with the same packages share one "
        "build and one archive."
    )
    size_bytes: int | None = Field(alias="sizeBytes", description="The archive's size, once ready.")
    build_task_id: str | None = Field(
        alias="buildTaskId",
        description="Your task that builds (or built) it; null when an earlier build of "
        "the same manifest was used.",
    )
    error: ErrorDetail | None
    created_at: datetime = Field(alias="createdAt")

    @classmethod
    def of(cls, view: Document) -> Self:
        return cls.model_validate({"npm": [], **view})


class EnvironmentList(Contract):
    environments: list[Environment]


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

    @classmethod
    def fields_of(cls, conversation: Document) -> dict[str, Any]:
        return {
            "id": conversation["id"],
            "title": conversation.get("title", ""),
            "agentId": conversation.get("agentId"),
            "activeTaskId": conversation.get("activeTaskId"),
            "createdAt": conversation.get("createdAt"),
            "updatedAt": conversation.get("updatedAt"),
        }

    @classmethod
    def of(cls, conversation: Document) -> Self:
        return cls.model_validate(cls.fields_of(conversation))


class ConversationList(Contract):
    conversations: list[Conversation]


class Message(Contract):
    id: str
    role: MessageRole
    content: str
    task_id: str | None = Field(alias="taskId")
    created_at: datetime = Field(alias="createdAt")

    @classmethod
    def of(cls, message: Document) -> Self:
        return cls.model_validate(
            {
                "id": message["id"],
                "role": message["role"],
                "content": message["content"],
                "taskId": message.get("taskId"),
                "createdAt": message.get("createdAt"),
            }
        )


class ConversationWithMessages(Conversation):
    messages: list[Message] = Field(description="A page of messages, oldest first.")
    next_messages_after: str | None = Field(
        alias="nextMessagesAfter", description="Pass as `?after=` for the next page."
    )

    @classmethod
    def of_page(
        cls, conversation: Document, messages: Sequence[Document], next_after: str | None
    ) -> Self:
        return cls.model_validate(
            {
                **Conversation.fields_of(conversation),
                "messages": [Message.of(m) for m in messages],
                "nextMessagesAfter": next_after,
            }
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

    @classmethod
    def of(cls, record: Document) -> Self:
        return cls.model_validate(
            {
                "id": record["id"],
                "size": record["size"],
                "sha256": record["sha256"],
                "expiresAt": record["expireAt"],
            }
        )


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

    @classmethod
    def of(cls, record: Document, missing: list[int]) -> Self:
        """Complete: its size and hash; pending: the parts it still waits for
        (`missing`, api/services/files.py: missing_parts)."""
        shown = {"id": record["id"], "status": record.get("status", "complete")}
        if shown["status"] == "complete":
            shown |= {"size": record["size"], "sha256": record["sha256"]}
        else:
            shown |= {"parts": record["parts"], "missing": missing}
        return cls.model_validate(shown | {"expiresAt": record["expireAt"]})


class FileListing(Contract):
    """A task's (or a conversation's current workspace's) files, and what was skipped."""

    files: list[OutputFile]
    skipped: list[SkippedFile]

    @classmethod
    def of(cls, task: Document | None) -> Self:
        """The task's files (none for no task: a conversation without a workspace)."""
        result = (task or {}).get("result") or {}
        return cls.model_validate(
            {
                "files": [public_file(entry) for entry in result.get("files") or []],
                "skipped": result.get("skipped") or [],
            }
        )


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
    Secret,
    SecretList,
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
