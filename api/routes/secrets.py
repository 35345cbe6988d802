"""The caller's secrets (DESIGN section 16): stored, listed by name, deleted; a value
is never answered back."""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.models import responses as r
from api.routes.common import current_user, json_body, services, validate
from api.routes.operations import ACCOUNT, AUTHED, BODY_ERRORS, Reply, operation

bp = Blueprint("secrets", __name__, url_prefix="/api/secrets")


class SecretPut(BaseModel):
    """`PUT /api/secrets/{name}`."""

    model_config = ConfigDict(extra="forbid")

    value: str = Field(
        min_length=1,
        description="At most MAX_SECRET_BYTES bytes; stored encrypted, never returned.",
    )


@operation(bp, "put", "/<name>", "putSecret", "Store or replace a secret", ACCOUNT,
           Reply(200, "The secret (its name, size and times; never its value).", r.Secret,
                 also=(201,)),
           (*BODY_ERRORS, 409, *AUTHED), body=(SecretPut,))  # fmt: skip
def put(name: str) -> tuple[dict, int]:
    """201 when new, 200 when replaced; 400 a name that is not an environment
    variable's, 409 too many secrets, 413 a value too large."""
    body = validate(SecretPut, json_body())
    entry, created = services().secrets.put(current_user(), name, body.value)
    return r.Secret.of(entry).body(), 201 if created else 200


@operation(bp, "get", "", "listSecrets", "Your secrets: names, sizes and times", ACCOUNT,
           Reply(200, "Your secrets, by name.", r.SecretList), AUTHED)  # fmt: skip
def list_secrets() -> dict:
    entries = services().secrets.list(current_user())
    return r.SecretList(secrets=[r.Secret.of(entry) for entry in entries]).body()


@operation(bp, "delete", "/<name>", "deleteSecret", "Delete a secret", ACCOUNT,
           Reply(204, "Deleted."), (404, *AUTHED))  # fmt: skip
def delete(name: str) -> tuple[str, int]:
    services().secrets.delete(current_user(), name)
    return "", 204
