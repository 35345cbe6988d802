"""Agents (DESIGN section 6.3); `POST` and `GET /api/agents` also serve the old
clients (6.5)."""

from __future__ import annotations

from flask import Blueprint, request

from api.errors import ApiError
from api.models import AgentCreate, AgentPatch
from api.routes.common import current_user, json_body, services, validate
from api.services.agents import render_agent

bp = Blueprint("agents", __name__, url_prefix="/api/agents")

LIST_DEFAULT, LIST_MAX = 50, 100


@bp.post("")
def create():
    """201 with the agent; 400 invalid fields, 422 a model not offered here."""
    agent = services().agents.create(current_user(), validate(AgentCreate, json_body()))
    return render_agent(agent), 201, {"Location": f"/api/agents/{agent['id']}"}


@bp.get("")
def list_agents():
    user = current_user()
    raw = request.args.get("limit", str(LIST_DEFAULT))
    if not raw.isdecimal() or not 1 <= int(raw) <= LIST_MAX:
        raise ApiError(400, "invalid_request", f"limit must be between 1 and {LIST_MAX}.")
    agents = services().agents.list(user, limit=int(raw))
    return {"agents": [render_agent(a) for a in agents]}


@bp.get("/<agent_id>")
def get(agent_id: str):
    return render_agent(services().agents.get(current_user(), agent_id))


@bp.patch("/<agent_id>")
def update(agent_id: str):
    patch = validate(AgentPatch, json_body())
    return render_agent(services().agents.update(current_user(), agent_id, patch))


@bp.delete("/<agent_id>")
def delete(agent_id: str):
    services().agents.delete(current_user(), agent_id)
    return "", 204
