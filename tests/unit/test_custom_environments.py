"""Custom environments in the runner (job_runner/environments.py), against real
bubblewrap and the default environment's root: a build from a loopback package index
(a PEP 503 "simple" index serving a wheel made here), its archive restored read-only
into a task's sandbox, once."""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import shutil
import tempfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from job_runner.environments import build_environment, restore_environment
from job_runner.sandbox import BubblewrapSandbox, Limits
from job_runner.workspace import prepare_workspace

MIB = 1024 * 1024
# The runner's own build goes through the task's egress proxy (tests/e2e); here the
# sandbox shares the host's network to reach the loopback index.
BUILD = Limits(wall_seconds=120, memory_mb=1024, network=True)


def make_wheel(into: Path, name: str, version: str) -> Path:
    """A pure-Python wheel with a module and a console script."""
    wheel = into / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VALUE = 42\ndef main():\n    print('{name} ran')\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{info}/entry_points.txt": f"[console_scripts]\n{name} = {name}:main\n",
    }
    record = []
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest())
            record.append(f"{path},sha256={digest.rstrip(b'=').decode()},{len(text)}")
            archive.writestr(path, text)
        archive.writestr(f"{info}/RECORD", "\n".join([*record, f"{info}/RECORD,,"]) + "\n")
    return wheel


@pytest.fixture(scope="module")
def package_index():
    """A loopback simple index with one package, tinypkg 1.0."""
    root = Path(tempfile.mkdtemp(prefix="package-index-"))
    wheel = make_wheel(root, "tinypkg", "1.0")
    (root / "simple" / "tinypkg").mkdir(parents=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (root / "simple" / "tinypkg" / "index.html").write_text(
        f'<a href="../../{wheel.name}#sha256={digest}">{wheel.name}</a>'
    )
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple/"
    server.shutdown()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def place():
    path = Path(tempfile.mkdtemp(prefix="environment-test-"))
    path.chmod(0o711)  # the sandbox's uid must reach the workspace
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_custom_environment_builds_and_a_task_imports_it_read_only(
    task_root, package_index, place
):
    sandbox = BubblewrapSandbox(task_root=str(task_root))
    workspace = prepare_workspace(place / "build")[0]
    built = build_environment(
        sandbox,
        workspace,
        ["tinypkg==1.0"],
        package_index,
        str(place / "env.tar"),
        BUILD,
        max_bytes=MIB * 100,
    )
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
    workspace = prepare_workspace(place / "build")[0]
    built = build_environment(
        sandbox,
        workspace,
        ["nosuchpkg==1.0"],
        package_index,
        str(place / "env.tar"),
        BUILD,
        max_bytes=MIB * 100,
    )
    assert not built.ok and built.archive is None
    assert "No matching distribution found for nosuchpkg==1.0" in built.message
    assert not (place / "env.tar").exists()
