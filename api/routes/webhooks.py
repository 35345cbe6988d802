"""The caller's webhook signing secret (Standard Webhooks; DESIGN section 13)."""

from __future__ import annotations

from flask import Blueprint

from api.routes.common import current_user, services
from api.services.tasks import rfc3339

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")


def _render(record: dict) -> dict:
    return {
        "secret": record["secret"],
        "createdAt": rfc3339(record.get("createdAt")),
        "previousValidUntil": rfc3339(record.get("previousUntil")),
    }


@bp.get("/secret")
def secret():
    """The secret that signs your webhooks (made on first use)."""
    return _render(services().webhooks.secret(current_user()))


@bp.post("/secret:rotate")
def rotate():
    """A new secret; deliveries are signed with the old one too for 24 hours."""
    return _render(services().webhooks.rotate(current_user()))
