"""The sandbox with a task root (TASK_ROOT): the system a task sees is that root's,
read-only, never the host's. Real bubblewrap, a root built here from a few of the
host's files (the default environment's root is tests/e2e/test_default_environment.py's)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from job_runner.sandbox import BubblewrapSandbox, Limits, SandboxError
from job_runner.sandboxes.bwrap import system_binds
from job_runner.workspace import prepare_workspace


@pytest.fixture
def small_root():
    """A merged-/usr root of its own: bash and its libraries, its own /etc with a file
    only in it, none of the host's /etc."""
    path = Path(tempfile.mkdtemp(prefix="task-root-test-"))
    path.chmod(0o755)
    bash = shutil.which("bash")
    assert bash
    libraries = re.findall(
        r"(/\S+) \(0x", subprocess.run(["ldd", bash], capture_output=True, text=True).stdout
    )
    for name in ("bin", "lib", "lib64"):
        (path / "usr" / name).mkdir(parents=True, exist_ok=True)
        (path / name).symlink_to(f"usr/{name}")
    shutil.copy(bash, path / "usr" / "bin" / "bash")
    for library in libraries:
        inside = path / "usr" / library.removeprefix("/usr/").lstrip("/")
        inside.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(os.path.realpath(library), inside)
    (path / "etc").mkdir()
    (path / "etc" / "only-in-the-root").write_text("root's own\n")
    (path / "proc").mkdir()  # bwrap's own: never bound from the root
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_task_root_is_the_system_a_task_sees_and_it_is_read_only(small_root):
    workspace = prepare_workspace(tempfile.mkdtemp(prefix="sandbox-test-"))[0]
    os.chmod(os.path.dirname(workspace), 0o711)
    outcome = BubblewrapSandbox(task_root=str(small_root)).run(
        [
            "bash",
            "-c",
            'echo "$(< /etc/only-in-the-root)"; test -e /etc/passwd || echo no-host-etc;'
            " (: > /etc/x) 2>/dev/null || echo read-only; test -e /usr/bin/env || echo no-env",
        ],
        Limits(wall_seconds=10),
        workspace=workspace,
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.decode().split() == [
        "root's",
        "own",
        "no-host-etc",
        "read-only",
        "no-env",
    ]


def test_the_roots_own_proc_and_missing_system_are_refused_or_skipped(small_root):
    binds = system_binds(str(small_root))
    assert ["--ro-bind", str(small_root / "etc"), "/etc"] == binds[
        binds.index(str(small_root / "etc")) - 1 :
    ][:3]
    assert "/proc" not in binds  # bwrap mounts its own
    with pytest.raises(SandboxError, match="TASK_ROOT"):
        BubblewrapSandbox(task_root=str(small_root / "etc"))


def test_with_network_a_task_gets_the_machines_resolver_and_trust_store(task_root):
    """The machine's CA bundle (on Cloud Run, the image's) is what reaches the package
    index and the egress proxy; Debian's own bundle in the root may not (issue 23)."""
    workspace = prepare_workspace(tempfile.mkdtemp(prefix="sandbox-test-"))[0]
    os.chmod(os.path.dirname(workspace), 0o711)
    outcome = BubblewrapSandbox(task_root=str(task_root)).run(
        ["sha256sum", "/etc/ssl/certs/ca-certificates.crt", "/etc/resolv.conf"],
        Limits(wall_seconds=10, network=True),
        workspace=workspace,
    )
    assert outcome.exit_code == 0, outcome.stderr
    host = subprocess.run(
        ["sha256sum", "/etc/ssl/certs/ca-certificates.crt", "/etc/resolv.conf"],
        capture_output=True,
        check=True,
    )
    assert outcome.stdout == host.stdout
