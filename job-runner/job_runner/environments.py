"""Custom environments on top of the default one (issue 23, part 2): build one in the
sandbox, and restore its archive read-only into a task's sandbox.

A custom environment is a `pip install --target` directory: pure files, no absolute
paths baked in (a venv's scripts and pyvenv.cfg name where it was built), so it can be
built in one sandbox at /workspace/env and seen by tasks at ENV_MOUNT. Python finds it
through PYTHONPATH, ahead of the default environment's venv; its scripts are on PATH.

The build's only network should be the package index: until the egress proxy (issue
22) lands, the build shares the runner's network, which the caller must only allow
where the operator allows task network.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import time
from collections import namedtuple

from job_runner.sandbox import SANDBOX_ENV, Limits

TYPE_CHECKING = False
if TYPE_CHECKING:
    from job_runner.sandbox import Outcome, Sandbox

# Top level: the task root's own directories are read-only binds, without mount points.
ENV_MOUNT = "/env"
BUILD_DIR = "env"  # in the build's workspace
PIP_MESSAGE_CHARS = 4000
# pip inside the root trusts the bundle the sandbox binds in with the network (the
# machine's or the image's, which is what reaches the index; issue 23).
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class Built(namedtuple("Built", "ok archive size_bytes seconds message")):
    """A build's end: ok with the archive's path and size, or not with pip's message
    (the tail of its output) and no archive."""

    __slots__ = ()


class Restored(namedtuple("Restored", "path seconds reused")):
    """An environment unpacked for tasks: its directory (bound read-only at ENV_MOUNT),
    how long the unpacking took, and whether an earlier one was reused."""

    __slots__ = ()

    def readonly_binds(self) -> dict[str, str | os.PathLike]:
        return {ENV_MOUNT: self.path}

    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": ENV_MOUNT,
            "PATH": f"{ENV_MOUNT}/bin:{SANDBOX_ENV['PATH']}",
            "NODE_PATH": f"{ENV_MOUNT}/node_modules",
        }


def requirements_hash(python: list[str], npm: list[str], base: str) -> str:
    """What a build is keyed by: the default environment's manifest hash (base) and the
    requirements, order and duplicates aside. The same hash is never built twice."""
    text = "\n".join([base, *sorted(set(python)), "--npm--", *sorted(set(npm))])
    return hashlib.sha256(text.encode()).hexdigest()


def build_environment(
    sandbox: Sandbox,
    workspace: str,
    python: list[str],
    index_url: str,
    archive: str,
    *,
    wall_seconds: float = 600,
    memory_mb: int = 1024,
    on_output=None,
) -> Built:
    """pip installs `python` into the workspace's env/ in the sandbox, from index_url
    only, and archives it to `archive` (a .tar.gz the runner uploads)."""
    started = time.monotonic()
    requirements = os.path.join(workspace, "requirements.txt")
    with open(requirements, "w") as file:
        file.write("\n".join(python) + "\n")
    os.chmod(requirements, 0o644)
    command = ["python3", "-m", "pip", "install", "--no-cache-dir", "--no-input"]
    command += ["--disable-pip-version-check", "--no-warn-script-location", "--no-compile"]
    command += ["--index-url", index_url, "--target", f"/workspace/{BUILD_DIR}"]
    command += ["-r", "/workspace/requirements.txt"]
    limits = Limits(wall_seconds=wall_seconds, memory_mb=memory_mb, network=True)
    outcome: Outcome = sandbox.run(
        command, limits, workspace=workspace, on_output=on_output, env={"PIP_CERT": CA_BUNDLE}
    )
    seconds = time.monotonic() - started
    said = (outcome.stdout + outcome.stderr).decode("utf-8", "replace")
    if outcome.exit_code != 0:
        reason = "timed out" if outcome.timed_out else f"pip exited {outcome.exit_code}"
        return Built(False, None, 0, seconds, f"{reason}: {said[-PIP_MESSAGE_CHARS:]}")
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(os.path.join(workspace, BUILD_DIR), arcname=".")
    return Built(True, archive, os.path.getsize(archive), time.monotonic() - started, said)


def restore_environment(archive: str, key: str, cache_dir: str) -> Restored:
    """Unpacks the archive once per runner into cache_dir/key, readable by the sandbox's
    uid and by nobody's writes: every later task of this runner (a build's tasks, an
    agent's sub-processes) reuses it."""
    target = os.path.join(cache_dir, key)
    if os.path.isdir(target):
        return Restored(target, 0.0, True)
    started = time.monotonic()
    partial = f"{target}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial, mode=0o755)
    with tarfile.open(archive, "r:*") as tar:
        # "data": no absolute paths, no links out, no device files, no setuid bits.
        tar.extractall(partial, filter="data")
    for directory, _dirs, files in os.walk(partial):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            if not os.path.islink(path):
                os.chmod(path, 0o755 if os.stat(path).st_mode & 0o100 else 0o644)
    os.rename(partial, target)
    return Restored(target, time.monotonic() - started, False)
