"""The runner's own copies of limits the API enforces agree with the API's.

`api` and `job_runner` never import each other, so the few limits both sides need
and the task spec does not carry (sizes of the runner's requests) are written twice;
this test fails when they drift. Limits that travel in the spec are not copied."""

from __future__ import annotations

from job_runner import events, file_channel, llm_relay
from job_runner.outputs import OutputLimits
from job_runner.spec import OutputLimitsSpec

from api import config


def test_an_events_batch_is_what_the_api_takes():
    assert events.MAX_BATCH == config.MAX_EVENT_BATCH


def test_a_file_piece_is_what_the_api_takes():
    assert file_channel.CHUNK_BYTES == config.MAX_RUNNER_CHUNK_BYTES


def test_the_llm_relay_passes_what_the_llm_proxy_takes():
    assert llm_relay.MAX_BODY_BYTES == config.LLM_PROXY_MAX_BODY_BYTES
    assert llm_relay.CALL_TIMEOUT_SECONDS == config.LLM_UPSTREAM_TIMEOUT_SECONDS


def test_the_skipped_files_listed_are_what_the_api_takes():
    spec: OutputLimitsSpec = {
        "maxFiles": 1,
        "maxFileBytes": 1,
        "maxTotalBytes": 1,
        "maxPathChars": 1,
    }
    assert OutputLimits.from_spec(spec).max_skipped_listed == config.MAX_SKIPPED_LISTED
