"""Spend through the LLM proxy (DESIGN section 15): budgets reserved before a call and
settled after it, every answered call metered once, calls in flight and count_tokens
bounded per task, the agent's model as the ceiling, and cost in dollars. The app runs
against the real emulator; Anthropic is the scripted Messages API on loopback."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from api import create_app
from api.services.state_machine import utcnow
from devtools.scripted_anthropic import Reply, ScriptedAnthropic, reply
from tests.conftest import wait_for, with_settings
from tests.integration.conftest import ALICE
from tests.integration.test_llm_proxy import REAL_KEY, call, running_agent_task

MODEL = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"
# Sonnet's list prices, USD per million tokens (the default table's, set here explicitly
# so the test states the figures it computes with).
PRICES = {MODEL: {"input": 3.0, "output": 15.0, "cacheWrite": 3.75, "cacheRead": 0.3}}


@pytest.fixture
def anthropic_api():
    with ScriptedAnthropic() as server:
        yield server


def make_app(settings, anthropic_api, **changes):
    configured = with_settings(
        settings,
        anthropic_api_key=REAL_KEY,
        anthropic_base_url=anthropic_api.url,
        model_prices={**settings.model_prices, **PRICES},
        **changes,
    )
    return create_app(configured, start_background=False)


@pytest.fixture
def app(firestore, settings, anthropic_api):
    return make_app(settings, anthropic_api, llm_calls_in_flight_per_task=10)


@pytest.fixture
def platform(app):
    return app.extensions["agent_platform"]


@pytest.fixture
def api(app):
    return app.test_client()


def spends_what_it_may(body: dict) -> Reply:
    """An answer that uses every output token it was allowed, on an input of about a
    token per 4 bytes (what real text costs)."""
    return reply("x", usage=(len(json.dumps(body)) // 4, body["max_tokens"]))


def in_parallel(app, token: str, calls: int, **overrides) -> list:
    def one(_: int):
        return call(app.test_client(), token, **overrides)

    with ThreadPoolExecutor(calls) as pool:
        return list(pool.map(one, range(calls)))


def task_usage(platform, task_id: str) -> dict:
    return platform.store.get_task(task_id).get("llmUsage") or {}


def day_usage(platform) -> dict:
    return platform.store.get_usage("alice", utcnow())


def test_ten_parallel_calls_stay_within_the_task_budget(app, api, platform, anthropic_api):
    anthropic_api.fallback = spends_what_it_may
    task_id, token = running_agent_task(api, platform, maxTokens=1000)
    answers = in_parallel(app, token, 10, max_tokens=1000)
    assert {a.status_code for a in answers} <= {200, 429}
    assert any(a.status_code == 200 for a in answers)
    used = task_usage(platform, task_id)
    assert used["inputTokens"] + used["outputTokens"] <= 1000
    served = sum(r.body["max_tokens"] for r in anthropic_api.messages_requests)
    assert served < 1000
    assert used["calls"] == len(anthropic_api.messages_requests)
    for refused in (a for a in answers if a.status_code == 429):
        kind = refused.get_json()["error"]["type"]
        assert kind in ("budget_exceeded", "rate_limit_error")
        if kind == "rate_limit_error":  # others' reservations held it: worth a retry
            assert int(refused.headers["retry-after"]) >= 1


def test_a_4mb_prompt_is_refused_before_any_upstream_call(api, platform, anthropic_api):
    anthropic_api.fallback = spends_what_it_may
    _, token = running_agent_task(api, platform, maxTokens=1000)
    huge = [{"role": "user", "content": "x" * (4 * 1000 * 1000)}]
    refused = call(api, token, messages=huge, max_tokens=10)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["type"] == "budget_exceeded"
    assert refused.headers["x-should-retry"] == "false"
    assert anthropic_api.requests == []


def test_calls_beyond_the_tasks_in_flight_limit_get_429_with_retry_after(
    firestore, settings, anthropic_api
):
    app = make_app(settings, anthropic_api, llm_calls_in_flight_per_task=2)
    platform, api = app.extensions["agent_platform"], app.test_client()
    release = threading.Event()
    held = [Reply([{"type": "text", "text": "slow answer"}], hold=release) for _ in range(2)]
    anthropic_api.add(*held, reply("after"))
    _, token = running_agent_task(api, platform)

    def read_stream() -> str:
        return call(app.test_client(), token, stream=True).get_data(as_text=True)

    with ThreadPoolExecutor(2) as pool:
        streams = [pool.submit(read_stream) for _ in range(2)]
        wait_for(lambda: len(anthropic_api.messages_requests) == 2, 10, message="2 in flight")
        third = call(api, token)
        release.set()
        assert all("message_stop" in s.result() for s in streams)
    assert third.status_code == 429
    assert third.get_json()["error"]["type"] == "rate_limit_error"
    assert int(third.headers["retry-after"]) >= 1
    assert "x-should-retry" not in third.headers
    assert call(api, token).status_code == 200  # the slots are free again


def test_upstream_calls_equal_recorded_calls_under_forced_contention(
    app, api, platform, anthropic_api
):
    """The task's document is held by a transaction while ten answers are settled, so no
    settlement can write it: each is retried, then parked on its call's record, and the
    reconciler's pass counts every one of them exactly once (a second pass nothing)."""
    from google.cloud import firestore as fs

    anthropic_api.fallback = lambda body: reply("ok", usage=(100, 10))
    task_id, token = running_agent_task(api, platform)
    platform.llm_proxy.budget.record_retry_seconds = 0.5
    client, holding, release = platform.store.client, threading.Event(), threading.Event()

    @fs.transactional
    def hold_the_task(transaction):
        client.document(f"tasks/{task_id}").get(transaction=transaction)
        holding.set()
        release.wait(60)

    holder = threading.Thread(target=hold_the_task, args=(client.transaction(),))
    holder.start()
    holding.wait(10)
    try:
        answers = in_parallel(app, token, 10)
    finally:
        release.set()
        holder.join()
    assert [a.status_code for a in answers] == [200] * 10  # never a 503 once answered
    upstream = len(anthropic_api.messages_requests)
    assert upstream == 10
    parked = [c.to_dict() for c in client.collection("llmCalls").stream()]
    assert parked and all("outputTokens" in c for c in parked)  # the outbox was used
    platform.runner.reconcile()
    platform.runner.reconcile()
    assert task_usage(platform, task_id)["calls"] == upstream
    assert day_usage(platform)["llmCalls"] == upstream
    assert day_usage(platform)["llmTokens"] == 110 * upstream
    assert list(client.collection("llmCalls").stream()) == []


def test_count_tokens_is_throttled_per_task_and_counted_as_calls(
    firestore, settings, anthropic_api
):
    app = make_app(settings, anthropic_api, count_tokens_per_task_per_minute=5)
    platform, api = app.extensions["agent_platform"], app.test_client()
    task_id, token = running_agent_task(api, platform)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "count me"}]}
    answers = [
        api.post(
            "/internal/v1/llm/v1/messages/count_tokens", json=body, headers={"x-api-key": token}
        )
        for _ in range(8)
    ]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    assert int(answers[-1].headers["retry-after"]) >= 1
    assert len(anthropic_api.requests) == 5
    spend = platform.store.get_doc(f"llmSpend/{task_id}")
    assert spend["countTokensCalls"] == 5
    assert day_usage(platform)["llmCountTokensCalls"] == 5
    assert "llmUsage" not in platform.store.get_task(task_id)  # calls, not tokens


def test_a_model_other_than_the_agents_is_refused(api, platform, anthropic_api):
    anthropic_api.fallback = lambda body: reply("ok")
    _, token = running_agent_task(api, platform)  # the default agent: claude-sonnet-4-6
    refused = call(api, token, model="claude-opus-4-7")  # on the allow-list, dearer
    assert refused.status_code == 400
    message = refused.get_json()["error"]["message"]
    assert "claude-opus-4-7" in message and MODEL in message
    assert refused.headers["x-should-retry"] == "false"
    assert anthropic_api.requests == []
    # Claude Code's small model, with and without its date, is the agent's helper.
    assert call(api, token, model=HAIKU).status_code == 200
    assert call(api, token, model=f"{HAIKU}-20251001").status_code == 200


def test_a_helper_dearer_than_the_agents_model_is_refused(api, platform, anthropic_api):
    agent = api.post("/api/agents", json={"name": "cheap", "model": HAIKU}, headers=ALICE)
    _, token = running_agent_task(api, platform, agentId=agent.get_json()["id"])
    assert call(api, token, model=MODEL).status_code == 400
    anthropic_api.add(reply("ok"))
    assert call(api, token, model=HAIKU).status_code == 200


def test_cost_usd_is_computed_from_the_price_table(api, platform, anthropic_api):
    anthropic_api.add(
        Reply(
            [{"type": "text", "text": "x"}],
            input_tokens=1000,
            output_tokens=200,
            cache_read_input_tokens=10_000,
            cache_creation_input_tokens=2_000,
        )
    )
    task_id, token = running_agent_task(api, platform)
    assert "message_stop" in call(api, token, stream=True).get_data(as_text=True)
    # 1,000 x $3 + 200 x $15 + 10,000 x $0.30 + 2,000 x $3.75, per million tokens
    expected = 0.003 + 0.003 + 0.003 + 0.0075
    usage = api.get("/api/usage", headers=ALICE).get_json()
    assert usage["costUsdToday"]["used"] == pytest.approx(expected)
    assert usage["costUsdToday"]["limit"] == platform.settings.user_daily_cost_budget_usd
    assert usage["costUsdMonth"] == pytest.approx(expected)
    assert platform.llm_proxy.budget.spent_usd(task_id) == pytest.approx(expected)


def test_max_cost_usd_bounds_a_calls_output_and_then_refuses(api, platform, anthropic_api):
    anthropic_api.fallback = spends_what_it_may
    _, token = running_agent_task(api, platform, maxCostUsd=0.01)
    first = call(api, token, max_tokens=4096)
    assert first.status_code == 200
    sent = anthropic_api.messages_requests[0].body["max_tokens"]
    assert sent < 0.01 / 15e-6  # what $0.01 buys of Sonnet's output at most
    for _ in range(3):  # each spends what it may, until nothing fits
        last = call(api, token, max_tokens=4096)
        if last.status_code != 200:
            break
    assert last.status_code == 429
    assert last.get_json()["error"]["type"] == "budget_exceeded"
    assert "maxCostUsd" in last.get_json()["error"]["message"]


def test_the_owners_daily_cost_budget_is_enforced(firestore, settings, anthropic_api):
    app = make_app(settings, anthropic_api, user_daily_cost_budget_usd=0.02)
    platform, api = app.extensions["agent_platform"], app.test_client()
    anthropic_api.add(reply("a", usage=(2_000, 1_000)))  # $0.006 + $0.015
    _, first = running_agent_task(api, platform)
    assert call(api, first, max_tokens=1000).status_code == 200
    _, second = running_agent_task(api, platform)
    refused = call(api, second)
    assert refused.status_code == 429
    assert "daily cost budget" in refused.get_json()["error"]["message"]


def test_a_reservation_whose_call_never_ended_is_settled_as_spent(api, platform, anthropic_api):
    """An API instance that died mid-call leaves its reservation: the reconciler counts
    it as spent once the upstream's timeout has passed."""
    from datetime import timedelta

    from api import config

    task_id, _ = running_agent_task(api, platform)
    task = platform.store.get_task(task_id)
    price = platform.llm_proxy.prices.price(MODEL)
    record, _ = platform.llm_proxy.budget.reserve(task, price, 100, False, 50, utcnow())
    budget = platform.llm_proxy.budget
    assert budget.settle_due(utcnow()) == 0  # not due while the call may still run
    later = utcnow() + timedelta(seconds=config.LLM_UPSTREAM_TIMEOUT_SECONDS + 61)
    assert budget.settle_due(later) == 1
    spend = platform.store.get_doc(f"llmSpend/{task_id}")
    assert (spend["spentTokens"], spend["reservedTokens"], spend["inFlight"]) == (150, 0, 0)
    assert budget.settle_due(later) == 0


def test_a_result_carries_the_metered_cost(api, platform, anthropic_api):
    from tests.integration.conftest import runner_headers

    anthropic_api.add(reply("a", usage=(1_000, 100)))  # $0.003 + $0.0015
    task_id, token = running_agent_task(api, platform)
    assert call(api, token).status_code == 200
    headers = runner_headers(platform, task_id)
    usage_event = {"type": "usage", "data": {"inputTokens": 1000, "outputTokens": 100}}
    result = {"text": "done", "usage": {"inputTokens": 1000, "outputTokens": 100}}
    report = {"execution": "exec-1", "attempt": 0, "status": "completed", "result": result}
    answer = api.post(
        f"/internal/v1/tasks/{task_id}/result",
        json={**report, "events": [usage_event]},
        headers=headers,
    )
    assert answer.status_code == 200, answer.get_json()
    task = api.get(f"/api/tasks/{task_id}", headers=ALICE).get_json()
    assert task["result"]["usage"]["costUsd"] == pytest.approx(0.0045)
    events = api.get(f"/api/tasks/{task_id}/events", headers=ALICE).get_json()["events"]
    (usage,) = [e for e in events if e["type"] == "usage"]
    assert usage["data"]["costUsd"] == pytest.approx(0.0045)
