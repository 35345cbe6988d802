"""`GET /api/usage`: the caller's usage against their limits."""

from __future__ import annotations

from flask import Blueprint

from api.models import responses as r
from api.routes.common import current_user, services
from api.routes.operations import ACCOUNT, AUTHED, Reply, operation

bp = Blueprint("usage", __name__)


@operation(bp, "get", "/api/usage", "getUsage", "Your usage today against your limits",
           ACCOUNT, Reply(200, "Your counters and their limits.", r.Usage), AUTHED)  # fmt: skip
def usage() -> dict:
    """200 with today's tasks, the unsettled and the running tasks, and today's LLM
    tokens, each with its limit (TaskAdmission.usage)."""
    return services().tasks.usage(current_user())
