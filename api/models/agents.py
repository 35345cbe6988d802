"""Agents, conversations and agent tasks (DESIGN sections 6.2-6.5)."""

from __future__ import annotations

from typing import Annotated, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from api import config
from api.models.documents import TOOLS, Engine, ToolName
from api.models.tasks import (
    EnvironmentRef,
    MemoryMb,
    Network,
    Secrets,
    TimeoutSeconds,
    WebhookUrl,
    unique_names,
)

__all__ = ["Engine", "ToolName"]  # and the models below; Engine, ToolName: documents.py
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Prompt = Annotated[str, StringConstraints(min_length=1, max_length=config.MAX_PROMPT_CHARS)]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
ResourceId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")]
MaxTurns = Annotated[int, Field(ge=1, le=config.MAX_MAX_TURNS, strict=True)]
MaxTokens = Annotated[int, Field(ge=config.MIN_MAX_TOKENS, le=config.MAX_MAX_TOKENS, strict=True)]
MaxCostUsd = Annotated[
    float,
    Field(
        gt=0,
        le=config.MAX_MAX_COST_USD,
        description="The most this task (or each task of this agent) may spend on model "
        "calls, in USD, as estimated from the price table (MODEL_PRICES); null: no limit "
        "but the tokens' and the owner's daily ones.",
    ),
]


def _unique_tools(tools: list[str] | None) -> list[str] | None:
    if tools is not None and len(set(tools)) != len(tools):
        raise ValueError("tools must not repeat")
    return tools


class AgentCreate(BaseModel):
    """`POST /api/agents`. Old clients send only name and description."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Name
    description: str = Field("", max_length=2000)
    system_prompt: str = Field("", alias="systemPrompt", max_length=config.MAX_SYSTEM_PROMPT_CHARS)
    model: ModelName | None = None
    tools: list[ToolName] = Field(default_factory=lambda: list(TOOLS))
    engine: Engine = Field(
        cast(Engine, config.DEFAULT_AGENT_ENGINE),
        description='"claude-code": the real Claude Code CLI in the sandbox (its tools, '
        "prompts and sub-agents; `tools` choose which of its built-in tools it has). "
        '"messages": the built-in tool loop, lighter.',
    )
    max_turns: MaxTurns = Field(config.DEFAULT_MAX_TURNS, alias="maxTurns")
    max_tokens: MaxTokens = Field(config.DEFAULT_MAX_TOKENS, alias="maxTokens")
    network: Network = False
    secrets: Secrets = Field(default_factory=list)
    max_cost_usd: MaxCostUsd | None = Field(None, alias="maxCostUsd")
    environment: EnvironmentRef | None = None

    _tools = field_validator("tools")(_unique_tools)
    _secrets = field_validator("secrets")(unique_names)


def _patch_schema(schema: dict) -> None:
    """A PATCH field has no default (absent means unchanged), and a PATCH changes
    something."""
    for field_schema in schema.get("properties", {}).values():
        field_schema.pop("default", None)
    schema["minProperties"] = 1


class AgentPatch(BaseModel):
    """`PATCH /api/agents/{id}`: only the fields given change; at least one must be.
    Only `model` may be null (back to the default model)."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, json_schema_extra=_patch_schema
    )

    # The other fields default to None without admitting it (so an explicit null is
    # refused, and absence means unchanged): hence their `type: ignore[assignment]`.
    name: Name = None  # type: ignore[assignment]
    description: str = Field(None, max_length=2000)  # type: ignore[assignment]
    system_prompt: str = Field(  # type: ignore[assignment]
        None, alias="systemPrompt", max_length=config.MAX_SYSTEM_PROMPT_CHARS
    )
    model: ModelName | None = None
    tools: list[ToolName] = None  # type: ignore[assignment]
    engine: Engine = None  # type: ignore[assignment]
    max_turns: MaxTurns = Field(None, alias="maxTurns")  # type: ignore[assignment]
    max_tokens: MaxTokens = Field(None, alias="maxTokens")  # type: ignore[assignment]
    network: Network = None  # type: ignore[assignment]
    secrets: Secrets = None  # type: ignore[assignment]
    max_cost_usd: MaxCostUsd | None = Field(None, alias="maxCostUsd")
    environment: EnvironmentRef | None = None

    _tools = field_validator("tools")(_unique_tools)


class AgentTaskInput(BaseModel):
    """`POST /api/tasks` with `kind: "agent"`: one prompt, answered by an agent (or by
    the default agent settings when no agentId is given)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["agent"]
    prompt: Prompt
    agent_id: ResourceId | None = Field(None, alias="agentId")
    engine: Engine | None = Field(None, description="Overrides the agent's engine.")
    max_turns: MaxTurns | None = Field(None, alias="maxTurns")
    max_tokens: MaxTokens | None = Field(None, alias="maxTokens")
    max_cost_usd: MaxCostUsd | None = Field(None, alias="maxCostUsd")
    timeout_seconds: TimeoutSeconds = Field(
        config.DEFAULT_AGENT_TIMEOUT_SECONDS, alias="timeoutSeconds"
    )
    memory_mb: MemoryMb = Field(config.DEFAULT_AGENT_MEMORY_MB, alias="memoryMb")
    network: Network | None = Field(None, description="Overrides the agent's.")
    secrets: Secrets | None = Field(None, description="Overrides the agent's.")
    environment: EnvironmentRef | None = Field(None, description="Overrides the agent's.")
    webhook_url: WebhookUrl | None = Field(None, alias="webhookUrl")

    @field_validator("secrets")
    @classmethod
    def _unique_secrets(cls, names: list[str] | None) -> list[str] | None:
        return names if names is None else unique_names(names)


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    agent_id: ResourceId | None = Field(None, alias="agentId")
    title: str = Field("", max_length=200)


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: Prompt


class CompatConversationBody(BaseModel):
    """The old clients' `POST /api/conversation`; extra fields they send are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message: Prompt
    conversation_id: ResourceId | None = Field(None, alias="conversationId")
