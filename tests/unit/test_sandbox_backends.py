"""Every sandbox backend gives the same guarantees (issue 18): a real program in real
bwrap / runsc, as root (as the runner runs in its container) on this machine."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from job_runner.sandbox import Limits, make_sandbox
from job_runner.sandboxes.choice import CHOICE_FILE, ORDER, backend, probe
from job_runner.workspace import prepare_workspace

RUNNER = Path(__file__).resolve().parents[2] / "job-runner"
BACKENDS = list(ORDER)
BWRAP_BACKENDS = ["bwrap", "bwrap-root"]
LOOK_AROUND = r"""
import json, os, socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    network = "open"
except OSError as error:
    network = "closed"
status = open("/proc/self/status").read()
caps = [line.split()[1] for line in status.splitlines() if line.startswith("CapEff")]
try:
    open("/usr/evil", "w")
    system = "writable"
except OSError:
    system = "read-only"
open("/workspace/made-here", "w").write("x")
print(json.dumps({"uid": os.getuid(), "gid": os.getgid(), "env": sorted(os.environ),
                  "network": network, "capabilities": caps[0], "system": system,
                  "host_files": sorted(os.listdir("/")), "tmp": os.listdir("/tmp")}))
"""


@pytest.fixture
def root():
    path = Path(tempfile.mkdtemp(prefix="backends-test-"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def workspace(root):
    return Path(prepare_workspace(root)[0])


def run(name, workspace, code, **limits):
    limits.setdefault("wall_seconds", 30)
    return backend(name).run(
        ["python3", "-I", "-c", textwrap.dedent(code)], Limits(**limits), workspace=workspace
    )


def test_the_machine_runs_every_backend_as_root():
    assert os.geteuid() == 0, "the runner runs as root in its container: run the tests as root"
    assert shutil.which("runsc"), "run `make system-deps` (installs Debian's runsc)"
    for name in BACKENDS:
        verdict = probe(backend(name))
        # Debian bookworm's runsc refuses statx(AT_NO_AUTOMOUNT) (ls -l, stat): its
        # probe fails on that alone, and says so.
        assert verdict["ok"] or (name.startswith("gvisor") and verdict["failed"] == "statx")


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_isolates_the_program(name, workspace, monkeypatch):
    monkeypatch.setenv("TASK_TOKEN", "tok-must-not-leak")

    outcome = run(name, workspace, LOOK_AROUND)

    assert outcome.exit_code == 0, outcome.stderr
    seen = json.loads(outcome.stdout)
    if name == "gvisor-rootless":  # uid 0 of gVisor's user namespace: see gvisor.py
        assert seen["uid"] == 0
    else:
        assert seen["uid"] not in (0, os.geteuid()) and seen["gid"] != 0
    # bwrap sets PWD (/workspace) after its --chdir; nothing of the runner.
    assert set(seen["env"]) - {"PWD"} == {
        "HOME",
        "LANG",
        "MPLCONFIGDIR",
        "PATH",
        "PYTHONDONTWRITEBYTECODE",
        "TMPDIR",
    }
    assert seen["network"] == "closed"
    assert int(seen["capabilities"], 16) == 0
    assert seen["system"] == "read-only"
    assert "root" not in seen["host_files"] and "work" not in seen["host_files"]
    made = workspace / "made-here"
    assert made.read_text() == "x" and made.stat().st_uid == workspace.stat().st_uid != 0


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_kills_the_whole_tree_on_timeout(name, workspace):
    started = time.monotonic()
    outcome = run(
        name,
        workspace,
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(60)
        print("parent", flush=True)
        time.sleep(60)
        """,
        wall_seconds=3,
    )

    assert outcome.timed_out and outcome.exit_code is None
    assert outcome.stdout == b"parent\n"
    assert time.monotonic() - started < 15


@pytest.mark.parametrize("name", BACKENDS)
def test_without_a_cgroup_the_watchdog_bounds_the_trees_memory(name, workspace):
    # Four children of 100 MiB each, under 256 MiB together: RLIMIT_AS (off here, as
    # for Claude Code) would pass each one; the watchdog sums the tree.
    outcome = run(
        name,
        workspace,
        """
        import os, time
        for _ in range(4):
            if os.fork() == 0:
                block = bytearray(100 * 1024 * 1024)
                time.sleep(60)
        time.sleep(60)
        """,
        memory_mb=256,
        address_space_limit=False,
        max_processes=64,
    )

    assert outcome.memory_exceeded and not outcome.timed_out
    assert outcome.exit_code == 137


def test_without_a_task_tmpfs_the_watchdog_bounds_the_disk(workspace):
    outcome = run(
        "bwrap",
        workspace,
        """
        import time
        with open("/workspace/big", "wb") as out:
            for _ in range(40):
                out.write(b"x" * 1024 * 1024)
                out.flush()
        time.sleep(30)
        """,
        disk_mb=16,
    )

    assert outcome.disk_exceeded and outcome.exit_code == 137


SECCOMP_PROBE = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(number, *args):
    if libc.syscall(number, *args) == -1:
        return os.strerror(ctypes.get_errno())
    return "allowed"
params = ctypes.create_string_buffer(120)
print(json.dumps({
    "io_uring_setup": errno_of(425, 8, params),
    "add_key": errno_of(248, b"user", b"k", b"v", 1, -3),
    "keyctl": errno_of(250, 0, -3, 0),
    "ptrace": errno_of(101, 0x10, 1, 0, 0),
    "unshare_user": errno_of(272, 0x10000000),
    "bpf": errno_of(321, 0, 0, 0),
    "getpid": "allowed" if libc.syscall(39) > 0 else "refused",
}))
"""


@pytest.mark.parametrize("name", BWRAP_BACKENDS)
def test_the_seccomp_filter_refuses_risky_system_calls(name, workspace):
    outcome = run(name, workspace, SECCOMP_PROBE)

    assert outcome.exit_code == 0, outcome.stderr
    seen = json.loads(outcome.stdout)
    refused = "Operation not permitted"
    assert seen["io_uring_setup"] == refused and seen["add_key"] == refused
    assert seen["keyctl"] == refused and seen["ptrace"] == refused
    assert seen["unshare_user"] == refused and seen["bpf"] == refused
    assert seen["getpid"] == "allowed"


def test_make_sandbox_knows_every_backend_by_name():
    for name in [*BACKENDS, "none"]:
        assert make_sandbox(name).name == name
    # The strongest that works: gvisor with a runsc that passes the probe, else bwrap-root.
    strongest = "gvisor" if probe(backend("gvisor"))["ok"] else "bwrap-root"
    assert make_sandbox("auto").name == strongest
    with pytest.raises(ValueError, match="expected one of"):
        make_sandbox("docker")


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_lets_the_program_read_its_binds_and_the_system(name, root, workspace):
    # bwrap makes a bind's missing parents 0700 and root's: bwrap-root's program must
    # still pass through them (Claude Code's /engine, /etc).
    tool = root / "tool.py"
    tool.write_text("print('tool ran')\n")
    tool.chmod(0o644)

    outcome = backend(name).run(
        ["sh", "-c", "python3 /engine/deep/tool.py && head -c 4 /etc/ld.so.cache | wc -c"],
        Limits(wall_seconds=30),
        workspace=workspace,
        readonly_binds={"/engine/deep/tool.py": tool},
    )

    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.split() == [b"tool", b"ran", b"4"]


def choose_in_a_new_runner() -> tuple[str, str]:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from job_runner.sandbox import make_sandbox as m; print(m('auto').name)",
        ],
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(RUNNER)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip(), done.stderr


def test_auto_remembers_its_choice_for_the_next_runner_in_the_same_conditions():
    Path(CHOICE_FILE).unlink(missing_ok=True)

    first, first_log = choose_in_a_new_runner()
    second, second_log = choose_in_a_new_runner()

    assert first == second and first in BACKENDS
    assert "as probed before" not in first_log and "as probed before" in second_log
    assert stat.S_IMODE(os.stat(CHOICE_FILE).st_mode) == 0o600
    # A file that names anything but a backend (say, "none") is not taken.
    kept = json.loads(Path(CHOICE_FILE).read_text())
    Path(CHOICE_FILE).write_text(json.dumps({**kept, "sandbox": "none"}))
    third, third_log = choose_in_a_new_runner()
    assert third == first and "as probed before" not in third_log


@pytest.mark.parametrize("name", BACKENDS)
def test_each_backend_passes_stdin_in_and_the_exit_code_out(name, workspace):
    outcome = backend(name).run(
        ["python3", "-c", "import sys; print(sys.stdin.read().upper()); sys.exit(3)"],
        Limits(wall_seconds=30),
        workspace=workspace,
        stdin=b"hello",
    )

    assert (outcome.exit_code, outcome.stdout) == (3, b"HELLO\n")
