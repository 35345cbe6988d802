"""The gVisor backends: `gvisor` (runsc run by root) and `gvisor-rootless`.

The program runs on gVisor's own kernel (the Sentry), which serves its system calls
in user space: the host kernel sees only the Sentry's and the Gofer's narrow set.
Each run gets an OCI bundle of its own: a read-only root of mount points, /usr and a
few /etc files bound read-only, /workspace bound read-write, a private /tmp and
/dev/shm, an empty environment but SANDBOX_ENV, no capability, the workspace's uid.

- `--network=none` (no interface but loopback) unless the task allows the network.
- `--platform=ptrace`: the one platform that needs neither /dev/kvm nor a newer runsc
  than Debian's (issue 18's measurements).
- `--ignore-cgroups`: runsc does not make cgroups of its own; it runs inside the
  task's cgroup (moved there before exec, like bwrap) or under the watchdog.
- rootless: runsc run by the sandbox's uid (root switches to it first) with
  `--rootless`, where root with CAP_SYS_ADMIN is not to be had. runsc then maps
  that one host uid to uid 0 of gVisor's user namespace, and no other: the
  workspace it owns is root's inside, so the program runs as that uid 0, with no
  capability (it may write what the sandbox's host uid owns, nothing else; on the
  host it is that uid). `root_inside` says so to the probe.

runsc's own failures (it exits 128 with "running container: ..." on stderr, and never
writes a line the program could have written first) become SandboxError; a program
that imitates them fails its own task, nothing more.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess

from job_runner.sandboxes.bwrap import check_mount_point
from job_runner.sandboxes.process import (
    ETC_FILES,
    MIB,
    NETWORK_ETC_FILES,
    SANDBOX_ENV,
    WORKSPACE_MOUNT,
    Limits,
    Outcome,
    SandboxError,
    execute,
)
from job_runner.task_root import configured_task_root, system_mounts
from job_runner.workspace import chown_tree, make_private_dir, random_sandbox_uid, sandbox_owner

TYPE_CHECKING = False
if TYPE_CHECKING:
    import threading
    from collections.abc import Mapping

    from job_runner.cgroups import TaskCgroup
    from job_runner.sandboxes.process import OnOutput

PLATFORM = "ptrace"
SETUP_FAILED_EXIT = 128
SETUP_FAILURES = ("running container:", "creating container:", "starting container:")
DELETE_SECONDS = 10
# The Sentry's and Gofer's own threads, and one ptrace stub per program thread, count
# in the task cgroup's pids.max: room for them beside the program's processes.
RUNSC_THREADS = 256
FIX_HINT = (
    "install gVisor's runsc (apt-get install runsc) and run the runner as root with "
    "CAP_SYS_ADMIN (gvisor), or on a host that allows user namespaces and an unmasked "
    "/proc (gvisor-rootless)"
)


class GvisorSandbox:
    """Runs each command in a fresh gVisor sandbox (one `runsc run` per command)."""

    def __init__(self, runsc: str = "runsc", rootless: bool = False) -> None:
        self._runsc = runsc
        self.rootless = rootless
        self.name = "gvisor-rootless" if rootless else "gvisor"
        self.root_inside = rootless

    def run(
        self,
        command: list[str],
        limits: Limits,
        *,
        workspace: str | os.PathLike,
        stdin: bytes = b"",
        readonly_binds: Mapping[str, str | os.PathLike] | None = None,
        on_output: OnOutput | None = None,
        cancel: threading.Event | None = None,
        scratch: Mapping[str, str | os.PathLike] | None = None,
        cgroup: TaskCgroup | None = None,
        env: dict[str, str] | None = None,
    ) -> Outcome:
        runsc = shutil.which(self._runsc)
        if runsc is None:
            raise SandboxError(f"{self.name}: runsc ({self._runsc}) was not found: {FIX_HINT}")
        if not self.rootless and os.geteuid() != 0:
            raise SandboxError(f"gvisor: runsc needs the runner to be root: {FIX_HINT}")
        root = os.geteuid() == 0
        uid = sandbox_owner(workspace) if root else random_sandbox_uid()
        if root:
            chown_tree(workspace, uid)
        if cgroup is not None:
            cgroup.set_max_processes(RUNSC_THREADS + 2 * limits.max_processes)
        bundle = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "gvisor-")
        container = os.path.basename(bundle)
        state = os.path.join(bundle, "state")
        try:
            per_process = limits if cgroup is None else limits._replace(address_space_limit=False)
            inside = 0 if self.rootless else uid
            spec = _spec(command, per_process, inside, workspace, readonly_binds, scratch, env)
            _write_bundle(bundle, spec, {**(readonly_binds or {})})
            argv = [runsc, "--root", state, f"--platform={PLATFORM}", "--ignore-cgroups"]
            # Claude Code's one way out is the relay's socket, bound in (claude_code.py);
            # only sockets in the run's own mounts can be opened.
            argv.append("--host-uds=open")
            argv += ["--network=host" if limits.network else "--network=none"]
            popen: dict = {"cwd": "/"}
            if self.rootless:
                argv.append("--rootless")
                if root:  # rootless means not root: run it as the sandbox's uid
                    popen.update(user=uid, group=uid, extra_groups=[])
                    chown_tree(bundle, uid)
            argv += ["run", "--bundle", bundle, container]
            # RLIMIT_AS, _NPROC and _FSIZE would bind runsc's Go runtime and its memory
            # file, not the program: the spec sets them inside.
            watched = [workspace, *(scratch or {}).values()]
            outcome = execute(
                argv, limits, stdin, on_output, cancel, cgroup, watched, False, **popen
            )
        finally:
            _delete(runsc, state, container, bundle)
        stderr = outcome.stderr.decode("utf-8", "replace").strip()
        if outcome.exit_code == SETUP_FAILED_EXIT and stderr.startswith(SETUP_FAILURES):
            raise SandboxError(f"{self.name} could not start the program ({stderr}): {FIX_HINT}")
        return outcome


def _spec(command, limits: Limits, uid: int, workspace, readonly_binds, scratch, env) -> dict:
    size = f"size={limits.memory_mb * MIB}"
    mounts: list[dict] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
    # The system the program sees (task_root.py): TASK_ROOT's, or the host's /usr.
    task_root = configured_task_root()
    for kind, source, dest in system_mounts(task_root, skip=(WORKSPACE_MOUNT.strip("/"),)):
        if kind == "ro-bind":  # the symlinks are the bundle's own (_write_bundle)
            mounts.append({"destination": dest, "type": "bind", "source": source,
                           "options": ["rbind", "ro"]})  # fmt: skip
    etc_files = () if task_root else ETC_FILES  # a task root has its own /etc
    for path in etc_files + (NETWORK_ETC_FILES if limits.network else ()):
        if os.path.exists(path):
            mounts.append({"destination": path, "type": "bind", "source": path,
                           "options": ["rbind", "ro"]})  # fmt: skip
    for mount in ("/tmp", "/dev/shm"):
        if scratch and mount in scratch:
            host = os.fspath(scratch[mount])
            mounts.append({"destination": mount, "type": "bind", "source": host,
                           "options": ["rbind", "rw"]})  # fmt: skip
        else:
            mounts.append({"destination": mount, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "nodev", size]})  # fmt: skip
    mounts.append({"destination": WORKSPACE_MOUNT, "type": "bind",
                   "source": os.fspath(workspace), "options": ["rbind", "rw"]})  # fmt: skip
    for dest, host in (readonly_binds or {}).items():
        check_mount_point(dest)
        mounts.append({"destination": dest, "type": "bind", "source": os.fspath(host),
                       "options": ["rbind", "ro"]})  # fmt: skip
    rlimits = [
        ("RLIMIT_NPROC", limits.max_processes),
        ("RLIMIT_FSIZE", limits.max_file_mb * MIB),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NOFILE", 1024),
    ]
    if limits.address_space_limit:
        rlimits.append(("RLIMIT_AS", limits.memory_mb * MIB))
    environment = {**SANDBOX_ENV, **(env or {})}
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": uid},
            "args": command,
            "env": [f"{name}={value}" for name, value in environment.items()],
            "cwd": WORKSPACE_MOUNT,
            "capabilities": {},
            "rlimits": [{"type": kind, "hard": value, "soft": value} for kind, value in rlimits],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "network", "ipc", "uts", "mount")]
        },
    }


def _write_bundle(bundle: str, spec: dict, readonly_binds: dict) -> None:
    """config.json, and a root holding only the mount points and /usr's symlinks
    (runsc cannot make a mount point in a read-only root)."""
    rootfs = os.path.join(bundle, "rootfs")
    os.mkdir(rootfs, 0o755)
    for kind, target, dest in system_mounts(configured_task_root()):
        if kind == "symlink":
            os.symlink(target, os.path.join(rootfs, dest.lstrip("/")))
    for mount in spec["mounts"]:
        where = os.path.join(rootfs, mount["destination"].lstrip("/"))
        source = mount["source"]
        if mount["type"] == "bind" and not os.path.isdir(source):
            os.makedirs(os.path.dirname(where), 0o755, exist_ok=True)
            with open(where, "a"):
                pass
        else:
            os.makedirs(where, 0o755, exist_ok=True)
    with open(os.path.join(bundle, "config.json"), "w") as config:
        json.dump(spec, config)


def _delete(runsc: str, state: str, container: str, bundle: str) -> None:
    """Stops whatever of the sandbox is left (a killed `runsc run` may leave its Sentry)
    and removes the bundle."""
    if os.path.isdir(state) and os.listdir(state):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [runsc, "--root", state, "delete", "--force", container],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=DELETE_SECONDS,
                env={},
            )
    shutil.rmtree(bundle, ignore_errors=True)
