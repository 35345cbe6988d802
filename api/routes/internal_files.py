"""The runner's file endpoints (docs/decisions/0006-files-through-internal-endpoints.md):
input files and the conversation's workspace down, output files and the new
workspace snapshot up. The task token authorizes them, for its own task only; each
request carries at most MAX_RUNNER_CHUNK_BYTES (Cloud Run's 32 MiB HTTP/1 cap), so
big files come in several pieces."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import config
from api.errors import ApiError
from api.routes.common import Query, body_stream, parse_query, piece_length, services
from api.routes.internal import authorize_task

bp = Blueprint("internal_files", __name__, url_prefix="/internal/v1/tasks/<task_id>")


@bp.before_request
def _authorize() -> None:
    authorize_task((request.view_args or {})["task_id"])


class PieceQuery(Query):
    """Which piece of a file sent in several requests this is."""

    part: int = 0
    parts: int = 1


@bp.put("/outputs/<int:index>")
def put_output(task_id: str, index: int) -> dict:
    """One piece of the task's index-th output file."""
    length = piece_length()
    piece = parse_query(PieceQuery)
    return services().runner.put_output(
        task_id, index, piece.part, piece.parts, body_stream(), length
    )


@bp.put("/environment")
def put_environment(task_id: str) -> dict:
    """One piece of the archive an environment build made."""
    length = piece_length()
    piece = parse_query(PieceQuery)
    return services().runner.put_environment(
        task_id, piece.part, piece.parts, body_stream(), length
    )


@bp.get("/environment")
def get_environment(task_id: str) -> Response:
    """The archive of the custom environment the task uses, in ranges."""
    return _send(*services().runner.environment(task_id))


@bp.put("/snapshot")
def put_snapshot(task_id: str) -> dict:
    """One piece of this conversation turn's workspace archive."""
    length = piece_length()
    piece = parse_query(PieceQuery)
    return services().runner.put_snapshot(task_id, piece.part, piece.parts, body_stream(), length)


def _send(name: str, size: int) -> Response:
    """The object, or the one range of it asked for."""
    start, stop, status = 0, size, 200
    if request.range is not None:
        bounds = request.range.range_for_length(size)
        if bounds is None or len(request.range.ranges) != 1:
            raise ApiError(416, "range_not_satisfiable", f"The object has {size} bytes.")
        (start, stop), status = bounds, 206
    if stop - start > config.MAX_RUNNER_CHUNK_BYTES:
        raise ApiError(
            416, "range_too_large", f"Ask for at most {config.MAX_RUNNER_CHUNK_BYTES} bytes."
        )
    pieces = services().runner.open_object(name, start, stop)
    response = Response(
        pieces, status=status, mimetype="application/octet-stream", direct_passthrough=True
    )
    response.headers["Content-Length"] = str(stop - start)
    return response


@bp.get("/inputs/<int:index>")
def get_input(task_id: str, index: int) -> Response:
    """The task's index-th input file (an upload), in ranges."""
    return _send(*services().runner.input_file(task_id, index))


@bp.get("/workspace")
def get_workspace(task_id: str) -> Response:
    """The conversation's current workspace archive, for this turn to start from."""
    return _send(*services().runner.workspace(task_id))
