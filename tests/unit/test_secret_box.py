"""Sealing user secrets (api/adapters/secret_box.py): envelope encryption with a
fresh data key per value, wrapped locally (SECRETS_KEY) or by Cloud KMS, whose REST
API is faked at its HTTP edge here (the calls' URL and body are what KMS takes)."""

from __future__ import annotations

import base64
import json

import pytest
import responses
from google.auth.credentials import AnonymousCredentials

from api.adapters.secret_box import KmsKeyWrapper, LocalKeyWrapper, SecretBox, SecretsUnavailable

KEY = "projects/p/locations/us-central1/keyRings/agent-platform/cryptoKeys/user-secrets"


def test_a_value_opens_only_for_the_owner_and_name_it_was_sealed_for():
    box = SecretBox(LocalKeyWrapper(b"local-key"))
    sealed = box.seal("sk-value", "user-secret\0alice\0DEMO_KEY")
    assert "sk-value" not in json.dumps(sealed)
    assert box.open(sealed, "user-secret\0alice\0DEMO_KEY") == "sk-value"
    with pytest.raises(SecretsUnavailable):
        box.open(sealed, "user-secret\0bob\0DEMO_KEY")
    with pytest.raises(SecretsUnavailable):
        SecretBox(LocalKeyWrapper(b"another-key")).open(sealed, "user-secret\0alice\0DEMO_KEY")


def test_each_value_gets_a_fresh_data_key_and_nonce():
    box = SecretBox(LocalKeyWrapper(b"local-key"))
    one, two = box.seal("same", "c"), box.seal("same", "c")
    assert one["wrappedKey"] != two["wrappedKey"] and one["ciphertext"] != two["ciphertext"]


class FakeKms:
    """Cloud KMS's encrypt and decrypt, as its REST API answers them."""

    def __init__(self) -> None:
        self.wrapped: dict[str, tuple[str, str]] = {}

    def encrypt(self, request):
        body = json.loads(request.body)
        token = base64.b64encode(f"wrapped-{len(self.wrapped)}".encode()).decode()
        self.wrapped[token] = (body["plaintext"], body["additionalAuthenticatedData"])
        return 200, {}, json.dumps({"name": KEY, "ciphertext": token})

    def decrypt(self, request):
        body = json.loads(request.body)
        plaintext, aad = self.wrapped[body["ciphertext"]]
        if aad != body["additionalAuthenticatedData"]:
            return 400, {}, json.dumps({"error": {"status": "INVALID_ARGUMENT"}})
        return 200, {}, json.dumps({"plaintext": plaintext})


@responses.activate
def test_with_kms_the_data_key_is_wrapped_by_the_key_with_the_same_context():
    kms = FakeKms()
    base = f"https://cloudkms.googleapis.com/v1/{KEY}"
    responses.add_callback(responses.POST, f"{base}:encrypt", callback=kms.encrypt)
    responses.add_callback(responses.POST, f"{base}:decrypt", callback=kms.decrypt)
    wrapper = KmsKeyWrapper(KEY)
    wrapper._session = _anonymous_session()
    box = SecretBox(wrapper)
    sealed = box.seal("sk-kms-value", "user-secret\0alice\0DEMO_KEY")
    assert sealed["keyName"] == KEY
    assert box.open(sealed, "user-secret\0alice\0DEMO_KEY") == "sk-kms-value"
    # The data key went to KMS, never the value; the context went with it.
    [(plaintext, aad)] = kms.wrapped.values()
    assert len(base64.b64decode(plaintext)) == 32
    assert base64.b64decode(aad) == b"user-secret\0alice\0DEMO_KEY"
    with pytest.raises(SecretsUnavailable, match="decrypt answered 400"):
        box.open(sealed, "user-secret\0bob\0DEMO_KEY")


def _anonymous_session():
    from google.auth.transport.requests import AuthorizedSession

    return AuthorizedSession(AnonymousCredentials())
