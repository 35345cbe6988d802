"""`GET /api/usage` (the caller's counters against their limits) and `GET /api/config`
(how to sign in, and the choices the API accepts), through the app on the emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from api import create_app
from api.config import Settings
from api.routes.console import content_security_policy
from tests.conftest import with_settings
from tests.integration.conftest import ALICE, BOB

CODE = {"kind": "code", "language": "python", "code": "print(1)"}
WEB_CONFIG = {"apiKey": "AIza-web", "authDomain": "demo.firebaseapp.com", "projectId": "demo"}


@pytest.fixture
def limited(firestore, settings):
    changed = with_settings(
        settings,
        max_active_tasks_per_user=3,
        max_unsettled_tasks_per_user=7,
        max_tasks_per_user_per_day=50,
        user_daily_token_budget=9000,
    )
    return create_app(changed, start_background=False).test_client()


def test_a_new_caller_has_used_nothing_and_sees_each_limit(limited):
    usage = limited.get("/api/usage", headers=ALICE).get_json()
    assert usage["tasksToday"] == {"used": 0, "limit": 50}
    assert usage["unsettledTasks"] == {"used": 0, "limit": 7}
    assert usage["activeTasks"] == {"used": 0, "limit": 3}
    assert usage["llmTokensToday"] == {"used": 0, "limit": 9000}
    assert usage["day"] == datetime.now(UTC).strftime("%Y-%m-%d")
    assert usage["resetsAt"].endswith("T00:00:00Z")


def test_tasks_count_for_their_owner_only_and_a_settled_one_stops_being_unsettled(limited):
    first = limited.post("/api/tasks", json=CODE, headers=ALICE).get_json()
    limited.post("/api/tasks", json=CODE, headers=ALICE)
    limited.post(f"/api/tasks/{first['id']}/cancel", headers=ALICE)
    usage = limited.get("/api/usage", headers=ALICE).get_json()
    assert usage["tasksToday"]["used"] == 2
    assert usage["unsettledTasks"]["used"] == 1
    assert usage["activeTasks"]["used"] == 0  # no dispatcher here: nothing runs
    assert limited.get("/api/usage", headers=BOB).get_json()["tasksToday"]["used"] == 0


def test_llm_tokens_are_the_daily_counter_the_llm_proxy_keeps(limited):
    store = limited.application.extensions["agent_platform"].store
    day = datetime.now(UTC).strftime("%Y%m%d")
    store.create_doc(f"usage/alice_{day}", {"llmTokens": 1234})
    usage = limited.get("/api/usage", headers=ALICE).get_json()
    assert usage["llmTokensToday"] == {"used": 1234, "limit": 9000}


def test_usage_needs_credentials(limited):
    reply = limited.get("/api/usage")
    assert reply.status_code == 401
    assert reply.get_json()["error"]["code"] == "unauthenticated"


def test_config_needs_no_credentials_and_lists_what_agents_accept(client):
    config = client.get("/api/config").get_json()
    assert config["authModes"] == ["dev"] and config["firebase"] is None
    assert config["languages"] == ["python", "bash", "javascript"]
    assert config["models"]["default"] in config["models"]["allowed"]
    for model in config["models"]["allowed"]:
        body = {"name": model, "model": model, "tools": config["tools"]}
        if config["engines"]:
            body["engine"] = config["engines"][-1]
        assert client.post("/api/agents", json=body, headers=ALICE).status_code == 201
    assert config["defaultEngine"] in (None, *config["engines"])


def test_config_gives_the_firebase_web_config_only_in_firebase_mode(firestore, settings):
    with_web = with_settings(settings, firebase_web_config=WEB_CONFIG)
    dev = create_app(with_web, start_background=False).test_client()
    assert dev.get("/api/config").get_json()["firebase"] is None
    both = with_settings(with_web, auth_mode="firebase,apikey")
    config = create_app(both, start_background=False).test_client().get("/api/config").get_json()
    assert config["authModes"] == ["apikey", "firebase"]
    assert config["firebase"] == WEB_CONFIG


def test_firebase_web_config_is_read_as_json_and_checked(monkeypatch):
    monkeypatch.setenv("FIREBASE_WEB_CONFIG", json.dumps({**WEB_CONFIG, "appId": "1:2:web:3"}))
    assert (Settings.from_env().firebase_web_config or {}).get("appId") == "1:2:web:3"
    monkeypatch.setenv("FIREBASE_WEB_CONFIG", "{not json")
    with pytest.raises(ValueError, match="FIREBASE_WEB_CONFIG must be a JSON object"):
        Settings.from_env()
    monkeypatch.setenv("FIREBASE_WEB_CONFIG", json.dumps({"apiKey": "x"}))
    with pytest.raises(ValueError, match="lacks authDomain, projectId"):
        Settings.from_env()


def test_the_console_policy_lets_in_google_sign_in_only_in_firebase_mode():
    strict = content_security_policy(None)
    assert "googleapis" not in strict and "frame-src 'none'" in strict
    firebase = content_security_policy(WEB_CONFIG)
    assert "frame-src https://demo.firebaseapp.com;" in firebase
    assert "https://identitytoolkit.googleapis.com" in firebase
    assert "unsafe-inline" not in firebase + strict
