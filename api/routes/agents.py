"""Agents (DESIGN section 6.3); `POST` and `GET /api/agents` also serve the old
clients (6.5)."""

from __future__ import annotations

from flask import Blueprint
from pydantic import Field

from api.models import AgentCreate, AgentPatch
from api.models import responses as r
from api.routes.common import Query, current_user, json_body, parse_query, services, validate
from api.routes.operations import AGENTS, AUTHED, BODY_ERRORS, Reply, operation

bp = Blueprint("agents", __name__, url_prefix="/api/agents")

LIST_DEFAULT, LIST_MAX = 50, 100


class AgentListQuery(Query):
    limit: int = Field(LIST_DEFAULT, ge=1, le=LIST_MAX, description="Page size.")


@operation(bp, "post", "", "createAgent", "Create an agent", AGENTS,
           Reply(201, "The agent.", r.Agent, ("Location",)), (*BODY_ERRORS, 422, *AUTHED),
           body=(AgentCreate,))  # fmt: skip
def create() -> tuple[dict, int, dict[str, str]]:
    """201 with the agent; 400 invalid fields, 422 a model not offered here."""
    agent = services().agents.create(current_user(), validate(AgentCreate, json_body()))
    return r.Agent.of(agent).body(), 201, {"Location": f"/api/agents/{agent['id']}"}


@operation(bp, "get", "", "listAgents", "Your agents", AGENTS,
           Reply(200, "Your agents.", r.AgentList), (400, *AUTHED),
           query=AgentListQuery)  # fmt: skip
def list_agents() -> dict:
    agents = services().agents.list(current_user(), limit=parse_query(AgentListQuery).limit)
    return r.AgentList(agents=[r.Agent.of(a) for a in agents]).body()


@operation(bp, "get", "/<agent_id>", "getAgent", "An agent", AGENTS,
           Reply(200, "The agent.", r.Agent), (404, *AUTHED))  # fmt: skip
def get(agent_id: str) -> dict:
    return r.Agent.of(services().agents.get(current_user(), agent_id)).body()


@operation(bp, "patch", "/<agent_id>", "updateAgent", "Change an agent's fields", AGENTS,
           Reply(200, "The agent as changed.", r.Agent), (*BODY_ERRORS, 404, 422, *AUTHED),
           body=(AgentPatch,))  # fmt: skip
def update(agent_id: str) -> dict:
    patch = validate(AgentPatch, json_body())
    return r.Agent.of(services().agents.update(current_user(), agent_id, patch)).body()


@operation(bp, "delete", "/<agent_id>", "deleteAgent", "Delete an agent", AGENTS,
           Reply(204, "Deleted."), (404, *AUTHED))  # fmt: skip
def delete(agent_id: str) -> tuple[str, int]:
    services().agents.delete(current_user(), agent_id)
    return "", 204
