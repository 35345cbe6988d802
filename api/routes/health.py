"""Health endpoints: no auth, no I/O (Cloud Run and old clients probe them)."""

from __future__ import annotations

import os

from flask import Blueprint

from api.models import responses as r
from api.routes.operations import SERVICE, Reply, operation

bp = Blueprint("health", __name__)

SERVICE_NAME = "api-server"
UP = Reply(200, "The service is up.", r.Health)


@operation(bp, "get", "/", "root", "Health (no credentials, no I/O)", SERVICE, UP, public=True)
@operation(bp, "get", "/health", "health", "Health (no credentials, no I/O)", SERVICE, UP,
           public=True)  # fmt: skip
def health() -> dict:
    # On Cloud Run, also the revision that answers (K_REVISION): a deploy's smoke test
    # proves with it that the new code, not an older revision, serves the URL.
    return r.Health.of(SERVICE_NAME, os.environ.get("K_REVISION")).body()
