"""`GET /api/config`: how to sign in here and what the API accepts. No credentials and
no I/O: the console reads it before anyone has signed in."""

from __future__ import annotations

from flask import Blueprint

from api.models import responses as r
from api.routes.common import services
from api.routes.operations import SERVICE, Reply, operation
from api.services.deployment import deployment_config

bp = Blueprint("deployment", __name__)


@operation(bp, "get", "/api/config", "getConfig",
           "How to sign in here, and the languages, models, tools and engines on offer",
           SERVICE, Reply(200, "This deployment's public settings.", r.DeploymentConfig),
           public=True)  # fmt: skip
def config() -> dict:
    """200 with the sign-in modes, the Firebase web config (if any), and the languages,
    models, tools and engines on offer."""
    return deployment_config(services().settings)
