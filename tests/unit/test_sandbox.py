"""The sandbox seam, against real bubblewrap: what a program inside can and cannot do."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from job_runner.outputs import collect_outputs
from job_runner.sandbox import (
    BubblewrapSandbox,
    Limits,
    SandboxError,
    UnsandboxedRunner,
    make_sandbox,
)
from job_runner.workspace import prepare_workspace, write_input_files

from tests.conftest import output_limits, wait_for

SECRETS = {
    "TASK_TOKEN": "tok-9f2c4e-do-not-leak",
    "API_URL": "http://127.0.0.1:48123/secret-api",
    "ANTHROPIC_API_KEY": "sk-ant-leak-canary-7731",
}


@pytest.fixture
def root():
    # Not under tmp_path: pytest's base directory is 0700 root-only, and the sandbox
    # uid must be able to reach the workspace and the program's directory.
    path = Path(tempfile.mkdtemp(prefix="sandbox-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def workspace(root):
    return Path(prepare_workspace(root)[0])


@pytest.fixture
def run_python(root, workspace):
    """Runs a Python program in the sandbox, as /task/main.py, with the given limits."""

    def run(code, sandbox=None, wall_seconds=10.0, **kwargs):
        task = root / "task"
        task.mkdir(mode=0o755, exist_ok=True)
        (task / "main.py").write_text(textwrap.dedent(code))
        (task / "main.py").chmod(0o644)
        limit_args = {k: kwargs.pop(k) for k in list(kwargs) if hasattr(Limits, k)}
        return (sandbox or BubblewrapSandbox()).run(
            ["python3", "/task/main.py"],
            Limits(wall_seconds=wall_seconds, **limit_args),
            workspace=workspace,
            readonly_binds={"/task": task},
            **kwargs,
        )

    return run


def sandbox_uids(processes: dict[int, int]) -> set[int]:
    """The uids among `processes` other than ours (the session's Firestore emulator,
    also our child, runs as us)."""
    return set(processes.values()) - {os.getuid()}


def child_processes() -> dict[int, int]:
    """pid -> real uid of every descendant of this test process."""
    parents, uids = {}, {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
        parents[int(pid)] = int(fields["PPid"])
        uids[int(pid)] = int(fields["Uid"].split()[0])
    ours, grew = {os.getpid()}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in ours} - ours
        ours |= more
        grew = bool(more)
    return {pid: uids[pid] for pid in ours - {os.getpid()}}


def live_processes_of(uid: int) -> list[str]:
    """Pids running as uid; zombies left for init to reap do not count."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if os.stat(f"/proc/{pid}").st_uid == uid and state != "Z":
                found.append(pid)
        except OSError:
            continue
    return found


def test_exit_code_is_reported(run_python):
    outcome = run_python("import sys; print('bye'); sys.exit(3)")

    assert outcome.exit_code == 3
    assert outcome.stdout == b"bye\n"
    assert not outcome.timed_out and not outcome.cancelled


def test_stdin_reaches_the_program(run_python):
    outcome = run_python("print(input()[::-1])", stdin=b"olleh\n")

    assert outcome.exit_code == 0
    assert outcome.stdout == b"hello\n"


def test_endless_loop_times_out_with_partial_output_kept(run_python):
    outcome = run_python(
        """
        print("started", flush=True)
        while True:
            pass
        """,
        wall_seconds=1,
    )

    assert outcome.timed_out and not outcome.cancelled
    assert outcome.exit_code is None
    assert outcome.stdout == b"started\n"
    assert 1000 <= outcome.duration_ms < 3000


def test_timeout_kills_processes_that_left_the_session(run_python):
    seen = {}

    def note_uid(stream, chunk):
        seen.update(child_processes())

    outcome = run_python(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            while True:
                time.sleep(1)
        print("forked", flush=True)
        time.sleep(60)
        """,
        wall_seconds=1,
        on_output=note_uid,
    )

    assert outcome.timed_out
    (uid,) = sandbox_uids(seen)
    assert uid != 0
    wait_for(lambda: not live_processes_of(uid), 5, 0.01, "the sandbox's processes to end")


def test_fork_bomb_is_contained_and_the_host_stays_healthy(run_python):
    outcome = run_python(
        """
        import os, time
        forked = 0
        while True:
            try:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
            except OSError as error:
                print(forked, type(error).__name__)
                break
            forked += 1
        """,
        max_processes=16,
    )

    forked, error = outcome.stdout.split()
    assert int(forked) < 16
    assert error == b"BlockingIOError"
    assert outcome.exit_code == 0 and outcome.duration_ms < 5000  # children died with it
    assert subprocess.run(["true"]).returncode == 0
    assert run_python("print('fine')").stdout == b"fine\n"


def test_memory_bomb_fails_inside_and_the_host_stays_healthy(run_python):
    outcome = run_python("hog = bytearray(2 * 1024**3)", memory_mb=256)

    assert outcome.exit_code == 1
    assert b"MemoryError" in outcome.stderr
    assert run_python("print('fine')").stdout == b"fine\n"


def test_stdout_is_capped_and_marked_truncated(run_python):
    reported = []
    outcome = run_python(
        "import sys; sys.stdout.write('x' * 10_000_000)",
        on_output=lambda stream, chunk: reported.append(chunk),
    )

    assert outcome.exit_code == 0
    assert len(outcome.stdout) == 131072
    assert outcome.stdout_truncated and not outcome.stderr_truncated
    assert b"".join(reported) == outcome.stdout


def test_network_is_unreachable_including_the_hosts_loopback(run_python):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        socket.create_connection(("127.0.0.1", port), timeout=2).close()  # the host can

        outcome = run_python(
            f"""
            import socket
            for address in [("1.1.1.1", 53), ("127.0.0.1", {port})]:
                try:
                    socket.create_connection(address, timeout=2).close()
                    print("connected", address)
                except OSError as error:
                    print("failed", address, error)
            """
        )

    assert outcome.stdout.count(b"failed") == 2, outcome.stdout
    assert b"connected" not in outcome.stdout


def test_network_true_shares_the_hosts_network(run_python):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        outcome = run_python(
            f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)",
            network=True,
        )

    assert outcome.exit_code == 0, outcome.stderr


def test_runner_secrets_are_invisible_to_env_and_proc(run_python, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)

    outcome = run_python(
        """
        import glob, subprocess, sys
        sys.stdout.buffer.write(subprocess.run(["env"], capture_output=True).stdout)
        for path in glob.glob("/proc/*/environ"):
            try:
                sys.stdout.buffer.write(open(path, "rb").read())
                print("read", path)
            except OSError:
                pass
        """
    )

    assert outcome.exit_code == 0
    assert b"read /proc/1/environ" in outcome.stdout
    for name, value in SECRETS.items():
        assert name.encode() not in outcome.stdout
        assert value.encode() not in outcome.stdout


def test_host_files_are_not_visible(run_python):
    outcome = run_python(
        """
        import os
        print([p for p in ["/etc/passwd", "/root", "/work", "/home"] if os.path.exists(p)])
        """
    )

    assert outcome.stdout == b"[]\n"


def test_system_is_read_only_outside_workspace_and_tmp(run_python):
    outcome = run_python(
        """
        for directory in ["/", "/usr", "/etc", "/dev", "/task", "/tmp", "/workspace"]:
            try:
                open(directory.rstrip("/") + "/probe", "w").close()
                print("writable", directory)
            except OSError:
                pass
        """
    )

    assert outcome.stdout == b"writable /tmp\nwritable /workspace\n"


def test_program_runs_as_an_unprivileged_uid_of_its_own(run_python, workspace):
    host = {}

    def look_from_the_host(stream, chunk):
        host.update(child_processes())
        (workspace / "seen").touch()

    outcome = run_python(
        """
        import os, time
        print(os.getuid(), os.getgid(), flush=True)
        while not os.path.exists("seen"):
            time.sleep(0.01)
        """,
        on_output=look_from_the_host,
    )

    inside_uid, inside_gid = outcome.stdout.split()
    assert int(inside_uid) != 0 and int(inside_gid) != 0
    (host_uid,) = sandbox_uids(host)
    assert host_uid not in (0, os.getuid())
    assert workspace.stat().st_uid == host_uid


def test_cancel_event_kills_a_running_program_quickly(run_python):
    cancel = threading.Event()
    cancelled_at = []

    def cancel_when_ready(stream, chunk):
        cancelled_at.append(time.monotonic())
        cancel.set()

    outcome = run_python(
        "import time; print('ready', flush=True); time.sleep(60)",
        on_output=cancel_when_ready,
        cancel=cancel,
    )

    assert outcome.cancelled and not outcome.timed_out
    assert outcome.exit_code is None
    assert outcome.stdout == b"ready\n"
    assert time.monotonic() - cancelled_at[0] < 1.0


def test_collecting_outputs_does_not_follow_symlinks(run_python, workspace):
    outcome = run_python(
        """
        import os
        os.symlink("/etc/passwd", "leak")
        os.symlink("/etc", "etc")
        os.mkdir("out")
        with open("out/result.txt", "w") as f:
            f.write("42")
        """
    )
    assert outcome.exit_code == 0

    files = collect_outputs(workspace, output_limits())["files"]

    assert [(f["path"], f.get("symlink", False), f.get("content"))
            for f in files] == [("etc", True, None), ("leak", True, None),
                                ("out/result.txt", False, "42")]  # fmt: skip
    assert files[1]["target"] == "/etc/passwd"


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../x", "", "a//b", "a\0b"])
def test_write_input_files_rejects_paths_outside_the_workspace(workspace, name):
    with pytest.raises(ValueError):
        write_input_files(workspace, {name: "x"}, None)


def test_write_input_files_refuses_to_write_through_a_symlink(workspace, root):
    target = root / "outside.txt"
    target.write_text("untouched")
    (workspace / "data.txt").symlink_to(target)
    (workspace / "sub").symlink_to(root)

    with pytest.raises(ValueError):
        write_input_files(workspace, {"data.txt": "overwritten"}, None)
    with pytest.raises(ValueError):
        write_input_files(workspace, {"sub/outside.txt": "overwritten"}, None)
    assert target.read_text() == "untouched"


def test_write_input_files_creates_parents_owned_by_the_sandbox_uid(root):
    path, uid = prepare_workspace(root)
    workspace = Path(path)

    write_input_files(workspace, {"data/in.csv": "a,b\n"}, uid)

    assert (workspace / "data/in.csv").read_text() == "a,b\n"
    assert (workspace / "data").stat().st_uid == uid
    assert (workspace / "data/in.csv").stat().st_uid == uid


def test_setup_failure_raises_sandbox_error(workspace, root):
    with pytest.raises(SandboxError, match="bwrap: Can't find source path"):
        BubblewrapSandbox().run(
            ["true"],
            Limits(wall_seconds=5),
            workspace=workspace,
            readonly_binds={"/task": root / "missing"},
        )


def test_program_imitating_bwrap_is_not_a_sandbox_error(run_python):
    outcome = run_python("import sys; sys.exit('bwrap: pretend failure')")

    assert outcome.exit_code == 1


def test_missing_bwrap_raises_sandbox_error_naming_the_fix(workspace):
    with pytest.raises(SandboxError, match="apt-get install bubblewrap.*SANDBOX=none"):
        BubblewrapSandbox(bwrap="/nonexistent/bwrap").run(
            ["true"], Limits(wall_seconds=5), workspace=workspace
        )


def test_unsandboxed_runner_runs_the_program_with_an_empty_env(run_python, monkeypatch):
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)

    outcome = run_python(
        "import os, sys; print(sorted(os.environ)); sys.exit(3)", sandbox=UnsandboxedRunner()
    )

    assert outcome.exit_code == 3
    assert outcome.stdout == (
        b"['HOME', 'LANG', 'MPLCONFIGDIR', 'PATH', 'PYTHONDONTWRITEBYTECODE', 'TMPDIR']\n"
    )


def test_make_sandbox_knows_bwrap_and_none_only():
    assert isinstance(make_sandbox("bwrap"), BubblewrapSandbox)
    assert isinstance(make_sandbox("none"), UnsandboxedRunner)
    with pytest.raises(ValueError):
        make_sandbox("docker")


def test_cpu_limit_kills_a_busy_program(run_python):
    outcome = run_python("while True: pass", cpu_seconds=1, wall_seconds=10)

    # Stopped by its CPU time, before its wall time (how long 1-2 CPU seconds take on
    # the wall depends on the machine's load: not asserted here).
    assert not outcome.timed_out
    assert outcome.exit_code in (128 + signal.SIGXCPU, 128 + signal.SIGKILL)  # as a shell says


def test_file_size_limit_stops_a_growing_file(run_python, workspace):
    outcome = run_python("open('big', 'wb').write(b'x' * 3 * 1024 * 1024)", max_file_mb=1)

    assert outcome.exit_code == 1
    assert b"File too large" in outcome.stderr
    assert (workspace / "big").stat().st_size <= 1024 * 1024
