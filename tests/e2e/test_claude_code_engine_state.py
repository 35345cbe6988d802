"""Claude Code's state directory (/workspace/.engine) is the sandbox's to write, and it
travels with the conversation's workspace: a turn that makes it a symlink must not
steer the root runner's mkdir and chown onto a host path on the next turn, nor stop
the conversation (issue 18: a host directory changed owner, and a dangling link made
every later turn end `runner_lost`)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import Caller

REAL_KEY = "sk-ant-e2e-engine-state-canary-2718"


@pytest.fixture
def alice(agent_server, firestore, anthropic_api):
    anthropic_api.fallback = None
    caller = Caller(agent_server.url, "alice")
    yield caller
    caller.http.close()


@pytest.fixture
def host_dir():
    path = Path(tempfile.mkdtemp(prefix="engine-target-"))
    path.chmod(0o755)
    (path / "keep").write_text("a host file")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def converse(alice, text: str, conversation: str | None = None) -> tuple[str, dict]:
    if conversation is None:
        agent = alice.http.post("/api/agents", json={"name": "coder", "engine": "claude-code"})
        assert agent.status_code == 201, agent.text
        created = alice.http.post("/api/conversations", json={"agentId": agent.json()["id"]})
        conversation = created.json()["id"]
    sent = alice.http.post(f"/api/conversations/{conversation}/messages", json={"message": text})
    assert sent.status_code == 202, sent.text
    return conversation, alice.wait(sent.json()["task"]["id"])


@pytest.mark.parametrize("target", ["a host directory", "nowhere"])
def test_a_planted_engine_symlink_is_replaced_never_followed(
    alice, anthropic_api, host_dir, target
):
    destination = host_dir if target == "a host directory" else host_dir / "missing"
    plant = f"rm -rf /workspace/.engine && ln -s {destination} /workspace/.engine && echo planted"
    before = host_dir.stat()
    # Turn 1 plants the link; Claude Code's own session went with the directory, so
    # whatever it does after that, the script answers the same.
    anthropic_api.add(reply(tool_use("Bash", command=plant)))
    anthropic_api.fallback = lambda body: reply("Still here.")

    conversation, first = converse(alice, "Plant it.")
    assert first["status"] in ("completed", "failed"), first
    _, second = converse(alice, "Hello again.", conversation)
    _, third = converse(alice, "And again.", conversation)

    for turn in (second, third):
        assert turn["status"] == "completed", turn.get("error")
        assert turn["result"]["text"] == "Still here."
    after = host_dir.stat()
    assert (after.st_uid, after.st_gid, stat.S_IMODE(after.st_mode)) == (
        before.st_uid,
        before.st_gid,
        0o755,
    )
    assert sorted(os.listdir(host_dir)) == ["keep"]
    assert not (host_dir / "missing").exists()
