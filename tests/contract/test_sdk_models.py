"""The SDK's models (sdk/agentplatform/models.py) against the API's own OpenAPI
document: every field the SDK reads is one the API sends, under that name, with
types the SDK accepts; a field the API may leave out has a default in the SDK. So
the SDK and the API cannot drift apart unnoticed."""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from datetime import date, datetime
from typing import Any, Union

import pytest
from agentplatform import models
from agentplatform._decode import api_name

from api.openapi import build_spec

SDK_MODELS = [
    cls
    for _, cls in inspect.getmembers(models, inspect.isclass)
    if dataclasses.is_dataclass(cls) and cls.__module__ == models.__name__
]


def schema_names(cls: type) -> tuple[str, ...]:
    """The OpenAPI schemas an SDK model reads (its `__schema__`)."""
    names: tuple[str, ...] = vars(cls)["__schema__"]
    return names


# Models of routes still to come: checked once the API documents them.
NOT_YET_DOCUMENTED: set[str] = set()
# Fields the SDK leaves in a model's `raw` on purpose: a file's storage slot (never in
# a public answer) and the conversation snapshot a turn saved (the API's bookkeeping).
LEFT_IN_RAW: dict[str, set[str]] = {"OutputFile": {"stored"}, "TaskResult": {"workspace"}}
CHECKED = [cls for cls in SDK_MODELS if set(schema_names(cls)) - NOT_YET_DOCUMENTED]


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    return build_spec()["components"]["schemas"]


def _resolve(schema: dict, schemas: dict) -> dict:
    while "$ref" in schema:
        schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
    return schema


def json_types(schema: dict, schemas: dict) -> set[str]:
    """The JSON types a schema lets the API send."""
    schema = _resolve(schema, schemas)
    if "anyOf" in schema or "oneOf" in schema:
        options = schema["anyOf"] if "anyOf" in schema else schema["oneOf"]
        return set().union(*(json_types(s, schemas) for s in options))
    if "const" in schema and "type" not in schema:
        return {_type_of(schema["const"])}
    if "enum" in schema and "type" not in schema:
        return {_type_of(v) for v in schema["enum"]}
    kind = schema.get("type")
    if kind is None:
        return {"any"}
    return set(kind) if isinstance(kind, list) else {kind}


def _type_of(value: Any) -> str:
    return {str: "string", int: "integer", bool: "boolean", type(None): "null"}.get(
        type(value), "object"
    )


def accepted(hint: Any) -> set[str]:
    """The JSON types an SDK field's annotation takes."""
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return set().union(*(accepted(a) for a in typing.get_args(hint)))
    if hint is Any:
        return {"any", "string", "integer", "number", "boolean", "array", "object", "null"}
    if hint is type(None):
        return {"null"}
    if origin is list:
        return {"array"}
    if origin is dict or hint is dict or dataclasses.is_dataclass(hint):
        return {"object"}
    if hint in (str, datetime, date):
        return {"string"}
    if hint is bool:
        return {"boolean"}
    if hint is int:
        return {"integer"}
    if hint is float:
        return {"integer", "number"}
    raise AssertionError(f"no JSON type for {hint!r}")


def test_every_sdk_model_names_a_documented_schema(schemas):
    assert SDK_MODELS
    for cls in SDK_MODELS:
        names = set(schema_names(cls)) - NOT_YET_DOCUMENTED
        assert names <= schemas.keys(), f"{cls.__name__}: {names - schemas.keys()}"


@pytest.mark.parametrize("cls", CHECKED, ids=lambda c: c.__name__)
def test_each_field_is_one_the_api_sends_with_types_the_sdk_accepts(cls, schemas):
    documented = [schemas[n] for n in schema_names(cls) if n in schemas]
    if not documented:
        pytest.fail(f"{cls.__name__} names no documented schema")
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "raw":
            continue
        name = api_name(field)
        found = [s for s in documented if name in s.get("properties", {})]
        assert found, f"{cls.__name__}.{field.name}: no property {name!r} in {schema_names(cls)}"
        for schema in found:
            sent = json_types(schema["properties"][name], schemas)
            missing = sent - accepted(hints[field.name]) - {"any"}
            assert not missing, f"{cls.__name__}.{field.name} cannot take {missing}"
            optional = name not in schema.get("required", [])
            has_default = (
                field.default is not dataclasses.MISSING
                or field.default_factory is not dataclasses.MISSING
            )
            assert has_default or not optional, (
                f"{cls.__name__}.{field.name}: the API may leave {name!r} out; give it a default"
            )


@pytest.mark.parametrize("cls", CHECKED, ids=lambda c: c.__name__)
def test_every_field_the_api_sends_is_read_by_the_sdk_or_left_in_raw_on_purpose(cls, schemas):
    read = {api_name(f) for f in dataclasses.fields(cls)}
    for name in schema_names(cls):
        if name in schemas:
            sent = set(schemas[name].get("properties", {}))
            unread = sent - read - LEFT_IN_RAW.get(cls.__name__, set())
            assert not unread, f"{cls.__name__} does not read {unread} of {name}"


def test_the_request_bodies_the_sdk_builds_use_the_apis_field_names(schemas):
    """Keyword options become camelCase fields: each one the SDK documents must be a
    property of the request model it is sent to."""
    from agentplatform import _base

    code = _base.code_task(
        "print(1)",
        "python",
        {"a.txt": "text", "b.bin": b"\x00"},
        {"stdin": "", "timeout_seconds": 5, "memory_mb": 256, "network": False,
         "webhook_url": "https://example.com/hook", "environment": "tiny"},
    )  # fmt: skip
    assert set(code) <= set(schemas["CodeTaskInput"]["properties"])
    assert code["files"]["b.bin"] == {"base64": "AA=="}
    agent = _base.agent_task("hi", {"agent_id": "a", "engine": "messages", "max_turns": 2,
                                     "max_tokens": 100, "environment": "tiny"})  # fmt: skip
    assert set(agent) <= set(schemas["AgentTaskInput"]["properties"])
    created = _base.camel({"system_prompt": "", "model": "m", "tools": [], "engine": "messages",
                           "max_turns": 1, "max_tokens": 1, "environment": "tiny"})  # fmt: skip
    assert set(created) <= set(schemas["AgentCreate"]["properties"])
    # `environment=None` in an update is sent as null: back to the default environment.
    changes = _base.agent_changes({"model": "m"}, None)
    assert changes == {"model": "m", "environment": None}
    assert set(changes) <= set(schemas["AgentPatch"]["properties"])
    assert "environment" not in _base.agent_changes({"model": "m"}, _base.UNCHANGED)
