"""A code task's secrets and egress through the real sandbox (job_runner/task_access.py):
the program gets its owner's secrets as variables and reaches the hosts its list
names through the runner's proxy, and nothing else. The API's side, end to end:
tests/e2e/test_egress.py."""

from __future__ import annotations

import textwrap
import threading
from typing import Any, Literal

import pytest
from job_runner.claude_code import run_claude_code_task
from job_runner.code_task import run_code_task
from job_runner.sandbox import BubblewrapSandbox, Limits
from job_runner.spec import EgressSpec, TaskSpec
from job_runner.task_access import DevHostsRefused, TaskAccess
from job_runner.task_space import TaskSpace
from job_runner.tools import Toolbox

from devtools.api_stand_in import ApiStandIn
from devtools.scripted_anthropic import ScriptedAnthropic, Step, reply, tool_use

KEY = "sk-demo-7d1e44b09a"


def task_spec(kind: Literal["code", "agent"], task_input: dict, egress: EgressSpec | None):
    spec: TaskSpec = {
        "id": f"access-{kind}",
        "kind": kind,
        "input": task_input,
        "limits": {
            "maxOutputBytes": 65536,
            "diskMb": 256,
            "network": False,
            "heartbeatSeconds": 5,
            "outputs": {
                "maxFiles": 10,
                "maxFileBytes": 65536,
                "maxTotalBytes": 65536,
                "maxPathChars": 200,
            },
            "egress": egress,
        },
        "inputFiles": [],
    }
    return spec


def code_spec(code: str, egress: EgressSpec | None = None, stdin: str = "") -> TaskSpec:
    task_input = {
        "language": "python",
        "code": textwrap.dedent(code),
        "timeoutSeconds": 30,
        "memoryMb": 256,
        "stdin": stdin,
    }
    return task_spec("code", task_input, egress)


def to_stand_in(port: int, *allow: str) -> EgressSpec:
    """Egress to `allow` (api.test first), api.test being the stand-in on `port`."""
    return {
        "allow": list(allow or ["api.test"]),
        "maxConnections": 16,
        "maxBytes": 1024 * 1024,
        "devHosts": {"api.test": f"127.0.0.1:{port}"},
    }


def run(spec: TaskSpec, secrets: dict | None = None) -> tuple[dict, list[dict]]:
    events: list[dict] = []
    access = TaskAccess.from_spec(spec, secrets or {}, events.append)
    status, result, error = run_code_task(
        spec, BubblewrapSandbox(), lambda *chunk: None, threading.Event(), None, access
    )
    assert (status, error) == ("completed", None), result
    assert result is not None
    return result, events


def test_secrets_are_variables_of_the_program_and_stdin_follows_them():
    spec = code_spec(
        """
        import os, sys
        print(os.environ["DEMO_KEY"], os.environ["OTHER"], sys.stdin.read())
        print(sorted(n for n in os.environ if "PROXY" in n.upper()))
        """,
        stdin="the task's own stdin",
    )
    result, _ = run(spec, {"DEMO_KEY": KEY, "OTHER": "line one\nline two"})
    assert result["stdout"] == f"{KEY} line one\nline two the task's own stdin\n[]\n"


def test_without_secrets_or_egress_the_program_runs_as_before():
    result, _ = run(code_spec("import os, sys; print(os.getppid(), repr(sys.stdin.read()))"))
    assert result["stdout"] == "0 ''\n"  # pid 1's parent is outside: no forwarder


def test_the_program_reaches_a_listed_host_through_the_proxy_and_nothing_else():
    program = """
        import json, os, socket, urllib.request
        request = urllib.request.Request(
            "http://api.test/v1/echo", headers={"Authorization": "Bearer " + os.environ["DEMO_KEY"]}
        )
        print(json.load(urllib.request.urlopen(request, timeout=10)))
        for url in ("http://169.254.169.254/computeMetadata/v1/", "http://other.test/",
                    "http://10.0.0.7/"):
            try:
                urllib.request.urlopen(url, timeout=10)
            except urllib.error.HTTPError as refused:
                print(refused.code, refused.read().decode().strip())
        try:
            socket.create_connection(("1.1.1.1", 80), timeout=5)
        except OSError as error:
            print("direct:", type(error).__name__)
        print(os.environ["HTTPS_PROXY"].startswith("http://127.0.0.1:"), os.environ["NO_PROXY"])
    """
    with ApiStandIn() as api:
        result, events = run(code_spec(program, to_stand_in(api.port)), {"DEMO_KEY": KEY})
    lines = result["stdout"].splitlines()
    assert lines[0] == "{'ok': True, 'path': '/v1/echo'}"
    assert api.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    assert lines[1].startswith("403 egress refused: 169.254.169.254 is link-local")
    assert lines[2] == "403 egress refused: other.test is not on this task's allow-list"
    assert lines[3] == "403 egress refused: 10.0.0.7 is private"
    assert lines[4] == "direct: OSError"  # no network interface: unreachable
    assert lines[5] == "True localhost,127.0.0.1,::1"
    # Each connection is reported as it ends, which the program need not wait for.
    assert sorted((e["host"], e["allowed"]) for e in events) == [
        ("10.0.0.7", False),
        ("169.254.169.254", False),
        ("api.test", True),
        ("other.test", False),
    ]
    [allowed] = [e for e in events if e["allowed"]]
    assert allowed["bytesReceived"] > 0


def test_https_to_a_listed_host_verifies_against_the_system_cas():
    # The stand-in's certificate is not one the system trusts: the program sees a
    # verification failure, which shows the CA store is there and TLS is end to end.
    program = """
        import ssl, urllib.request
        try:
            urllib.request.urlopen("https://api.test/", timeout=10)
        except urllib.error.URLError as error:
            print(isinstance(error.reason, ssl.SSLCertVerificationError))
        import os
        print(len(os.listdir("/etc/ssl/certs")) > 0)
    """
    with ApiStandIn(tls_names=["api.test"]) as api:
        result, events = run(code_spec(program, to_stand_in(api.port)))
    assert result["stdout"] == "True\nTrue\n"
    assert events[0]["method"] == "CONNECT" and events[0]["allowed"] is True


def test_network_true_shares_the_host_network_and_starts_no_proxy():
    spec = code_spec("import os; print(os.environ.get('HTTPS_PROXY'))", to_stand_in(1))
    spec["limits"]["network"] = True
    result, events = run(spec)
    assert result["stdout"] == "None\n" and events == []


def test_an_agents_bash_tool_gets_the_secrets_and_the_proxy():
    with (
        ApiStandIn() as api,
        TaskSpace.create(
            "access-tools", "agent-", memory_mb=256, disk_mb=64, max_processes=64
        ) as space,
    ):
        events: list[dict] = []
        access = TaskAccess({"DEMO_KEY": KEY}, to_stand_in(api.port), events.append)
        limits = Limits(wall_seconds=30, memory_mb=256, max_output_bytes=65536)
        with access.opened(space):
            toolbox = Toolbox(
                BubblewrapSandbox(),
                space.workspace,
                limits,
                ["bash", "read_file"],
                threading.Event(),
                space=space,
                access=access,
            )
            command = (
                'curl -s -H "X-Key: $DEMO_KEY" http://api.test/tool; echo; curl -s http://x.test/'
            )
            called = toolbox.run("bash", {"command": command}, 30)
    assert called.is_error is False, called.output
    assert called.output.splitlines() == [
        '{"ok": true, "path": "/tool"}',
        "egress refused: x.test is not on this task's allow-list",
    ]
    assert api.requests[0]["headers"]["x-key"] == KEY
    assert sorted(e["host"] for e in events) == ["api.test", "x.test"]


def test_claude_codes_bash_reaches_a_listed_host_and_is_refused_another():
    command = 'curl -s -H "X-Key: $DEMO_KEY" http://api.test/cc; echo; curl -s https://x.test/'
    script: list[Step] = [
        reply("Calling.", tool_use("Bash", command=command)),
        reply("Done."),
    ]
    events: list[tuple[str, Any]] = []
    with ApiStandIn() as api, ScriptedAnthropic(script) as llm:
        task_input = {
            "prompt": "Call the API.",
            "timeoutSeconds": 120,
            "memoryMb": 1024,
            "maxTurns": 5,
        }
        spec = task_spec("agent", task_input, to_stand_in(api.port))
        spec["agent"] = {
            "model": "claude-sonnet-4-6",
            "tools": ["bash"],
            "systemPrompt": "",
            "engine": "claude-code",
            "maxResponseTokens": 4096,
        }
        access = TaskAccess.from_spec(
            spec, {"DEMO_KEY": KEY}, lambda record: events.append(("egress", record))
        )
        status, result, error = run_claude_code_task(
            spec,
            BubblewrapSandbox(),
            llm.url,
            "tt1.the-task-token",
            lambda kind, data: events.append((kind, data)),
            threading.Event(),
            None,
            access,
        )
    assert (status, error) == ("completed", None), result
    assert api.requests[0]["headers"]["x-key"] == KEY
    [output] = [data["output"] for kind, data in events if kind == "tool_result"]
    assert '{"ok": true, "path": "/cc"}' in output
    # curl's exit for a tunnel the proxy refused (CONNECT answered 403).
    assert "Exit code 56" in output
    hosts = sorted((d["host"], d["allowed"]) for kind, d in events if kind == "egress")
    assert hosts == [("api.test", True), ("x.test", False)]


def test_loopback_stand_ins_are_refused_on_cloud_run(monkeypatch):
    egress = to_stand_in(1)
    monkeypatch.setenv("CLOUD_RUN_JOB", "job-runner")
    with pytest.raises(DevHostsRefused, match="refused on Cloud Run"):
        TaskAccess.from_spec(code_spec("print(1)", egress), {})
    del egress["devHosts"]
    assert TaskAccess.from_spec(code_spec("print(1)", egress), {}).egress == egress
