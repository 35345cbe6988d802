"""Agents: a name, a system prompt, a model, the runner tools it may use, and limits.
Each agent is visible only to its owner."""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable
from typing import cast

from api.adapters.firestore_store import FirestoreStore
from api.config import DEFAULT_AGENT_ENGINE
from api.errors import ApiError, not_found
from api.models import AgentCreate, AgentPatch
from api.models.documents import TOOLS, AgentDoc
from api.models.responses import Agent
from api.services.state_machine import utcnow

PUBLIC_FIELDS = (
    "name",
    "description",
    "systemPrompt",
    "model",
    "tools",
    "engine",
    "maxTurns",
    "maxTokens",
    "network",
    "secrets",
    "maxCostUsd",
    "environment",
)


class AgentService:
    def __init__(
        self, store: FirestoreStore, *, default_model: str, allowed_models: tuple[str, ...]
    ) -> None:
        self.store = store
        self.default_model = default_model
        self.allowed_models = allowed_models
        # (owner, name or id): whether the owner has that custom environment (set by
        # the app's wiring, api/__init__.py).
        self.environment_exists: Callable[[str, str], bool] | None = None

    def _check_model(self, model: str | None) -> None:
        if model is not None and model not in self.allowed_models:
            raise ApiError(
                422,
                "model_not_allowed",
                f"model {model!r} is not offered here; choose one of: "
                f"{', '.join(self.allowed_models)}.",
            )

    def create(self, owner: str, spec: AgentCreate) -> AgentDoc:
        self._check_model(spec.model)
        self._check_environment(owner, spec.environment)
        now = utcnow()
        fields = {
            **spec.model_dump(by_alias=True),
            "model": spec.model or self.default_model,
            "id": secrets.token_hex(12),
            "owner": owner,
            "createdAt": now,
            "updatedAt": now,
        }
        agent = cast(AgentDoc, fields)
        self.store.create_agent(agent)
        return agent

    def _check_environment(self, owner: str, environment: str | None) -> None:
        """:raises ApiError: 422 when the owner has no environment of that name or id."""
        exists = self.environment_exists
        if environment is not None and exists is not None and not exists(owner, environment):
            raise ApiError(
                422,
                "unknown_environment",
                f"You have no environment named {environment!r}: create it first with "
                "POST /api/environments.",
            )

    def get(self, owner: str, agent_id: str) -> AgentDoc:
        agent = self.store.get_agent(agent_id) if _plausible(agent_id) else None
        if agent is None or agent.get("owner") != owner:
            raise not_found("agent")
        return agent

    def list(self, owner: str, *, limit: int) -> builtins.list[AgentDoc]:
        return self.store.list_agents(owner, limit=limit)

    def update(self, owner: str, agent_id: str, patch: AgentPatch) -> dict:
        agent = self.get(owner, agent_id)
        changes = patch.model_dump(by_alias=True, exclude_unset=True)
        if not changes:
            raise ApiError(400, "invalid_request", "Send at least one field to change.")
        # null: the default model; no cost limit; the default environment
        nullable = ("model", "maxCostUsd", "environment")
        nulls = [name for name, value in changes.items() if value is None and name not in nullable]
        if nulls:
            raise ApiError(400, "invalid_request", f"{', '.join(nulls)} cannot be null.")
        self._check_model(changes.get("model"))
        self._check_environment(owner, changes.get("environment"))
        if "model" in changes and changes["model"] is None:
            changes["model"] = self.default_model  # null: back to the default model
        changes["updatedAt"] = utcnow()
        if not self.store.update_agent(agent_id, changes):
            raise not_found("agent")  # deleted since it was read
        return {**agent, **changes}

    def delete(self, owner: str, agent_id: str) -> None:
        self.get(owner, agent_id)
        self.store.delete_agent(agent_id)

    def settings_for(self, owner: str, agent_id: str | None) -> dict:
        """What an agent task runs with: the agent's settings, or the defaults."""
        if agent_id is None:
            return {
                "systemPrompt": "",
                "model": self.default_model,
                "tools": list(TOOLS),
                "engine": DEFAULT_AGENT_ENGINE,
                "maxTurns": None,
                "maxTokens": None,
                "network": False,
                "secrets": [],
                "maxCostUsd": None,
                "environment": None,
            }
        settings = Agent.of(self.get(owner, agent_id)).body()
        return {name: settings.get(name) for name in PUBLIC_FIELDS if name not in ("name",)}


def _plausible(resource_id: str) -> bool:
    return 0 < len(resource_id) <= 64 and resource_id.isalnum()
