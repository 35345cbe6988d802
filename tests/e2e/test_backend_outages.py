"""An outage answers fast and truthfully: with Firestore stopped (connection refused) or
frozen (SIGSTOP: connections accepted, nothing answered), every request is a 503 with
Retry-After within the Firestore deadline, and a retry with the same Idempotency-Key
after the outage finds what the first attempt did, never a duplicate (issue 21).

Its own emulator and server: the session's emulator is never stopped."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.emulator import FirestoreEmulator
from tests.conftest import ApiServer, wait_for

DEADLINE_SECONDS = 3
# The deadline, plus one request's own work on a loaded 2-core machine.
ANSWER_WITHIN_SECONDS = DEADLINE_SECONDS + 4

ROUTES = [
    ("GET", "/api/tasks/{task}", None),
    ("GET", "/api/tasks", None),
    ("POST", "/api/tasks", {"kind": "code", "language": "python", "code": "print(1)"}),
    ("GET", "/api/agents", None),
    ("POST", "/api/agents", {"name": "a", "description": "d"}),
    ("POST", "/api/conversation", {"message": "hi"}),
    ("GET", "/api/usage", None),
    ("POST", "/api/tasks/{task}/cancel", None),
]


@pytest.fixture(scope="module")
def own_emulator(tmp_path_factory) -> Iterator[FirestoreEmulator]:
    emulator = FirestoreEmulator(tmp_path_factory.mktemp("outage") / "firestore.log").start()
    yield emulator
    if emulator.process is not None:
        os.killpg(emulator.process.pid, signal.SIGCONT)
    emulator.stop()


@pytest.fixture(scope="module")
def server(own_emulator, storage_emulator, tmp_path_factory) -> Iterator[ApiServer]:
    server = ApiServer(
        own_emulator,
        tmp_path_factory.mktemp("outage-api") / "api.log",
        FIRESTORE_DEADLINE_SECONDS=str(DEADLINE_SECONDS),
    ).start()
    # A fresh emulator's first answers take seconds (its JIT warming up): not an outage.
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "warm"}, timeout=30) as http:
        wait_for(lambda: answers(http, "/api/tasks"), 90, message="warm up")
    yield server
    server.stop()


@pytest.fixture
def http(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "u1"}, timeout=120) as client:
        yield client


def answers(http: httpx.Client, path: str) -> bool:
    try:
        return http.get(path).status_code == 200
    except httpx.HTTPError:
        return False


def a_task(http: httpx.Client) -> str:
    reply = http.post("/api/tasks", json=ROUTES[2][2])
    assert reply.status_code == 202, reply.text
    return reply.json()["id"]


def assert_quick_503(http: httpx.Client, method: str, path: str, body) -> None:
    started = time.monotonic()
    reply = http.request(method, path, json=body)
    elapsed = time.monotonic() - started
    assert reply.status_code == 503, (method, path, reply.status_code, reply.text)
    assert reply.json()["error"]["code"] == "backend_unavailable"
    assert int(reply.headers["Retry-After"]) > 0
    assert elapsed < ANSWER_WITHIN_SECONDS, (method, path, elapsed)


def restart(emulator: FirestoreEmulator) -> None:
    port = emulator.port
    emulator.stop()
    emulator.port, emulator.host = port, f"127.0.0.1:{port}"
    emulator.start()


def test_every_route_is_a_quick_503_while_firestore_is_stopped(own_emulator, http):
    task = a_task(http)
    own_emulator.stop()
    try:
        for method, path, body in ROUTES:
            assert_quick_503(http, method, path.format(task=task), body)
    finally:
        restart(own_emulator)
    wait_for(lambda: answers(http, "/api/tasks"), 90, message="recovery")


def test_every_route_is_a_quick_503_while_firestore_is_frozen(own_emulator, http):
    task = a_task(http)
    assert own_emulator.process is not None
    os.killpg(own_emulator.process.pid, signal.SIGSTOP)
    try:
        for method, path, body in ROUTES:
            assert_quick_503(http, method, path.format(task=task), body)
    finally:
        os.killpg(own_emulator.process.pid, signal.SIGCONT)
    wait_for(lambda: answers(http, f"/api/tasks/{task}"), 90, message="thaw")


def test_a_retry_with_the_same_key_after_a_503_finds_the_one_task(own_emulator, http):
    key = {"Idempotency-Key": "outage-retry-1", "X-User-Id": "retrier"}
    body = {"kind": "code", "language": "python", "code": "print('once')"}
    assert own_emulator.process is not None
    os.killpg(own_emulator.process.pid, signal.SIGSTOP)
    try:
        first = http.post("/api/tasks", json=body, headers=key)
        assert first.status_code == 503, first.text
    finally:
        os.killpg(own_emulator.process.pid, signal.SIGCONT)
    wait_for(lambda: answers(http, "/api/tasks"), 90, message="thaw")
    again = http.post("/api/tasks", json=body, headers=key)
    assert again.status_code == 202, again.text
    listed = http.get("/api/tasks", headers={"X-User-Id": "retrier"}).json()["tasks"]
    assert [t["id"] for t in listed] == [again.json()["id"]]
