"""Requests that hold a server thread (?wait, SSE) are bounded per process, and each
user has a share of them."""

from __future__ import annotations

import time

import pytest

from api import config
from tests.integration.conftest import ALICE


@pytest.fixture
def queued_task(client):
    body = {"kind": "code", "language": "python", "code": "print(1)"}
    return client.post("/api/tasks", json=body, headers=ALICE).get_json()["id"]


@pytest.fixture
def busy(app):
    """Every held slot of the server taken, by as many other users as that needs."""
    watch = app.extensions["agent_platform"].watch
    users = [f"other-{n // config.MAX_HELD_REQUESTS_PER_USER}" for n in range(watch.max_held)]
    assert all(watch.try_hold(user) for user in users)
    yield watch
    for user in users:
        watch.release(user)


def stream(client, task_id, headers=ALICE):
    return client.get(
        f"/api/tasks/{task_id}/events?after=0",
        headers={**headers, "Accept": "text/event-stream"},
        buffered=False,
    )


def test_wait_returns_at_once_when_every_waiting_slot_is_taken(client, queued_task, busy):
    started = time.monotonic()
    reply = client.get(f"/api/tasks/{queued_task}?wait=30", headers=ALICE)
    assert reply.status_code == 200
    assert reply.get_json()["status"] == "queued"
    assert time.monotonic() - started < 10  # far less than the 30 s it asked for


def test_an_event_stream_beyond_the_limit_answers_429_with_retry_after(client, queued_task, busy):
    reply = client.get(
        f"/api/tasks/{queued_task}/events", headers={**ALICE, "Accept": "text/event-stream"}
    )
    assert reply.status_code == 429
    assert reply.headers["Retry-After"] == "5"
    assert reply.get_json()["error"]["code"] == "too_many_streams"


def test_a_closed_event_stream_gives_its_slot_back(app, client, queued_task):
    watch = app.extensions["agent_platform"].watch
    for _ in range(config.MAX_HELD_REQUESTS + 2):
        reply = stream(client, queued_task)
        assert reply.status_code == 200
        reply.close()
    assert watch.try_hold("alice")
    watch.release("alice")


@pytest.fixture
def alice_holds_her_share(app):
    watch = app.extensions["agent_platform"].watch
    assert all(watch.try_hold("alice") for _ in range(config.MAX_HELD_REQUESTS_PER_USER))
    yield watch
    for _ in range(config.MAX_HELD_REQUESTS_PER_USER):
        watch.release("alice")


def test_one_user_gets_only_a_share_of_the_held_requests(
    client, queued_task, alice_holds_her_share
):
    reply = stream(client, queued_task)
    assert reply.status_code == 429
    assert reply.get_json()["error"]["code"] == "too_many_streams"
    started = time.monotonic()
    waited = client.get(f"/api/tasks/{queued_task}?wait=30", headers=ALICE)
    assert waited.get_json()["status"] == "queued"
    assert time.monotonic() - started < 10  # answered at once, not held


def test_another_user_still_gets_a_stream_while_one_user_holds_their_share(
    client, alice_holds_her_share
):
    bob = {"X-User-Id": "bob"}
    body = {"kind": "code", "language": "python", "code": "print(1)"}
    bobs = client.post("/api/tasks", json=body, headers=bob).get_json()["id"]
    assert alice_holds_her_share.try_hold("bob")  # bob's ?wait would be held
    alice_holds_her_share.release("bob")
    reply = stream(client, bobs, bob)
    assert reply.status_code == 200
    reply.close()
