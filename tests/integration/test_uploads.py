"""POST /api/uploads against the Firestore and Cloud Storage emulators, in process."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

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


def _begin(client, parts: int, user: str = "alice") -> str:
    reply = client.post(f"/api/uploads?parts={parts}", headers={"X-User-Id": user})
    assert reply.status_code == 201, reply.json
    assert reply.json["status"] == "pending"
    assert reply.json["missing"] == list(range(parts))
    return reply.json["id"]


def _put(client, upload_id: str, part: int, data: bytes, user: str = "alice"):
    headers = {"X-User-Id": user, "Content-Type": "application/octet-stream"}
    return client.put(f"/api/uploads/{upload_id}/parts/{part}", data=data, headers=headers)


def _task_with(client, upload_id: str):
    body: dict = {"kind": "code", "language": "python", "code": "print(1)"}
    body["files"] = {"data.bin": {"upload": upload_id}}
    return client.post("/api/tasks", json=body, headers={"X-User-Id": "alice"})


def test_parts_sent_out_of_order_join_into_one_upload_with_the_whole_sha256(client):
    pieces = [b"first-", b"\x00second-", b"third\xff"]
    upload_id = _begin(client, 3)
    assert _put(client, upload_id, 2, pieces[2]).json["missing"] == [0, 1]
    assert _put(client, upload_id, 0, b"to be replaced").json["missing"] == [1]
    assert _put(client, upload_id, 0, pieces[0]).json["missing"] == [1]  # replaced
    done = _put(client, upload_id, 1, pieces[1])
    assert done.status_code == 200
    whole = b"".join(pieces)
    assert done.json["status"] == "complete"
    assert (done.json["size"], done.json["sha256"]) == (
        len(whole),
        hashlib.sha256(whole).hexdigest(),
    )
    again = _put(client, upload_id, 1, pieces[1])
    assert again.status_code == 409 and again.json["error"]["code"] == "upload_complete"
    assert _task_with(client, upload_id).status_code == 202


def test_a_task_cannot_use_an_upload_still_missing_a_part(client):
    upload_id = _begin(client, 3)
    _put(client, upload_id, 0, b"a")
    _put(client, upload_id, 2, b"c")
    reply = _task_with(client, upload_id)
    assert reply.status_code == 409
    assert reply.json["error"]["code"] == "upload_incomplete"
    assert "[1]" in reply.json["error"]["message"]


def test_another_users_upload_in_parts_is_404(client):
    upload_id = _begin(client, 2)
    reply = _put(client, upload_id, 0, b"x", user="bob")
    assert reply.status_code == 404
    assert reply.json["error"]["code"] == "upload_not_found"
    assert _put(client, "0" * 24, 0, b"x").status_code == 404


def test_parts_are_bounded(client):
    assert client.post("/api/uploads?parts=0", headers=ALICE).status_code == 400
    assert client.post("/api/uploads?parts=33", headers=ALICE).status_code == 400
    assert client.post("/api/uploads?parts=x", headers=ALICE).status_code == 400
    with_body = client.post("/api/uploads?parts=2", data=b"x", headers=ALICE)
    assert with_body.status_code == 400
    upload_id = _begin(client, 2)
    assert _put(client, upload_id, 2, b"x").status_code == 400
    reply = _put(client, upload_id, 0, b"x" * (32 * 1024 * 1024 + 1))
    assert reply.status_code == 413
    assert (
        "32 MiB" in reply.json["error"]["message"] or "33554432" in reply.json["error"]["message"]
    )


def test_parts_together_over_the_upload_limit_are_413(small_uploads):
    upload_id = _begin(small_uploads, 2)
    assert _put(small_uploads, upload_id, 0, b"x" * 600).status_code == 200
    reply = _put(small_uploads, upload_id, 1, b"x" * 401)
    assert reply.status_code == 413
    assert _put(small_uploads, upload_id, 1, b"x" * 400).json["size"] == 1000


def test_a_part_lost_before_the_join_is_asked_for_again(client):
    upload_id = _begin(client, 2)
    _put(client, upload_id, 0, b"zero")
    files = client.application.extensions["agent_platform"].files
    files.files.retire(f"uploads/{upload_id}.part0", datetime.now(UTC))
    lost = _put(client, upload_id, 1, b"one")
    assert lost.status_code == 409
    assert lost.json["error"] == {
        "code": "upload_incomplete",
        "message": "Parts [0] were lost: send them again.",
    }
    done = _put(client, upload_id, 0, b"zero")
    assert (done.json["status"], done.json["size"]) == ("complete", 7)
    assert done.json["sha256"] == hashlib.sha256(b"zeroone").hexdigest()


def test_a_join_in_progress_holds_parts_off_until_it_is_stale(client):
    upload_id = _begin(client, 2)
    _put(client, upload_id, 0, b"zero")
    store = client.application.extensions["agent_platform"].files.store
    now = datetime.now(UTC)
    store.update_doc(f"uploads/{upload_id}", {"status": "joining", "joiningSince": now})
    busy = _put(client, upload_id, 1, b"one")
    assert (busy.status_code, busy.json["error"]["code"]) == (409, "upload_joining")
    died = now - timedelta(minutes=11)  # the request joining it died
    store.update_doc(f"uploads/{upload_id}", {"joiningSince": died})
    assert _put(client, upload_id, 1, b"one").json["size"] == 7
