"""The route table's parts (api/openapi.py): what pydantic cannot know about a route
(its path, method, statuses, headers, the query strings it parses by hand)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

BYTES = {"type": "string", "contentMediaType": "application/octet-stream"}
OCTETS = "application/octet-stream"
# Every route with credentials reads Firestore (503) and takes from the caller's
# request rate (429, api/services/request_rate.py).
AUTHED = (401, 429, 503)


class SchemaGenerator(GenerateJsonSchema):
    """pydantic's JSON Schema without a title on every field ("Maxturns"): the
    field's name already says it."""

    def field_title_should_be_set(self, schema) -> bool:
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


def int_range(low: int, high: int, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return schema


def limit_param(default: int, maximum: int) -> Param:
    return Param("limit", "query", int_range(1, maximum, default), "Page size.")


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
