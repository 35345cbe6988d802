"""Every Firestore path is named in api/adapters/firestore_paths.py, and named the same
way wherever it is needed (the usage document's id was once built three ways)."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta, timezone

from api.adapters import firestore_paths as paths
from api.adapters.firestore_codec import decode, encode

COLLECTIONS = {
    name: value for name, value in vars(paths).items() if name.isupper() and isinstance(value, str)
}


def test_collection_names_are_distinct():
    assert len(set(COLLECTIONS.values())) == len(COLLECTIONS)


def test_every_path_starts_with_a_named_collection_and_has_an_even_depth():
    builders = {
        name: fn
        for name, fn in vars(paths).items()
        if name.endswith("_path") and inspect.isfunction(fn) and name != "messages_path"
    }
    samples = {"owner": "alice", "now": datetime(2026, 1, 2, tzinfo=UTC), "day": "20260102"}
    for name, build in builders.items():
        arguments = [
            samples.get(parameter, 3 if parameter in ("seq", "shard", "turn") else "x1")
            for parameter in inspect.signature(build).parameters
        ]
        path = build(*arguments)
        assert path.split("/")[0] in COLLECTIONS.values(), name
        assert len(path.split("/")) % 2 == 0, f"{name} names a collection, not a document"
    assert paths.messages_path("c1").count("/") % 2 == 0  # a collection: odd segments


def test_the_usage_document_is_named_by_the_utc_day():
    late_in_new_york = datetime(2026, 3, 1, 22, 30, tzinfo=timezone(timedelta(hours=-5)))
    assert paths.usage_id("alice", late_in_new_york) == "alice_20260302"
    assert paths.usage_path("alice", late_in_new_york) == "usage/alice_20260302"


def test_owners_firestore_refuses_are_escaped_where_they_name_documents():
    assert paths.running_path("__x__") == "admissionRunning/~5f5f785f5f"
    assert paths.webhook_secrets_path("..") == "webhookSecrets/~2e2e"
    assert paths.running_path("alice") == "admissionRunning/alice"


def test_task_and_event_paths_are_what_the_codec_recognises():
    task, event = paths.task_path("t1"), paths.event_path("t1", 7)
    assert event == "tasks/t1/events/0000000007"
    assert encode(task, {"input": {"a": 1}}) == {"inputJson": '{"a":1}'}
    assert encode(event, {"data": {"b": 2}}) == {"dataJson": '{"b":2}'}
    assert decode(paths.agent_path("a1"), {"input": {"a": 1}}) == {"input": {"a": 1}}
