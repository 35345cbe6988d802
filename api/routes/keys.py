"""Self-service API keys (DESIGN section 6.1): any signed-in caller makes, lists and
revokes their own. The same service (api/services/auth.py) serves the operator's
`flask --app api keys`."""

from __future__ import annotations

from flask import Blueprint

from api.models.keys import ApiKey, ApiKeyCreate, ApiKeyCreated, ApiKeyList
from api.routes.common import current_user, json_body, services, validate
from api.routes.operations import ACCOUNT, AUTHED, BODY_ERRORS, Reply, operation

bp = Blueprint("keys", __name__, url_prefix="/api/keys")


@operation(bp, "post", "", "createApiKey", "Make an API key for your scripts", ACCOUNT,
           Reply(201, "The key, with its secret `key`: shown this once.", ApiKeyCreated),
           (*BODY_ERRORS, *AUTHED), body=(ApiKeyCreate,))  # fmt: skip
def create() -> tuple[dict, int]:
    """201 with the new key (its secret in this answer only); 400 a bad name."""
    body = validate(ApiKeyCreate, json_body())
    key, record = services().api_keys.create(current_user(), body.name)
    return ApiKeyCreated.made(record, key).body(), 201


@operation(bp, "get", "", "listApiKeys", "Your API keys, without their secret", ACCOUNT,
           Reply(200, "Your live keys, newest first.", ApiKeyList), AUTHED)  # fmt: skip
def list_keys() -> dict:
    live = [k for k in services().api_keys.list(current_user()) if k.get("revokedAt") is None]
    return ApiKeyList(keys=[ApiKey.of(k) for k in live]).body()


@operation(bp, "delete", "/<key_id>", "revokeApiKey", "Revoke one of your API keys", ACCOUNT,
           Reply(204, "Revoked: a request with the key now gets 401."), (404, *AUTHED))  # fmt: skip
def revoke(key_id: str) -> tuple[str, int]:
    services().api_keys.revoke_own(current_user(), key_id)
    return "", 204
