"""The LLM proxy: what a runner's model call goes through. The app runs against the
real emulator; Anthropic is the scripted Messages API on loopback (ANTHROPIC_BASE_URL)."""

from __future__ import annotations

import time

import pytest

from api import create_app
from api.services.llm_pricing import estimate_input_tokens
from api.services.task_tokens import issue_task_token
from devtools.scripted_anthropic import Failure, ScriptedAnthropic, reply
from tests.conftest import with_settings
from tests.integration.conftest import ALICE, task_token

REAL_KEY = "sk-ant-real-key-canary-31337"
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def anthropic_api():
    with ScriptedAnthropic() as server:
        yield server


@pytest.fixture
def app(firestore, settings, anthropic_api):
    configured = with_settings(
        settings,
        anthropic_api_key=REAL_KEY,
        anthropic_base_url=anthropic_api.url,
        user_daily_token_budget=5_000,
    )
    return create_app(configured, start_background=False)


@pytest.fixture
def platform(app):
    return app.extensions["agent_platform"]


@pytest.fixture
def api(app):
    return app.test_client()


def sent_key(request) -> str:
    """The key a request carried (this SDK sends `authorization: Bearer`, others x-api-key)."""
    return request.headers.get("x-api-key") or request.headers["authorization"].removeprefix(
        "Bearer "
    )


def running_agent_task(api, platform, **fields) -> tuple[str, str]:
    """An agent task claimed by a (pretend) runner; returns (task id, its token)."""
    body = {"kind": "agent", "prompt": "hi", **fields}
    task_id = api.post("/api/tasks", json=body, headers=ALICE).get_json()["id"]
    platform.machine.mark_dispatched(task_id, "local", "d1", max_running=10)
    platform.machine.claim(task_id, "exec-1", 0)
    token = task_token(platform, task_id)
    return task_id, token


def call(api, token: str, **overrides):
    body = {
        "model": MODEL,
        "max_tokens": 100,
        "messages": [{"role": "user", "content": "hi"}],
        **overrides,
    }
    return api.post("/internal/v1/llm/v1/messages", json=body, headers={"x-api-key": token})


def test_a_call_is_forwarded_with_the_real_key_and_answered_as_is(api, platform, anthropic_api):
    anthropic_api.add(reply("hello there"))
    _, token = running_agent_task(api, platform)
    answer = call(api, token)
    assert answer.status_code == 200
    assert answer.get_json()["content"] == [{"type": "text", "text": "hello there"}]
    (upstream,) = anthropic_api.messages_requests
    assert sent_key(upstream) == REAL_KEY
    assert token not in str(upstream.headers) and token not in str(upstream.body)


def test_usage_is_recorded_once_per_call(api, platform, anthropic_api):
    anthropic_api.add(reply("a", usage=(30, 7)), reply("b", usage=(40, 3)))
    task_id, token = running_agent_task(api, platform)
    call(api, token)
    call(api, token)
    usage = platform.store.get_task(task_id)["llmUsage"]
    assert usage == {"inputTokens": 70, "outputTokens": 10, "calls": 2}
    (daily,) = [d.to_dict() for d in platform.store.client.collection("usage").stream()]
    assert daily["llmTokens"] == 80 and daily["llmCalls"] == 2


def test_a_spent_task_budget_is_refused_without_calling_anthropic(api, platform, anthropic_api):
    anthropic_api.add(reply("big", usage=(900, 200)))
    _, token = running_agent_task(api, platform, maxTokens=1000)
    assert call(api, token).status_code == 200
    refused = call(api, token)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["type"] == "budget_exceeded"
    assert len(anthropic_api.messages_requests) == 1


def test_max_tokens_is_capped_to_the_remaining_budget_less_the_input(api, platform, anthropic_api):
    anthropic_api.add(reply("a", usage=(950, 10)), reply("b"))
    _, token = running_agent_task(api, platform, maxTokens=1000)
    call(api, token, max_tokens=4096)
    call(api, token, max_tokens=4096)
    sent = anthropic_api.messages_requests[1].body
    input_estimate, _ = estimate_input_tokens(sent)
    # 40 tokens are left; the call's input is reserved first, its output gets the rest.
    assert sent["max_tokens"] == 40 - input_estimate


def test_the_owners_daily_budget_is_enforced(api, platform, anthropic_api):
    anthropic_api.add(reply("a", usage=(4_000, 1_000)))
    _, first = running_agent_task(api, platform)
    assert call(api, first).status_code == 200
    _, second = running_agent_task(api, platform)
    refused = call(api, second)
    assert refused.status_code == 429
    assert "daily" in refused.get_json()["error"]["message"]


def test_a_token_for_another_task_or_expired_is_refused(api, platform, anthropic_api):
    task_id, _ = running_agent_task(api, platform)
    other = issue_task_token(platform.settings.task_token_key, "0" * 24, time.time() + 600)
    expired = issue_task_token(platform.settings.task_token_key, task_id, time.time() - 1)
    forged = issue_task_token(b"not-the-key", task_id, time.time() + 600)
    for token in (other, expired, forged, "", REAL_KEY):
        refused = call(api, token)
        assert refused.status_code in (401, 403), token
    assert call(api, expired).status_code == 401
    assert anthropic_api.messages_requests == []


def test_a_token_of_a_task_that_is_not_running_is_refused(api, platform, anthropic_api):
    task_id, token = running_agent_task(api, platform)
    api.post(f"/api/tasks/{task_id}/cancel", headers=ALICE)
    refused = call(api, token)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["type"] == "permission_error"


def test_a_model_outside_the_allow_list_is_refused(api, platform, anthropic_api):
    _, token = running_agent_task(api, platform)
    refused = call(api, token, model="claude-2.0")
    assert refused.status_code == 400
    assert anthropic_api.messages_requests == []


def test_unknown_parameters_and_account_reaching_ones_are_refused(api, platform, anthropic_api):
    _, token = running_agent_task(api, platform)
    assert call(api, token, betas=["x"]).status_code == 400
    assert call(api, token, mcp_servers=[{"type": "url", "url": "http://x"}]).status_code == 400
    assert call(api, token, service_tier="priority").status_code == 400
    web = [{"type": "web_search_20250305", "name": "web_search"}]
    assert call(api, token, tools=web).status_code == 400
    assert anthropic_api.messages_requests == []


def test_claude_codes_fields_and_headers_are_forwarded(api, platform, anthropic_api):
    anthropic_api.add(reply("ok"))
    _, token = running_agent_task(api, platform)
    fields = {
        "thinking": {"type": "adaptive"},
        "output_config": {"effort": "high"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
    }
    betas = "claude-code-20250219,files-api-2025-04-14,effort-2025-11-24"
    answer = api.post(
        "/internal/v1/llm/v1/messages?beta=true",
        json={
            "model": MODEL,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": "hi"}],
            **fields,
        },
        headers={"x-api-key": token, "anthropic-beta": betas, "anthropic-version": "2023-06-01"},
    )
    assert answer.status_code == 200, answer.get_json()
    (upstream,) = anthropic_api.messages_requests
    assert {name: upstream.body[name] for name in fields} == fields
    assert upstream.headers["anthropic-beta"] == "claude-code-20250219,effort-2025-11-24"
    assert upstream.headers["anthropic-version"] == "2023-06-01"
    assert sent_key(upstream) == REAL_KEY


def test_a_stream_is_relayed_and_metered_once_from_its_own_usage(api, platform, anthropic_api):
    anthropic_api.add(reply("streamed words here", usage=(40, 7)))
    task_id, token = running_agent_task(api, platform)
    answer = call(api, token, stream=True)
    assert answer.status_code == 200
    assert answer.mimetype == "text/event-stream"
    events = [
        line for line in answer.get_data(as_text=True).splitlines() if line.startswith("event:")
    ]
    assert events[0] == "event: message_start" and events[-1] == "event: message_stop"
    usage = platform.store.get_task(task_id)["llmUsage"]
    assert (usage["inputTokens"], usage["outputTokens"], usage["calls"]) == (40, 7, 1)


def test_cache_reads_and_writes_count_as_input(api, platform, anthropic_api):
    from devtools.scripted_anthropic import Reply

    anthropic_api.add(
        Reply(
            [{"type": "text", "text": "x"}],
            None,
            5,
            3,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=20,
        )
    )
    task_id, token = running_agent_task(api, platform)
    answer = call(api, token, stream=True)
    assert answer.status_code == 200 and "message_stop" in answer.get_data(as_text=True)
    usage = platform.store.get_task(task_id)["llmUsage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == (125, 3)


def test_count_tokens_is_forwarded_and_not_metered(api, platform, anthropic_api):
    task_id, token = running_agent_task(api, platform)
    answer = api.post(
        "/internal/v1/llm/v1/messages/count_tokens?beta=true",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers={"x-api-key": token},
    )
    assert answer.status_code == 200 and answer.get_json()["input_tokens"] > 0
    assert "llmUsage" not in platform.store.get_task(task_id)


def test_the_proxy_takes_anthropics_request_size_not_the_public_apis(api, platform, anthropic_api):
    anthropic_api.add(reply("ok"))
    _, token = running_agent_task(api, platform)
    # Over the public API's 1 MiB; an image, which costs tokens by its pixels, not its bytes
    # (a text this size would pass the task's token budget).
    source = {"type": "base64", "media_type": "image/png", "data": "x" * (3 * 1024 * 1024)}
    big = [{"type": "image", "source": source}, {"type": "text", "text": "what is it?"}]
    assert call(api, token, messages=[{"role": "user", "content": big}]).status_code == 200
    huge = "x" * (33 * 1000 * 1000)
    assert call(api, token, messages=[{"role": "user", "content": huge}]).status_code == 413


def test_a_429_is_passed_back_once_with_its_retry_after(api, platform, anthropic_api):
    # One retry layer: the caller's (Claude Code's, or the runner's loop), not ours too.
    anthropic_api.add(Failure(429, "rate_limit_error", "slow down", retry_after=7), reply("ok"))
    _, token = running_agent_task(api, platform)
    refused = call(api, token)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert len(anthropic_api.messages_requests) == 1


def test_529_overloaded_is_passed_back_once(api, platform, anthropic_api):
    anthropic_api.add(Failure(529, "overloaded_error", "busy", retry_after=0), reply("ok"))
    _, token = running_agent_task(api, platform)
    assert call(api, token).status_code == 529
    assert len(anthropic_api.messages_requests) == 1


def test_a_spend_limit_error_says_not_to_retry(api, platform, anthropic_api):
    anthropic_api.add(
        Failure(429, "rate_limit_error", "You have reached your spend limit.", retry_after=0),
        reply("never sent"),
    )
    _, token = running_agent_task(api, platform)
    refused = call(api, token)
    assert refused.status_code == 429
    assert refused.headers["x-should-retry"] == "false"
    assert "spend limit" in refused.get_json()["error"]["message"]
    assert len(anthropic_api.messages_requests) == 1


def test_without_a_key_the_proxy_answers_llm_not_configured(firestore, settings):
    app = create_app(settings, start_background=False)
    platform = app.extensions["agent_platform"]
    task_id = platform.tasks.new_task("alice", "agent", {"maxTokens": 1000})
    platform.store.create_tasks([dict(task_id, status="running")], ("status", {}))
    token = issue_task_token(settings.task_token_key, task_id["id"], time.time() + 600)
    refused = call(app.test_client(), token)
    assert refused.status_code == 503
    assert refused.get_json()["error"]["type"] == "llm_not_configured"


def test_the_llm_proxy_refuses_a_caller_without_a_task_token_before_reading_its_body(app):
    from api.config import LLM_PROXY_MAX_BODY_BYTES

    for path in ("/internal/v1/llm/v1/messages", "/internal/v1/llm/v1/messages/count_tokens"):
        reply = app.test_client().post(
            path,
            data=b"x" * (LLM_PROXY_MAX_BODY_BYTES + 1),
            headers={"X-Api-Key": "not-a-token", "Content-Type": "application/json"},
        )
        assert reply.status_code == 401, reply.get_data(as_text=True)[:300]
