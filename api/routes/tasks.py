"""Public task routes (DESIGN section 6.2)."""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, request, stream_with_context

from api import config
from api.errors import ApiError
from api.models import AgentTaskInput, CodeTaskInput, ListTasksQuery, TaskBatch
from api.routes.common import current_user, json_body, services, validate
from api.services.state_machine import is_terminal
from api.services.tasks import render_event, render_task

bp = Blueprint("tasks", __name__, url_prefix="/api/tasks")

EVENTS_PAGE = 500
# An SSE stream ends after this long; the client resumes with Last-Event-ID.
SSE_MAX_SECONDS = 300
SSE_KEEPALIVE_SECONDS = 15


@bp.post("")
def submit():
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
    response = Response(json.dumps(render_task(task)), 202, mimetype="application/json")
    response.headers["Location"] = f"/api/tasks/{task['id']}"
    return response


@bp.post("/batch")
def submit_batch():
    """Queue up to 100 tasks at once, all or none. 202 with the tasks in the order
    given; 400 naming the index of an invalid one; 429 if they do not all fit."""
    user = current_user()
    body = json_body()
    batch = validate(TaskBatch, body)
    items = []
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
    payload = {"tasks": [render_task(task) for task in tasks]}
    return Response(json.dumps(payload), 202, mimetype="application/json")


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name} must be an integer.") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_request", f"{name} must be between {low} and {high}.")
    return value


@bp.get("/<task_id>")
def get(task_id: str):
    """The task; with ?wait=N (N <= 60) once it is terminal or N seconds have passed."""
    user = current_user()
    wait = _int_arg("wait", 0, 0, config.MAX_WAIT_SECONDS)
    tasks = services().tasks
    task = tasks.wait(user, task_id, wait) if wait else tasks.get(user, task_id)
    return render_task(task, tasks.queue_position(task))


@bp.get("")
def list_tasks():
    user = current_user()
    query = validate(ListTasksQuery, request.args.to_dict())
    tasks, next_token = services().tasks.list(
        user, limit=query.limit, page_token=query.page_token, status=query.status
    )
    return {"tasks": [render_task(t) for t in tasks], "nextPageToken": next_token}


@bp.post("/<task_id>/cancel")
def cancel(task_id: str):
    """Cancel unless already terminal; returns the task."""
    return render_task(services().tasks.cancel(current_user(), task_id))


@bp.get("/<task_id>/events")
def events(task_id: str):
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
    return {"events": [render_event(e) for e in events], "next": next_seq}


def _resume_point() -> int:
    header = request.headers.get("Last-Event-ID")
    if header is None:
        return _int_arg("after", 0, 0, 10**9)
    if not header.isdecimal() or int(header) > 10**9:
        raise ApiError(400, "invalid_request", "Last-Event-ID must be an event's seq number.")
    return int(header)


def _sse(user: str, task_id: str, after: int):
    with services().watch.watching(task_id):
        yield from _sse_events(user, task_id, after)


def _sse_events(user: str, task_id: str, after: int):
    tasks = services().tasks
    started = last_sent = time.monotonic()
    while time.monotonic() - started < SSE_MAX_SECONDS:
        seen = tasks.watch.version(task_id)
        task, events = tasks.events(user, task_id, after, EVENTS_PAGE)
        for event in events:
            after = event["seq"]
            payload = json.dumps(render_event(event))
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
        tasks.watch.wait(task_id, seen, 0.5)
