"""The runner's endpoints. A task token (and nothing else) authorizes them, and
only for the task it names. The runner never touches Firestore: the API is the only
writer (docs/decisions/0001-runner-reports-over-http.md)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import config
from api.errors import ApiError
from api.models import ClaimBody, EventsBody, ResultBody
from api.models.documents import TaskDoc
from api.routes.common import body_limit, json_body, services, validate
from api.services.llm_proxy import ProxyRefusal, UpstreamError
from api.services.reconcile_auth import authorize_reconcile
from api.services.runner_spec import task_spec
from api.services.state_machine import ClaimRefused, TaskStatus
from api.services.task_tokens import InvalidTaskToken, verify_task_token

bp = Blueprint("internal", __name__, url_prefix="/internal/v1")


def authorize_task(task_id: str) -> None:
    """401 unless the request carries the task token of `task_id`."""
    header = request.headers.get("Authorization", "")
    token = header.removeprefix("Bearer ").strip()
    try:
        verify_task_token(services().settings.task_token_key, token, task_id)
    except InvalidTaskToken as error:
        raise ApiError(401, "invalid_task_token", str(error)) from None


def _spec(task: TaskDoc) -> dict:
    return task_spec(task, services().settings, services().files, services().conversations)


@bp.post("/tasks/<task_id>/claim")
@body_limit(config.MAX_RUNNER_CLAIM_BYTES)
def claim(task_id: str):
    """200 with the task's spec when this execution attempt may run it (idempotent);
    409 otherwise. One round trip: the runner's start is on every task's critical path."""
    authorize_task(task_id)
    body = validate(ClaimBody, json_body())
    try:
        task = services().machine.claim(
            task_id,
            body.execution,
            body.attempt,
            execution_name=services().dispatcher.executor.qualify_execution(body.execution),
        )
    except ClaimRefused as refusal:
        raise ApiError(409, "claim_refused", str(refusal)) from None
    services().watch.changed(task_id, task)
    return {"status": task["status"], "claim": task["claim"], "spec": _spec(task)}


@bp.post("/tasks/<task_id>/events")
@body_limit(config.MAX_RUNNER_EVENTS_BYTES)
def events(task_id: str):
    """Store a batch of events; also the heartbeat. 409 tells the runner to stop."""
    authorize_task(task_id)
    body = validate(EventsBody, json_body(replace_surrogates=True))
    batch = _event_batch(body)
    task = services().machine.append_events(
        task_id, body.execution, body.attempt, batch, config.MAX_EVENTS_PER_TASK
    )
    if task is None:
        raise ApiError(409, "not_running", "This execution no longer holds the task; stop.")
    if batch:
        services().watch.changed(task_id, task)
    return {"next": task["eventSeq"]}


@bp.post("/tasks/<task_id>/result")
@body_limit(config.MAX_RUNNER_RESULT_BYTES)
def result(task_id: str):
    """Settle the task with the runner's outcome. A duplicate or late report is
    accepted and ignored (`accepted: false`): the first terminal status stands."""
    authorize_task(task_id)
    body = validate(ResultBody, json_body(replace_surrogates=True))
    result = body.result.model_dump(by_alias=True) if body.result else None
    result = services().files.shape_result(task_id, result)
    error = body.error.model_dump() if body.error else None
    task, accepted = services().machine.finish(
        task_id,
        body.execution,
        body.attempt,
        TaskStatus(body.status),
        result,
        error,
        events=_event_batch(body),
        max_events=config.MAX_EVENTS_PER_TASK,
    )
    if task is None:
        raise ApiError(404, "not_found", "No such task.")
    services().watch.changed(task_id, task)
    if task.get("conversationId"):
        services().files.turn_settled(task)
    if accepted:
        services().dispatcher.kick()  # its slot is free: the next queued task may start
    return {"accepted": accepted, "status": task["status"]}


def _event_batch(body: EventsBody) -> list[tuple[str, object]]:
    return [(e.type, e.data) for e in body.events if e.type != "heartbeat"]


@bp.post("/reconcile")
def reconcile():
    """Launch due queued tasks and settle overdue ones; Cloud Scheduler calls this.
    Authorized by an OIDC token of RECONCILE_INVOKER, or by RECONCILE_SECRET."""
    settings = services().settings
    if not authorize_reconcile(settings, request.headers):
        raise ApiError(
            401,
            "unauthenticated",
            "Reconciliation needs the scheduler's OIDC token or the X-Reconcile-Secret header.",
        )
    dispatcher = services().dispatcher
    return {
        "dispatched": dispatcher.dispatch_pending(),
        "settled": dispatcher.reconcile(),
        "webhooksSent": services().webhooks.deliver_due(),
    }


@bp.before_request
def _llm_proxy_body_limit() -> None:
    # The LLM proxy carries whole conversations with their tool results: its body
    # limit is Anthropic's, not the public API's (Flask >= 3.1 reads this per request).
    if request.path.startswith(f"{bp.url_prefix}/llm/"):
        request.max_content_length = config.LLM_PROXY_MAX_BODY_BYTES


def _llm_call(call):
    """Answer in the Messages API's own shape, errors included, so the caller (the
    runner's SDK, or Claude Code) behaves as with Anthropic itself."""
    token = request.headers.get("X-Api-Key") or request.headers.get(
        "Authorization", ""
    ).removeprefix("Bearer ")
    headers = {
        name: request.headers.get(name, "") for name in ("anthropic-beta", "anthropic-version")
    }
    try:
        reply = call(token.strip(), request.get_json(silent=True), headers)
    except ProxyRefusal as refusal:
        return refusal.body, refusal.status, refusal.headers
    except UpstreamError as error:
        return error.body, error.status, error.headers
    if reply.chunks is None:
        return reply.body, reply.status, reply.headers
    # Relayed as it arrives: no buffering here or in gunicorn (each chunk is written).
    headers = {**reply.headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(reply.chunks, reply.status, headers, mimetype="text/event-stream")


@bp.post("/llm/v1/messages")
def llm_messages():
    """The LLM proxy (see api/services/llm_proxy.py); `?beta=true` is accepted."""
    return _llm_call(services().llm_proxy.messages)


@bp.post("/llm/v1/messages/count_tokens")
def llm_count_tokens():
    return _llm_call(services().llm_proxy.count_tokens)
