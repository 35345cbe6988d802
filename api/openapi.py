"""The OpenAPI 3.1 document of the public API (DESIGN section 6.6).

Schemas come from the pydantic models themselves: the request models that the
routes validate with (api/models), the query models they parse with, and the
response models they answer with (api/models/responses.py), so the published
contract cannot drift from validation. What pydantic cannot know (statuses,
headers, summaries) each route declares beside its view with `@operation`
(api/routes/operations.py), which also routes the view: a public route cannot go
undocumented. tests/contract/test_openapi_document.py checks that the document
covers every public Flask route and no internal one; tests/contract fuzzes a live
server with it.
"""

from __future__ import annotations

import re
from typing import Any, get_args

from pydantic.json_schema import models_json_schema

from api.models import responses as r
from api.routes import (  # noqa: F401 (imported for their operations)
    agents,
    conversations,
    deployment,
    environments,
    files,
    health,
    keys,
    openapi,
    secrets,
    tasks,
    usage,
    webhooks,
)
from api.routes.operations import (
    ACCOUNT,
    AGENTS,
    BYTES,
    CONVERSATIONS,
    ENVIRONMENTS,
    FILES,
    OPERATIONS,
    SERVICE,
    TASKS,
    Route,
    SchemaGenerator,
)

__all__ = ["REF", "ROUTES", "SchemaGenerator", "build_spec"]

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


# Every public operation, as the route modules declare them.
ROUTES: tuple[Route, ...] = tuple(OPERATIONS)


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


Refs = dict[Any, dict[str, Any]]  # a model -> its {"$ref": ...}


def _operation(route: Route, refs: Refs) -> dict[str, Any]:
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


def _body(route: Route, refs: Refs) -> dict[str, Any]:
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


def _error_responses(refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
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
    replies = {route.reply.model for route in ROUTES if isinstance(route.reply.model, type)}
    models = {m for route in ROUTES for m in route.body} | replies | set(r.RESPONSE_MODELS)
    ordered = sorted(models, key=lambda m: m.__name__)
    schema_keys, definitions = models_json_schema(
        [(m, "validation") for m in ordered],
        by_alias=True,
        ref_template=REF,
        schema_generator=SchemaGenerator,
    )
    refs = {model: ref for (model, _), ref in schema_keys.items()}
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
        "tags": [
            {"name": name}
            for name in (SERVICE, TASKS, AGENTS, CONVERSATIONS, FILES, ENVIRONMENTS, ACCOUNT)
        ],
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
