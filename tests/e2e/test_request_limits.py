"""Request-body limits per route, against the real server (gunicorn frames chunked
bodies the way Cloud Run's front end hands them over): the public API keeps 1 MiB
with or without Content-Length, and the runner's reports have limits of their own."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from api import config
from api.services.task_tokens import issue_task_token
from tests.conftest import ApiServer

KEY = "request-limits-test-key"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(emulator, tmp_path_factory):
    server = ApiServer(
        emulator, tmp_path_factory.mktemp("limits") / "api.log", TASK_TOKEN_KEY=KEY
    ).start()
    yield server
    server.stop()


@pytest.fixture
def http(server, firestore):
    with httpx.Client(base_url=server.url, timeout=60) as client:
        yield client


def task_body(code_bytes: int) -> bytes:
    body = {"kind": "code", "language": "python", "code": "#" * code_bytes}
    return json.dumps(body).encode()


def chunks(data: bytes, size: int = 64 * 1024):
    for start in range(0, len(data), size):
        yield data[start : start + size]


def runner_headers(task_id: str) -> dict:
    token = issue_task_token(KEY.encode(), task_id, time.time() + 600)
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def test_a_chunked_body_over_1_mib_is_413_not_invalid_json(http):
    reply = http.post(
        "/api/tasks",
        content=chunks(task_body(MIB + 10)),  # an iterator: no Content-Length, chunked
        headers={"X-User-Id": "alice", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "too_large"


def test_a_chunked_body_under_1_mib_is_accepted(http):
    reply = http.post(
        "/api/tasks",
        content=chunks(json.dumps({"kind": "code", "language": "python", "code": "1"}).encode()),
        headers={"X-User-Id": "alice", "Content-Type": "application/json"},
    )
    assert reply.status_code == 202, reply.text


def test_a_body_with_content_length_over_1_mib_is_413(http):
    reply = http.post(
        "/api/tasks",
        content=task_body(MIB + 10),
        headers={"X-User-Id": "alice", "Content-Type": "application/json"},
    )
    assert reply.status_code == 413
    assert str(config.MAX_BODY_BYTES) in reply.json()["error"]["message"]


def events_body(size: int) -> bytes:
    events = [{"type": "stdout", "data": "x" * (size // 100)} for _ in range(100)]
    return json.dumps({"execution": "e", "attempt": 0, "events": events}).encode()


def test_an_events_batch_over_1_mib_passes_the_size_check(http):
    # 2 MiB of events is within the events limit: the next check (no such running
    # task) answers, not the size limit.
    reply = http.post(
        "/internal/v1/tasks/abc123/events",
        content=chunks(events_body(2 * MIB)),
        headers=runner_headers("abc123"),
    )
    assert reply.status_code == 409, reply.text


def test_an_events_batch_over_its_own_limit_is_413(http):
    reply = http.post(
        "/internal/v1/tasks/abc123/events",
        content=chunks(events_body(config.MAX_RUNNER_EVENTS_BYTES + MIB)),
        headers=runner_headers("abc123"),
    )
    assert reply.status_code == 413, reply.text
    assert str(config.MAX_RUNNER_EVENTS_BYTES) in reply.json()["error"]["message"]


def test_a_claim_over_its_limit_is_413(http):
    body = json.dumps({"execution": "e" * config.MAX_RUNNER_CLAIM_BYTES, "attempt": 0}).encode()
    reply = http.post(
        "/internal/v1/tasks/abc123/claim", content=chunks(body), headers=runner_headers("abc123")
    )
    assert reply.status_code == 413, reply.text
