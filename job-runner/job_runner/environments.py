"""Custom environments on top of the default one (DESIGN section 17): build one in the
sandbox, and restore its archive read-only into a task's sandbox.

A custom environment is a `pip install --target` directory: pure files, no absolute
paths baked in (a venv's scripts and pyvenv.cfg name where it was built), so it can be
built in one sandbox at /workspace/env and seen by tasks at ENV_MOUNT. Python finds it
through PYTHONPATH, ahead of the default environment's venv; its scripts are on PATH.
npm packages go to node_modules/ beside it (`npm install --prefix`): Node finds them
through NODE_PATH, their commands are on PATH.

A build's sandbox has no network: pip reaches the package index through the task's
egress proxy (task_access.py), whose list is the index's hosts only.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from collections import namedtuple

from job_runner.sandbox import SANDBOX_ENV
from job_runner.snapshots import WorkspaceTooLarge, save_archive

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    from job_runner.sandbox import Limits, Outcome, Sandbox
    from job_runner.task_access import Launch

# Top level: the task root's own directories are read-only binds, without mount points.
ENV_MOUNT = "/env"
BUILD_DIR = "env"  # in the build's workspace
PIP_MESSAGE_CHARS = 4000
# pip inside the root trusts the bundle the sandbox binds in with the egress proxy (the
# machine's or the image's, which is what reaches the index).
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


class Built(namedtuple("Built", "ok archive size_bytes seconds message")):
    """A build's end: ok with the archive's path and size, or not with pip's message
    (the tail of its output) and no archive."""

    __slots__ = ()


class Restored(namedtuple("Restored", "path seconds reused")):
    """An environment unpacked for tasks: its directory (bound read-only at ENV_MOUNT),
    how long the unpacking took, and whether an earlier one was reused."""

    __slots__ = ()

    def readonly_binds(self) -> dict[str, str]:
        return {ENV_MOUNT: self.path}

    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": ENV_MOUNT,
            "NODE_PATH": f"{ENV_MOUNT}/node_modules",
            "PATH": f"{ENV_MOUNT}/bin:{ENV_MOUNT}/node_modules/.bin:{SANDBOX_ENV['PATH']}",
        }


def pip_command(index_url: str) -> list[str]:
    """pip installing /workspace/requirements.txt into /workspace/env, from index_url
    only (no other index, no cache, no prompt)."""
    command = ["python3", "-m", "pip", "install", "--no-cache-dir", "--no-input"]
    command += ["--disable-pip-version-check", "--no-warn-script-location", "--no-compile"]
    command += ["--isolated", "--index-url", index_url, "--target", f"/workspace/{BUILD_DIR}"]
    if index_url.startswith("http://"):  # the operator chose plain HTTP (a local index)
        command += ["--trusted-host", index_url.split("/")[2]]
    return [*command, "-r", "/workspace/requirements.txt"]


def npm_command(registry_url: str, packages: list[str]) -> list[str]:
    """npm installing `packages` under /workspace/env/node_modules, from registry_url
    only (no audit, no funding notes). A package's install scripts run, as an sdist's
    build does for pip: in the sandbox, with the registry as their only egress."""
    command = ["npm", "install", "--prefix", f"/workspace/{BUILD_DIR}", "--registry", registry_url]
    command += ["--no-audit", "--no-fund", "--no-update-notifier"]
    return [*command, "--", *packages]


def build_environment(
    sandbox: Sandbox,
    workspace: str,
    python: list[str],
    index_url: str,
    archive: str,
    limits: Limits,
    *,
    max_bytes: int,
    npm: list[str] | None = None,
    npm_registry_url: str = "",
    launch: Callable[[list[str]], Launch] | None = None,
    on_output=None,
    cancel: threading.Event | None = None,
    **run: object,
) -> Built:
    """pip installs `python` (and npm installs `npm`) into the workspace's env/ in the
    sandbox, and archives it to `archive` (a tar the runner uploads), at most max_bytes
    unpacked. `launch` wraps each command (the task's egress proxy and forwarder);
    `run`: more of the sandbox's options (scratch, cgroup). The whole build has
    limits.wall_seconds."""
    started = time.monotonic()
    steps: list[tuple[str, list[str]]] = []
    if python:
        requirements = os.path.join(workspace, "requirements.txt")
        opener = lambda p, f: os.open(p, f | os.O_NOFOLLOW, 0o644)  # noqa: E731
        with open(requirements, "w", opener=opener) as file:
            file.write("\n".join(python) + "\n")
        steps.append(("pip", pip_command(index_url)))
    if npm:
        steps.append(("npm", npm_command(npm_registry_url, npm)))
    said = ""
    for tool, command in steps:
        stdin, binds = b"", dict[str, str]()
        if launch is not None:
            command, stdin, binds = launch(command)
        left = limits.wall_seconds - (time.monotonic() - started)
        outcome: Outcome = sandbox.run(
            command,
            limits._replace(wall_seconds=max(left, 1)),
            workspace=workspace,
            stdin=stdin,
            readonly_binds=binds,
            on_output=on_output,
            cancel=cancel,
            env={"PIP_CERT": CA_BUNDLE, "NPM_CONFIG_CAFILE": CA_BUNDLE},
            **run,  # type: ignore[arg-type]
        )
        said += (outcome.stdout + outcome.stderr).decode("utf-8", "replace")
        if outcome.exit_code != 0 or outcome.timed_out:
            if outcome.timed_out:
                reason = f"the build ran longer than {limits.wall_seconds} s"
            elif outcome.memory_exceeded or outcome.disk_exceeded:
                reason = "the build ran out of memory or disk"
            else:
                reason = f"{tool} exited {outcome.exit_code}"
            message = f"{reason}: {said[-PIP_MESSAGE_CHARS:]}"
            return Built(False, None, 0, time.monotonic() - started, message)
    built = os.path.join(workspace, BUILD_DIR)
    if not os.path.isdir(built) or os.path.islink(built):
        return Built(False, None, 0, time.monotonic() - started, "nothing was installed")
    try:
        # Not compressed: a task waits for the unpacking, which gzip makes 3x slower
        # (100 MiB: 0.23 s plain, 0.7 s gzipped; `make bench`), and wheels are
        # compressed already.
        size = save_archive(built, archive, max_bytes, compress=False)
    except WorkspaceTooLarge:
        if os.path.exists(archive):
            os.unlink(archive)
        message = f"the environment is larger than {max_bytes // (1024 * 1024)} MiB unpacked"
        return Built(False, None, 0, time.monotonic() - started, message)
    return Built(True, archive, size, time.monotonic() - started, said)


def restore_environment(archive: str, key: str, cache_dir: str) -> Restored:
    """Unpacks the archive once into cache_dir/key, readable by the sandbox's uid and
    writable by nobody but root: every later task of this runner (an agent's
    sub-processes, each of its tool calls) reuses it."""
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
