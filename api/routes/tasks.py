"""Public task routes (DESIGN section 6.2)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

from flask import Blueprint, Response, request, stream_with_context
from pydantic import Field

from api import config
from api.errors import ApiError
from api.models import AgentTaskInput, CodeTaskInput, ListTasksQuery, TaskBatch
from api.models import responses as r
from api.models.documents import TaskKind
from api.routes.common import Query, current_user, json_body, parse_query, services, validate
from api.routes.operations import (
    AUTHED,
    BODY_ERRORS,
    IDEMPOTENCY_KEY,
    TASKS,
    Param,
    Reply,
    operation,
)
from api.services.state_machine import is_terminal
from api.wsgi_bridge import CLIENT_GONE

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")

EVENTS_PAGE = 500
# An SSE stream ends after this long; the client resumes with Last-Event-ID.
SSE_MAX_SECONDS = 300
SSE_KEEPALIVE_SECONDS = 15
MAX_SEQ = 10**9


class WaitQuery(Query):
    wait: int = Field(
        0,
        ge=0,
        le=config.MAX_WAIT_SECONDS,
        description="Hold the request until the task is terminal or this many seconds have passed.",
    )


class EventsQuery(Query):
    after: int = Field(0, ge=0, le=MAX_SEQ, description="Only events with a larger seq.")


def _accepted(body: dict, location: str | None = None) -> Response:
    response = Response(json.dumps(body), 202, mimetype="application/json")
    if location is not None:
        response.headers["Location"] = location
    return response


@operation(bp, "post", "", "submitTask", "Queue a code or agent task", TASKS,
           Reply(202, "The queued task.", r.Task, ("Location",)),
           (*BODY_ERRORS, 404, 422, 429, *AUTHED), body=(CodeTaskInput, AgentTaskInput),
           params=(IDEMPOTENCY_KEY,))  # fmt: skip
def submit() -> Response:
    """Queue a task. 202 with the task and its Location; 400/413/415/422 on bad input."""
    user = current_user()
    body = json_body()
    kind = body.get("kind") if isinstance(body, dict) else None
    key = request.headers.get("Idempotency-Key")
    if kind == "code":
        spec = validate(CodeTaskInput, body)
        services().files.check_uploads(user, spec.uploads())  # 404 before any task exists
        task, _ = services().tasks.submit(
            user, "code", spec.public(), key, webhook_url=spec.webhook_url
        )
    elif kind == "agent":
        task = services().conversations.submit_agent_task(user, validate(AgentTaskInput, body), key)
    else:
        raise ApiError(400, "invalid_request", 'kind must be "code" or "agent".')
    return _accepted(r.Task.of(task).body(), f"/api/tasks/{task['id']}")


@operation(bp, "post", "/batch", "submitTaskBatch",
           "Queue up to 100 tasks at once: all are admitted, or none", TASKS,
           Reply(202, "The queued tasks, in the order given.", r.TaskBatchAccepted),
           (*BODY_ERRORS, 404, 422, 429, *AUTHED), body=(TaskBatch,),
           params=(IDEMPOTENCY_KEY,))  # fmt: skip
def submit_batch() -> Response:
    """Queue up to 100 tasks at once, all or none. 202 with the tasks in the order
    given; 400 naming the index of an invalid one; 429 if they do not all fit."""
    user = current_user()
    body = json_body()
    batch = validate(TaskBatch, body)
    items: list[tuple[TaskKind, dict, dict]] = []
    for spec in batch.tasks:
        webhook = spec.webhook_url or batch.webhook_url
        extra = {"webhookUrl": webhook} if webhook else {}
        if isinstance(spec, CodeTaskInput):
            services().files.check_uploads(user, spec.uploads())  # 404 before any task exists
            items.append(("code", spec.public(), extra))
        else:
            task_input, more = services().conversations.agent_task_parts(user, spec)
            items.append(("agent", task_input, {**extra, **more}))
    key = request.headers.get("Idempotency-Key")
    tasks = services().tasks.submit_batch(user, items, key, body)
    return _accepted(r.TaskBatchAccepted(tasks=[r.Task.of(task) for task in tasks]).body())


@operation(bp, "get", "", "listTasks", "Your tasks, newest first", TASKS,
           Reply(200, "A page of tasks.", r.TaskList), (400, *AUTHED),
           query=ListTasksQuery)  # fmt: skip
def list_tasks() -> dict:
    query = parse_query(ListTasksQuery)
    tasks, next_token = services().tasks.list(
        current_user(), limit=query.limit, page_token=query.page_token, status=query.status
    )
    page = {"tasks": [r.Task.of(t) for t in tasks], "nextPageToken": next_token}
    return r.TaskList.model_validate(page).body()


@operation(bp, "get", "/<task_id>", "getTask", "A task", TASKS,
           Reply(200, "The task.", r.Task), (400, 404, *AUTHED), query=WaitQuery)  # fmt: skip
def get(task_id: str) -> dict:
    """The task; with ?wait=N (N <= 60) once it is terminal or N seconds have passed."""
    user = current_user()
    wait = parse_query(WaitQuery).wait
    tasks = services().tasks
    task = tasks.wait(user, task_id, wait) if wait else tasks.get(user, task_id)
    return r.Task.of(task, tasks.queue_position(task)).body()


@operation(bp, "delete", "/<task_id>", "deleteTask", "Delete a finished task", TASKS,
           Reply(204, "Deleted: the task, its events and its files."),
           (404, 409, *AUTHED))  # fmt: skip
def delete(task_id: str) -> tuple[str, int]:
    """Delete a finished task now, rather than after TASK_RETENTION_DAYS."""
    services().tasks.delete(current_user(), task_id, services().files.delete_task_files)
    return "", 204


@operation(bp, "post", "/<task_id>/cancel", "cancelTask", "Cancel a task", TASKS,
           Reply(200, "The task: cancelled, unless it had already ended (then unchanged, "
                 "with `alreadyEnded: true`).", r.CancelledTask),
           (404, 409, *AUTHED))  # fmt: skip
def cancel(task_id: str) -> dict:
    """Cancel unless already terminal; returns the task, saying whether it had ended."""
    task, already_ended = services().tasks.cancel(current_user(), task_id)
    return r.CancelledTask.after_cancel(task, already_ended).body()


@operation(bp, "get", "/<task_id>/events", "listTaskEvents", "A task's events", TASKS,
           Reply(200, "Events after `after`; with `Accept: text/event-stream`, the same "
                 "events as Server-Sent Events (`id:` is `seq`) until the task ends.",
                 r.TaskEventList, stream=True),
           (400, 404, 429, *AUTHED), query=EventsQuery,
           params=(Param("Last-Event-ID", "header", {"type": "integer", "minimum": 0},
                         "Resume a stream after this seq (text/event-stream only)."),))  # fmt: skip
def events(task_id: str) -> Response | dict:
    """Events after `after` (or the `Last-Event-ID` header, as SSE clients resume) as
    JSON, or as Server-Sent Events until the task ends."""
    user = current_user()
    after = _resume_point()
    if request.accept_mimetypes.best == "text/event-stream":
        services().tasks.get(user, task_id)  # 404 before the stream starts
        watch = services().watch
        if not watch.try_hold(user):
            raise ApiError(
                429,
                "too_many_streams",
                "Too many open event streams (yours, or on this server); retry shortly or "
                "poll with ?after=.",
                retry_after=5,
            )
        response = Response(
            stream_with_context(_sse(user, task_id, after)),
            mimetype="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
        # Released when the response is closed, whether or not the stream ever started.
        response.call_on_close(lambda: watch.release(user))
        return response
    _, events = services().tasks.events(user, task_id, after, EVENTS_PAGE)
    next_seq = events[-1]["seq"] if events else after
    return r.TaskEventList(events=[r.TaskEvent.of(e) for e in events], next=next_seq).body()


def _resume_point() -> int:
    header = request.headers.get("Last-Event-ID")
    if header is None:
        return parse_query(EventsQuery).after
    if not header.isdecimal() or int(header) > MAX_SEQ:
        raise ApiError(400, "invalid_request", "Last-Event-ID must be an event's seq number.")
    return int(header)


def _sse(user: str, task_id: str, after: int) -> Iterator[str]:
    with services().watch.watching(task_id):
        yield from _sse_events(user, task_id, after)


def _sse_events(user: str, task_id: str, after: int) -> Iterator[str]:
    tasks, watch = services().tasks, services().watch
    # Set by the server (api/wsgi_bridge.py) once the client has gone: the stream ends
    # within one wait below, and its held slot with it.
    gone = request.environ.get(CLIENT_GONE) or threading.Event()
    started = last_sent = time.monotonic()
    while time.monotonic() - started < SSE_MAX_SECONDS and not gone.is_set():
        seen = watch.version(task_id)
        task, events = tasks.events(user, task_id, after, EVENTS_PAGE)
        for event in events:
            after = event["seq"]
            payload = json.dumps(r.TaskEvent.of(event).body())
            yield f"id: {after}\nevent: {event['type']}\ndata: {payload}\n\n"
            last_sent = time.monotonic()
        if len(events) == EVENTS_PAGE:
            continue
        if is_terminal(task):
            # The task was read before its events, and a terminal status is written in
            # the same transaction as its last event: nothing more will come.
            return
        if time.monotonic() - last_sent > SSE_KEEPALIVE_SECONDS:
            yield ": keep-alive\n\n"
            last_sent = time.monotonic()
        watch.wait(task_id, seen, 0.5)
