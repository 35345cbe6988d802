"""Masking a task's secret values (job_runner/secret_mask.py), and the runner's
event batches that pass through it (job_runner/events.py)."""

from __future__ import annotations

import random

from job_runner.api_client import TaskApi
from job_runner.events import EventSender
from job_runner.secret_mask import SecretMask

KEY = "sk-demo-4f9a2c81e7"


def test_exact_occurrences_become_stars():
    mask = SecretMask([KEY, "hunter2"])
    assert mask.text(f"key={KEY}; pw=hunter2; again {KEY}") == "key=***; pw=***; again ***"
    assert mask.text("sk-demo-4f9a nothing") == "sk-demo-4f9a nothing"


def test_a_value_inside_a_longer_value_is_masked_with_it():
    mask = SecretMask(["abc", "xxabcxx"])
    assert mask.text("xxabcxx and abc") == "*** and ***"


def test_nested_data_is_masked_keys_included():
    mask = SecretMask([KEY])
    data = {"text": f"I used {KEY}", "input": {KEY: [f"-H {KEY}", 3, None]}}
    assert mask.data(data) == {"text": "I used ***", "input": {"***": ["-H ***", 3, None]}}


def test_without_secrets_data_is_passed_as_it_is():
    data = {"text": "hello"}
    assert SecretMask().data(data) is data


def test_a_value_split_between_chunks_is_masked():
    stream = SecretMask([KEY]).stream()
    out = stream.feed("before sk-de") + stream.feed("mo-4f9a2") + stream.feed("c81e7 after")
    assert out + stream.flush() == "before *** after"


def test_only_a_possible_start_of_a_value_is_held_back():
    stream = SecretMask([KEY]).stream()
    assert stream.feed("plain text\n") == "plain text\n"
    assert stream.feed("ends with sk-") == "ends with "
    assert stream.feed("not it") == "sk-not it"
    assert stream.feed("sk") == ""
    assert stream.flush() == "sk"


def test_any_split_of_a_stream_masks_every_occurrence():
    rng = random.Random(7)
    secrets = [KEY, "aaab", "ab"]
    text = "".join(rng.choice(["x", "a", "b", "ab", "aaab", KEY, "sk-", " "]) for _ in range(400))
    expected = SecretMask(secrets).text(text)
    for _ in range(50):
        stream = SecretMask(secrets).stream()
        cuts = sorted(rng.sample(range(1, len(text)), 20))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert "".join(stream.feed(piece) for piece in pieces) + stream.flush() == expected


class RecordingApi(TaskApi):
    """The runner's API client with its one call the sender makes recorded instead."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "task", "token", "execution", 0)
        self.batches: list[list[dict]] = []

    def post_events(self, events: list[dict]) -> dict:
        self.batches.append(events)
        return {}


def test_the_event_sender_masks_output_split_across_chunks_and_other_events():
    api = RecordingApi()
    sender = EventSender(api, heartbeat_seconds=60, mask=SecretMask([KEY]))
    sender.start()
    sender.output("stdout", f"the key is {KEY[:5]}".encode())
    sender.output("stdout", f"{KEY[5:]}\n".encode())
    sender.output("stderr", KEY[:3].encode())
    sender.event("assistant_delta", {"text": f"it is {KEY[:9]}"})
    sender.event("assistant_delta", {"text": f"{KEY[9:]}."})
    sender.event("tool_call", {"input": {"command": f"curl -H 'Authorization: {KEY}'"}})
    sender.event("egress", {"host": "api.test", "allowed": True})
    events = [event for batch in api.batches for event in batch] + sender.finish()
    assert KEY not in repr(events) and KEY[5:] not in repr(events)
    stdout = "".join(e["data"] for e in events if e["type"] == "stdout")
    assert stdout == "the key is ***\n"
    deltas = "".join(e["data"]["text"] for e in events if e["type"] == "assistant_delta")
    assert deltas == "it is ***."
    # The held delta tail went out before the event that followed it.
    kinds = [e["type"] for e in events]
    assert kinds.index("tool_call") > max(i for i, k in enumerate(kinds) if k == "assistant_delta")
    assert "Authorization: ***" in repr(events)
    # A held tail that never became a value is reported at the end.
    assert "".join(e["data"] for e in events if e["type"] == "stderr") == KEY[:3]
