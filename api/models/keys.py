"""Self-service API keys (`/api/keys`, DESIGN section 6.1): what a caller sends to make
one, and what the API answers. The key itself is in one answer only, the one that
made it; the store keeps its SHA-256 (api/services/auth.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from api.models.responses import Contract

# The same bound as the operator's `flask --app api keys create --name`.
MAX_KEY_NAME_CHARS = 100


class ApiKeyCreate(BaseModel):
    """`POST /api/keys`: what the key is for."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("", max_length=MAX_KEY_NAME_CHARS, description="What the key is for.")


class ApiKey(Contract):
    """One of your keys, never its secret."""

    id: str = Field(description="The key's id: revoke it with DELETE /api/keys/{id}.")
    name: str
    prefix: str = Field(description="The key's first 12 characters, to tell keys apart.")
    created_at: datetime = Field(alias="createdAt")
    last_used_at: datetime | None = Field(
        alias="lastUsedAt", description="When it was last used, to the minute; null if never."
    )

    @classmethod
    def of(cls, record: Any) -> Self:
        return cls.model_validate({name: record.get(name) for name in (
            "id", "name", "prefix", "createdAt", "lastUsedAt")})  # fmt: skip


class ApiKeyCreated(ApiKey):
    """A new key, with its secret: shown this once."""

    key: str = Field(description="`ak_...`: send it as `Authorization: Bearer <key>`.")

    @classmethod
    def made(cls, record: Any, key: str) -> Self:
        return cls.model_validate(ApiKey.of(record).model_dump(by_alias=True) | {"key": key})


class ApiKeyList(Contract):
    keys: list[ApiKey] = Field(description="Your live keys, newest first.")
