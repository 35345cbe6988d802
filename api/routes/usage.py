"""`GET /api/usage`: the caller's usage against their limits."""

from __future__ import annotations

from flask import Blueprint

from api.routes.common import current_user, services

bp = Blueprint("usage", __name__)


@bp.get("/api/usage")
def usage():
    """200 with today's tasks, the unfinished tasks and today's LLM tokens, each with
    its limit."""
    return services().usage.for_user(current_user())
