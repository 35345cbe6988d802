"""The runner's endpoints. A task token (and nothing else) authorizes them, and
only for the task it names. The runner never touches Firestore: the API is the only
writer (docs/decisions/0001-runner-reports-over-http.md)."""

from __future__ import annotations

from flask import Blueprint, Response, request

from api import config
from api.models import ClaimBody, EventsBody, ResultBody
from api.routes.common import body_limit, json_body, services, validate
from api.services.llm_proxy import ProxyRefusal, UpstreamError
from api.services.state_machine import TaskStatus

bp = Blueprint("internal", __name__, url_prefix="/internal/v1")


def authorize_task(task_id: str) -> None:
    """401 unless the request carries the task token of `task_id`."""
    token = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    services().runner.authorize(task_id, token)


@bp.post("/tasks/<task_id>/claim")
@body_limit(config.MAX_RUNNER_CLAIM_BYTES)
def claim(task_id: str) -> dict:
    """200 with the task's spec when this execution attempt may run it (idempotent);
    409 otherwise. One round trip: the runner's start is on every task's critical path."""
    authorize_task(task_id)
    body = validate(ClaimBody, json_body())
    return services().runner.claim(task_id, body.execution, body.attempt)


@bp.post("/tasks/<task_id>/secrets")
@body_limit(config.MAX_RUNNER_CLAIM_BYTES)
def secrets(task_id: str) -> dict:
    """The values of the secrets the task names (its owner's), for this execution while
    it holds the running task; 409 otherwise. A POST: never cached, never logged."""
    authorize_task(task_id)
    body = validate(ClaimBody, json_body())
    return {"secrets": services().runner.secret_values(task_id, body.execution, body.attempt)}


@bp.post("/tasks/<task_id>/events")
@body_limit(config.MAX_RUNNER_EVENTS_BYTES)
def events(task_id: str) -> dict:
    """Store a batch of events; also the heartbeat. 409 tells the runner to stop."""
    authorize_task(task_id)
    body = validate(EventsBody, json_body(replace_surrogates=True))
    batch = _event_batch(body)
    return {"next": services().runner.events(task_id, body.execution, body.attempt, batch)}


@bp.post("/tasks/<task_id>/result")
@body_limit(config.MAX_RUNNER_RESULT_BYTES)
def result(task_id: str) -> dict:
    """Settle the task with the runner's outcome. A duplicate or late report is
    accepted and ignored (`accepted: false`): the first terminal status stands."""
    authorize_task(task_id)
    body = validate(ResultBody, json_body(replace_surrogates=True))
    task, accepted = services().runner.finish(
        task_id,
        body.execution,
        body.attempt,
        TaskStatus(body.status),
        body.result.model_dump(by_alias=True) if body.result else None,
        body.error.model_dump() if body.error else None,
        _event_batch(body),
        sandbox=body.sandbox.model_dump(by_alias=True, exclude_none=True) if body.sandbox else None,
    )
    return {"accepted": accepted, "status": task["status"]}


def _event_batch(body: EventsBody) -> list[tuple[str, object]]:
    return [(e.type, e.data) for e in body.events if e.type != "heartbeat"]


@bp.post("/reconcile")
def reconcile() -> dict:
    """Launch due queued tasks and settle overdue ones; Cloud Scheduler calls this.
    Authorized by an OIDC token of RECONCILE_INVOKER, or by RECONCILE_SECRET."""
    runner = services().runner
    runner.authorize_reconcile(dict(request.headers))
    return runner.reconcile()


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
        # The token first: a caller without one never gets its body read.
        services().llm_proxy.authenticate(token.strip())
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
