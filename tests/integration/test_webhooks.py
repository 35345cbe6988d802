"""Webhooks: signed per Standard Webhooks, retried from Firestore, SSRF-checked at
creation, at delivery and on every redirect."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from standardwebhooks import Webhook

from api import create_app
from tests.conftest import wait_for, with_settings
from tests.integration.conftest import ALICE
from tests.webhook_receiver import WebhookReceiver

CODE = {"kind": "code", "language": "python", "code": "print(1)"}


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def hook_app(firestore, settings):
    return create_app(
        with_settings(settings, webhook_allow_loopback=True, webhook_first_retry_seconds=0.2),
        start_background=False,
    )


def finished_task(app, url: str) -> dict:
    """A task with a webhook, cancelled: terminal at once, without a runner."""
    client = app.test_client()
    reply = client.post("/api/tasks", json={**CODE, "webhookUrl": url}, headers=ALICE)
    assert reply.status_code == 202, reply.get_json()
    task = reply.get_json()
    assert task["webhookUrl"] == url
    client.post(f"/api/tasks/{task['id']}/cancel", headers=ALICE)
    return task


def webhook_events(app, task_id: str) -> list[dict]:
    events = app.test_client().get(f"/api/tasks/{task_id}/events", headers=ALICE).get_json()
    return [e["data"] for e in events["events"] if e["type"] == "webhook"]


def test_a_finished_task_is_posted_signed_with_the_users_secret(hook_app, receiver):
    task = finished_task(hook_app, receiver.url)
    assert hook_app.extensions["agent_platform"].webhooks.deliver_due() == 1
    ((headers, body),) = receiver.received
    secret = hook_app.test_client().get("/api/webhooks/secret", headers=ALICE).get_json()
    payload = Webhook(secret["secret"]).verify(body, headers)
    assert payload["id"] == task["id"]
    assert payload["status"] == "cancelled"
    assert headers["webhook-id"] == f"msg_{task['id']}"
    assert webhook_events(hook_app, task["id"]) == [
        {"statusCode": 200, "attempt": 1, "delivered": True}
    ]


def test_another_users_secret_does_not_verify(hook_app, receiver):
    finished_task(hook_app, receiver.url)
    hook_app.extensions["agent_platform"].webhooks.deliver_due()
    ((headers, body),) = receiver.received
    bobs = hook_app.test_client().get("/api/webhooks/secret", headers={"X-User-Id": "bob"})
    with pytest.raises(Exception, match="(?i)signature"):
        Webhook(bobs.get_json()["secret"]).verify(body, headers)


def test_after_a_rotation_both_secrets_verify_for_a_while(hook_app, receiver):
    client = hook_app.test_client()
    old = client.get("/api/webhooks/secret", headers=ALICE).get_json()["secret"]
    rotated = client.post("/api/webhooks/secret:rotate", headers=ALICE).get_json()
    assert rotated["secret"] != old and rotated["previousValidUntil"]
    finished_task(hook_app, receiver.url)
    hook_app.extensions["agent_platform"].webhooks.deliver_due()
    ((headers, body),) = receiver.received
    for secret in (old, rotated["secret"]):
        assert json.loads(body) == Webhook(secret).verify(body, headers)


def test_a_failed_delivery_is_retried_with_backoff(hook_app, receiver):
    receiver.answers = [500, 503]
    task = finished_task(hook_app, receiver.url)
    webhooks = hook_app.extensions["agent_platform"].webhooks
    assert webhooks.deliver_due() == 1
    assert webhooks.deliver_due() == 0  # not due yet: backing off
    wait_for(lambda: webhooks.deliver_due(), timeout=10, message="the second attempt")
    wait_for(lambda: webhooks.deliver_due(), timeout=10, message="the third attempt")
    codes = [e["statusCode"] for e in webhook_events(hook_app, task["id"])]
    assert codes == [500, 503, 200]
    assert len(receiver.received) == 3


def test_retries_stop_after_the_retry_window(firestore, settings, receiver):
    app = create_app(
        with_settings(settings, webhook_allow_loopback=True, webhook_retry_hours=0.0),
        start_background=False,
    )
    receiver.answers = [500]
    task = finished_task(app, receiver.url)
    webhooks = app.extensions["agent_platform"].webhooks
    assert webhooks.deliver_due() == 1
    delivery = app.extensions["agent_platform"].store.get_doc(f"webhookDeliveries/{task['id']}")
    assert delivery["status"] == "failed"
    assert delivery["lastStatusCode"] == 500


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",  # not https
        "https://127.0.0.1/hook",  # loopback
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/computeMetadata/v1/",  # the metadata server
        "https://[fe80::1]/hook",  # link-local
        "https://10.1.2.3/hook",  # private
        "https://172.16.0.1/hook",
        "https://192.168.0.10/hook",
        "https://[fd00::1]/hook",  # unique-local
        "https://[::ffff:10.0.0.1]/hook",  # private, IPv4-mapped
        "https://[64:ff9b::7f00:1]/hook",  # 127.0.0.1 through NAT64
        "https://[2002:7f00:1::]/hook",  # 127.0.0.1 as 6to4
        "https://[2002:a00:1::]/hook",  # 10.0.0.1 as 6to4
        "https://user:pw@example.com/hook",
        "ftp://example.com/hook",
        "https://no-such-host.invalid/hook",
    ],
)
def test_webhook_urls_that_could_reach_inside_are_refused_at_creation(firestore, settings, url):
    client = create_app(settings, start_background=False).test_client()
    reply = client.post("/api/tasks", json={**CODE, "webhookUrl": url}, headers=ALICE)
    assert reply.status_code == 422
    assert reply.get_json()["error"]["code"] == "webhook_url_refused"
    batch = client.post(
        "/api/tasks/batch", json={"tasks": [CODE], "webhookUrl": url}, headers=ALICE
    )
    assert batch.status_code == 422


def test_loopback_needs_the_development_setting_and_private_stays_refused(hook_app):
    client = hook_app.test_client()
    ok = client.post(
        "/api/tasks", json={**CODE, "webhookUrl": "http://127.0.0.1:9/x"}, headers=ALICE
    )
    assert ok.status_code == 202
    private = client.post(
        "/api/tasks", json={**CODE, "webhookUrl": "http://10.0.0.1/x"}, headers=ALICE
    )
    assert private.status_code == 422


@pytest.mark.parametrize(
    "target", ["http://169.254.169.254/computeMetadata/v1/", "https://10.0.0.1/x"]
)
def test_a_redirect_to_a_refused_address_is_not_followed(hook_app, receiver, target):
    receiver.redirect_to = target
    task = finished_task(hook_app, receiver.url)
    hook_app.extensions["agent_platform"].webhooks.deliver_due()
    (event,) = webhook_events(hook_app, task["id"])
    assert event["delivered"] is False
    assert "refused" in event["error"]
    store = hook_app.extensions["agent_platform"].store
    assert store.get_doc(f"webhookDeliveries/{task['id']}")["status"] == "refused"


def test_the_address_is_checked_again_at_delivery(hook_app, firestore, settings, receiver):
    """A URL allowed when the task was created (loopback here, in development) is
    refused at delivery by an API that does not allow it."""
    task = finished_task(hook_app, receiver.url)
    strict = create_app(settings, start_background=False)
    strict.extensions["agent_platform"].webhooks.deliver_due()
    assert receiver.received == []
    (event,) = webhook_events(strict, task["id"])
    assert "refused" in event["error"]


def test_the_delivery_record_expires_with_the_task_not_before(hook_app, receiver):
    task = finished_task(hook_app, receiver.url)
    store = hook_app.extensions["agent_platform"].store
    delivery = store.get_doc(f"webhookDeliveries/{task['id']}")
    assert delivery["status"] == "pending"
    assert delivery["nextAttemptAt"] - delivery["createdAt"] < timedelta(seconds=1)


def test_one_users_dead_receivers_delay_anothers_delivery_by_at_most_one_attempt(
    hook_app, receiver
):
    import socket
    import threading
    import time

    from api.config import WEBHOOK_TIMEOUT_SECONDS

    # A receiver that accepts connections (the kernel's backlog) and never answers.
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(64)
    dead_url = f"http://127.0.0.1:{dead.getsockname()[1]}/hook"
    client = hook_app.test_client()
    mallory = {"X-User-Id": "mallory"}
    for _ in range(10):
        task = client.post("/api/tasks", json={**CODE, "webhookUrl": dead_url}, headers=mallory)
        client.post(f"/api/tasks/{task.get_json()['id']}/cancel", headers=mallory)
    finished_task(hook_app, receiver.url)  # alice's, due after all of mallory's
    webhooks = hook_app.extensions["agent_platform"].webhooks
    started = time.monotonic()
    delivering = threading.Thread(target=webhooks.deliver_due)
    delivering.start()
    try:
        wait_for(lambda: receiver.received, WEBHOOK_TIMEOUT_SECONDS, message="alice's hook")
        assert time.monotonic() - started < WEBHOOK_TIMEOUT_SECONDS
    finally:
        delivering.join(WEBHOOK_TIMEOUT_SECONDS * 3)
        dead.close()
