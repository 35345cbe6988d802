"""A webhook delivery survives the API's death: it is a Firestore document, and the
next API process picks it up and delivers it, signed."""

from __future__ import annotations

import pytest
from standardwebhooks import Webhook

from tests.conftest import ApiServer, Caller, wait_for
from tests.webhook_receiver import WebhookReceiver

# The first retry is due 4-6 s after the first attempt: the first process is killed
# before it, so the retry is the next process's (an attempt cut off midway would hold
# its lease, LEASE_SECONDS, first).
ENV = {"WEBHOOK_ALLOW_LOOPBACK": "true", "WEBHOOK_FIRST_RETRY_SECONDS": "5"}


def webhook_events(caller: Caller, task_id: str) -> list[dict]:
    events = caller.http.get(f"/api/tasks/{task_id}/events").json()["events"]
    return [e["data"] for e in events if e["type"] == "webhook"]


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
        wait_for(lambda: webhook_events(alice, task["id"]), timeout=30, message="attempt 1")
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
            hooks = webhook_events(alice, task["id"])
            return hooks if hooks and hooks[-1]["delivered"] else None

        hooks = wait_for(delivered, timeout=30, message="the delivered event")
        assert hooks[0]["statusCode"] == 503
        assert hooks[-1]["statusCode"] == 200
        alice.http.close()
    finally:
        second.stop()
