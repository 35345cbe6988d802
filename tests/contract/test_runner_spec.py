"""The runner's messages, declared once on each side, agree: the spec the API answers
a claim with (api/services/runner_spec.py task_spec) has exactly the keys and types
the runner declares (job-runner/job_runner/spec.py TaskSpec), and what the runner may
send (events, outcomes) and run (tools, engines) is what the API accepts. The two
packages never import each other; this test imports both.

The specs are built from real documents in the Firestore emulator: a code task with
every kind of input file, and a conversation turn's agent task with history and a
saved workspace."""

from __future__ import annotations

import io
import types
from datetime import timedelta
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest
from job_runner import spec as runner_spec
from job_runner.tools import TOOL_NAMES

from api.adapters.firestore_paths import conversation_path, message_path
from api.models.documents import ENGINES, TOOLS, ConversationDoc, TaskDoc
from api.models.runner import ResultBody, RunnerEvent
from api.services.runner_spec import task_spec
from api.services.state_machine import utcnow

OWNER = "spec-owner"


def mismatches(value: Any, hint: Any, where: str) -> list[str]:
    """Where `value` is not of type `hint` (TypedDicts: no key missing, none extra)."""
    if hint is Any:
        return []
    if is_typeddict(hint):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        hints = get_type_hints(hint)
        problems = [f"{where}.{key}: missing" for key in hint.__required_keys__ - set(value)]
        problems += [f"{where}.{key}: not declared" for key in set(value) - set(hints)]
        for key in set(value) & set(hints):
            problems += mismatches(value[key], hints[key], f"{where}.{key}")
        return problems
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        arms = [mismatches(value, arm, where) for arm in get_args(hint)]
        return [] if any(not arm for arm in arms) else [p for arm in arms for p in arm]
    if origin is Literal:
        return [] if value in get_args(hint) else [f"{where}: {value!r} not in {get_args(hint)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{where}: {type(value).__name__}, not a list"]
        (item,) = get_args(hint)
        return [
            p for n, entry in enumerate(value) for p in mismatches(entry, item, f"{where}[{n}]")
        ]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__}, not an object"]
        _, item = get_args(hint)
        return [
            p for key, entry in value.items() for p in mismatches(entry, item, f"{where}.{key}")
        ]
    if hint is type(None):
        return [] if value is None else [f"{where}: {value!r}, not null"]
    if hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return [] if ok else [f"{where}: {value!r}, not a number"]
    if hint is int and isinstance(value, bool):
        return [f"{where}: {value!r}, not an integer"]
    return [] if isinstance(value, hint) else [f"{where}: {value!r}, not {hint.__name__}"]


def test_the_checker_finds_missing_extra_and_mistyped_keys():
    good = {"restore": {"size": 3}, "maxBytes": 10}
    assert mismatches(good, runner_spec.WorkspaceSpec, "w") == []
    assert mismatches({"restore": None, "maxBytes": 1}, runner_spec.WorkspaceSpec, "w") == []
    assert mismatches({"restore": None}, runner_spec.WorkspaceSpec, "w") == ["w.maxBytes: missing"]
    assert mismatches(dict(good, extra=1), runner_spec.WorkspaceSpec, "w") == [
        "w.extra: not declared"
    ]
    assert mismatches(dict(good, maxBytes="10"), runner_spec.WorkspaceSpec, "w") == [
        "w.maxBytes: '10', not int"
    ]


@pytest.fixture
def services(app):
    return app.extensions["agent_platform"]


def _task(services, **fields) -> TaskDoc:
    task = services.tasks.new_task(OWNER, fields.pop("kind"), fields.pop("input"), **fields)
    services.store.create_tasks([task])
    stored = services.store.get_task(task["id"])
    assert stored is not None
    return stored


def test_a_code_tasks_spec_is_what_the_runner_declares(services):
    upload = services.files.create_upload(OWNER, io.BytesIO(b"bytes"), 5)
    task = _task(
        services,
        kind="code",
        input={
            "language": "python",
            "code": "print(1)",
            "timeoutSeconds": 10,
            "memoryMb": 256,
            "network": False,
            "files": {
                "a.txt": "text",
                "b.bin": {"base64": "AAE="},
                "c.dat": {"upload": upload["id"]},
            },
        },
    )
    spec = task_spec(task, services.settings, services.files, services.conversations)
    assert mismatches(spec, runner_spec.TaskSpec, "spec") == []
    assert {"text", "base64", "upload"} <= {key for f in spec["inputFiles"] for key in f}
    assert "agent" not in spec and "workspace" not in spec


def test_a_spec_with_secrets_and_egress_is_what_the_runner_declares(app, services):
    settings = services.settings.model_copy(
        update={"egress_dev_hosts": {"api.test": "127.0.0.1:8092"}}
    )
    task = _task(
        services,
        kind="code",
        input={
            "language": "python",
            "code": "print(1)",
            "timeoutSeconds": 10,
            "memoryMb": 256,
            "network": {"allow": ["api.test", "*.example.org"]},
            "secrets": ["DEMO_KEY"],
        },
    )
    spec = task_spec(task, settings, services.files, services.conversations)
    assert mismatches(spec, runner_spec.TaskSpec, "spec") == []
    assert spec["secrets"] == ["DEMO_KEY"]
    egress = spec["limits"]["egress"]
    assert egress["allow"] == ["api.test", "*.example.org"]
    assert egress["devHosts"] == {"api.test": "127.0.0.1:8092"}
    assert spec["limits"]["network"] is False
    # Without secrets or egress, neither key is there.
    plain = _task(services, kind="code", input={"language": "python", "code": "print(1)"})
    plain_spec = task_spec(plain, services.settings, services.files, services.conversations)
    assert "secrets" not in plain_spec and "egress" not in plain_spec["limits"]


def test_a_builds_spec_and_a_spec_with_an_environment_are_what_the_runner_declares(services):
    build = _task(
        services,
        kind="environment",
        input={
            "kind": "environment",
            "name": "tiny",
            "python": ["tinypkg==1.0"],
            "hash": "a" * 64,
            "timeoutSeconds": 600,
            "memoryMb": 2048,
        },
    )
    spec = services.runner.spec(build)
    assert mismatches(spec, runner_spec.TaskSpec, "spec") == []
    assert spec["build"]["python"] == ["tinypkg==1.0"]
    assert spec["limits"]["egress"]["allow"] == list(services.settings.package_index_domains)

    uses = _task(
        services,
        kind="code",
        input={"language": "python", "code": "print(1)", "environment": "tiny"},
        environment={"id": "env_1", "name": "tiny", "hash": "a" * 64, "size": 3},
    )
    spec = services.runner.spec(uses)
    assert mismatches(spec, runner_spec.TaskSpec, "spec") == []
    assert spec["environment"] == {"id": "env_1", "name": "tiny", "hash": "a" * 64, "size": 3}


def test_an_agent_turns_spec_is_what_the_runner_declares(services):
    now = utcnow()
    conversation: ConversationDoc = {
        "id": "specconversation",
        "owner": OWNER,
        "agentId": None,
        "title": "",
        "activeTaskId": None,
        "createdAt": now,
        "updatedAt": now,
    }
    services.store.create_conversation(conversation)
    services.store.update_doc(
        conversation_path(conversation["id"]),
        {"workspace": {"object": "o", "size": 7, "sha256": "0" * 64, "taskId": "t"}},
    )
    earlier = {
        "id": "0001",
        "role": "user",
        "content": "earlier",
        "taskId": None,
        "createdAt": now - timedelta(seconds=5),
    }
    services.store.create_doc(message_path(conversation["id"], "0001"), earlier)
    task = _task(
        services,
        kind="agent",
        input={
            "kind": "agent",
            "prompt": "hello",
            "agentId": None,
            "maxTurns": 3,
            "maxTokens": 5000,
            "timeoutSeconds": 60,
            "memoryMb": 512,
            "network": False,
        },
        agent={
            "systemPrompt": "",
            "model": "claude-test",
            "tools": list(TOOLS),
            "engine": "messages",
            "maxResponseTokens": 1024,
        },
        conversationId=conversation["id"],
        conversationMessageId="0002",
        conversationMessageAt=now,
    )
    spec = task_spec(task, services.settings, services.files, services.conversations)
    assert mismatches(spec, runner_spec.TaskSpec, "spec") == []
    assert spec["history"] == [{"role": "user", "content": "earlier"}]
    assert spec["workspace"]["restore"] == {"size": 7}


def test_what_the_runner_sends_and_runs_is_what_the_api_accepts():
    assert get_args(runner_spec.EventType) == get_args(RunnerEvent.model_fields["type"].annotation)
    assert get_args(runner_spec.Outcome) == get_args(ResultBody.model_fields["status"].annotation)
    assert set(TOOL_NAMES) == set(TOOLS)
    assert get_args(get_type_hints(runner_spec.AgentSpec)["engine"]) == ENGINES
