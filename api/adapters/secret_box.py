"""Sealing user secrets at rest (ADR 0016): envelope encryption.

Each value gets a fresh 256-bit data key; the value is encrypted with it (AES-256-GCM,
the owner and the secret's name bound in as associated data, so a sealed value copied
to another user or name does not open). The data key is then wrapped by the key
encryption key:

- `KmsKeyWrapper`: a Cloud KMS symmetric key (SECRETS_KMS_KEY), through KMS's REST
  `encrypt` and `decrypt` with the API's own credentials. The API's account holds
  `roles/cloudkms.cryptoKeyEncrypterDecrypter` on that key and nothing more.
  https://cloud.google.com/kms/docs/envelope-encryption
- `LocalKeyWrapper`: AES-256-GCM under a key derived from SECRETS_KEY (local
  development and tests, as TASK_TOKEN_KEY is for task tokens).

The sealed form is plain data for the store: {"keyName", "wrappedKey", "nonce",
"ciphertext"} (bytes as base64). Nothing here logs or keeps a value.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from api.models.documents import SealedValue

KMS_ENDPOINT = "https://cloudkms.googleapis.com"
KMS_TIMEOUT_SECONDS = 10.0
LOCAL_KEY_NAME = "local"


class SecretsUnavailable(Exception):
    """The key encryption key could not be used (KMS unreachable, or refused)."""


class KeyWrapper(Protocol):
    name: str

    def wrap(self, key: bytes, context: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes: ...


class LocalKeyWrapper:
    """Wraps data keys under a key derived from a configured string."""

    name = LOCAL_KEY_NAME

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"agent-platform user secrets\0" + secret).digest()

    def wrap(self, key: bytes, context: bytes) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        return nonce + AESGCM(self._key).encrypt(nonce, key, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        try:
            return AESGCM(self._key).decrypt(wrapped[:12], wrapped[12:], context)
        except InvalidTag:
            raise SecretsUnavailable(
                "a data key does not open (another SECRETS_KEY, owner or name)"
            ) from None


class KmsKeyWrapper:
    """Wraps data keys with a Cloud KMS key, over its REST API."""

    def __init__(self, key_name: str, endpoint: str = KMS_ENDPOINT) -> None:
        self.name = key_name
        self._endpoint = endpoint.rstrip("/")
        self._session: Any = None

    def wrap(self, key: bytes, context: bytes) -> bytes:
        reply = self._call("encrypt", {"plaintext": _b64(key), **_aad(context)})
        return base64.b64decode(reply["ciphertext"])

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        reply = self._call("decrypt", {"ciphertext": _b64(wrapped), **_aad(context)})
        return base64.b64decode(reply["plaintext"])

    def _call(self, verb: str, body: dict) -> dict:
        import requests

        url = f"{self._endpoint}/v1/{self.name}:{verb}"
        try:
            reply = self._authorized().post(url, json=body, timeout=KMS_TIMEOUT_SECONDS)
        except requests.RequestException as error:
            raise SecretsUnavailable(f"Cloud KMS {verb} failed: {type(error).__name__}") from None
        if reply.status_code != 200:
            raise SecretsUnavailable(f"Cloud KMS {verb} answered {reply.status_code}")
        return reply.json()

    def _authorized(self):
        if self._session is None:
            import google.auth
            from google.auth.transport.requests import AuthorizedSession

            credentials, _ = google.auth.default(
                scopes=["https://www.googleapis.com/auth/cloudkms"]
            )
            self._session = AuthorizedSession(credentials)
        return self._session


class SecretBox:
    """Seals and opens values with a fresh data key each, wrapped by `wrapper`."""

    def __init__(self, wrapper: KeyWrapper) -> None:
        self.wrapper = wrapper

    def seal(self, value: str, context: str) -> SealedValue:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aad = context.encode()
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        ciphertext = AESGCM(data_key).encrypt(nonce, value.encode(), aad)
        return {
            "keyName": self.wrapper.name,
            "wrappedKey": _b64(self.wrapper.wrap(data_key, aad)),
            "nonce": _b64(nonce),
            "ciphertext": _b64(ciphertext),
        }

    def open(self, sealed: SealedValue, context: str) -> str:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        aad = context.encode()
        data_key = self.wrapper.unwrap(base64.b64decode(sealed["wrappedKey"]), aad)
        try:
            plain = AESGCM(data_key).decrypt(
                base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ciphertext"]), aad
            )
        except InvalidTag:
            raise SecretsUnavailable("a sealed secret does not open") from None
        return plain.decode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _aad(context: bytes) -> dict:
    return {"additionalAuthenticatedData": _b64(context)}
