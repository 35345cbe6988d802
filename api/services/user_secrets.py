"""User secrets (DESIGN section 16, ADR 0016): stored sealed, listed by name, never
returned; opened only for the runner of a task that names them.

A secret's name is the environment variable the task's program sees it as, so it
is an environment variable's name, and not one the sandbox sets itself (PATH, the
proxy's variables...). Its value is sealed with the owner and the name bound in
(api/adapters/secret_box.py): a sealed value copied under another owner or name
does not open. Nothing here logs a value.
"""

from __future__ import annotations

import builtins
import re
from typing import TYPE_CHECKING, Any

from api.adapters.firestore_secrets import SecretLimitReached
from api.adapters.secret_box import SecretsUnavailable
from api.errors import ApiError, BackendUnavailable, not_found
from api.services.state_machine import utcnow

if TYPE_CHECKING:
    from api.adapters.firestore_store import FirestoreStore
    from api.adapters.secret_box import SecretBox

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
# Variables the sandbox, the loopback forwarder or Claude Code set or depend on.
RESERVED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "PWD",
        "SHELL",
        "USER",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "NODE_USE_ENV_PROXY",
        "PYTHONDONTWRITEBYTECODE",
    }
)
RESERVED_PREFIXES = ("LD_", "ANTHROPIC_", "CLAUDE_")


def check_name(name: str) -> None:
    """:raises ApiError: 400 when `name` cannot be a secret's name."""
    if not SECRET_NAME.match(name):
        raise ApiError(
            400,
            "invalid_secret_name",
            "A secret's name is an environment variable's name: a letter or _, then "
            "letters, digits and _ (at most 64 characters).",
        )
    if name in RESERVED_NAMES or name.startswith(RESERVED_PREFIXES):
        raise ApiError(
            400,
            "invalid_secret_name",
            f"{name} is set in the sandbox by the platform and cannot be a secret's name.",
        )


class UserSecretService:
    def __init__(self, store: FirestoreStore, box: SecretBox, *, max_count: int, max_bytes: int):
        self.store = store
        self.box = box
        self.max_count = max_count
        self.max_bytes = max_bytes

    def put(self, owner: str, name: str, value: str) -> tuple[dict[str, Any], bool]:
        """Store or replace a secret: (its listing entry, whether it is new)."""
        check_name(name)
        size = len(value.encode("utf-8", "surrogatepass"))
        if not 0 < size <= self.max_bytes:
            raise ApiError(
                413 if size else 400,
                "secret_too_large" if size else "invalid_request",
                f"A secret's value is 1 to {self.max_bytes} bytes (MAX_SECRET_BYTES).",
            )
        now = utcnow()
        try:
            sealed = self.box.seal(value, _context(owner, name))
        except SecretsUnavailable as problem:
            raise BackendUnavailable(f"Secrets cannot be stored now: {problem}") from None
        entry: Any = {"size": size, "createdAt": now, "updatedAt": now}
        try:
            created = self.store.put_user_secret(
                owner, name, entry, {"sealed": sealed, "updatedAt": now}, self.max_count
            )
        except SecretLimitReached:
            raise ApiError(
                409,
                "too_many_secrets",
                f"You have {self.max_count} secrets (MAX_SECRETS_PER_USER): delete one first.",
            ) from None
        return {"name": name, **entry}, created

    def list(self, owner: str) -> builtins.list[dict[str, Any]]:
        """The owner's secrets by name: name, size, times; never a value."""
        listing = self.store.list_user_secrets(owner)
        return [{"name": name, **listing[name]} for name in sorted(listing)]

    def delete(self, owner: str, name: str) -> None:
        if not SECRET_NAME.match(name) or not self.store.delete_user_secret(owner, name):
            raise not_found("secret")

    def check_names(self, owner: str, names: builtins.list[str]) -> None:
        """:raises ApiError: 422 naming the secrets the owner does not have."""
        if not names:
            return
        known = self.store.list_user_secrets(owner)
        missing = [name for name in names if name not in known]
        if missing:
            raise ApiError(
                422,
                "unknown_secret",
                f"You have no secret named {', '.join(missing)}: store it first with "
                "PUT /api/secrets/{name}.",
            )

    def values(self, owner: str, names: builtins.list[str]) -> dict[str, str]:
        """The opened values of `names` (a task's runner asks for them).

        :raises ApiError: 409 `secret_missing` when one was deleted since the task was
            submitted; 503 when the key encryption key cannot be used.
        """
        sealed = self.store.get_sealed_secrets(owner, names)
        missing = [name for name in names if name not in sealed]
        if missing:
            raise ApiError(
                409,
                "secret_missing",
                f"The secret {', '.join(missing)} was deleted after the task was submitted.",
            )
        try:
            return {name: self.box.open(sealed[name], _context(owner, name)) for name in names}
        except SecretsUnavailable as problem:
            raise BackendUnavailable(f"Secrets cannot be opened now: {problem}") from None


def _context(owner: str, name: str) -> str:
    # Bound into the encryption (AES-GCM's associated data, and KMS's): a sealed value
    # opens only for the owner and the name it was sealed for.
    return f"user-secret\0{owner}\0{name}"
