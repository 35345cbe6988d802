"""`python -m job_runner --self-check`: does the sandbox work here, as this user?

Every deploy runs one execution of the runner job with this override (deploy-gcp.sh,
cloudbuild.yaml): Cloud Run gives a job's container unprivileged user namespaces and
a fresh /proc or it does not, and a task should never be the first to find out. It
runs a trivial program in the real sandbox, checks that the program sees no network
and none of the runner's environment, prints one JSON verdict on stdout, and exits 0
when every check passed, 1 (with the fix in the verdict) otherwise.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from job_runner.sandbox import Limits, SandboxError, make_sandbox

EXIT_OK, EXIT_FAILED = 0, 1
# Put in the runner's environment before the probe runs: it must not reach the program.
CANARY = "JOB_RUNNER_SELF_CHECK_CANARY"
PROBE = r"""
import json, os, socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2).close()
    network = "open"
except OSError:
    network = "closed"
interfaces = sorted(os.listdir("/sys/class/net")) if os.path.isdir("/sys/class/net") else []
print(json.dumps({"uid": os.getuid(), "network": network, "interfaces": interfaces,
                  "env": sorted(os.environ), "pid": os.getpid()}))
"""
FIXES = {
    "sandbox": (
        "bubblewrap could not build its namespaces: the runner needs unprivileged user "
        "namespaces and a fresh /proc (Cloud Run jobs provide both; locally allow "
        "unprivileged user namespaces, e.g. sysctl kernel.unprivileged_userns_clone=1, "
        "and install bubblewrap)"
    ),
    "program": "the sandbox started but a trivial program failed in it: see stderr in the verdict",
    "network": "the program reached the network: the sandbox must unshare it (--unshare-net)",
    "environment": "the program saw the runner's environment: the sandbox must use --clearenv",
}


def self_check() -> dict:
    """Runs the probe in the sandbox; the verdict: ok, each check, and the fix."""
    os.environ[CANARY] = "must-not-reach-the-program"
    checks: dict[str, bool] = {}
    verdict: dict = {"ok": False, "uid": os.geteuid(), "checks": checks}
    with tempfile.TemporaryDirectory(prefix="self-check-") as workspace:
        try:
            outcome = make_sandbox("bwrap", os.environ.get("TASK_ROOT") or None).run(
                ["python3", "-c", PROBE], Limits(wall_seconds=30), workspace=workspace
            )
        except SandboxError as error:
            checks["sandbox"] = False
            return {**verdict, "failed": "sandbox", "error": str(error), "fix": FIXES["sandbox"]}
    checks["sandbox"] = True
    try:
        seen = json.loads(outcome.stdout.decode())
    except ValueError:
        seen = None
    checks["program"] = outcome.exit_code == 0 and isinstance(seen, dict)
    if not checks["program"]:
        stderr = outcome.stderr.decode("utf-8", "replace")[-2000:]
        return {
            **verdict,
            "failed": "program",
            "exitCode": outcome.exit_code,
            "stderr": stderr,
            "fix": FIXES["program"],
        }
    checks["network"] = seen["network"] == "closed" and set(seen["interfaces"]) <= {"lo"}
    checks["environment"] = CANARY not in seen["env"] and "TASK_TOKEN" not in seen["env"]
    verdict["sandboxUid"] = seen["uid"]
    failed = [name for name, passed in checks.items() if not passed]
    if failed:
        return {**verdict, "failed": failed[0], "seen": seen, "fix": FIXES[failed[0]]}
    return {**verdict, "ok": True}


def main() -> int:
    verdict = self_check()
    print(json.dumps(verdict, sort_keys=True), flush=True)
    if not verdict["ok"]:
        print(f"self-check failed: {verdict['fix']}", file=sys.stderr)
    return EXIT_OK if verdict["ok"] else EXIT_FAILED
