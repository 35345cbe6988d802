"""The caller's webhook signing secret (Standard Webhooks; DESIGN section 13)."""

from __future__ import annotations

from flask import Blueprint

from api.models import responses as r
from api.routes.common import current_user, services
from api.routes.operations import AUTHED, WEBHOOKS, Reply, operation

bp = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")


@operation(bp, "get", "/secret", "getWebhookSecret", "The secret that signs your webhooks",
           WEBHOOKS, Reply(200, "Your signing secret (made on first use).", r.WebhookSecret),
           AUTHED)  # fmt: skip
def secret() -> dict:
    """The secret that signs your webhooks (made on first use)."""
    return r.WebhookSecret.of(services().webhooks.secret(current_user())).body()


@operation(bp, "post", "/secret:rotate", "rotateWebhookSecret",
           "Replace your webhook secret (the old one signs too for 24 hours)", WEBHOOKS,
           Reply(200, "The new secret.", r.WebhookSecret), AUTHED)  # fmt: skip
def rotate() -> dict:
    """A new secret; deliveries are signed with the old one too for 24 hours."""
    return r.WebhookSecret.of(services().webhooks.rotate(current_user())).body()
