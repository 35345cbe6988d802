"""The files routes of the OpenAPI document (DESIGN section 11): uploads, whole or in
parts, and a task's or a conversation's files. api/openapi.py builds the document."""

from __future__ import annotations

from api import config
from api.models import responses as r
from api.openapi_table import AUTHED, OCTETS, Param, Reply, Route, int_range
from api.services.upload_parts import MIN_PARTS_LIMIT

FILES = "files"
UPLOAD_MIB = config.MAX_UPLOAD_BYTES // config.MIB
PART_MIB = config.MAX_RUNNER_CHUNK_BYTES // config.MIB
ARCHIVE = Param("archive", "query", {"type": "string", "enum": ["zip", "tar.gz"]},
                "All stored files in one archive instead of the listing.")  # fmt: skip
RANGE = Param("Range", "header", {"type": "string", "pattern": "^bytes=[0-9]*-[0-9]*$"},
              "One range of bytes (answered 206 with Content-Range).")  # fmt: skip
PARTS = Param("parts", "query", int_range(1, MIN_PARTS_LIMIT),
              f"Send no body: start an upload in this many parts (each at most {PART_MIB} "
              "MiB; on Cloud Run a request is capped at 32 MiB), then PUT each part.")  # fmt: skip
LISTING = Reply(200, "The files (`content` inline for small UTF-8 text), and what was "
                "skipped with its reason; with `archive`, all of them in one archive.",
                r.FileListing, binary=("application/zip", "application/gzip"))  # fmt: skip
ONE_FILE = Reply(200, "The file's bytes, with its Content-Type; 206 for a Range.",
                 binary=("*/*",), also=(206,))  # fmt: skip
UPLOADED = {"anyOf": [{"$ref": f"#/components/schemas/{model.__name__}"}
                      for model in (r.Upload, r.UploadInParts)]}  # fmt: skip

FILE_ROUTES: tuple[Route, ...] = (
    Route("post", "/api/uploads", "createUpload",
          f"Upload a file's raw bytes (at most {UPLOAD_MIB} MiB; kept "
          f"{config.UPLOAD_TTL_HOURS} h), or with `parts` start an upload in parts", FILES,
          Reply(201, "The upload: use it in a task's files as {\"upload\": id}. With "
                "`parts`, a pending upload (UploadInParts) waiting for its parts.", UPLOADED),
          (400, 413, 415, *AUTHED), params=(PARTS,), raw_body=OCTETS, body_required=False),
    Route("put", "/api/uploads/{uploadId}/parts/{part}", "putUploadPart",
          f"Send one part of an upload in parts (at most {PART_MIB} MiB; a part sent "
          "again replaces itself)", FILES,
          Reply(200, "The upload: pending with the parts still `missing`, or, once the "
                "last one is in, complete with the whole file's size and sha256.",
                r.UploadInParts),
          (400, 404, 409, 413, 415, *AUTHED), raw_body=OCTETS),
    Route("get", "/api/tasks/{taskId}/files", "listTaskFiles", "A task's output files",
          FILES, LISTING, (400, 404, *AUTHED), params=(ARCHIVE,)),
    Route("get", "/api/tasks/{taskId}/files/{path}", "getTaskFile", "One output file",
          FILES, ONE_FILE, (404, 416, *AUTHED), params=(RANGE,)),
    Route("get", "/api/conversations/{conversationId}/files", "listConversationFiles",
          "The files of a conversation's current workspace", FILES, LISTING,
          (400, 404, *AUTHED), params=(ARCHIVE,)),
    Route("get", "/api/conversations/{conversationId}/files/{path}", "getConversationFile",
          "One file of a conversation's current workspace", FILES, ONE_FILE,
          (404, 416, *AUTHED), params=(RANGE,)),
)  # fmt: skip
