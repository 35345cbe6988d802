"""The `agentplatform` command-line tool end to end: the installed console script
against a real API server process, with real runners and sandbox."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "agentplatform")


@pytest.fixture
def cli(api_server, firestore, tmp_path):
    """Runs the tool as alice, with its config directory in tmp_path."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AGENTPLATFORM_")},
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        if not (tmp_path / "config" / "agentplatform" / "config.json").exists():
            done = subprocess.run(
                [CLI, "--url", api_server.url, "--user", "alice", "login"],
                env=env, capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        return subprocess.run(
            [CLI, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120,
            cwd=tmp_path, check=False,
        )  # fmt: skip

    return run


def test_login_stores_the_url_and_user_readable_by_the_owner_only(cli, tmp_path, api_server):
    cli("usage")
    stored = tmp_path / "config" / "agentplatform" / "config.json"
    assert json.loads(stored.read_text()) == {"url": api_server.url, "user": "alice"}
    assert stored.stat().st_mode & 0o777 == 0o600


def test_run_c_prints_the_output_and_exits_with_the_programs_code(cli):
    done = cli("run", "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert done.stdout == "out\n"
    assert "err\n" in done.stderr
    assert done.returncode == 3


def test_run_file_takes_the_language_from_its_extension(cli, tmp_path):
    (tmp_path / "hello.sh").write_text("echo from bash $BASH_VERSION | cut -c1-9\n")
    done = cli("run", "hello.sh")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "from bash\n"


def test_run_passes_local_files_and_stdin(cli, tmp_path):
    (tmp_path / "data.txt").write_text("abc")
    done = cli("run", "-c", "print(open('data.txt').read(), input())", "-f", "data.txt",
               "--stdin", "-", stdin="typed\n")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "abc typed\n"


def test_a_task_that_times_out_exits_124(cli):
    done = cli("run", "--timeout", "1", "-c", "import time; time.sleep(30)")
    assert done.returncode == 124
    assert "timed_out" in done.stderr


def test_tasks_list_get_and_files_get(cli, tmp_path):
    program = "open('report.txt', 'w').write('hello report')\nimport sys; sys.exit(1)"
    done = cli("run", "-c", program)
    assert done.returncode == 1
    listed = cli("tasks", "list")
    assert listed.returncode == 0
    header, row = listed.stdout.splitlines()[:2]
    assert header.split()[:4] == ["ID", "KIND", "STATUS", "TOOK"]
    task_id = row.split()[0]
    assert "exit 1" in row and "open('report.txt'" in row  # what ran, and how it ended
    shown = cli("--json", "tasks", "get", task_id)
    assert json.loads(shown.stdout)["result"]["exitCode"] == 1
    fetched = cli("files", "get", task_id, "report.txt", "-o", "got.txt")
    assert fetched.returncode == 0, fetched.stderr
    assert (tmp_path / "got.txt").read_text() == "hello report"
    assert cli("files", "get", task_id, "report.txt", "-o", "-").stdout == "hello report"


def test_an_api_error_is_printed_with_its_code_not_a_traceback(cli):
    done = cli("tasks", "get", "no-such-task")
    assert done.returncode == 125
    assert done.stderr.strip() == "error: not_found: No such task."


def test_tasks_follow_and_cancel(cli):
    started = cli("run", "--detach", "-c", "import time; time.sleep(60)")
    task_id = started.stdout.strip()
    cancelled = cli("tasks", "cancel", task_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert "cancelled" in cancelled.stdout
    assert cli("tasks", "follow", task_id).returncode == 130


def test_no_colours_when_the_output_is_not_a_terminal(cli):
    cli("run", "-c", "print(1)")
    assert "\033[" not in cli("tasks", "list").stdout


def test_keys_create_list_revoke_and_login_with_the_key(cli, tmp_path, api_server):
    made = cli("keys", "create", "laptop")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("ak_") and "Shown once" in made.stderr
    listed = cli("keys", "list")
    assert "laptop" in listed.stdout and key[:12] in listed.stdout and key not in listed.stdout
    key_id = listed.stdout.splitlines()[1].split()[0]
    relogin = cli("login", "--url", api_server.url, "--api-key", key)
    assert relogin.returncode == 0, relogin.stderr
    stored = json.loads((tmp_path / "config" / "agentplatform" / "config.json").read_text())
    assert stored == {"url": api_server.url, "api_key": key}  # a new login replaces the old
    assert cli("usage").returncode == 0
    assert cli("keys", "revoke", key_id).returncode == 0
    refused = cli("usage")
    assert refused.returncode == 125 and "unauthenticated" in refused.stderr
