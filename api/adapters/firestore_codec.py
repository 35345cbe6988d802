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
from typing import Any

TASKS = "tasks"
EVENTS = "events"
# collection kind -> the fields stored as JSON strings, and their stored names
OPAQUE_FIELDS = {
    "task": {"input": "inputJson", "result": "resultJson"},
    "event": {"data": "dataJson"},
}


def _kind(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if len(parts) == 2 and parts[0] == TASKS:
        return "task"
    if len(parts) == 4 and parts[0] == TASKS and parts[2] == EVENTS:
        return "event"
    return None


def dump_json(value: Any) -> str:
    """Compact JSON, UTF-8 text where it can be; lone surrogates (which JSON allows but
    UTF-8, and so Firestore, does not) are kept as \\u escapes."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(value, separators=(",", ":"))
    return text


def encode(path: str, data: dict) -> dict:
    """The document as stored: opaque fields of `path`'s kind become JSON strings.
    Also for partial updates (only the fields present are converted)."""
    fields = OPAQUE_FIELDS.get(_kind(path) or "")
    if not fields or not any(name in data for name in fields):
        return data
    stored = dict(data)
    for name, stored_name in fields.items():
        if name in stored:
            value = stored.pop(name)
            stored[stored_name] = None if value is None else dump_json(value)
    return stored


def decode(path: str, stored: dict | None) -> dict | None:
    """The document as the services know it (the inverse of `encode`)."""
    fields = OPAQUE_FIELDS.get(_kind(path) or "")
    if stored is None or not fields:
        return stored
    data = dict(stored)
    for name, stored_name in fields.items():
        if stored_name in data:
            text = data.pop(stored_name)
            data[name] = None if text is None else json.loads(text)
    return data


def document_id(name: str) -> str:
    """`name` as a document id, unchanged unless Firestore would refuse it (`.`, `..`,
    `__.*__`): those become `~` and their hex, which no user id (api/services/auth.py
    USER_ID) can be, so no two names share an id."""
    if name in (".", "..") or (len(name) >= 4 and name.startswith("__") and name.endswith("__")):
        return "~" + name.encode().hex()
    return name
