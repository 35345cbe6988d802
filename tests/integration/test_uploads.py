"""POST /api/uploads against the Firestore and Cloud Storage emulators, in process."""

from __future__ import annotations

import hashlib

import pytest

from tests.conftest import with_settings

ALICE = {"X-User-Id": "alice", "Content-Type": "application/octet-stream"}


@pytest.fixture
def small_uploads(firestore, settings):
    from api import create_app

    app = create_app(with_settings(settings, max_upload_bytes=1000), start_background=False)
    return app.test_client()


def test_an_upload_answers_its_id_size_and_sha256(client):
    reply = client.post("/api/uploads", data=b"\x00\x01binary", headers=ALICE)
    assert reply.status_code == 201
    body = reply.json
    assert (body["size"], body["sha256"]) == (8, hashlib.sha256(b"\x00\x01binary").hexdigest())
    assert len(body["id"]) == 24 and body["expiresAt"].endswith("Z")


def test_an_upload_over_the_limit_is_413_and_stores_nothing(small_uploads):
    reply = small_uploads.post("/api/uploads", data=b"x" * 1001, headers=ALICE)
    assert reply.status_code == 413
    assert "1000 bytes" in reply.json["error"]["message"]


def test_an_upload_must_be_octet_stream(client):
    reply = client.post("/api/uploads", json={"a": 1}, headers={"X-User-Id": "alice"})
    assert reply.status_code == 415
    assert "application/octet-stream" in reply.json["error"]["message"]


def test_an_upload_needs_credentials(client):
    reply = client.post(
        "/api/uploads", data=b"x", headers={"Content-Type": "application/octet-stream"}
    )
    assert reply.status_code == 401
