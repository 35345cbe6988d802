"""Files and workspaces (DESIGN section 11): uploads, a task's input and output files,
and conversation workspace snapshots. Firestore holds the records, the bucket the
bytes (api/adapters/file_store.py). Object names (interfaces: bucket layout):

  uploads/<uploadId>                                 an upload (expires after 24 h)
  tasks/<taskId>/outputs/<n>                         the task's n-th output file
  conversations/<conversationId>/snapshots/<taskId>.tar.gz   a turn's workspace

Objects are named by index, never by the user's path: a path may be 1,000
characters and hold anything, an object name is at most 1,024 bytes.
"""

from __future__ import annotations

import itertools
import mimetypes
import secrets
from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any, BinaryIO

from api import config
from api.adapters.file_store import (
    FileStore,
    ObjectInfo,
    SourceMissing,
    StoredObject,
    TooLarge,
)
from api.adapters.firestore_store import FirestoreStore
from api.errors import ApiError, not_found
from api.models.documents import ConversationDoc, TaskDoc, UploadDoc, UploadStatus
from api.services.archives import stream_archive
from api.services.conversation_turns import snapshot_object
from api.services.state_machine import TaskStatus, utcnow

# Uploads' objects in the bucket (their records: firestore_paths.upload_path).
UPLOAD_OBJECTS = "uploads"
# An upload's status; a record without one (the single-request form) is complete.
PENDING: UploadStatus = "pending"
JOINING: UploadStatus = "joining"
COMPLETE: UploadStatus = "complete"
UPLOAD_TTL = timedelta(hours=config.UPLOAD_TTL_HOURS)
# Parts one runner file may come in: its size limit in pieces of the request limit.
MAX_OUTPUT_PARTS = -(-config.MAX_OUTPUT_FILE_BYTES // config.MAX_RUNNER_CHUNK_BYTES)
MAX_SNAPSHOT_PARTS = 2 * -(-config.MAX_WORKSPACE_BYTES // config.MAX_RUNNER_CHUNK_BYTES)


def upload_object(upload_id: str) -> str:
    return f"{UPLOAD_OBJECTS}/{upload_id}"


def piece_object(target: str, part: int) -> str:
    return f"{target}.part{part}"


def missing_parts(record: Mapping[str, Any]) -> list[int]:
    """The parts a pending upload still waits for."""
    received = record.get("received") or {}
    return [i for i in range(record.get("parts", 0)) if str(i) not in received]


def output_object(task_id: str, index: int) -> str:
    return f"tasks/{task_id}/outputs/{index}"


def content_type(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed or "application/octet-stream"


def public_file(entry: dict) -> dict:
    """A result.files entry as clients see it (without the object index)."""
    return {k: v for k, v in entry.items() if k != "stored"}


class FileService:
    def __init__(self, store: FirestoreStore, files: FileStore, *, max_upload_bytes: int) -> None:
        self.store = store
        self.files = files
        self.max_upload_bytes = max_upload_bytes

    # -- uploads ------------------------------------------------------------------

    def create_upload(self, owner: str, stream: BinaryIO, size: int | None = None) -> UploadDoc:
        """Store the bytes, then the record that makes them usable: an upload whose
        bytes did not arrive whole never exists."""
        upload_id = secrets.token_hex(12)
        try:
            stored = self.files.write(
                upload_object(upload_id),
                stream,
                limit=self.max_upload_bytes,
                content_type="application/octet-stream",
                size=size,
            )
        except TooLarge:
            raise self.upload_too_large() from None
        now = utcnow()
        record: UploadDoc = {
            "id": upload_id,
            "owner": owner,
            "size": stored.size,
            "sha256": stored.sha256,
            "createdAt": now,
            "expireAt": now + UPLOAD_TTL,  # Firestore's TTL policy deletes the record
        }
        self.store.create_upload(record)
        return record

    def upload_too_large(self) -> ApiError:
        return ApiError(
            413,
            "too_large",
            f"An upload may be at most {self.max_upload_bytes} bytes "
            f"({self.max_upload_bytes // (1024 * 1024)} MiB).",
        )

    def owned_upload(self, owner: str, upload_id: str) -> UploadDoc:
        """The caller's live upload record, complete or still pending its parts."""
        record = self.store.get_upload(upload_id) if upload_id.isalnum() else None
        if record is None or record["owner"] != owner or record["expireAt"] <= utcnow():
            raise ApiError(
                404,
                "upload_not_found",
                f"No upload {upload_id!r}: uploads are their owner's only and expire "
                f"{config.UPLOAD_TTL_HOURS} h after POST /api/uploads; upload it again.",
            )
        return record

    def upload(self, owner: str, upload_id: str) -> UploadDoc:
        """A complete upload of the caller's, for a task to use."""
        record = self.owned_upload(owner, upload_id)
        if record.get("status", COMPLETE) != COMPLETE:
            missing = missing_parts(record)
            raise ApiError(
                409,
                "upload_incomplete",
                f"Upload {upload_id!r} is still waiting for parts {missing} "
                f"(PUT /api/uploads/{upload_id}/parts/<i>); a task can use it once all "
                f"{record['parts']} have arrived.",
            )
        return record

    def check_uploads(self, owner: str, upload_ids: list[str]) -> None:
        """404 unless every upload a new task references is the caller's and live."""
        for upload_id in upload_ids:
            self.upload(owner, upload_id)

    # -- a task's inputs, as the runner sees them -------------------------------------

    def task(self, task_id: str) -> TaskDoc | None:
        """The task a runner's file call names (its token was checked)."""
        return self.store.get_task(task_id) if task_id.isalnum() else None

    def input_listing(self, task: TaskDoc) -> list[dict]:
        """The runner's list of input files, in path order (the index is the place)."""
        listing = []
        for index, path in enumerate(sorted(task["input"].get("files") or {})):
            value = task["input"]["files"][path]
            if isinstance(value, str):
                listing.append({"path": path, "text": value})
            elif "base64" in value:
                listing.append({"path": path, "base64": value["base64"]})
            else:
                # None once the upload has expired (its record is gone).
                record = self.store.get_upload(value["upload"])
                if record is not None and record["owner"] != task.get("owner"):
                    record = None  # checked at submission too: only the owner's own uploads
                listing.append(
                    {
                        "path": path,
                        "upload": value["upload"],
                        "size": record.get("size") if record is not None else None,
                        "index": index,
                    }
                )
        return listing

    def input_object(self, task: TaskDoc, index: int) -> tuple[str, int]:
        """(object name, size) of the task's index-th input file, an upload."""
        listing = self.input_listing(task)
        if not 0 <= index < len(listing) or listing[index].get("size") is None:
            raise not_found("input file")
        return upload_object(listing[index]["upload"]), listing[index]["size"]

    # -- outputs and snapshots, sent by the runner --------------------------------------

    def store_piece(
        self,
        task: TaskDoc | None,
        target: str,
        part: int,
        parts: int,
        stream: BinaryIO,
        max_parts: int,
        always_join: bool = False,
        size: int | None = None,
    ) -> dict:
        """One piece of a runner's file. A file in several pieces is joined when its
        last piece arrives; only then does the object exist under its name. With
        `always_join` even a single piece is written aside and then joined: pieces carry
        a Custom-Time (the lifecycle backstop deletes abandoned ones), the joined
        object does not."""
        if task is None or task["status"] != TaskStatus.RUNNING:
            raise ApiError(409, "not_running", "This task is not running; stop.")
        if not (1 <= parts <= max_parts and 0 <= part < parts):
            raise ApiError(400, "invalid_request", f"part must be < parts <= {max_parts}.")
        joined_later = parts > 1 or always_join
        name = piece_object(target, part) if joined_later else target
        stored = self.write_piece(name, stream, size, temporary=joined_later)
        if joined_later and part == parts - 1:
            joined = self.join_pieces(target, parts)
            latest = self.task(task["id"])
            if latest is None or latest["status"] != TaskStatus.RUNNING:
                # Settled (cancelled, timed out) while the pieces were joined: nothing
                # will ever point to this object.
                self.files.retire(target, utcnow())
                raise ApiError(409, "not_running", "This task is not running; stop.")
            return {"size": joined.size}
        return {"size": stored.size, "sha256": stored.sha256}

    def write_piece(
        self, name: str, stream: BinaryIO, size: int | None, *, temporary: bool = True
    ) -> StoredObject:
        """One piece (at most MAX_RUNNER_CHUNK_BYTES, Cloud Run's request cap) of a
        file sent in several requests: the runner's outputs and snapshots, and an
        upload in parts. A temporary piece carries a Custom-Time, so the bucket's
        lifecycle backstop deletes it should it never be joined."""
        try:
            return self.files.write(
                name,
                stream,
                limit=config.MAX_RUNNER_CHUNK_BYTES,
                content_type="application/octet-stream",
                temporary=temporary,
                size=size,
            )
        except TooLarge:
            raise ApiError(
                413,
                "too_large",
                f"A piece is at most {config.MAX_RUNNER_CHUNK_BYTES // config.MIB} MiB "
                f"({config.MAX_RUNNER_CHUNK_BYTES} bytes).",
            ) from None

    def join_pieces(self, target: str, parts: int) -> ObjectInfo:
        """The pieces 0..parts-1 of `target`, joined (GCS compose) into `target`; only
        then does the object exist under its name. The pieces are deleted."""
        pieces = [piece_object(target, k) for k in range(parts)]
        try:
            return self.files.compose(target, pieces, "application/octet-stream")
        except SourceMissing:
            raise ApiError(
                409, "piece_missing", "A piece is missing (lost or never sent); send it again."
            ) from None

    def shape_result(self, task_id: str, result: dict | None) -> dict | None:
        """Give each stored output file its content type."""
        if not result:
            return result
        for entry in result.get("files") or []:
            if entry.get("stored") is not None:
                entry["contentType"] = content_type(entry["path"])
        return result

    # -- reading a task's files ----------------------------------------------------------

    def open_object(self, name: str, start: int, stop: int) -> Iterator[bytes]:
        """The bytes [start, stop) of an object, its first piece already read: an
        unreachable bucket is a 503 now, before the response's status is sent."""
        pieces = self.files.read(name, start, stop)
        first = next(pieces, b"")
        return itertools.chain((first,), pieces)

    def check_available(self, names: list[str]) -> None:
        """503 now (StorageUnavailable) rather than a broken archive later."""
        if names:
            self.files.stat(names[0])

    def output_archive(self, task: TaskDoc, kind: str) -> Iterator[bytes]:
        """Every stored output file of the task in one zip or tar.gz, as it is read;
        503 now rather than a broken archive later if the bucket is unreachable."""
        stored = self.stored_outputs(task)
        self.check_available([name for _, name in stored])
        return stream_archive(kind, stored, lambda name: self.files.read(name))

    def output_entry(self, task: TaskDoc, path: str) -> dict:
        for entry in (task.get("result") or {}).get("files") or []:
            if entry["path"] == path and entry.get("stored") is not None:
                return entry
        raise not_found("file")

    def stored_outputs(self, task: TaskDoc) -> list[tuple[dict, str]]:
        """(entry, object name) of every stored output file of the task."""
        return [
            (entry, output_object(task["id"], entry["stored"]))
            for entry in (task.get("result") or {}).get("files") or []
            if entry.get("stored") is not None
        ]

    # -- conversation workspaces ---------------------------------------------------------

    def workspace_spec(self, task: TaskDoc, max_bytes: int) -> dict | None:
        """What the runner does with a conversation turn's workspace: restore the
        current snapshot (if any) and save a new one, within max_bytes."""
        conversation_id = task.get("conversationId")
        if not conversation_id:
            return None
        conversation = self.store.get_conversation(conversation_id)
        current = conversation.get("workspace") if conversation is not None else None
        restore = {"size": current["size"]} if current else None
        return {"restore": restore, "maxBytes": max_bytes}

    def workspace_task(self, conversation: ConversationDoc) -> TaskDoc | None:
        """The turn whose saved workspace is the conversation's current one."""
        current = conversation.get("workspace")
        return self.store.get_task(current["taskId"]) if current else None

    def workspace_object(self, task: TaskDoc) -> tuple[str, int]:
        conversation_id = task.get("conversationId")
        conversation = self.store.get_conversation(conversation_id) if conversation_id else None
        current = conversation.get("workspace") if conversation is not None else None
        if not current:
            raise not_found("workspace")
        return current["object"], current["size"]

    def turn_settled(self, task: TaskDoc) -> None:
        """After the transaction that settled a turn: delete the snapshot nothing points
        to any more, the superseded one or, if the turn did not move the pointer, its
        own (a failed or cancelled turn's)."""
        conversation_id = task.get("conversationId")
        if not conversation_id:
            return
        conversation = self.store.get_conversation(conversation_id)
        current = conversation.get("workspace") if conversation is not None else None
        mine = snapshot_object(conversation_id, task["id"])
        now = utcnow()
        if current is not None and current.get("object") == mine:
            previous = current.get("previous")
            if previous:
                self.files.retire(previous, now)
        else:
            self.files.retire(mine, now)

    def delete_task_files(self, task_id: str) -> int:
        """Every object of a task: its outputs, and pieces a cancelled upload left."""
        return self.files.delete_prefix(f"tasks/{task_id}/")

    def delete_conversation(self, conversation_id: str) -> int:
        return self.files.delete_prefix(f"conversations/{conversation_id}/")
