"""JSON to the SDK's dataclasses: camelCase names from each field's metadata,
nested models, lists, optional values and RFC 3339 times. Fields the API adds later
are kept in each model's `raw` and ignored otherwise, so an older SDK keeps working."""

from __future__ import annotations

import dataclasses
import types
import typing
from datetime import date, datetime
from typing import Any, TypeVar, Union

T = TypeVar("T")


def api_name(field: dataclasses.Field) -> str:
    """The field's name on the wire (camelCase), from `field(metadata={"json": ...})`."""
    return str(field.metadata.get("json", field.name))


def parse_time(value: str) -> datetime:
    # fromisoformat reads a trailing "Z" only from Python 3.11 on.
    return datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith("Z") else value)


def decode(cls: type[T], data: Any) -> T:
    """An instance of the dataclass `cls` from the API's JSON object `data`."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.name == "raw":
            values["raw"] = data
            continue
        key = api_name(field)
        if key in data:
            values[field.name] = _value(hints[field.name], data[key])
    return cls(**values)


def _value(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        for option in options:
            if _fits(option, value):
                return _value(option, value)
        return value
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return [_value(item, v) for v in value]
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return decode(hint, value)  # type: ignore[arg-type]
    if hint is datetime and isinstance(value, str):
        return parse_time(value)
    if hint is date and isinstance(value, str):
        return date.fromisoformat(value)
    if hint is float and isinstance(value, int):
        return float(value)
    return value


def _fits(hint: Any, value: Any) -> bool:
    if hint is Any:
        return True
    if typing.get_origin(hint) is list:
        return isinstance(value, list)
    if typing.get_origin(hint) is dict or hint is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict)
    if hint in (datetime, date):
        return isinstance(value, str)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(hint, type) and isinstance(value, hint)
