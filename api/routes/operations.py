"""Each public route declares its OpenAPI operation where it is defined:

    @operation(bp, "get", "/<task_id>", "getTask", "A task", TASK,
               Reply(200, "The task.", r.Task), (400, 404, *AUTHED), query=WaitQuery)
    def get(task_id: str): ...

registers the view with Flask and records what pydantic cannot know about it (its
statuses, headers, the summary); its path and method are written once, for both.
api/openapi.py builds the document from `OPERATIONS`. A route declared `public=True`
answers without credentials (api/routes/common.py authenticates every other one)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from api.routes.common import public as mark_public

F = TypeVar("F", bound=Callable[..., Any])

BYTES = {"type": "string", "contentMediaType": "application/octet-stream"}
OCTETS = "application/octet-stream"
# Every route with credentials reads Firestore (503) and takes from the caller's
# request rate (429, api/services/request_rate.py).
AUTHED = (401, 429, 503)
# Every body route: 400 bad fields, 413 too large, 415 not JSON.
BODY_ERRORS = (400, 413, 415)
# The operations' tags, in the document's order.
SERVICE, TASKS, WEBHOOKS, AGENTS, CONVERSATIONS, FILES, ENVIRONMENTS, ACCOUNT = (
    "service",
    "tasks",
    "webhooks",
    "agents",
    "conversations",
    "files",
    "environments",
    "account",
)


class SchemaGenerator(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every field ("Maxturns"): the
    field's name already says it."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "query" or "header"
    schema: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class Reply:
    status: int
    description: str
    model: type[BaseModel] | dict[str, Any] | None = None  # a model, or a plain schema
    headers: tuple[str, ...] = ()
    stream: bool = False  # with Accept: text/event-stream, the events as SSE
    binary: tuple[str, ...] = ()  # media types of a byte stream answered instead
    also: tuple[int, ...] = ()  # other success statuses with the same content (206)


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # OpenAPI form: /api/tasks/{taskId}
    operation_id: str
    summary: str
    tag: str
    reply: Reply
    errors: tuple[int, ...] = ()
    body: tuple[type[BaseModel], ...] = ()  # several: a union told apart by `kind`
    params: tuple[Param, ...] = ()
    public: bool = False  # no credentials needed
    raw_body: str | None = None  # the media type of a body of raw bytes
    body_required: bool = True


IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 200},
    "The same key with the same body returns the first response's resource; with "
    "another body, 422.",
)

# Every declared operation, in the order the route modules declare them.
OPERATIONS: list[Route] = []


def operation(
    bp: Blueprint,
    method: str,
    rule: str,
    operation_id: str,
    summary: str,
    tag: str,
    reply: Reply,
    errors: tuple[int, ...] = (),
    *,
    body: tuple[type[BaseModel], ...] = (),
    query: type[BaseModel] | None = None,
    params: tuple[Param, ...] = (),
    public: bool = False,
    raw_body: str | None = None,
    body_required: bool = True,
) -> Callable[[F], F]:
    """Route `method rule` of `bp` to the view, and document it. `query` is the model
    the view parses its query string with (`api.routes.common.parse_query`): its
    fields are the operation's query parameters, before the other `params`."""
    route = Route(
        method,
        openapi_path(f"{bp.url_prefix or ''}{rule}"),
        operation_id,
        summary,
        tag,
        reply,
        errors,
        body,
        (*(model_params(query) if query else ()), *params),
        public,
        raw_body,
        body_required,
    )

    def register(view: F) -> F:
        if public:
            mark_public(view)
        bp.add_url_rule(rule, view_func=view, methods=[method.upper()])
        OPERATIONS.append(route)
        return view

    return register


def openapi_path(rule: str) -> str:
    """A Flask rule in OpenAPI's form: /api/tasks/<task_id> -> /api/tasks/{taskId}."""

    def camel(match: re.Match[str]) -> str:
        head, *rest = match.group(1).split("_")
        return "{" + head + "".join(word.title() for word in rest) + "}"

    return re.sub(r"<(?:\w+:)?(\w+)>", camel, rule)


def int_range(low: int, high: int, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


def model_params(model: type[BaseModel]) -> tuple[Param, ...]:
    """A query model's fields as query parameters; `null` is dropped, since a query
    string can only leave a parameter out."""
    schema = model.model_json_schema(by_alias=True, schema_generator=SchemaGenerator)
    params = []
    for name, field in schema["properties"].items():
        field = dict(field)
        options = [o for o in field.pop("anyOf", []) if o != {"type": "null"}]
        if len(options) == 1:
            field.update(options[0])
        elif options:
            field["anyOf"] = options
        if field.get("default") is None:
            field.pop("default", None)
        params.append(Param(name, "query", field, field.pop("description", "")))
    return tuple(params)
