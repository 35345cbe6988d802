"""The OpenAPI 3.1 document of the public API (DESIGN section 6.6).

Schemas come from the pydantic models themselves: the request models that the
routes validate with (api/models) and the response models of
api/models/responses.py, so the published contract cannot drift from validation.
What pydantic cannot know (paths, methods, statuses, headers, query strings the
routes parse by hand) is the route table below (its parts in api/openapi_table.py,
the files routes in api/openapi_files.py), kept next to the bounds it shares with
the routes. tests/contract/test_openapi_document.py checks that it covers every
public Flask route and no internal one; tests/contract fuzzes a live server with it.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from api import config
from api.models import (
    AgentCreate,
    AgentPatch,
    AgentTaskInput,
    CodeTaskInput,
    CompatConversationBody,
    ConversationCreate,
    ListTasksQuery,
    MessageCreate,
    TaskBatch,
)
from api.models import responses as r
from api.openapi_files import FILE_ROUTES, FILES
from api.openapi_table import (
    AUTHED,
    BYTES,
    Param,
    Reply,
    Route,
    SchemaGenerator,
    int_range,
    limit_param,
    model_params,
)
from api.routes import agents as agent_routes
from api.routes import conversations as conversation_routes
from api.services.conversations import MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX

# The contract's own version: bump it when a change would break a client.
API_VERSION = "1.0.0"
JSON = "application/json"
REF = "#/components/schemas/{model}"

# Each error status once, under components/responses: (name, description).
ERRORS = {
    400: ("BadRequest", "Invalid input."),
    401: ("Unauthenticated", "No credentials, or bad ones."),
    404: ("NotFound", "Not found (also another user's resource)."),
    409: ("Conflict", "Conflict with the resource's current state."),
    413: ("TooLarge", "The body, or one of its fields, is too large."),
    414: (
        "UriTooLong",
        "The request line is longer than gunicorn reads (4094 bytes); "
        "answered by the HTTP server itself, as HTML.",
    ),
    415: ("NotJson", "The body is not JSON (or, for an upload, not application/octet-stream)."),
    416: ("RangeNotSatisfiable", "The Range asks for bytes the file does not have."),
    422: ("NotAllowed", "Well-formed, but not allowed here."),
    429: ("OverLimit", "Over a limit; retry after `Retry-After` seconds."),
    503: ("Unavailable", "A backend is down or over capacity; retry after `Retry-After` seconds."),
}
RETRY_AFTER_STATUSES = {429, 503}
# Any URL can be too long, whatever the route.
EVERY_ROUTE_ERRORS = (414,)
# Every body route: 400 bad fields, 413 too large, 415 not JSON.
BODY_ERRORS = (400, 413, 415)

HEADERS: dict[str, dict[str, Any]] = {
    "Location": {
        "description": "The new resource's path.",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    },
}
SECURITY_SCHEMES = {
    "devUser": {
        "type": "apiKey",
        "in": "header",
        "name": "X-User-Id",
        "description": "AUTH_MODE=dev (local only): the header names the caller, "
        "1-128 characters of A-Z a-z 0-9 _ . @ : -",
    },
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "Firebase ID token, or an API key ak_...",
        "description": "AUTH_MODE=firebase and/or apikey: `Authorization: Bearer <token>`.",
    },
}


IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 200},
    "The same key with the same body returns the first response's resource; with "
    "another body, 422.",
)
TASK, AGENT, CONVERSATION, ACCOUNT = "tasks", "agents", "conversations", "account"

ROUTES: tuple[Route, ...] = (
    Route("get", "/", "root", "Health (no credentials, no I/O)", "service",
          Reply(200, "The service is up.", r.Health), public=True),
    Route("get", "/health", "health", "Health (no credentials, no I/O)", "service",
          Reply(200, "The service is up.", r.Health), public=True),
    Route("get", "/openapi.json", "openapi", "This document", "service",
          Reply(200, "The OpenAPI 3.1 document of the public API.", {"type": "object"}),
          public=True),
    Route("get", "/api/config", "getConfig",
          "How to sign in here, and the languages, models, tools and engines on offer",
          "service", Reply(200, "This deployment's public settings.", r.DeploymentConfig),
          public=True),
    # -- usage ---------------------------------------------------------------------
    Route("get", "/api/usage", "getUsage", "Your usage today against your limits", ACCOUNT,
          Reply(200, "Your counters and their limits.", r.Usage), AUTHED),
    # -- tasks (6.2) ---------------------------------------------------------------
    Route("post", "/api/tasks", "submitTask", "Queue a code or agent task", TASK,
          Reply(202, "The queued task.", r.Task, ("Location",)),
          (*BODY_ERRORS, 404, 422, 429, *AUTHED), body=(CodeTaskInput, AgentTaskInput),
          params=(IDEMPOTENCY_KEY,)),
    Route("post", "/api/tasks/batch", "submitTaskBatch",
          "Queue up to 100 tasks at once: all are admitted, or none", TASK,
          Reply(202, "The queued tasks, in the order given.", r.TaskBatchAccepted),
          (*BODY_ERRORS, 404, 422, 429, *AUTHED), body=(TaskBatch,),
          params=(IDEMPOTENCY_KEY,)),
    Route("get", "/api/tasks", "listTasks", "Your tasks, newest first", TASK,
          Reply(200, "A page of tasks.", r.TaskList), (400, *AUTHED),
          params=model_params(ListTasksQuery)),
    Route("get", "/api/tasks/{taskId}", "getTask", "A task", TASK,
          Reply(200, "The task.", r.Task), (400, 404, *AUTHED),
          params=(Param("wait", "query", int_range(0, config.MAX_WAIT_SECONDS, 0),
                        "Hold the request until the task is terminal or this many "
                        "seconds have passed."),)),
    Route("post", "/api/tasks/{taskId}/cancel", "cancelTask", "Cancel a task", TASK,
          Reply(200, "The task: cancelled, unless it had already ended.", r.Task),
          (404, *AUTHED)),
    Route("get", "/api/tasks/{taskId}/events", "listTaskEvents", "A task's events", TASK,
          Reply(200, "Events after `after`; with `Accept: text/event-stream`, the same "
                "events as Server-Sent Events (`id:` is `seq`) until the task ends.",
                r.TaskEventList, stream=True),
          (400, 404, 429, *AUTHED),
          params=(Param("after", "query", int_range(0, 10**9, 0), "Only events with a larger seq."),
                  Param("Last-Event-ID", "header", {"type": "integer", "minimum": 0},
                        "Resume a stream after this seq (text/event-stream only)."))),
    # -- webhooks (13) -------------------------------------------------------------
    Route("get", "/api/webhooks/secret", "getWebhookSecret",
          "The secret that signs your webhooks", "webhooks",
          Reply(200, "Your signing secret (made on first use).", r.WebhookSecret), AUTHED),
    Route("post", "/api/webhooks/secret:rotate", "rotateWebhookSecret",
          "Replace your webhook secret (the old one signs too for 24 hours)", "webhooks",
          Reply(200, "The new secret.", r.WebhookSecret), AUTHED),
    # -- agents (6.3) --------------------------------------------------------------
    Route("post", "/api/agents", "createAgent", "Create an agent", AGENT,
          Reply(201, "The agent.", r.Agent, ("Location",)), (*BODY_ERRORS, 422, *AUTHED),
          body=(AgentCreate,)),
    Route("get", "/api/agents", "listAgents", "Your agents", AGENT,
          Reply(200, "Your agents.", r.AgentList), (400, *AUTHED),
          params=(limit_param(agent_routes.LIST_DEFAULT, agent_routes.LIST_MAX),)),
    Route("get", "/api/agents/{agentId}", "getAgent", "An agent", AGENT,
          Reply(200, "The agent.", r.Agent), (404, *AUTHED)),
    Route("patch", "/api/agents/{agentId}", "updateAgent", "Change an agent's fields", AGENT,
          Reply(200, "The agent as changed.", r.Agent), (*BODY_ERRORS, 404, 422, *AUTHED),
          body=(AgentPatch,)),
    Route("delete", "/api/agents/{agentId}", "deleteAgent", "Delete an agent", AGENT,
          Reply(204, "Deleted."), (404, *AUTHED)),
    # -- conversations (6.4, 6.5) --------------------------------------------------
    Route("post", "/api/conversations", "createConversation", "Start a conversation",
          CONVERSATION, Reply(201, "The conversation.", r.Conversation),
          (*BODY_ERRORS, 404, *AUTHED), body=(ConversationCreate,)),
    Route("get", "/api/conversations", "listConversations", "Your conversations",
          CONVERSATION, Reply(200, "Your conversations.", r.ConversationList), (400, *AUTHED),
          params=(limit_param(conversation_routes.LIST_DEFAULT, conversation_routes.LIST_MAX),)),
    Route("get", "/api/conversations/{conversationId}", "getConversation",
          "A conversation with a page of its messages", CONVERSATION,
          Reply(200, "The conversation and its messages, oldest first.",
                r.ConversationWithMessages), (400, 404, *AUTHED),
          params=(limit_param(MESSAGES_PAGE_DEFAULT, MESSAGES_PAGE_MAX),
                  Param("after", "query", {"type": "string", "minLength": 1, "maxLength": 64},
                        "A message id: `nextMessagesAfter` of the previous page."))),
    Route("delete", "/api/conversations/{conversationId}", "deleteConversation",
          "Delete a conversation and its messages", CONVERSATION,
          Reply(204, "Deleted."), (404, *AUTHED)),
    Route("post", "/api/conversations/{conversationId}/messages", "postMessage",
          "Send a message: starts the agent's turn", CONVERSATION,
          Reply(202, "The stored message and the turn's task.", r.MessageAccepted,
                ("Location",)),
          (*BODY_ERRORS, 404, 409, 422, 429, *AUTHED), body=(MessageCreate,),
          params=(IDEMPOTENCY_KEY,)),
    Route("post", "/api/conversation", "compatConversation",
          "The old clients' call: send a message and wait (bounded) for the reply",
          CONVERSATION, Reply(200, "The reply, or its status if not ready.",
                              r.CompatConversationReply),
          (*BODY_ERRORS, 404, 409, 422, 429, *AUTHED), body=(CompatConversationBody,)),
    *FILE_ROUTES,
)  # fmt: skip


# How an answer names the resource later calls act on (OpenAPI links): for each
# operation, (path parameter, where its value is in the answer, the operations).
LINKS: dict[str, tuple[tuple[str, str, tuple[str, ...]], ...]] = {
    "submitTask": (("taskId", "/id", ("getTask", "listTaskEvents", "cancelTask")),),
    "createAgent": (("agentId", "/id", ("getAgent", "updateAgent", "deleteAgent")),),
    "createConversation": (
        ("conversationId", "/id", ("getConversation", "postMessage", "deleteConversation")),
    ),
    "postMessage": (("taskId", "/task/id", ("getTask", "listTaskEvents", "cancelTask")),),
    "compatConversation": (
        ("conversationId", "/conversationId", ("getConversation", "postMessage")),
        ("taskId", "/taskId", ("getTask", "listTaskEvents")),
    ),
}


def _links(operation_id: str) -> dict[str, Any]:
    return {
        f"{target[0].upper()}{target[1:]}": {
            "operationId": target,
            "parameters": {param: f"$response.body#{pointer}"},
        }
        for param, pointer, targets in LINKS.get(operation_id, ())
        for target in targets
    }


def _path_params(path: str) -> list[dict[str, Any]]:
    # Any string is accepted: an id that names nothing of the caller's answers 404.
    return [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        for name in re.findall(r"{(\w+)}", path)
    ]


def _sse_event(model_ref: dict[str, str]) -> dict[str, Any]:
    """One Server-Sent Event whose `data` is a JSON document of the model: the
    OpenAPI 3.2 way of describing a stream's items, valid JSON Schema in 3.1 too."""
    return {
        "type": "object",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"type": "string"},
            "data": {"type": "string", "contentMediaType": JSON, "contentSchema": model_ref},
        },
    }


def _operation(route: Route, refs: dict[type[BaseModel], dict]) -> dict[str, Any]:
    reply = route.reply
    success: dict[str, Any] = {"description": reply.description}
    if reply.model is not None:
        schema = reply.model if isinstance(reply.model, dict) else refs[reply.model]
        success["content"] = {JSON: {"schema": schema}}
    if reply.stream:
        success["content"]["text/event-stream"] = {"schema": _sse_event(refs[r.TaskEvent])}
    for media_type in reply.binary:
        success.setdefault("content", {})[media_type] = {"schema": BYTES}
    if reply.headers:
        success["headers"] = {name: _header_ref(name) for name in reply.headers}
    if route.operation_id in LINKS:
        success["links"] = _links(route.operation_id)
    responses: dict[str, Any] = {str(reply.status): success}
    for status in reply.also:
        responses[str(status)] = success
    for status in sorted({*route.errors, *EVERY_ROUTE_ERRORS}):
        responses[str(status)] = {"$ref": f"#/components/responses/{ERRORS[status][0]}"}

    operation: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": responses,
    }
    params = _path_params(route.path) + [
        {"name": p.name, "in": p.where, "required": False, "schema": p.schema}
        | ({"description": p.description} if p.description else {})
        for p in route.params
    ]
    if params:
        operation["parameters"] = params
    if route.raw_body:
        operation["requestBody"] = {
            "required": route.body_required,
            "content": {route.raw_body: {"schema": BYTES}},
        }
    if route.body:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _body(route, refs)}},
        }
    if route.public:
        operation["security"] = []
    return operation


def _body(route: Route, refs: dict[type[BaseModel], dict]) -> dict[str, Any]:
    if len(route.body) == 1:
        return refs[route.body[0]]
    return {
        "oneOf": [refs[model] for model in route.body],
        "discriminator": {
            "propertyName": "kind",
            "mapping": {
                get_args(model.model_fields["kind"].annotation)[0]: refs[model]["$ref"]
                for model in route.body
            },
        },
    }


def _header_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/headers/{name}"}


def _error_responses(refs: dict[type[BaseModel], dict]) -> dict[str, Any]:
    responses = {}
    for status, (name, description) in ERRORS.items():
        schema = {"type": "string"} if status == 414 else refs[r.ErrorResponse]
        media_type = "text/html" if status == 414 else JSON
        response = {"description": description, "content": {media_type: {"schema": schema}}}
        if status in RETRY_AFTER_STATUSES:
            response["headers"] = {"Retry-After": _header_ref("Retry-After")}
        responses[name] = response
    return responses


def build_spec() -> dict[str, Any]:
    """The whole document. Pure: no I/O, the same every call."""
    models = {m for route in ROUTES for m in route.body} | set(r.RESPONSE_MODELS)
    ordered = sorted(models, key=lambda m: m.__name__)
    keys, definitions = models_json_schema(
        [(m, "validation") for m in ordered],
        by_alias=True,
        ref_template=REF,
        schema_generator=SchemaGenerator,
    )
    refs = {model: ref for (model, _), ref in keys.items()}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Agent Platform API",
            "version": API_VERSION,
            "description": "Run code and Claude agents as isolated tasks. JSON in and out, "
            "camelCase fields, RFC 3339 UTC times. Every error is "
            '`{"error": {"code", "message"}}`.',
        },
        "tags": [{"name": name} for name in ("service", TASK, AGENT, CONVERSATION, FILES, ACCOUNT)],
        "paths": paths,
        "components": {
            "schemas": definitions["$defs"],
            "responses": _error_responses(refs),
            "headers": HEADERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
        # Either scheme, as AUTH_MODE says; X-User-Id only in local dev mode.
        "security": [{"devUser": []}, {"bearer": []}],
    }
