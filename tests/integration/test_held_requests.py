"""Requests that hold a server thread (?wait, SSE) are bounded per process."""

from __future__ import annotations

import time

import pytest

from api import config

ALICE = {"X-User-Id": "alice"}


@pytest.fixture
def queued_task(client):
    body = {"kind": "code", "language": "python", "code": "print(1)"}
    return client.post("/api/tasks", json=body, headers=ALICE).get_json()["id"]


@pytest.fixture
def busy(app):
    watch = app.extensions["agent_platform"].watch
    held = [watch.try_hold() for _ in range(config.MAX_HELD_REQUESTS)]
    assert all(held)
    yield watch
    for _ in held:
        watch.release()


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
        reply = client.get(
            f"/api/tasks/{queued_task}/events?after=0",
            headers={**ALICE, "Accept": "text/event-stream"},
            buffered=False,
        )
        assert reply.status_code == 200
        reply.close()
    assert watch.try_hold()
    watch.release()
