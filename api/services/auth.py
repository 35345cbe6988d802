"""Who is calling (DESIGN 6.1): the one place that turns a request's credentials into
a user id, for every AUTH_MODE.

- `dev`: the `X-User-Id` header names the caller. Trusted only locally:
  `Settings.validate` refuses dev mode on Cloud Run.
- `firebase`: `Authorization: Bearer <Firebase ID token>`, verified as Firebase
  documents for third-party JWT libraries (RS256 signature by one of Google's
  current keys, `aud` = the project, `iss`, `exp`/`iat`, a non-empty `sub`):
  https://firebase.google.com/docs/auth/admin/verify-id-tokens#verify_id_tokens_using_a_third-party_jwt_library
- `apikey`: `Authorization: Bearer ak_...`. Only the key's SHA-256 is stored, as the
  document id, so a key is found by hashing it; the key itself is shown once.

With `firebase,apikey` a bearer credential starting with `ak_` is an API key and
anything else a Firebase ID token. Outside dev mode `X-User-Id` is never read.
Tokens and keys are never logged nor echoed in an error.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import secrets
import time
from collections.abc import Mapping
from datetime import timedelta
from typing import TypeGuard, cast

from api.adapters.firebase_certs import CertsUnavailable, FirebaseCerts
from api.adapters.firestore_store import FirestoreStore
from api.errors import ApiError, BackendUnavailable
from api.models.documents import ApiKeyDoc
from api.services.state_machine import utcnow

log = logging.getLogger(__name__)

# User ids end up in document ids and paths (usage/{owner}_{day}): a safe alphabet.
USER_ID = re.compile(r"^[A-Za-z0-9_.@:-]{1,128}$")
USER_ID_RULE = "1-128 characters of A-Z a-z 0-9 _ . @ : -"

# Firebase ID tokens: a few hundred bytes, a few KiB with custom claims.
MAX_TOKEN_CHARS = 8192
CLOCK_SKEW_SECONDS = 60
FIREBASE_ISSUER_PREFIX = "https://securetoken.google.com/"

API_KEY_PREFIX = "ak_"
API_KEY_BYTES = 32  # secrets.token_urlsafe(32): 43 characters, 256 bits
API_KEY_SHAPE = re.compile(r"^ak_[A-Za-z0-9_-]{32,128}$")
API_KEY_ID = re.compile(r"^[0-9a-f]{64}$")  # a key's SHA-256, its document id
DISPLAY_PREFIX_CHARS = 12  # "ak_" and 9 characters: enough to tell keys apart
MAX_KEY_NAME_CHARS = 100
KEYS_PAGE = 100
# lastUsedAt is rewritten at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def unauthenticated(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class FirebaseTokenVerifier:
    def __init__(
        self, project: str, certs: FirebaseCerts, *, clock_skew: int = CLOCK_SKEW_SECONDS
    ) -> None:
        self.project = project
        self.certs = certs
        self.clock_skew = clock_skew
        self.issuer = FIREBASE_ISSUER_PREFIX + project

    def _refused(self, why: str) -> ApiError:
        return unauthenticated(
            f"The Firebase ID token {why}. Send Authorization: Bearer <a current "
            f"Firebase ID token of project {self.project}>."
        )

    def verify(self, token: str) -> str:
        """The uid the token was issued to; raises 401, or 503 without certificates."""
        from google.auth import jwt

        if len(token) > MAX_TOKEN_CHARS:
            raise self._refused("is too long")
        try:
            # Unverified reads, so a refusal can say why; the signature is checked below.
            header = jwt.decode_header(token)
            claims = jwt.decode(token, verify=False)
        except Exception:
            # google-auth's messages quote the token: never log them.
            raise self._refused("is not a JWT") from None
        kid = header.get("kid")
        if header.get("alg") != "RS256" or not isinstance(kid, str) or not kid:
            raise self._refused("is not signed with RS256 by a Firebase key (alg, kid)")
        self._check_claims(claims)
        try:
            certs = self.certs.get()
        except CertsUnavailable as error:
            raise BackendUnavailable(
                "Firebase ID tokens cannot be verified right now (the signing "
                "certificates are unavailable); retry shortly.",
                retry_after=error.retry_after,
            ) from None
        if kid not in certs:
            raise self._refused("is signed by a key Firebase does not publish (kid)")
        try:
            # The library checks the signature, and again iat/exp and aud.
            jwt.decode(
                token,
                certs={kid: certs[kid]},
                audience=self.project,
                clock_skew_in_seconds=self.clock_skew,
            )
        except Exception:
            raise self._refused("has a signature that does not verify") from None
        return claims["sub"]

    def _check_claims(self, claims: Mapping) -> None:
        now = time.time()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not _is_number(exp) or not _is_number(iat):
            raise self._refused("has no exp or iat")
        if cast(float, exp) + self.clock_skew < now:
            raise self._refused("has expired")
        if cast(float, iat) - self.clock_skew > now:
            raise self._refused("was issued in the future (iat)")
        if claims.get("aud") != self.project:
            raise self._refused(f"is not for project {self.project} (aud)")
        if claims.get("iss") != self.issuer:
            raise self._refused(f"was not issued by {self.issuer} (iss)")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise self._refused("names no user (sub)")
        if not USER_ID.match(sub):
            raise self._refused(f"has a uid this API does not accept ({USER_ID_RULE})")


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


class ApiKeyService:
    """API keys: created for a user, listed without their secret, revoked, and used."""

    def __init__(self, store: FirestoreStore) -> None:
        self.store = store

    def create(self, owner: str, name: str = "") -> tuple[str, ApiKeyDoc]:
        """A new key for `owner`: (the key, shown this once; its stored record)."""
        if not USER_ID.match(owner):
            raise ApiError(400, "invalid_request", f"The user id must be {USER_ID_RULE}.")
        name = name.strip()
        if len(name) > MAX_KEY_NAME_CHARS:
            raise ApiError(
                400, "invalid_request", f"The name is longer than {MAX_KEY_NAME_CHARS} characters."
            )
        key = API_KEY_PREFIX + secrets.token_urlsafe(API_KEY_BYTES)
        record: ApiKeyDoc = {
            "id": hash_api_key(key),
            "owner": owner,
            "prefix": key[:DISPLAY_PREFIX_CHARS],
            "name": name,
            "createdAt": utcnow(),
            "lastUsedAt": None,
            "revokedAt": None,
        }
        self.store.create_api_key(record)
        return key, record

    def list(self, owner: str) -> builtins.list[ApiKeyDoc]:
        """All of `owner`'s keys, revoked ones included, newest first."""
        keys: builtins.list[ApiKeyDoc] = []
        while True:
            after = keys[-1]["id"] if keys else None
            page = self.store.list_api_keys(owner, limit=KEYS_PAGE, after_id=after)
            keys += page
            if len(page) < KEYS_PAGE:
                return keys

    def revoke(self, owner: str, ref: str) -> ApiKeyDoc:
        """Revoke one of `owner`'s keys, named by its id, a unique start of its id (8+
        characters) or its display prefix. Revoking twice is a no-op."""
        ref = ref.strip()
        matches = [
            key
            for key in self.list(owner)
            if ref in (key["id"], key["prefix"]) or (len(ref) >= 8 and key["id"].startswith(ref))
        ]
        if not matches:
            raise ApiError(404, "not_found", f"User {owner} has no API key {ref!r}.")
        if len(matches) > 1:
            raise ApiError(409, "ambiguous", f"{ref!r} matches {len(matches)} keys; give their id.")
        key = matches[0]
        if key.get("revokedAt") is None:
            key["revokedAt"] = utcnow()
            self.store.update_api_key(key["id"], {"revokedAt": key["revokedAt"]})
        return key

    def revoke_own(self, owner: str, key_id: str) -> None:
        """`DELETE /api/keys/{id}`: revoke `owner`'s live key `key_id` (its full id);
        404 for any other: unknown, already revoked, or someone else's."""
        record = self.store.get_api_key(key_id) if API_KEY_ID.match(key_id) else None
        if record is None or record["owner"] != owner or record.get("revokedAt") is not None:
            raise ApiError(404, "not_found", "No such API key.")
        self.store.update_api_key(key_id, {"revokedAt": utcnow()})

    def authenticate(self, key: str) -> str:
        """The owner of a live key; raises 401 for any other."""
        if not API_KEY_SHAPE.match(key):
            raise unauthenticated("The API key is malformed. Send Authorization: Bearer ak_<key>.")
        # Found by its hash, the document id: no comparison of secrets in this process.
        record = self.store.get_api_key(hash_api_key(key))
        if record is None or record.get("revokedAt") is not None:
            raise unauthenticated(
                "The API key is unknown or revoked. Send Authorization: Bearer <a live API key>."
            )
        self._record_use(record)
        return record["owner"]

    def _record_use(self, record: ApiKeyDoc) -> None:
        now = utcnow()
        last = record.get("lastUsedAt")
        if last is not None and now - last < LAST_USED_RESOLUTION:
            return
        try:
            self.store.update_api_key(record["id"], {"lastUsedAt": now})
        except Exception:
            # Bookkeeping: the caller is authenticated whether or not this lands.
            log.warning("could not record the use of API key %s", record["id"][:16])


class Authenticator:
    def __init__(
        self,
        modes: frozenset[str],
        *,
        firebase: FirebaseTokenVerifier | None = None,
        api_keys: ApiKeyService | None = None,
    ) -> None:
        self.modes = modes
        self.firebase = firebase if "firebase" in modes else None
        # Keys a user made at /api/keys work locally too (dev mode), as they will in
        # production: a script written against `make dev` keeps its credentials.
        self.api_keys = api_keys if modes & {"apikey", "dev"} else None
        expected = []
        if self.firebase:
            expected.append("<Firebase ID token>")
        if self.api_keys:
            expected.append("ak_<API key>")
        self.expected = "Send Authorization: Bearer " + " or ".join(expected) + "."

    def authenticate(self, headers: Mapping[str, str]) -> str:
        """The caller's user id; raises 401 (503 when tokens cannot be checked)."""
        scheme, _, credential = headers.get("Authorization", "").partition(" ")
        credential = credential.strip()
        if self.modes == {"dev"}:
            is_key = scheme.lower() == "bearer" and credential.startswith(API_KEY_PREFIX)
            if is_key and self.api_keys is not None:
                return self.api_keys.authenticate(credential)
            return _dev_user(headers)
        if scheme.lower() != "bearer" or not credential:
            raise unauthenticated(f"No credentials. {self.expected}")
        if credential.startswith(API_KEY_PREFIX):
            if self.api_keys is None:
                raise unauthenticated(f"API keys are not accepted here. {self.expected}")
            return self.api_keys.authenticate(credential)
        if self.firebase is None:
            raise unauthenticated(f"The credential is not an API key. {self.expected}")
        return self.firebase.verify(credential)


def _dev_user(headers: Mapping[str, str]) -> str:
    user = headers.get("X-User-Id", "")
    if not user:
        raise unauthenticated("Send the X-User-Id header (AUTH_MODE=dev).")
    if not USER_ID.match(user):
        raise unauthenticated(f"X-User-Id must be {USER_ID_RULE}")
    return user
