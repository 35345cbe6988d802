"""Per-user limits and Idempotency-Key, held in Firestore so that they hold across API
instances and under parallel requests."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from api import create_app
from tests.conftest import with_settings
from tests.integration.conftest import ALICE

CODE = {"kind": "code", "language": "python", "code": "print(1)"}


def limited_app(settings, **limits):
    return create_app(with_settings(settings, **limits), start_background=False)


def submit(client, body=CODE, headers=ALICE):
    return client.post("/api/tasks", json=body, headers=headers)


def in_parallel(calls):
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def accepted_until_refused(client) -> int:
    """Submit one by one until refused; how many were accepted."""
    accepted = 0
    while submit(client).status_code == 202:
        accepted += 1
    return accepted


def test_parallel_submissions_never_exceed_the_unsettled_task_limit(firestore, settings):
    app = limited_app(settings, max_unsettled_tasks_per_user=3)
    replies = in_parallel([lambda: submit(app.test_client()) for _ in range(8)])
    statuses = [r.status_code for r in replies]
    # Never a 503: what is refused is refused for the limit, and none may pass it;
    # what was not accepted can still be, up to exactly the limit.
    assert set(statuses) <= {202, 429}
    assert 1 <= statuses.count(202) <= 3
    assert statuses.count(202) + accepted_until_refused(app.test_client()) == 3
    refused = submit(app.test_client())
    assert refused.status_code == 429
    assert refused.headers["Retry-After"]
    assert refused.get_json()["error"]["code"] == "too_many_unsettled_tasks"
    assert "3 tasks queued or running" in refused.get_json()["error"]["message"]


def test_the_limit_holds_across_two_instances(firestore, settings):
    first = limited_app(settings, max_unsettled_tasks_per_user=4).test_client()
    second = limited_app(settings, max_unsettled_tasks_per_user=4).test_client()
    calls = [lambda c=c: submit(c) for c in (first, second) * 5]
    statuses = [r.status_code for r in in_parallel(calls)]
    assert set(statuses) <= {202, 429}
    assert 1 <= statuses.count(202) <= 4
    assert statuses.count(202) + accepted_until_refused(second) == 4
    assert submit(first).status_code == 429


def test_a_settled_task_gives_its_slot_back(firestore, settings):
    client = limited_app(settings, max_unsettled_tasks_per_user=1).test_client()
    task = submit(client).get_json()
    assert submit(client).status_code == 429
    client.post(f"/api/tasks/{task['id']}/cancel", headers=ALICE)
    assert submit(client).status_code == 202


def test_the_limit_is_per_user(firestore, settings):
    client = limited_app(settings, max_unsettled_tasks_per_user=1).test_client()
    assert submit(client).status_code == 202
    assert submit(client, headers={"X-User-Id": "bob"}).status_code == 202


def test_the_daily_task_limit_answers_429_until_midnight_utc(firestore, settings):
    client = limited_app(settings, max_tasks_per_user_per_day=2).test_client()
    for _ in range(2):
        task = submit(client).get_json()
        client.post(f"/api/tasks/{task['id']}/cancel", headers=ALICE)
    refused = submit(client)
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "daily_task_limit"
    assert 0 < int(refused.headers["Retry-After"]) <= 86400


def test_conversation_turns_count_against_the_same_limit(firestore, settings):
    client = limited_app(
        settings, max_unsettled_tasks_per_user=1, anthropic_api_key="sk-test"
    ).test_client()
    assert submit(client).status_code == 202
    conversation = client.post("/api/conversations", json={}, headers=ALICE).get_json()
    refused = client.post(
        f"/api/conversations/{conversation['id']}/messages", json={"message": "hi"}, headers=ALICE
    )
    assert refused.status_code == 429
    shown = client.get(f"/api/conversations/{conversation['id']}", headers=ALICE).get_json()
    assert shown["messages"] == [] and shown["activeTaskId"] is None


def test_racing_requests_with_one_idempotency_key_make_one_task(firestore, settings):
    app = limited_app(settings)
    headers = {**ALICE, "Idempotency-Key": "order-66"}
    replies = in_parallel([lambda: submit(app.test_client(), headers=headers) for _ in range(6)])
    assert {r.status_code for r in replies} == {202}
    assert len({r.get_json()["id"] for r in replies}) == 1
    listed = app.test_client().get("/api/tasks", headers=ALICE).get_json()["tasks"]
    assert len(listed) == 1


def test_an_idempotency_key_reused_with_another_body_is_422(firestore, settings):
    client = limited_app(settings).test_client()
    headers = {**ALICE, "Idempotency-Key": "k1"}
    assert submit(client, headers=headers).status_code == 202
    other = submit(client, {**CODE, "code": "print(2)"}, headers=headers)
    assert other.status_code == 422
    assert other.get_json()["error"]["code"] == "idempotency_key_reused"


def test_idempotency_keys_are_per_user_and_expire(firestore, settings):
    app = limited_app(settings)
    client = app.test_client()
    mine = submit(client, headers={**ALICE, "Idempotency-Key": "same"}).get_json()
    theirs = submit(client, headers={"X-User-Id": "bob", "Idempotency-Key": "same"}).get_json()
    assert mine["id"] != theirs["id"]
    store = app.extensions["agent_platform"].store
    records = [d.to_dict() for d in store.client.collection("idempotency").stream()]
    assert len(records) == 2
    assert all(r["expireAt"] > r["createdAt"] for r in records)  # Firestore TTL field


def test_racing_messages_with_one_idempotency_key_make_one_turn(firestore, settings):
    app = limited_app(settings, anthropic_api_key="sk-test")
    client = app.test_client()
    conversation = client.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}/messages"
    headers = {**ALICE, "Idempotency-Key": "msg-1"}
    replies = in_parallel(
        [
            lambda: app.test_client().post(url, json={"message": "hi"}, headers=headers)
            for _ in range(5)
        ]
    )
    assert {r.status_code for r in replies} == {202}
    assert len({r.get_json()["task"]["id"] for r in replies}) == 1
    assert len({r.get_json()["message"]["id"] for r in replies}) == 1
    shown = client.get(f"/api/conversations/{conversation['id']}", headers=ALICE).get_json()
    assert [m["content"] for m in shown["messages"]] == ["hi"]
    other = client.post(url, json={"message": "bye"}, headers=headers)
    assert other.status_code == 422


@pytest.mark.parametrize(
    "field, value",
    [("status", "completed"), ("owner", "bob"), ("result", {"exitCode": 0}), ("id", "mine")],
)
def test_fields_a_client_may_not_set_are_refused(firestore, settings, field, value):
    client = limited_app(settings).test_client()
    reply = submit(client, {**CODE, field: value})
    assert reply.status_code == 400
    assert client.get("/api/tasks", headers=ALICE).get_json()["tasks"] == []


def test_racing_messages_with_one_key_and_different_text_are_422_to_the_losers(firestore, settings):
    app = limited_app(settings, anthropic_api_key="sk-test")
    client = app.test_client()
    conversation = client.post("/api/conversations", json={}, headers=ALICE).get_json()
    url = f"/api/conversations/{conversation['id']}/messages"
    headers = {**ALICE, "Idempotency-Key": "msg-race"}

    def send(text: str):
        return lambda: app.test_client().post(url, json={"message": text}, headers=headers)

    replies = in_parallel([send(text) for text in ["hi", "yo"] * 5])
    by_text = {"hi": replies[0::2], "yo": replies[1::2]}
    winners = [text for text, group in by_text.items() if {r.status_code for r in group} == {202}]
    assert len(winners) == 1, [(r.status_code, r.get_json()) for r in replies]
    loser = "yo" if winners == ["hi"] else "hi"
    assert {r.status_code for r in by_text[loser]} == {422}
    assert {r.get_json()["error"]["code"] for r in by_text[loser]} == {"idempotency_key_reused"}
    shown = client.get(f"/api/conversations/{conversation['id']}", headers=ALICE).get_json()
    assert [m["content"] for m in shown["messages"]] == [winners[0]]
