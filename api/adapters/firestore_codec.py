"""How caller-keyed maps are kept in Firestore: as opaque JSON strings.

Firestore refuses some map keys as field names: `__main__`, `__x__` (the `__.*__`
names it reserves), `""`, and it treats others specially (dots and backquotes in
field paths). A task's `input` (its `files` are keyed by the caller's paths), its
`result`, and each event's `data` (a model's tool input, keyed by the model) hold
keys that neither we nor Firestore choose, so they are stored as one string field
each (`inputJson`, `resultJson`, `dataJson`) and decoded here, at the store boundary.
The rest of the API sees the same dicts as before; nothing may query inside them.
https://firebase.google.com/docs/firestore/quotas#collections_documents_and_fields

Documents written before this change hold the maps as maps; they still read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from api.adapters.firestore_paths import document_id, document_kind

__all__ = ["decode", "document_id", "dump_json", "encode", "load_json", "stored_size"]

# document kind (firestore_paths.document_kind) -> its fields stored as JSON strings,
# and their stored names
OPAQUE_FIELDS = {
    "task": {"input": "inputJson", "result": "resultJson"},
    "event": {"data": "dataJson"},
}


# Inside strings only `"` and `\` are escaped, and lone surrogates (JSON allows them,
# UTF-8 and so Firestore do not). The standard encoder also writes each control
# character as a 6-byte `\u00XX`: a program printing 128 KiB of them would have made
# its result 6 times larger than its output, past Firestore's 1 MiB document limit.
# `json.loads(strict=False)` reads raw control characters back.
_ESCAPED = re.compile(r'["\\\ud800-\udfff]')


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return "\\" + char if char in '"\\' else f"\\u{ord(char):04x}"


def _string(text: str) -> str:
    return '"' + _ESCAPED.sub(_escape, text) + '"'


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, dict):
        out.append("{")
        for n, (key, item) in enumerate(value.items()):
            out.append("," if n else "")
            out.append(_string(key if isinstance(key, str) else json.dumps(key)) + ":")
            _dump(item, out)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for n, item in enumerate(value):
            out.append("," if n else "")
            _dump(item, out)
        out.append("]")
    else:
        out.append(json.dumps(value))  # numbers, booleans, null


def dump_json(value: Any) -> str:
    """`value` as compact JSON text that Firestore can store (see _ESCAPED)."""
    out: list[str] = []
    _dump(value, out)
    return "".join(out)


def load_json(text: str) -> Any:
    return json.loads(text, strict=False)


def stored_size(value: Any) -> int:
    """Bytes `value` takes stored as one of these strings."""
    return len(dump_json(value).encode("utf-8"))


def encode(path: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The document as stored: opaque fields of `path`'s kind become JSON strings.
    Also for partial updates (only the fields present are converted)."""
    fields = OPAQUE_FIELDS.get(document_kind(path) or "")
    if not fields or not any(name in data for name in fields):
        return data if isinstance(data, dict) else dict(data)
    stored = dict(data)
    for name, stored_name in fields.items():
        if name in stored:
            value = stored.pop(name)
            stored[stored_name] = None if value is None else dump_json(value)
    return stored


def decode(path: str, stored: dict[str, Any] | None) -> dict[str, Any] | None:
    """The document as the services know it (the inverse of `encode`)."""
    fields = OPAQUE_FIELDS.get(document_kind(path) or "")
    if stored is None or not fields:
        return stored
    data = dict(stored)
    for name, stored_name in fields.items():
        if stored_name in data:
            text = data.pop(stored_name)
            data[name] = None if text is None else load_json(text)
    return data
