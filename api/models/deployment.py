"""Response models of `GET /api/usage` and `GET /api/config` (the console reads both;
so may any client)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class UsageCounter(_Contract):
    used: int = Field(ge=0)
    limit: int = Field(ge=0, description="Beyond it, the API answers 429 (or fails the task).")


class CostCounter(_Contract):
    used: float = Field(ge=0, description="USD, estimated from the price table.")
    limit: float = Field(ge=0, description="USD; 0: no limit.")


class Usage(_Contract):
    """The caller's usage against their limits; the daily counters are per UTC day."""

    day: date = Field(description="The UTC day the daily counters are for.")
    tasks_today: UsageCounter = Field(
        alias="tasksToday", description="Tasks created today (MAX_TASKS_PER_USER_PER_DAY)."
    )
    unsettled_tasks: UsageCounter = Field(
        alias="unsettledTasks",
        description="Tasks queued or running now (MAX_UNSETTLED_TASKS_PER_USER; past it, 429).",
    )
    active_tasks: UsageCounter = Field(
        alias="activeTasks",
        description="Tasks dispatched or running now (MAX_ACTIVE_TASKS_PER_USER; more wait "
        "queued).",
    )
    llm_tokens_today: UsageCounter = Field(
        alias="llmTokensToday",
        description="LLM tokens (input, cache and output) today (USER_DAILY_TOKEN_BUDGET).",
    )
    cost_usd_today: CostCounter = Field(
        alias="costUsdToday",
        description="What today's model calls cost, in USD (USER_DAILY_COST_BUDGET_USD): an "
        "estimate from the price table (MODEL_PRICES), not Anthropic's invoice.",
    )
    cost_usd_month: float = Field(
        alias="costUsdMonth",
        ge=0,
        description="What this UTC month's model calls cost, in USD (an estimate, as above).",
    )
    resets_at: datetime = Field(alias="resetsAt", description="When the daily counters restart.")


class FirebaseWebConfig(BaseModel):
    """The Firebase web app's config (FIREBASE_WEB_CONFIG), as the Firebase JS SDK takes
    it; public by design."""

    model_config = ConfigDict(extra="allow")

    api_key: str = Field(alias="apiKey")
    auth_domain: str = Field(alias="authDomain")
    project_id: str = Field(alias="projectId")


class ModelChoices(_Contract):
    default: str
    allowed: list[str] = Field(description="The models an agent may name (ALLOWED_MODELS).")


class DeploymentConfig(_Contract):
    """How to sign in to this deployment, and the choices its API accepts."""

    auth_modes: list[Literal["dev", "firebase", "apikey"]] = Field(alias="authModes")
    firebase: FirebaseWebConfig | None = Field(
        description="Set where AUTH_MODE includes firebase and FIREBASE_WEB_CONFIG is set."
    )
    languages: list[str] = Field(description="A code task's `language` choices.")
    models: ModelChoices
    tools: list[str] = Field(description="The tools an agent may be given.")
    engines: list[str] = Field(description="An agent's `engine` choices.")
    default_engine: str | None = Field(alias="defaultEngine")
