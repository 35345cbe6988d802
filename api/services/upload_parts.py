"""An upload in parts (DESIGN section 11): Cloud Run caps an HTTP/1 request body at
32 MiB, so a bigger file comes as `POST /api/uploads?parts=N`, then each part with
`PUT /api/uploads/<id>/parts/<i>`. The same pieces-and-compose mechanism as the
runner's outputs (FileService.write_piece, join_pieces): each part is an object
`uploads/<id>.part<i>`, joined into `uploads/<id>` once all N are there.

The record, `uploads/<id>`, says which parts arrived (`received`: index → size). A
transaction records each part and, when the last missing one arrives, moves the
upload from pending to joining, so exactly one request joins the pieces; a task can
use the upload only once it is complete (FileService.upload: 409 before).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, BinaryIO

from api import config
from api.errors import ApiError
from api.models.documents import UploadDoc
from api.services.files import (
    COMPLETE,
    JOINING,
    PENDING,
    UPLOAD_TTL,
    FileService,
    missing_parts,
    piece_object,
    upload_object,
)
from api.services.state_machine import utcnow

# GCS composes up to 32 objects in one call; enough parts for the limit in pieces of
# the request cap in any case.
MIN_PARTS_LIMIT = 32
# Longer than any join takes (32 composes and a 256 MiB read): a request that set
# `joining` and then died must not block the upload until it expires.
JOIN_STALE = timedelta(minutes=10)


def max_parts(files: FileService) -> int:
    return max(MIN_PARTS_LIMIT, -(-files.max_upload_bytes // config.MAX_RUNNER_CHUNK_BYTES))


def begin(files: FileService, owner: str, parts: int) -> UploadDoc:
    """A pending upload of `parts` parts, its owner's only, expiring like any upload."""
    limit = max_parts(files)
    if not 1 <= parts <= limit:
        raise ApiError(400, "invalid_request", f"parts must be between 1 and {limit}.")
    upload_id = secrets.token_hex(12)
    now = utcnow()
    record: UploadDoc = {
        "id": upload_id,
        "owner": owner,
        "status": PENDING,
        "parts": parts,
        "received": {},
        "createdAt": now,
        "expireAt": now + UPLOAD_TTL,  # Firestore's TTL policy deletes the record
    }
    files.store.create_upload(record)
    return record


def put_part(
    files: FileService, owner: str, upload_id: str, part: int, stream: BinaryIO, size: int | None
) -> dict[str, Any]:
    """Store part `part` (replacing it if sent before); join them all once the last
    missing one is in. Returns the upload's record as it now stands."""
    upload = files.owned_upload(owner, upload_id)
    _check_pending(upload)
    parts = upload["parts"]
    if not 0 <= part < parts:
        raise ApiError(400, "invalid_request", f"This upload has parts 0 to {parts - 1}.")
    target = upload_object(upload_id)
    stored = files.write_piece(piece_object(target, part), stream, size)

    def record_part(
        latest: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], tuple[dict[str, Any], bool]]:
        _check_pending(latest)
        assert latest is not None  # _check_pending refuses a missing upload
        received = dict(latest.get("received") or {})
        received[str(part)] = stored.size
        over = sum(received.values()) > files.max_upload_bytes
        if over:  # the part just written is not one of this upload's any more
            received.pop(str(part))
        latest["received"] = received
        latest["status"] = PENDING if missing_parts(latest) else JOINING
        update: dict[str, Any] = {"received": received, "status": latest["status"]}
        if latest["status"] == JOINING:
            update["joiningSince"] = utcnow()
        return update, (latest, over)

    over = False
    try:
        record, over = files.store.change_upload(upload_id, record_part)
    except ApiError:
        over = True  # complete or joining meanwhile: nothing will join this part
        raise
    finally:
        if over:
            files.files.retire(stored.name, utcnow())
    if over:
        raise files.upload_too_large()
    if record["status"] == JOINING:
        record = _join(files, record)
    return record


def _check_pending(record: Mapping[str, Any] | None) -> None:
    status = (record or {}).get("status", COMPLETE)
    if status == JOINING and record is not None and record["joiningSince"] < utcnow() - JOIN_STALE:
        return  # the request joining it died: this part may start the join again
    if status == JOINING:
        raise ApiError(409, "upload_joining", "Its last part is being joined; wait for it.")
    if status != PENDING:
        raise ApiError(409, "upload_complete", "This upload is complete: its parts are fixed.")


def _join(files: FileService, record: dict[str, Any]) -> dict[str, Any]:
    """Compose the parts, then hash the whole (SHA-256 does not compose; a streamed
    read, in constant memory), then mark the upload complete. Should the join fail,
    the upload is pending again, with the parts still stored."""
    upload_id = record["id"]
    target = upload_object(upload_id)
    joined = False
    try:
        # A part can be gone though recorded: retired by a request that lost a race
        # with this join. Compose would fail on it (fake-gcs-server even with a 500).
        received = _stored_parts(files, target, record["received"])
        if missing := missing_parts(record | {"received": received}):
            raise ApiError(409, "upload_incomplete", f"Parts {missing} were lost: send them again.")
        info = files.join_pieces(target, record["parts"])
        joined = True
        digest = hashlib.sha256()
        for piece in files.files.read(target, 0, info.size):
            digest.update(piece)
    except Exception:
        # The next join checks again which parts exist; once joined, none do.
        reset: dict[str, Any] = {"status": PENDING} | ({"received": {}} if joined else {})
        files.store.update_upload(upload_id, reset)
        raise
    update = {"status": COMPLETE, "size": info.size, "sha256": digest.hexdigest()}
    files.store.update_upload(upload_id, update)
    return record | update


def _stored_parts(files: FileService, target: str, received: dict) -> dict:
    """The recorded parts whose objects exist."""
    return {k: v for k, v in received.items() if files.files.stat(piece_object(target, int(k)))}
