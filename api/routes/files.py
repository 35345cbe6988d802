"""Files (DESIGN section 11): uploads, a task's output files, a conversation's
workspace. Downloads stream from the bucket in ranged pieces: the API's memory does
not grow with a file's size."""

from __future__ import annotations

from flask import Blueprint, Response, request, stream_with_context

from api import config
from api.errors import ApiError
from api.routes.common import current_user, limit_body, piece_length, services
from api.services import upload_parts
from api.services.archives import MEDIA_TYPES, stream_archive
from api.services.files import COMPLETE, missing_parts, output_object, public_file
from api.services.tasks import rfc3339

bp = Blueprint("files", __name__)
CLOUD_RUN_FRAMED_LIMIT = config.MAX_RUNNER_CHUNK_BYTES


def _octet_stream() -> None:
    if request.mimetype != "application/octet-stream":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the file's raw bytes with Content-Type: application/octet-stream.",
        )


@bp.post("/api/uploads")
def create_upload():
    """Raw bytes (`Content-Type: application/octet-stream`) → 201 `{"id", "size",
    "sha256", "expiresAt"}`; 413 over the upload limit, 415 another content type.
    With `?parts=N` and no body: a pending upload whose parts come next."""
    user = current_user()
    files = services().files
    if "parts" in request.args:
        return _begin_in_parts(user)
    _octet_stream()
    limit_body(files.max_upload_bytes + 1)  # see piece_length
    if request.content_length is not None and request.content_length > files.max_upload_bytes:
        raise files.upload_too_large()
    record = files.create_upload(user, request.stream, request.content_length)
    body = {
        "id": record["id"],
        "size": record["size"],
        "sha256": record["sha256"],
        "expiresAt": rfc3339(record["expireAt"]),
    }
    return body, 201


def _begin_in_parts(user: str):
    try:
        parts = int(request.args["parts"])
    except ValueError:
        raise ApiError(400, "invalid_request", "parts must be an integer.") from None
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise ApiError(
            400,
            "invalid_request",
            "With ?parts=N send no body: PUT each part to /api/uploads/<id>/parts/<i>.",
        )
    record = upload_parts.begin(services().files, user, parts)
    return public_upload(record), 201


@bp.put("/api/uploads/<upload_id>/parts/<int:part>")
def put_upload_part(upload_id: str, part: int):
    """One part (at most 32 MiB, Cloud Run's request cap), replacing any sent before
    under that index → the upload: pending with the parts still missing, or, once the
    last one is in, complete with its size and sha256."""
    user = current_user()
    _octet_stream()
    length = piece_length()
    files = services().files
    record = upload_parts.put_part(files, user, upload_id, part, request.stream, length)
    return public_upload(record)


def public_upload(record: dict) -> dict:
    """An upload in parts as clients see it: complete, its size and hash; pending, the
    parts it still waits for."""
    body = {"id": record["id"], "status": record.get("status", COMPLETE)}
    if body["status"] == COMPLETE:
        body |= {"size": record["size"], "sha256": record["sha256"]}
    else:
        body |= {"parts": record["parts"], "missing": missing_parts(record)}
    return body | {"expiresAt": rfc3339(record["expireAt"])}


def file_listing(task: dict) -> dict:
    result = task.get("result") or {}
    return {
        "files": [public_file(e) for e in result.get("files") or []],
        "skipped": result.get("skipped") or [],
    }


def serve_task_files(task: dict, label: str):
    """The listing, or with ?archive=zip|tar.gz all stored files in one archive."""
    kind = request.args.get("archive")
    if kind is None:
        return file_listing(task)
    if kind not in MEDIA_TYPES:
        raise ApiError(400, "invalid_request", "archive must be zip or tar.gz.")
    files = services().files
    stored = files.stored_outputs(task)
    files.check_available([name for _, name in stored])
    pieces = stream_archive(kind, stored, lambda name: files.files.read(name))
    response = Response(stream_with_context(pieces), mimetype=MEDIA_TYPES[kind])
    response.headers["Content-Disposition"] = f'attachment; filename="{label}.{kind}"'
    return response


def serve_file(task: dict, path: str):
    """One output file's bytes, whole or the one `Range` asked (206)."""
    files = services().files
    entry = files.output_entry(task, path)
    name = output_object(task["id"], entry["stored"])
    size = entry["size"]
    status, start, stop = 200, 0, size
    if request.range is not None:
        if request.range.units != "bytes" or len(request.range.ranges) != 1:
            raise ApiError(416, "range_not_satisfiable", "Ask for one range of bytes.")
        bounds = request.range.range_for_length(size)
        if bounds is None:
            error = ApiError(416, "range_not_satisfiable", f"The file has {size} bytes.")
            raise error
        status, (start, stop) = 206, bounds
    pieces = files.open_object(name, start, stop)
    response = Response(
        stream_with_context(pieces),
        status=status,
        mimetype=entry.get("contentType") or "application/octet-stream",
        direct_passthrough=True,
    )
    if stop - start <= CLOUD_RUN_FRAMED_LIMIT or not services().settings.on_cloud_run:
        response.headers["Content-Length"] = str(stop - start)
    # else: Cloud Run refuses an HTTP/1 response with a Content-Length over 32 MiB;
    # sent chunked it has no limit (https://cloud.google.com/run/quotas).
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
    # What a program wrote is not ours to render in the API's origin.
    response.headers["Content-Disposition"] = "attachment"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


@bp.get("/api/tasks/<task_id>/files")
def task_files(task_id: str):
    task = services().tasks.get(current_user(), task_id)
    return serve_task_files(task, f"task-{task_id}")


@bp.get("/api/tasks/<task_id>/files/<path:path>")
def task_file(task_id: str, path: str):
    return serve_file(services().tasks.get(current_user(), task_id), path)


def _workspace_task(conversation_id: str) -> dict | None:
    conversation = services().conversations.get(current_user(), conversation_id)
    return services().files.workspace_task(conversation)


@bp.get("/api/conversations/<conversation_id>/files")
def conversation_files(conversation_id: str):
    """The conversation's current workspace: the files its last saved turn left."""
    task = _workspace_task(conversation_id)
    if task is None:
        return {"files": [], "skipped": []}
    return serve_task_files(task, f"conversation-{conversation_id}")


@bp.get("/api/conversations/<conversation_id>/files/<path:path>")
def conversation_file(conversation_id: str, path: str):
    task = _workspace_task(conversation_id)
    if task is None:
        raise ApiError(404, "not_found", "No such file.")
    return serve_file(task, path)
