"""A webhook delivery survives the API's death: it is a Firestore document, and the
next API process picks it up and delivers it, signed."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from tests.conftest import ApiServer, Caller, wait_for
from tests.webhook_receiver import WebhookReceiver

ENV = {"WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_FIRST_RETRY_SECONDS": "1"}


@pytest.fixture
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


def test_a_delivery_is_retried_by_the_next_api_process_after_a_crash(
    emulator, firestore, tmp_path, receiver
):
    receiver.answers = [503] * 1000  # down until told otherwise
    first = ApiServer(emulator, tmp_path / "api-0.log", **ENV).start()
    try:
        alice = Caller(first.url, "alice")
        secret = alice.http.get("/api/webhooks/secret").json()["secret"]
        task = alice.submit(code="print(1)", webhookUrl=receiver.url)
        alice.http.post(f"/api/tasks/{task['id']}/cancel")
        # Killed right after the first attempt (one killed mid-attempt would hold its
        # lease, LEASE_SECONDS, before the next process may retry).
        wait_for(lambda: receiver.received, timeout=30, message="the first attempt")
        alice.http.close()
    finally:
        first.kill()  # SIGKILL: no clean shutdown, nothing flushed
    receiver.answers = []  # the receiver is back
    seen = len(receiver.received)
    second = ApiServer(emulator, tmp_path / "api-1.log", **ENV).start()
    try:
        wait_for(lambda: len(receiver.received) > seen, timeout=60, message="a retry")
        headers, body = receiver.received[-1]
        assert Webhook(secret).verify(body, headers)["id"] == task["id"]
        alice = Caller(second.url, "alice")

        def delivered():
            events = alice.http.get(f"/api/tasks/{task['id']}/events").json()["events"]
            hooks = [e["data"] for e in events if e["type"] == "webhook"]
            return hooks if hooks and hooks[-1]["delivered"] else None

        hooks = wait_for(delivered, timeout=30, message="the delivered event")
        assert hooks[0]["statusCode"] == 503
        assert hooks[-1]["statusCode"] == 200
        alice.http.close()
    finally:
        second.stop()
