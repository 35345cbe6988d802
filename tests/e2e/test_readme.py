"""The README is true when copy-pasted. Its "Quick start" installs the SDK with pip
into a fresh virtual environment and runs the CLI and the Python example there; its
"API by example" shell blocks run, in order and unchanged but for the server's
address, in one `bash -e -o pipefail` script. Both against a real API server (local
executor, real runner, real bubblewrap), and what they print is what the README says
they print."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from devtools.emulator import free_port
from devtools.scripted_anthropic import reply, tool_use
from tests.conftest import PROJECT, ROOT

README = ROOT / "README.md"
SECTION = "## The API by example"
README_URL = "http://127.0.0.1:8080"
MARK = "@@readme-command-done@@"


def api_section(heading: str = SECTION) -> str:
    """The README from `heading` up to the next `## ` heading."""
    text = README.read_text()
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end == -1 else text[start:end]


def fenced(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def commands(block: str) -> list[str]:
    """The block's commands: its lines, with backslash-continued lines joined."""
    found, current = [], ""
    for line in block.splitlines():
        current += line + "\n"
        if not line.endswith("\\") and current.strip():
            found.append(current)
            current = ""
    assert not current.strip(), f"unfinished command in README block: {block}"
    return found


class ReadmeRun:
    """The README's commands of one section, each with what it printed. Blocks that
    start a server (`make dev`, the scripted Messages API) are left out: the test's own
    server stands in for them."""

    def __init__(self, base_url: str, heading: str = SECTION) -> None:
        self.base_url = base_url
        self.blocks = [
            block
            for block in fenced(api_section(heading), "sh")
            if "make dev" not in block and "devtools.scripted_anthropic" not in block
        ]
        self.commands = [command for block in self.blocks for command in commands(block)]
        script = "".join(
            command.replace(README_URL, base_url) + f"printf '\\n{MARK}\\n'\n"
            for command in self.commands
        )
        self.completed = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=180,
        )
        chunks = self.completed.stdout.split(f"\n{MARK}\n")
        self.outputs = dict(zip(self.commands, chunks, strict=False))

    def output_of(self, *fragments: str) -> str:
        """What the one command containing every fragment printed."""
        matching = [c for c in self.commands if all(f in c for f in fragments)]
        assert len(matching) == 1, f"expected one README command with {fragments}: {matching}"
        return self.outputs[matching[0]]

    def json_of(self, *fragments: str):
        return json.loads(self.output_of(*fragments))


@pytest.fixture(scope="module")
def readme(api_server, emulator) -> Iterator[ReadmeRun]:
    emulator.clear(PROJECT)  # what the `firestore` fixture does, once for this module
    run = ReadmeRun(api_server.url)
    yield run
    emulator.clear(PROJECT)


def readme_task_example() -> dict:
    """The README's finished task; its `…` elisions outside strings dropped."""
    (example,) = fenced(api_section(), "json")
    return json.loads(re.sub(r",\s*…\s*}", "}", example))


def test_readme_has_the_examples_this_test_checks(readme):
    assert len(readme.blocks) >= 4
    assert any("?wait=30" in c for c in readme.commands)
    assert all(README_URL in c for c in readme.commands if "curl" in c)


def test_readme_script_exits_0(readme):
    assert readme.completed.returncode == 0, readme.completed.stderr
    assert len(readme.outputs) == len(readme.commands)


def test_waiting_on_the_reversing_program_returns_it_completed_with_olleh(readme):
    task = readme.json_of("?wait=30")
    assert task["status"] == "completed", task
    assert task["result"]["exitCode"] == 0
    assert task["result"]["stdout"] == "olleh\n"


def test_bash_example_with_a_file_prints_its_line_count(readme, api_server):
    submitted = readme.json_of('"language": "bash"')
    assert submitted["status"] == "queued"
    assert submitted["input"]["timeoutSeconds"] == 10
    assert submitted["input"]["memoryMb"] == 256
    reply = httpx.get(
        f"{api_server.url}/api/tasks/{submitted['id']}",
        params={"wait": 30},
        headers={"X-User-Id": "alice"},
        timeout=60,
    )
    task = reply.json()
    assert task["status"] == "completed", task
    assert task["result"]["stdout"] == "2 data.txt\n"


def test_events_example_returns_the_status_changes(readme):
    body = readme.json_of("/events?after=0")
    statuses = [e["data"]["status"] for e in body["events"] if e["type"] == "status"]
    assert statuses == ["queued", "dispatched", "running", "completed"]
    assert body["next"] == body["events"][-1]["seq"]


def test_sse_example_streams_events_with_ids_until_the_task_ended(readme):
    stream = readme.output_of("text/event-stream")
    ids = [int(line[len("id:") :]) for line in stream.splitlines() if line.startswith("id:")]
    assert ids and ids == sorted(ids)
    assert "event: status" in stream
    assert '"status": "completed"' in stream


def test_list_example_returns_the_completed_task(readme):
    task_id = readme.json_of("?wait=30")["id"]
    body = readme.json_of("/api/tasks?limit=")
    assert set(body) == {"tasks", "nextPageToken"}
    assert task_id in [t["id"] for t in body["tasks"]]
    assert {t["status"] for t in body["tasks"]} == {"completed"}


def test_cancel_example_returns_the_task_and_a_finished_task_stays_completed(readme):
    task_id = readme.json_of("?wait=30")["id"]
    task = readme.json_of("/cancel")
    assert task["id"] == task_id
    assert task["status"] == "completed"


def test_health_example_prints_exactly_what_the_readme_says(readme, api_server):
    examples = re.findall(r"`(curl [^`]*/health)`\s*→\s*`([^`]+)`", api_section())
    assert examples, "the README shows a health call and its answer"
    for command, expected in examples:
        completed = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", command.replace(README_URL, api_server.url)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert completed.returncode == 0, completed.stderr
        assert completed.stdout.rstrip("\n") == expected
        assert json.loads(expected) == {"status": "ok", "service": "api-server"}


def test_readme_task_example_has_the_keys_of_a_real_finished_task(readme):
    example, real = readme_task_example(), readme.json_of("?wait=30")
    assert set(example) <= set(real)  # the README elides the rest with "…"
    assert set(example["result"]) == set(real["result"])
    assert set(example["execution"]) == set(real["execution"])


def test_readme_task_example_shows_what_the_reversing_program_really_returns(readme):
    example, real = readme_task_example(), readme.json_of("?wait=30")
    for key in ("kind", "status", "error"):
        assert example[key] == real[key], key
    del example["result"]["durationMs"], real["result"]["durationMs"]
    assert example["result"] == real["result"]
    for key in ("backend", "attempt", "logUri"):
        assert example["execution"][key] == real["execution"][key], key


def test_the_commands_make_dev_prints_work_as_printed(api_server, firestore):
    from devtools.dev import example_commands

    printed = example_commands(str(api_server.port))
    script = "\n".join(
        line for line in printed.splitlines() if line.startswith("  ")
    )  # the indented lines are the commands
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    task = json.loads(done.stdout)
    assert task["status"] == "completed"
    assert task["result"]["stdout"] == "42\n"


def test_usage_example_counts_the_readmes_five_tasks(readme):
    usage = readme.json_of("/api/usage")
    assert usage["tasksToday"] == {"used": 5, "limit": 2000}
    assert usage["unsettledTasks"]["limit"] == 500
    assert usage["activeTasks"]["limit"] == 20
    assert usage["llmTokensToday"] == {"used": 0, "limit": 2000000}
    assert usage["resetsAt"].endswith("T00:00:00Z")


def test_readme_files_example_uploads_runs_and_downloads(readme):
    task = readme.json_of("$CHART?wait=60")
    assert task["status"] == "completed", task
    assert task["result"]["stdout"] == "hi 300000\n"
    files = {f["path"]: f for f in task["result"]["files"]}
    assert sorted(files) == ["chart.png", "data.bin", "note.txt"]  # inputs stay in /workspace
    assert (files["chart.png"]["size"], files["chart.png"]["contentType"]) == (1000, "image/png")
    listing = readme.json_of('$CHART/files"')
    assert [f["path"] for f in listing["files"]] == ["chart.png", "data.bin", "note.txt"]
    assert readme.output_of("Range: bytes=0-7").strip() != ""


def test_upload_in_parts_example_ends_complete_with_the_files_sha256(readme):
    replies = [json.loads(line) for line in readme.output_of("parts/$i").splitlines() if line]
    assert [r["status"] for r in replies] == ["pending", "pending", "complete"]
    assert replies[0]["missing"] == [1, 2]
    (digest, _name) = readme.output_of("sha256sum big.bin").split()
    assert (replies[-1]["sha256"], replies[-1]["size"]) == (digest, 20_000_000)


QUICK_START = "## Quick start: the SDK and the CLI"


@pytest.fixture(scope="module")
def quick_start(api_server, emulator, tmp_path_factory):
    """The quick start's shell block in a fresh virtual environment (its `pip install
    ./sdk` from the repository root), then its Python block with that environment's
    Python: (shell run, python run)."""
    emulator.clear(PROJECT)
    home = tmp_path_factory.mktemp("quick-start")
    subprocess.run(["python3", "-m", "venv", str(home / "venv")], check=True, timeout=120)
    env = {
        "PATH": f"{home / 'venv' / 'bin'}:/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
    }
    section = api_section(QUICK_START)
    (shell,) = fenced(section, "sh")
    shell_run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", shell.replace(README_URL, api_server.url)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )  # fmt: skip
    (program,) = fenced(section, "python")
    python_run = subprocess.run(
        [str(home / "venv" / "bin" / "python"), "-c", program.replace(README_URL, api_server.url)],
        capture_output=True, text=True, timeout=180, cwd=home, env=env,
    )  # fmt: skip
    yield shell_run, python_run
    emulator.clear(PROJECT)


def test_quick_start_installs_the_sdk_and_runs_print_6_times_7(quick_start):
    shell, _ = quick_start
    assert shell.returncode == 0, shell.stderr
    assert "Signed in to" in shell.stdout
    assert "\n42\n" in shell.stdout
    header = next(line for line in shell.stdout.splitlines() if line.startswith("ID "))
    assert header.split()[:3] == ["ID", "KIND", "STATUS"]


def test_quick_start_python_prints_what_its_comments_say(quick_start):
    _, python = quick_start
    assert python.returncode == 0, python.stderr
    assert python.stdout.splitlines() == [
        "completed 0 olleh",
        "0",
        "1",
        "2",
        "2 data.txt",
        "404 not_found",
    ]


AGENTS = "## Agents and conversations"
TWO_TO_THE_100 = str(2**100)


@pytest.fixture(scope="module")
def agents_readme(agent_server, anthropic_api, emulator):
    """The agents section's commands against a server whose Claude is the scripted
    Messages API, answering as a model would: the real Claude Code runs its Bash call."""
    emulator.clear(PROJECT)
    anthropic_api.add(
        reply("Computing.", tool_use("Bash", command="python3 -c 'print(2**100)' > notes.txt")),
        reply(f"2**100 = {TWO_TO_THE_100}; it is in notes.txt."),
    )
    run = ReadmeRun(agent_server.url, AGENTS)
    yield run
    emulator.clear(PROJECT)


def test_agents_section_script_exits_0(agents_readme):
    assert agents_readme.completed.returncode == 0, agents_readme.completed.stderr
    assert len(agents_readme.outputs) == len(agents_readme.commands)


def test_the_agents_turn_completes_and_its_reply_is_in_the_conversation(agents_readme):
    turn = agents_readme.json_of("$TURN?wait=60")
    assert turn["status"] == "completed", turn
    conversation = agents_readme.json_of('"http://127.0.0.1:8080/api/conversations/$CONVERSATION"')
    assert conversation["title"] == "numbers"
    assert [m["role"] for m in conversation["messages"]] == ["user", "assistant"]
    assert TWO_TO_THE_100 in conversation["messages"][1]["content"]


def test_the_conversation_files_examples_list_and_fetch_notes_txt(agents_readme):
    listing = agents_readme.json_of('/files"')
    assert [f["path"] for f in listing["files"]] == ["notes.txt"]
    assert agents_readme.output_of("/files/notes.txt").strip() == TWO_TO_THE_100


def test_the_scripted_messages_api_starts_as_the_readme_says(tmp_path):
    (block,) = [b for b in fenced(api_section(AGENTS), "sh") if "scripted_anthropic" in b]
    line = next(line for line in block.splitlines() if "scripted_anthropic" in line)
    command = line.removesuffix("&").strip().replace("8091", str(free_port()))
    assert command.startswith(".venv/bin/python -m devtools.scripted_anthropic --port ")
    started = subprocess.Popen(command.split(), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert started.stdout is not None
        assert "Scripted Messages API at http://127.0.0.1:" in started.stdout.readline()
    finally:
        started.terminate()
        started.wait(timeout=30)


def test_a_self_service_key_works_and_is_listed_without_its_secret(readme):
    assert readme.json_of('/api/agents -H "Authorization') == {"agents": []}
    keys = readme.json_of('/api/keys -H "Authorization')["keys"]
    assert [k["name"] for k in keys] == ["laptop"]
    assert "key" not in keys[0] and keys[0]["lastUsedAt"] is not None


def test_a_revoked_key_is_refused(readme):
    assert readme.output_of("-X DELETE").strip() == "204"
    refused = readme.json_of('/api/conversations -H "Authorization')
    assert refused["error"]["code"] == "unauthenticated"


def test_cancelling_a_finished_task_says_it_had_already_ended(readme):
    task = readme.json_of("/cancel")
    assert task["status"] == "completed" and task["alreadyEnded"] is True
