"""`GET /api/config`: how to sign in here and what the API accepts. No credentials and
no I/O: the console reads it before anyone has signed in."""

from __future__ import annotations

from flask import Blueprint

from api.routes.common import services
from api.services.deployment import deployment_config

bp = Blueprint("deployment", __name__)


@bp.get("/api/config")
def config():
    """200 with the sign-in modes, the Firebase web config (if any), and the languages,
    models, tools and engines on offer."""
    return deployment_config(services().settings)
