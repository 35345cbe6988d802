"""Custom environments in the runner (job_runner/environments.py), against real
bubblewrap and the default environment's root: a build from a loopback package index
(devtools/package_index.py, serving a wheel made there), its archive restored read-only
into a task's sandbox, once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from job_runner.environments import build_environment, restore_environment
from job_runner.sandbox import BubblewrapSandbox, Limits
from job_runner.workspace import prepare_workspace

from devtools.package_index import PackageIndex

MIB = 1024 * 1024
# The runner's own build goes through the task's egress proxy (tests/e2e); here the
# sandbox shares the host's network to reach the loopback index.
BUILD = Limits(wall_seconds=120, memory_mb=1024, network=True)


@pytest.fixture(scope="module")
def package_index():
    """A loopback simple index with one package, tinypkg 1.0."""
    with PackageIndex() as index:
        index.add_wheel("tinypkg", "1.0")
        yield index.url


@pytest.fixture
def place():
    path = Path(tempfile.mkdtemp(prefix="environment-test-"))
    path.chmod(0o711)  # the sandbox's uid must reach the workspace
    yield path
    shutil.rmtree(path, ignore_errors=True)


def build(sandbox: BubblewrapSandbox, place: Path, index: str, requirement: str):
    """pip installs `requirement` from `index` in the sandbox, archived to env.tar."""
    workspace = prepare_workspace(place / "build")[0]
    archive = str(place / "env.tar")
    return build_environment(
        sandbox, workspace, [requirement], index, archive, BUILD, max_bytes=MIB * 100
    )


def test_a_custom_environment_builds_and_a_task_imports_it_read_only(
    task_root, package_index, place
):
    sandbox = BubblewrapSandbox(task_root=str(task_root))
    built = build(sandbox, place, package_index, "tinypkg==1.0")
    assert built.ok, built.message
    assert built.size_bytes == os.path.getsize(place / "env.tar") > 0
    assert "tinypkg" in built.message  # pip's own output

    restored = restore_environment(built.archive, "k1", str(place / "environments"))
    assert not restored.reused
    task = prepare_workspace(place / "task")[0]
    outcome = sandbox.run(
        [
            "bash",
            "-c",
            "python3 -c 'import tinypkg, numpy; print(tinypkg.VALUE)'; tinypkg;"
            " touch /env/x 2>/dev/null || echo read-only",
        ],
        Limits(wall_seconds=30),
        workspace=task,
        readonly_binds=restored.readonly_binds(),
        env=restored.env(),
    )
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.decode().split("\n")[:3] == ["42", "tinypkg ran", "read-only"]
    again = restore_environment(built.archive, "k1", str(place / "environments"))
    assert again.reused and again.path == restored.path  # unpacked once per runner


def test_a_build_of_a_missing_package_fails_with_pips_message_and_no_archive(
    task_root, package_index, place
):
    sandbox = BubblewrapSandbox(task_root=str(task_root))
    built = build(sandbox, place, package_index, "nosuchpkg==1.0")
    assert not built.ok and built.archive is None
    assert "No matching distribution found for nosuchpkg==1.0" in built.message
    assert not (place / "env.tar").exists()
