"""Health endpoints: no auth, no I/O (Cloud Run and old clients probe them)."""

from flask import Blueprint

bp = Blueprint("health", __name__)

HEALTHY = {"status": "ok", "service": "api-server"}


@bp.get("/")
@bp.get("/health")
def health():
    return HEALTHY
