"""The store's codec: caller-keyed maps become JSON strings, and back."""

from __future__ import annotations

from api.adapters.firestore_codec import decode, document_id, encode, stored_size


def test_a_tasks_input_and_result_are_stored_as_json_strings():
    task = {"id": "t1", "input": {"files": {"__main__": "x"}}, "result": None, "status": "queued"}
    stored = encode("tasks/t1", task)
    assert stored == {
        "id": "t1",
        "inputJson": '{"files":{"__main__":"x"}}',
        "resultJson": None,
        "status": "queued",
    }
    assert decode("tasks/t1", stored) == task


def test_an_events_data_is_a_json_string_and_other_documents_are_unchanged():
    event = {"seq": 1, "type": "tool_call", "data": {"": {"__x__": 1}}}
    assert encode("tasks/t1/events/0000000001", event)["dataJson"] == '{"":{"__x__":1}}'
    agent = {"name": "a", "input": {"kept": "as a map"}}
    assert encode("agents/a1", agent) is agent


def test_a_partial_update_converts_only_what_it_holds():
    assert encode("tasks/t1", {"status": "completed", "result": {"a.b": 1}}) == {
        "status": "completed",
        "resultJson": '{"a.b":1}',
    }
    assert encode("tasks/t1", {"checkAt": None}) == {"checkAt": None}


def test_documents_written_before_the_codec_still_read():
    legacy = {"id": "t1", "input": {"code": "print(1)"}, "result": {"exitCode": 0}}
    assert decode("tasks/t1", legacy) == legacy


def test_a_lone_surrogate_is_kept_as_an_escape():
    stored = encode("tasks/t1/events/0000000001", {"data": {"\ud800": "é"}})
    stored["dataJson"].encode("utf-8")  # storable: no lone surrogate left in it
    decoded = decode("tasks/t1/events/0000000001", stored)
    assert decoded is not None and decoded["data"] == {"\ud800": "é"}


def test_control_characters_are_stored_as_they_are_not_six_times_larger():
    text = "\x00\x01\x1f\n\t" * 1000 + '"\\'
    assert stored_size(text) == len(text) + 2 + 2  # the quotes around it, two escapes
    assert decode("tasks/t1", encode("tasks/t1", {"result": {"stdout": text}})) == {
        "result": {"stdout": text}
    }


def test_reserved_document_ids_are_escaped_and_stay_distinct():
    assert document_id("alice") == "alice"
    escaped = {document_id(name) for name in (".", "..", "__x__", "____", "__")}
    assert len(escaped) == 5
    assert "__" in escaped  # too short to be reserved
    assert all(not (i.startswith("__") and i.endswith("__") and len(i) > 3) for i in escaped)
