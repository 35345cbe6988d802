"""Secrets and egress end to end (issue 22): a real API server, real runners, real
bubblewrap, the runner's proxy, and loopback stand-ins for the external APIs a task
may reach (as `api.test` and `llm.test`, through EGRESS_DEV_HOSTS)."""

from __future__ import annotations

import json
import re
import textwrap

import httpx
import pytest
from google.cloud import firestore as gfirestore

from devtools.api_stand_in import ApiStandIn
from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import PROJECT, ROOT, ApiServer, Caller, wait_for
from tests.webhook_receiver import WebhookReceiver

DEMO_KEY = "sk-demo-e2e-5f0c2a9b77d1"
REAL_KEY = "sk-ant-e2e-egress-canary-2718"


@pytest.fixture(scope="module")
def stand_in():
    with ApiStandIn() as server:
        yield server


@pytest.fixture(scope="module")
def receiver():
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def egress_server(emulator, tmp_path_factory, stand_in, anthropic_api):
    hosts = f"api.test=127.0.0.1:{stand_in.port},llm.test=127.0.0.1:{stand_in.port}"
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("egress") / "api.log",
        EGRESS_ALLOWED_DOMAINS="api.test,llm.test,*.test,localhost",
        EGRESS_DEV_HOSTS=hosts,
        SECRETS_KEY="e2e-secrets-key",
        WEBHOOK_ALLOW_LOOPBACK="true",
        ANTHROPIC_API_KEY=REAL_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    ).start()
    yield server
    server.stop()


@pytest.fixture
def alice(egress_server, firestore, stand_in):
    stand_in.requests.clear()
    caller = Caller(egress_server.url, "alice")
    yield caller
    caller.http.close()


@pytest.fixture
def bob(egress_server, firestore):
    caller = Caller(egress_server.url, "bob")
    yield caller
    caller.http.close()


def put_secret(caller: Caller, name: str, value: str) -> None:
    answer = caller.http.put(f"/api/secrets/{name}", json={"value": value})
    assert answer.status_code in (200, 201), answer.text


def events_of(caller: Caller, task_id: str) -> list[dict]:
    return caller.http.get(f"/api/tasks/{task_id}/events").json()["events"]


def stored_text() -> str:
    """Every document in the test project's database, as text."""
    client = gfirestore.Client(project=PROJECT)
    texts: list[str] = []

    def walk(collections) -> None:
        for collection in collections:
            for document in collection.list_documents():
                snapshot = document.get()
                if snapshot.exists:
                    texts.append(repr(snapshot.to_dict()))
                walk(document.collections())

    walk(client.collections())
    return "\n".join(texts)


PROGRAM = """
import json, os, urllib.request
key = os.environ["DEMO_KEY"]
print("the key is", key)
headers = {"Authorization": "Bearer " + key}
request = urllib.request.Request("http://api.test/v1/me", headers=headers)
print(json.load(urllib.request.urlopen(request, timeout=10)))
"""


def test_a_task_calls_its_listed_host_with_its_owners_key_and_never_shows_it(alice, stand_in):
    put_secret(alice, "DEMO_KEY", DEMO_KEY)
    task = alice.run(
        code=PROGRAM, secrets=["DEMO_KEY"], network={"allow": ["api.test"]}, timeoutSeconds=30
    )
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0, task["result"]["stderr"]
    assert stand_in.requests[0]["headers"]["authorization"] == f"Bearer {DEMO_KEY}"
    assert task["result"]["stdout"].splitlines() == [
        "the key is ***",
        "{'ok': True, 'path': '/v1/me'}",
    ]
    events = events_of(alice, task["id"])
    (egress,) = [e["data"] for e in events if e["type"] == "egress"]
    assert (egress["host"], egress["port"], egress["allowed"]) == ("api.test", 80, True)
    assert egress["bytesSent"] > 0 and egress["bytesReceived"] > 0
    stdout = "".join(e["data"] for e in events if e["type"] == "stdout")
    assert "the key is ***" in stdout
    shown = json.dumps(task) + json.dumps(events)
    assert DEMO_KEY not in shown
    assert DEMO_KEY not in stored_text()  # encrypted at rest, masked everywhere else
    listed = alice.http.get("/api/secrets").json()
    assert DEMO_KEY not in json.dumps(listed)


def test_everything_but_the_listed_host_is_refused_and_recorded(alice, egress_server):
    api_port = httpx.URL(egress_server.url).port
    program = f"""
        import os, socket, urllib.request
        for name in ("NO_PROXY", "no_proxy"):  # through the proxy even to loopback
            os.environ.pop(name)
        opener = urllib.request.build_opener()
        for url in ("http://169.254.169.254/computeMetadata/v1/",
                    "http://127.0.0.1:{api_port}/api/tasks",
                    "http://10.1.2.3/", "http://other.test/", "http://localhost:{api_port}/"):
            try:
                opener.open(url, timeout=10)
                print("reached", url)
            except urllib.error.HTTPError as refused:
                print(refused.code, refused.read().decode().strip())
        try:
            socket.create_connection(("127.0.0.1", {api_port}), timeout=5)
            print("direct: connected")
        except OSError as error:
            print("direct:", error.strerror)
    """
    task = alice.run(
        code=textwrap.dedent(program),
        network={"allow": ["api.test", "localhost"]},
        timeoutSeconds=60,
    )
    assert task["status"] == "completed", task
    lines = task["result"]["stdout"].splitlines()
    assert len(lines) == 6, task["result"]
    assert lines[0].startswith("403 egress refused: 169.254.169.254 is link-local")
    assert lines[1] == "403 egress refused: 127.0.0.1 is loopback"
    assert lines[2] == "403 egress refused: 10.1.2.3 is private"
    assert lines[3] == "403 egress refused: other.test is not on this task's allow-list"
    assert lines[4].startswith("403 egress refused: localhost resolves to")
    assert lines[5] == "direct: Connection refused"  # the sandbox's own loopback: empty
    refused = [e["data"] for e in events_of(alice, task["id"]) if e["type"] == "egress"]
    assert sorted(e["host"] for e in refused) == sorted(
        ["169.254.169.254", "127.0.0.1", "10.1.2.3", "other.test", "localhost"]
    )
    assert not any(e["allowed"] for e in refused)


def test_a_secret_the_owner_does_not_have_is_422_and_no_task(alice, bob):
    put_secret(bob, "BOBS_KEY", "bob-only-value")
    before = alice.http.get("/api/tasks").json()["tasks"]
    for names in (["BOBS_KEY"], ["NO_SUCH_KEY"]):
        answer = alice.http.post(
            "/api/tasks",
            json={"kind": "code", "language": "python", "code": "print(1)", "secrets": names},
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["error"]["code"] == "unknown_secret"
        assert names[0] in answer.json()["error"]["message"]
    assert alice.http.get("/api/tasks").json()["tasks"] == before


def test_a_host_beyond_the_operators_ceiling_is_422_naming_it(alice):
    answer = alice.http.post(
        "/api/tasks",
        json={
            "kind": "code",
            "language": "python",
            "code": "print(1)",
            "network": {"allow": ["api.openai.com"]},
        },
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "egress_not_allowed"
    assert "api.openai.com" in error["message"] and "EGRESS_ALLOWED_DOMAINS" in error["message"]


def test_a_claude_code_turn_curls_a_listed_host_and_is_refused_another(
    alice, anthropic_api, stand_in
):
    put_secret(alice, "DEMO_KEY", DEMO_KEY)
    command = 'curl -s -H "X-Key: $DEMO_KEY" http://api.test/cc; echo; curl -s https://other.test/'
    anthropic_api.fallback = None
    anthropic_api.add(
        reply("Calling it.", tool_use("Bash", command=command)),
        reply("The API answered."),
    )
    agent = alice.http.post(
        "/api/agents", json={"name": "caller", "engine": "claude-code", "tools": ["bash"]}
    ).json()
    task = alice.run(
        kind="agent",
        agentId=agent["id"],
        prompt="Call the API with my key.",
        secrets=["DEMO_KEY"],
        network={"allow": ["api.test"]},
        timeoutSeconds=120,
    )
    assert task["status"] == "completed", task.get("error")
    assert stand_in.requests[-1]["headers"]["x-key"] == DEMO_KEY
    events = events_of(alice, task["id"])
    egress = [e["data"] for e in events if e["type"] == "egress"]
    assert sorted((e["host"], e["allowed"]) for e in egress) == [
        ("api.test", True),
        ("other.test", False),
    ]
    assert DEMO_KEY not in json.dumps(events) + json.dumps(task)


def test_the_secrets_api_lists_names_and_sizes_never_values(alice, bob):
    put_secret(alice, "OPENAI_API_KEY", "sk-openai-abc")
    put_secret(alice, "GIT_TOKEN", "ghp_123")
    listed = alice.http.get("/api/secrets").json()["secrets"]
    assert [(s["name"], s["size"]) for s in listed] == [("GIT_TOKEN", 7), ("OPENAI_API_KEY", 13)]
    assert "sk-openai-abc" not in json.dumps(listed)
    assert bob.http.get("/api/secrets").json()["secrets"] == []
    assert bob.http.delete("/api/secrets/GIT_TOKEN").status_code == 404
    assert alice.http.delete("/api/secrets/GIT_TOKEN").status_code == 204
    assert [s["name"] for s in alice.http.get("/api/secrets").json()["secrets"]] == [
        "OPENAI_API_KEY"
    ]
    for bad in ("1ABC", "with-dash", "PATH", "x" * 200):
        assert alice.http.put(f"/api/secrets/{bad}", json={"value": "v"}).status_code in (400, 422)


def readme_example() -> tuple[str, dict]:
    """The README's example: its program and its request body."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Example: a job that calls an OpenAI-compatible API", 1)[1]
    section = section.split("\n## ", 1)[0]
    (program,) = re.findall(r"^```python\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    (body,) = re.findall(r"^```json\n(.*?)^```", section, re.MULTILINE | re.DOTALL)
    return program, json.loads(body)


def test_the_readme_example_calls_the_chat_endpoint_writes_its_answer_and_reports(
    alice, stand_in, receiver
):
    program, body = readme_example()
    put_secret(alice, "OPENAI_API_KEY", "sk-openai-readme-0042")
    # The chat endpoint is the loopback stand-in, reached as llm.test (EGRESS_DEV_HOSTS).
    body["code"] = program
    body["files"]["job.json"] = body["files"]["job.json"].replace(
        "https://api.openai.com/v1", "http://llm.test/v1"
    )
    body["network"] = {"allow": ["llm.test"]}
    body["webhookUrl"] = receiver.url
    before = len(receiver.received)
    task = alice.wait(alice.submit(**body)["id"])
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0, task["result"]["stderr"]
    files = {f["path"]: f for f in task["result"]["files"]}
    answer = json.loads(files["answer.json"]["content"])
    assert answer == {
        "job": "job-1",
        "answer": "stand-in reply to: Name three domain events of an order.",
    }
    (call,) = [r for r in stand_in.requests if r["path"] == "/v1/chat/completions"]
    assert call["headers"]["authorization"] == "Bearer sk-openai-readme-0042"
    assert json.loads(call["body"])["model"] == "gpt-4o-mini"
    egress = [e["data"] for e in events_of(alice, task["id"]) if e["type"] == "egress"]
    assert [(e["host"], e["allowed"]) for e in egress] == [("llm.test", True)]
    wait_for(lambda: len(receiver.received) > before, 30, message="the webhook delivery")
    delivered = json.loads(receiver.received[-1][1])
    assert delivered["id"] == task["id"] and delivered["status"] == "completed"
