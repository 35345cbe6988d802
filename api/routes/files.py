"""Files (DESIGN section 11): uploads, a task's output files, a conversation's
workspace. Downloads stream from the bucket in ranged pieces: the API's memory does
not grow with a file's size."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, request, stream_with_context
from pydantic import Field

from api import config
from api.errors import ApiError
from api.models import responses as r
from api.models.documents import TaskDoc
from api.routes.common import (
    Query,
    body_stream,
    current_user,
    limit_body,
    parse_query,
    piece_length,
    services,
)
from api.routes.operations import AUTHED, FILES, OCTETS, Param, Reply, int_range, operation
from api.services import upload_parts
from api.services.archives import MEDIA_TYPES
from api.services.files import missing_parts, output_object
from api.services.upload_parts import MIN_PARTS_LIMIT

bp = Blueprint("files", __name__)
CLOUD_RUN_FRAMED_LIMIT = config.MAX_RUNNER_CHUNK_BYTES
UPLOAD_MIB = config.MAX_UPLOAD_BYTES // config.MIB
PART_MIB = config.MAX_RUNNER_CHUNK_BYTES // config.MIB
RANGE = Param("Range", "header", {"type": "string", "pattern": "^bytes=[0-9]*-[0-9]*$"},
              "One range of bytes (answered 206 with Content-Range).")  # fmt: skip
LISTING = Reply(200, "The files (`content` inline for small UTF-8 text), and what was "
                "skipped with its reason; with `archive`, all of them in one archive.",
                r.FileListing, binary=("application/zip", "application/gzip"))  # fmt: skip
ONE_FILE = Reply(200, "The file's bytes, with its Content-Type; 206 for a Range.",
                 binary=("*/*",), also=(206,))  # fmt: skip
UPLOADED = {"anyOf": [{"$ref": f"#/components/schemas/{model.__name__}"}
                      for model in (r.Upload, r.UploadInParts)]}  # fmt: skip


class UploadQuery(Query):
    # The bounds are documented, and checked by upload_parts.begin (its limit may be
    # higher than the documented one on a deployment with a larger upload limit).
    parts: int | None = Field(
        None,
        description=f"Send no body: start an upload in this many parts (each at most "
        f"{PART_MIB} MiB; on Cloud Run a request is capped at 32 MiB), then PUT each part.",
        json_schema_extra=int_range(1, MIN_PARTS_LIMIT),
    )


class ListingQuery(Query):
    archive: Literal["zip", "tar.gz"] | None = Field(
        None, description="All stored files in one archive instead of the listing."
    )


def _octet_stream() -> None:
    if request.mimetype != "application/octet-stream":
        raise ApiError(
            415,
            "unsupported_media_type",
            "Send the file's raw bytes with Content-Type: application/octet-stream.",
        )


@operation(bp, "post", "/api/uploads", "createUpload",
           f"Upload a file's raw bytes (at most {UPLOAD_MIB} MiB; kept "
           f"{config.UPLOAD_TTL_HOURS} h), or with `parts` start an upload in parts", FILES,
           Reply(201, "The upload: use it in a task's files as {\"upload\": id}. With "
                 "`parts`, a pending upload (UploadInParts) waiting for its parts.", UPLOADED),
           (400, 413, 415, *AUTHED), query=UploadQuery, raw_body=OCTETS,
           body_required=False)  # fmt: skip
def create_upload() -> tuple[dict, int]:
    """Raw bytes (`Content-Type: application/octet-stream`) → 201 `{"id", "size",
    "sha256", "expiresAt"}`; 413 over the upload limit, 415 another content type.
    With `?parts=N` and no body: a pending upload whose parts come next."""
    user = current_user()
    files = services().files
    parts = parse_query(UploadQuery).parts
    if parts is not None:
        return _begin_in_parts(user, parts)
    _octet_stream()
    limit_body(files.max_upload_bytes + 1)  # see piece_length
    if request.content_length is not None and request.content_length > files.max_upload_bytes:
        raise files.upload_too_large()
    record = files.create_upload(user, body_stream(), request.content_length)
    return r.Upload.of(record).body(), 201


def _begin_in_parts(user: str, parts: int) -> tuple[dict, int]:
    if request.content_length or request.headers.get("Transfer-Encoding"):
        raise ApiError(
            400,
            "invalid_request",
            "With ?parts=N send no body: PUT each part to /api/uploads/<id>/parts/<i>.",
        )
    record = upload_parts.begin(services().files, user, parts)
    return r.UploadInParts.of(record, missing_parts(record)).body(), 201


@operation(bp, "put", "/api/uploads/<upload_id>/parts/<int:part>", "putUploadPart",
           f"Send one part of an upload in parts (at most {PART_MIB} MiB; a part sent "
           "again replaces itself)", FILES,
           Reply(200, "The upload: pending with the parts still `missing`, or, once the "
                 "last one is in, complete with the whole file's size and sha256.",
                 r.UploadInParts),
           (400, 404, 409, 413, 415, *AUTHED), raw_body=OCTETS)  # fmt: skip
def put_upload_part(upload_id: str, part: int) -> dict:
    """One part (at most 32 MiB, Cloud Run's request cap), replacing any sent before
    under that index → the upload: pending with the parts still missing, or, once the
    last one is in, complete with its size and sha256."""
    user = current_user()
    _octet_stream()
    length = piece_length()
    files = services().files
    record = upload_parts.put_part(files, user, upload_id, part, body_stream(), length)
    return r.UploadInParts.of(record, missing_parts(record)).body()


def serve_task_files(task: TaskDoc | None, label: str) -> Response | dict:
    """The listing, or with ?archive=zip|tar.gz all stored files in one archive."""
    kind = parse_query(ListingQuery).archive
    if kind is None or task is None:
        return r.FileListing.of(task).body()
    pieces = services().files.output_archive(task, kind)
    response = Response(stream_with_context(pieces), mimetype=MEDIA_TYPES[kind])
    response.headers["Content-Disposition"] = f'attachment; filename="{label}.{kind}"'
    return response


def serve_file(task: TaskDoc, path: str) -> Response:
    """One output file's bytes, whole or the one `Range` asked (206)."""
    files = services().files
    entry = files.output_entry(task, path)
    name = output_object(task["id"], entry["stored"])
    size = entry["size"]
    status, start, stop = 200, 0, size
    if request.range is not None:
        if request.range.units != "bytes" or len(request.range.ranges) != 1:
            raise ApiError(416, "range_not_satisfiable", "Ask for one range of bytes.")
        first, last = request.range.ranges[0]
        if first < 0 and last is None and size > 0:
            # A suffix longer than the file is the whole file (RFC 9110, 14.1.2);
            # werkzeug's range_for_length refuses it.
            bounds: tuple[int, int] | None = (max(0, size + first), size)
        else:
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


@operation(bp, "get", "/api/tasks/<task_id>/files", "listTaskFiles", "A task's output files",
           FILES, LISTING, (400, 404, *AUTHED), query=ListingQuery)  # fmt: skip
def task_files(task_id: str) -> Response | dict:
    task = services().tasks.get(current_user(), task_id)
    return serve_task_files(task, f"task-{task_id}")


@operation(bp, "get", "/api/tasks/<task_id>/files/<path:path>", "getTaskFile",
           "One output file", FILES, ONE_FILE, (404, 416, *AUTHED), params=(RANGE,))  # fmt: skip
def task_file(task_id: str, path: str) -> Response:
    return serve_file(services().tasks.get(current_user(), task_id), path)


def _workspace_task(conversation_id: str) -> TaskDoc | None:
    conversation = services().conversations.get(current_user(), conversation_id)
    return services().files.workspace_task(conversation)


@operation(bp, "get", "/api/conversations/<conversation_id>/files", "listConversationFiles",
           "The files of a conversation's current workspace", FILES, LISTING,
           (400, 404, *AUTHED), query=ListingQuery)  # fmt: skip
def conversation_files(conversation_id: str) -> Response | dict:
    """The conversation's current workspace: the files its last saved turn left."""
    task = _workspace_task(conversation_id)
    return serve_task_files(task, f"conversation-{conversation_id}")


@operation(bp, "get", "/api/conversations/<conversation_id>/files/<path:path>",
           "getConversationFile", "One file of a conversation's current workspace", FILES,
           ONE_FILE, (404, 416, *AUTHED), params=(RANGE,))  # fmt: skip
def conversation_file(conversation_id: str, path: str) -> Response:
    task = _workspace_task(conversation_id)
    if task is None:
        raise ApiError(404, "not_found", "No such file.")
    return serve_file(task, path)
