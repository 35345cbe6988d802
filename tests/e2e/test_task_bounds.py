"""Per-task bounds and a clean host, end to end (real server, local executor, runner
and bubblewrap; issue 9, items 3 and 4): a task's memory is bounded however many
processes it forks, its files however many it writes, and whatever of it was on the
host is gone once its runner is, even when the runner is killed."""

from __future__ import annotations

import glob
import os
import signal
import stat

import httpx
import pytest

from tests.conftest import ApiServer, Caller, processes_mentioning, wait_for

MARKER = "bounds-marker.txt"
SLEEPER = "import time\nprint('up', flush=True)\ntime.sleep(120)"
DISK_MB = 256


@pytest.fixture(scope="module")
def server(emulator, tmp_path_factory):
    server = ApiServer(
        emulator, tmp_path_factory.mktemp("bounds") / "api.log", TASK_DISK_MB=str(DISK_MB)
    ).start()
    yield server
    server.stop()


@pytest.fixture
def alice(server, firestore):
    caller = Caller(server.url, "alice")
    yield caller
    caller.http.close()


def test_six_children_of_400_mib_under_512_mib_end_memory_exceeded(alice, server):
    code = """
import os, time
children = []
for _ in range(6):
    pid = os.fork()
    if pid == 0:
        block = bytearray(400 * 1024 * 1024)  # zero-filled: every page is touched
        time.sleep(5)
        os._exit(0)
    children.append(pid)
codes = [os.waitpid(pid, 0)[1] for pid in children]
print("all children held 400 MiB:", codes)
"""
    task = alice.run(code=code, memoryMb=512, timeoutSeconds=60)
    assert task["status"] == "failed", task
    assert task["error"]["code"] == "memory_exceeded"
    assert "512 MiB" in task["error"]["message"]
    assert task["result"]["exitCode"] == 137
    assert "all children held" not in task["result"]["stdout"]
    assert httpx.get(f"{server.url}/health", timeout=5).json()["status"] == "ok"


def test_files_beyond_the_task_disk_get_enospc_inside(alice, server):
    code = """
import errno
written = 0
for i in range(30):
    where = ["/workspace", "/tmp", "/dev/shm"][i % 3]
    try:
        with open(f"{where}/f{i}", "wb") as f:
            for _ in range(60):
                f.write(b"x" * 1024 * 1024)
                written += 1
    except OSError as e:
        print("stopped:", errno.errorcode[e.errno], "after", written, "MiB")
        break
else:
    print("wrote all", written, "MiB")
"""
    task = alice.run(code=code, memoryMb=1024, timeoutSeconds=60)
    assert task["status"] == "completed", task
    stdout = task["result"]["stdout"]
    assert stdout.startswith("stopped: ENOSPC after "), stdout
    assert int(stdout.split()[3]) <= DISK_MB  # the three mounts share one bound
    assert alice.run(code="print(1)")["result"]["stdout"] == "1\n"


def _task_dir(runner: int) -> tuple[str, str]:
    """(the task directory as the runner sees it, the top host directory holding it),
    found by the task's input file: through /proc/<pid>/root, as the task's tmpfs is
    in the runner's own mount namespace."""
    view = f"/proc/{runner}/root"
    for pattern in ("/tmp/*/workspace*/" + MARKER, "/tmp/*/*/workspace*/" + MARKER):
        for found in glob.glob(view + pattern):
            workspace = os.path.dirname(found)
            top = "/".join(found[len(view) :].split("/")[:3])  # /tmp/<first>
            return os.path.dirname(workspace), top
    raise AssertionError(f"no task directory of runner {runner}")


def _start(alice, code: str = SLEEPER) -> tuple[dict, int, str, str]:
    task = alice.submit(code=code, files={MARKER: "secret"}, timeoutSeconds=120)
    wait_for(
        lambda: any(
            e["type"] == "stdout"
            for e in alice.http.get(f"/api/tasks/{task['id']}/events").json()["events"]
        ),
        30,
        message="the program's first output",
    )
    (runner,) = processes_mentioning(task["id"])
    task_dir, top = _task_dir(runner)
    return task, runner, task_dir, top


def _nothing_left(task_id: str, top: str) -> None:
    wait_for(lambda: not os.path.exists(top), 15, message=f"{top} to be removed")
    wait_for(lambda: not processes_mentioning(task_id), 15, message="the runner to be gone")
    leftovers = [
        found
        for hierarchy in ("memory", "pids", "unified")
        for found in glob.glob(f"/sys/fs/cgroup/{hierarchy}/**/task-{task_id}-*", recursive=True)
    ]
    assert leftovers == []


def test_task_directories_are_private(alice):
    task, runner, task_dir, _ = _start(alice)
    workspace = glob.glob(f"{task_dir}/workspace*")[0]
    for path in (task_dir, workspace):
        info = os.stat(path)
        assert stat.S_IMODE(info.st_mode) == 0o700, path
        assert info.st_uid != 0 or os.geteuid() != 0  # the sandbox's uid owns it
    info = os.stat(f"{workspace}/{MARKER}")
    assert stat.S_IMODE(info.st_mode) == 0o600
    alice.http.post(f"/api/tasks/{task['id']}/cancel")


def test_a_runner_killed_with_sigkill_leaves_nothing_on_the_host(alice):
    task, runner, _, top = _start(alice)
    os.killpg(runner, signal.SIGKILL)  # no finally of the runner's runs
    done = alice.wait(task["id"], 30)
    assert (done["status"], done["error"]["code"]) == ("failed", "runner_lost")
    _nothing_left(task["id"], top)


def test_a_cancelled_task_leaves_nothing_on_the_host(alice):
    task, _, _, top = _start(alice)
    assert alice.http.post(f"/api/tasks/{task['id']}/cancel").json()["status"] == "cancelled"
    _nothing_left(task["id"], top)


def test_a_completed_task_leaves_nothing_on_the_host(alice):
    task, _, _, top = _start(alice, "import time\nprint('up', flush=True)\ntime.sleep(2)")
    assert alice.wait(task["id"])["status"] == "completed"
    _nothing_left(task["id"], top)
