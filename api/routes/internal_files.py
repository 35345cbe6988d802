"""The runner's file endpoints (docs/decisions/0006-files-through-internal-endpoints.md):
input files and the conversation's workspace down, output files and the new
workspace snapshot up. The task token authorizes them, for its own task only; each
request carries at most MAX_RUNNER_CHUNK_BYTES (Cloud Run's 32 MiB HTTP/1 cap), so
big files come in several pieces."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import config
from api.errors import ApiError
from api.routes.common import piece_length, services
from api.routes.internal import authorize_task
from api.services.conversation_turns import snapshot_object
from api.services.files import MAX_OUTPUT_PARTS, MAX_SNAPSHOT_PARTS, output_object

bp = Blueprint("internal_files", __name__, url_prefix="/internal/v1/tasks/<task_id>")


def _task(task_id: str) -> dict:
    authorize_task(task_id)
    task = services().files.task(task_id)
    if task is None:
        raise ApiError(404, "not_found", "No such task.")
    return task


def _piece_args() -> tuple[int, int]:
    try:
        return int(request.args.get("part", "0")), int(request.args.get("parts", "1"))
    except ValueError:
        raise ApiError(400, "invalid_request", "part and parts must be integers.") from None


def _receive(task: dict, target: str, max_parts: int, always_join: bool = False):
    length = piece_length()
    part, parts = _piece_args()
    return services().files.store_piece(
        task, target, part, parts, request.stream, max_parts, always_join, length
    )


@bp.put("/outputs/<int:index>")
def put_output(task_id: str, index: int):
    """One piece of the task's index-th output file."""
    task = _task(task_id)
    if index >= config.MAX_OUTPUT_FILES:
        raise ApiError(400, "invalid_request", f"index must be below {config.MAX_OUTPUT_FILES}.")
    return _receive(task, output_object(task_id, index), MAX_OUTPUT_PARTS)


@bp.put("/snapshot")
def put_snapshot(task_id: str):
    """One piece of this conversation turn's workspace archive."""
    task = _task(task_id)
    if not task.get("conversationId"):
        raise ApiError(409, "no_workspace", "This task is not a conversation turn.")
    target = snapshot_object(task["conversationId"], task_id)
    return _receive(task, target, MAX_SNAPSHOT_PARTS, always_join=True)


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
    pieces = services().files.open_object(name, start, stop)
    response = Response(
        pieces, status=status, mimetype="application/octet-stream", direct_passthrough=True
    )
    response.headers["Content-Length"] = str(stop - start)
    return response


@bp.get("/inputs/<int:index>")
def get_input(task_id: str, index: int):
    """The task's index-th input file (an upload), in ranges."""
    task = _task(task_id)
    name, size = services().files.input_object(task, index)
    return _send(name, size)


@bp.get("/workspace")
def get_workspace(task_id: str):
    """The conversation's current workspace archive, for this turn to start from."""
    task = _task(task_id)
    name, size = services().files.workspace_object(task)
    return _send(name, size)
