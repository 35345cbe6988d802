"""Which sandbox: `SANDBOX=auto` (the default) probes the backends, strongest first,
and takes the first whose probe passes; `SANDBOX=<name>` forces one; `SANDBOX=none`
is the operator's explicit opt-out (issue 18).

The probe is the self-check's (self_check.py prints it for every backend): a trivial
program in the real sandbox that must start, see no network and none of the runner's
environment, and run as neither root nor the runner's uid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from job_runner.logs import log
from job_runner.outputs import remove_tree
from job_runner.sandboxes.bwrap import BubblewrapRootSandbox, BubblewrapSandbox
from job_runner.sandboxes.gvisor import GvisorSandbox
from job_runner.sandboxes.process import Limits, SandboxError
from job_runner.sandboxes.unsandboxed import UnsandboxedRunner
from job_runner.workspace import make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from job_runner.sandbox import Sandbox

# Strongest first: gVisor's own kernel; then bwrap built by real root (the program
# never in a user namespace of its own, so none of that kernel surface); then bwrap in
# a user namespace; gVisor rootless last (it needs what bwrap needs, and is slower).
ORDER = ("gvisor", "bwrap-root", "bwrap", "gvisor-rootless")
NAMES = (*ORDER, "auto", "none")
# Put in the runner's environment before a probe runs: it must not reach the program.
CANARY = "JOB_RUNNER_SELF_CHECK_CANARY"
PROBE_SECONDS = 30
PROBE = r"""
import ctypes, json, os, socket
libc = ctypes.CDLL(None, use_errno=True)
# statx as coreutils calls it (ls -l, stat): AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT.
statx = libc.statx(-100, b"/", 0x900, 0xFFF, ctypes.create_string_buffer(256))
statx = "ok" if statx == 0 else os.strerror(ctypes.get_errno())
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    network = "open"
except OSError:
    network = "closed"
interfaces = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
status = open("/proc/self/status").read().splitlines()
caps = [line.split()[1] for line in status if line.startswith("CapEff:")] or ["unknown"]
print(json.dumps({"uid": os.getuid(), "network": network, "interfaces": interfaces,
                  "env": sorted(os.environ), "pid": os.getpid(), "capabilities": caps[0],
                  "statx": statx}))
"""
FIXES = {
    "sandbox": "the sandbox could not start: see error",
    "program": "the sandbox started but a trivial program failed in it: see stderr",
    "network": "the program reached the network: the sandbox must unshare it",
    "environment": "the program saw the runner's environment: the sandbox must clear it",
    "uid": "the program ran as root, as the runner's uid or with capabilities",
    "statx": "the sandbox refuses statx with AT_NO_AUTOMOUNT, which ls -l and stat use: "
    "gVisor before 2023 does (Debian bookworm's runsc 20221219); install a newer runsc",
}
# What each backend needs, for the operator when none works.
NEEDS = {
    "gvisor": "runsc (apt-get install runsc) and root with CAP_SYS_ADMIN",
    "bwrap-root": "bubblewrap, root with CAP_SYS_ADMIN and an unmasked /proc",
    "bwrap": "bubblewrap, unprivileged user namespaces and an unmasked /proc",
    "gvisor-rootless": "runsc, unprivileged user namespaces and an unmasked /proc",
}
_chosen: dict[str, Sandbox] = {}
# auto's choice, kept for the next runner on the same host and in the same conditions
# (the fingerprint below): probing costs up to a second per task (runsc starting).
# Root's alone (0700): nothing the sandbox can reach. A Cloud Run execution is a fresh
# container, so there every task probes once.
CHOICE_DIR = "/run/job-runner"
CHOICE_FILE = f"{CHOICE_DIR}/sandbox-choice.json"


def backend(name: str) -> Sandbox:
    """A backend by name (not "auto")."""
    if name == "bwrap":
        return BubblewrapSandbox()
    if name == "bwrap-root":
        return BubblewrapRootSandbox()
    if name in ("gvisor", "gvisor-rootless"):
        return GvisorSandbox(rootless=name == "gvisor-rootless")
    if name == "none":
        return UnsandboxedRunner()
    raise ValueError(f"unknown sandbox {name!r}: expected one of {', '.join(NAMES)}")


def make_sandbox(kind: str) -> Sandbox:
    """The sandbox SANDBOX names; "auto" probes (once per process).

    :raises SandboxError: auto found no backend that works; the message names what
        each one needs.
    """
    if kind != "auto":
        return backend(kind)
    if "auto" not in _chosen:
        fingerprint = _fingerprint()
        remembered = _remembered(fingerprint)
        if remembered is not None:
            log.info("sandbox: %s (SANDBOX=auto, as probed before in these conditions)", remembered)
            _chosen["auto"] = backend(remembered)
        else:
            _chosen["auto"] = choose()
            _remember(fingerprint, _chosen["auto"].name)
    return _chosen["auto"]


def forget_choice() -> None:
    """The remembered backend failed a task: the next runner probes again."""
    with contextlib.suppress(OSError):
        os.unlink(CHOICE_FILE)


def _fingerprint() -> str:
    """What decides which backend works: the boot, who we are and may do, how /proc
    and /sys are mounted, the sandboxes' binaries, and the probe itself."""
    import hashlib  # only for auto, once per runner

    parts = [PROBE, str(os.geteuid()), ",".join(ORDER)]
    with contextlib.suppress(OSError):
        with open("/proc/sys/kernel/random/boot_id") as boot:
            parts.append(boot.read())
        with open("/proc/self/status") as status:
            parts += [line for line in status if line.startswith(("Cap", "NoNewPrivs"))]
        with open("/proc/self/mountinfo") as mounts:
            parts += sorted(
                " ".join(line.split()[3:6])
                for line in mounts
                if " /proc" in line or " /sys" in line
            )
    for program in ("runsc", "bwrap", "setpriv"):
        found = shutil.which(program)
        with contextlib.suppress(OSError):
            info = os.stat(found) if found else None
            parts.append(f"{found}:{info and (info.st_ino, info.st_mtime_ns, info.st_size)}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _remembered(fingerprint: str) -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        with open(CHOICE_FILE) as kept:
            choice = json.load(kept)
    except (OSError, ValueError):
        return None
    if not isinstance(choice, dict) or choice.get("fingerprint") != fingerprint:
        return None
    name = choice.get("sandbox")
    return name if name in ORDER else None  # never "none" from a file


def _remember(fingerprint: str, name: str) -> None:
    if os.geteuid() != 0:
        return
    with contextlib.suppress(OSError):
        os.makedirs(CHOICE_DIR, 0o700, exist_ok=True)
        if os.lstat(CHOICE_DIR).st_uid != 0:
            return
        temporary = f"{CHOICE_FILE}.{os.getpid()}"
        with open(temporary, "w", opener=_private) as kept:
            json.dump({"fingerprint": fingerprint, "sandbox": name}, kept)
        os.replace(temporary, CHOICE_FILE)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW, 0o600)


def choose() -> Sandbox:
    reasons: list[str] = []
    for name in ORDER:
        sandbox = backend(name)
        verdict = probe(sandbox)
        if verdict["ok"]:
            log.info("sandbox: %s (SANDBOX=auto; %s)", name, "; ".join(reasons) or "the first")
            return sandbox
        reasons.append(f"{name} failed: {verdict.get('error') or verdict['fix']}"[:300])
    raise SandboxError(no_backend_message(reasons))


def no_backend_message(reasons: list[str]) -> str:
    needs = "; ".join(f"{name} needs {need}" for name, need in NEEDS.items())
    return (
        f"no sandbox backend works here ({' | '.join(reasons)}). {needs}. "
        "Cloud Run's second generation gives root CAP_SYS_ADMIN; locally allow "
        "unprivileged user namespaces, or set SANDBOX=none to opt out"
    )


def probe(sandbox: Sandbox) -> dict:
    """Runs the probe in sandbox; the verdict: ok, each check, and the fix."""
    os.environ[CANARY] = "must-not-reach-the-program"
    checks: dict[str, bool] = {}
    verdict: dict = {"ok": False, "checks": checks}
    workspace = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "self-check-")
    try:
        outcome = sandbox.run(
            ["python3", "-I", "-S", "-c", PROBE], Limits(wall_seconds=PROBE_SECONDS),
            workspace=workspace,
        )  # fmt: skip
    except (SandboxError, OSError) as error:
        checks["sandbox"] = False
        return {**verdict, "failed": "sandbox", "error": str(error), "fix": FIXES["sandbox"]}
    finally:
        remove_tree(workspace)
    checks["sandbox"] = True
    try:
        seen = json.loads(outcome.stdout.decode())
    except ValueError:
        seen = None
    checks["program"] = outcome.exit_code == 0 and isinstance(seen, dict)
    if not isinstance(seen, dict) or not checks["program"]:
        stderr = outcome.stderr.decode("utf-8", "replace")[-2000:]
        failed = {"failed": "program", "exitCode": outcome.exit_code, "stderr": stderr}
        return {**verdict, **failed, "fix": FIXES["program"]}
    checks["network"] = seen["network"] == "closed" and set(seen["interfaces"]) <= {"lo"}
    checks["environment"] = CANARY not in seen["env"] and "TASK_TOKEN" not in seen["env"]
    # gvisor-rootless: uid 0 of gVisor's own user namespace, which maps to the
    # sandbox's host uid alone (gvisor.py); no capability either way.
    own_uid = seen["uid"] not in (0, os.geteuid()) or getattr(sandbox, "root_inside", False)
    checks["uid"] = own_uid and seen["capabilities"] == "0000000000000000"
    checks["statx"] = seen["statx"] == "ok"
    verdict["sandboxUid"] = seen["uid"]
    failing = [name for name, passed in checks.items() if not passed]
    if failing:
        return {**verdict, "failed": failing[0], "seen": seen, "fix": FIXES[failing[0]]}
    return {**verdict, "ok": True}
