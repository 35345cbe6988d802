"""`GET /api/usage`: the caller's usage against their limits."""

from __future__ import annotations

from flask import Blueprint

from api.routes.common import current_user, services
from api.services.state_machine import utcnow

bp = Blueprint("usage", __name__)


@bp.get("/api/usage")
def usage():
    """200 with today's tasks, the unsettled and the running tasks, and today's LLM
    tokens, each with its limit (TaskAdmission.usage)."""
    return services().tasks.admission.usage(current_user(), utcnow())
