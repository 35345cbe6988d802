"""The per-user request rate: a token bucket per user and per API instance."""

from __future__ import annotations

from api import create_app
from tests.conftest import with_settings
from tests.integration.conftest import ALICE


def rated_client(settings, per_second: float, burst: int):
    changed = with_settings(settings, user_requests_per_second=per_second, user_request_burst=burst)
    return create_app(changed, start_background=False).test_client()


def test_requests_past_the_burst_get_429_with_retry_after(firestore, settings):
    client = rated_client(settings, per_second=0.01, burst=5)
    statuses = [client.get("/api/tasks", headers=ALICE).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    refused = client.get("/api/tasks", headers=ALICE)
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 90 <= int(refused.headers["Retry-After"]) <= 100  # 1 token per 100 s


def test_the_rate_is_per_user(firestore, settings):
    client = rated_client(settings, per_second=0.01, burst=2)
    for _ in range(3):
        client.get("/api/tasks", headers=ALICE)
    assert client.get("/api/tasks", headers=ALICE).status_code == 429
    assert client.get("/api/tasks", headers={"X-User-Id": "bob"}).status_code == 200


def test_health_is_not_rate_limited(firestore, settings):
    client = rated_client(settings, per_second=0.01, burst=1)
    assert {client.get("/health").status_code for _ in range(5)} == {200}
