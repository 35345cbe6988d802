"""The scripted Messages API speaks what the real SDK parses, and refuses what the
real API would refuse (so a runner bug cannot pass against it)."""

from __future__ import annotations

import anthropic
import pytest

from devtools.scripted_anthropic import Failure, ScriptedAnthropic, echo, reply, tool_use

MODEL = "claude-sonnet-4-6"


@pytest.fixture
def server():
    with ScriptedAnthropic() as running:
        yield running


@pytest.fixture
def client(server):
    with anthropic.Anthropic(api_key="test-key", base_url=server.url, max_retries=0) as sdk:
        yield sdk


def ask(client, messages=None, **extra):
    messages = messages or [{"role": "user", "content": "Hi"}]
    return client.messages.create(model=MODEL, max_tokens=100, messages=messages, **extra)


def test_a_scripted_reply_parses_as_the_sdks_message(server, client):
    server.add(reply("Checking.", tool_use("bash", id="toolu_1", command="ls"), usage=(7, 3)))

    message = ask(client)

    assert message.model == MODEL and message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[1].input == {"command": "ls"}
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 3)


def test_a_scripted_error_raises_the_sdks_error_with_body_and_retry_after(server, client):
    server.add(Failure(429, "rate_limit_error", "slow down", retry_after=2))

    with pytest.raises(anthropic.RateLimitError) as raised:
        ask(client)

    assert isinstance(raised.value.body, dict)
    assert raised.value.body["error"] == {"type": "rate_limit_error", "message": "slow down"}
    assert raised.value.response.headers["retry-after"] == "2"


def test_a_callable_step_sees_the_request(server, client):
    server.add(lambda body: reply(f"{len(body['messages'])} messages"))

    assert ask(client).content[0].text == "1 messages"


def test_unanswered_tool_use_is_refused_without_consuming_a_step(server, client):
    server.add(reply("kept for the next request"))
    unanswered = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [tool_use("bash", id="toolu_9", command="ls")]},
        {"role": "user", "content": "and?"},
    ]

    with pytest.raises(anthropic.BadRequestError, match="toolu_9"):
        ask(client, unanswered)

    assert ask(client).content[0].text == "kept for the next request"


def test_an_exhausted_script_answers_400_and_the_fallback_answers_when_set(server, client):
    with pytest.raises(anthropic.BadRequestError, match="no more steps"):
        ask(client)

    server.fallback = echo
    assert ask(client).content[0].text == "You said: Hi"
    assert len(server.requests) == 2


def test_requests_are_recorded_with_headers_and_body(server, client):
    server.add(reply("ok"))

    ask(client, system="Be brief.")

    (request,) = server.requests
    assert request.path == "/v1/messages"
    assert request.body["system"] == "Be brief."
    assert "test-key" in (request.headers.get("x-api-key") or request.headers["authorization"])
