"""The scheduler's reconcile call (RECONCILE_INVOKER, as the deploy sets it): Google's
certificates fetched once and cached, bad tokens 401 without another fetch, and a
certificate outage 503 with Retry-After, never 500 (issue 21)."""

from __future__ import annotations

import pytest

from api import create_app
from tests.conftest import with_settings
from tests.integration.test_identity import KID, CertsServer, SigningKey

INVOKER = "scheduler@demo.iam.gserviceaccount.com"
PUBLIC_URL = "http://127.0.0.1:9"
AUDIENCE = f"{PUBLIC_URL}/internal/v1/reconcile"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(KID)


@pytest.fixture
def google(key):
    server = CertsServer({KID: key.cert_pem})
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def api(firestore, settings, google):
    changes = {
        "reconcile_invoker": INVOKER,
        "google_oidc_certs_url": google.url,
        "public_url": PUBLIC_URL,
    }
    return create_app(with_settings(settings, **changes), start_background=False).test_client()


def scheduler_token(key: SigningKey, **claims) -> str:
    defaults = {
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "email": INVOKER,
        "email_verified": True,
        "sub": "1234",
        "user_id": None,
        "auth_time": None,
    }
    return key.token(kid=KID, **{**defaults, **claims})


def reconcile(api, token: str):
    return api.post("/internal/v1/reconcile", headers={"Authorization": f"Bearer {token}"})


def test_the_schedulers_token_reconciles_and_the_certificates_are_fetched_once(api, key, google):
    assert reconcile(api, scheduler_token(key)).status_code == 200
    assert reconcile(api, scheduler_token(key)).status_code == 200
    assert google.hits == 1


def test_bad_tokens_are_401_without_a_fetch_each(api, key, google):
    forged = SigningKey(KID)
    bad = [
        "not-a-jwt",
        scheduler_token(forged),
        scheduler_token(key, email="someone@else.example"),
        scheduler_token(key, aud="https://elsewhere.example/internal/v1/reconcile"),
    ]
    for token in bad * 5:
        reply = reconcile(api, token)
        assert reply.status_code == 401, (token, reply.get_json())
    assert google.hits <= 1


def test_certificates_that_cannot_be_fetched_are_503_with_retry_after(api, key, google):
    google.status = 500
    reply = reconcile(api, scheduler_token(key))
    assert reply.status_code == 503, reply.get_json()
    assert int(reply.headers["Retry-After"]) > 0
