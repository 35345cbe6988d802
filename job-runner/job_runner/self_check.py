"""`python -m job_runner --self-check`: which sandboxes work here, as this user?

Every deploy runs one execution of the runner job with this override (deploy-gcp.sh,
cloudbuild.yaml): whether Cloud Run gives the container root with CAP_SYS_ADMIN,
user namespaces, or an unmasked /proc is for the probe to find out, never a task.
It runs the probe of sandboxes/choice.py in every backend (a trivial program that must
start, see no network and none of the runner's environment, and run as neither root
nor the runner's uid), prints one JSON verdict on stdout, a line per backend on
stderr, and exits 0 when the configured backend (SANDBOX, default auto: the first
that passes, strongest first) works, 1 (naming what is missing) otherwise.
"""

from __future__ import annotations

import json
import os
import sys

from job_runner.sandboxes.choice import (
    CANARY,
    NEEDS,
    ORDER,
    backend,
    no_backend_message,
    probe,
)

EXIT_OK, EXIT_FAILED = 0, 1
__all__ = ["CANARY", "main", "self_check"]


def self_check(configured: str | None = None) -> dict:
    """The verdict: ok, the backend chosen, each backend's probe, and the fix."""
    configured = configured or os.environ.get("SANDBOX", "auto")
    names = list(ORDER) if configured in ("auto", "none") else [configured]
    names += [name for name in ORDER if name not in names]
    backends = {name: probe(backend(name)) for name in names}
    verdict: dict = {"ok": False, "uid": os.geteuid(), "configured": configured}
    verdict["backends"] = backends
    if configured == "none":
        return {**verdict, "ok": True, "sandbox": "none", "checks": {}}
    candidates = ORDER if configured == "auto" else (configured,)
    chosen = next((name for name in candidates if backends[name]["ok"]), None)
    if chosen is None:
        failed = backends[candidates[0]]
        reasons = [f"{name}: {_reason(backends[name])}" for name in candidates]
        fix = no_backend_message(reasons)
        if configured != "auto":
            fix = f"SANDBOX={configured} does not work here ({reasons[0]}): it needs "
            fix += f"{NEEDS[configured]}; SANDBOX=auto finds one that works"
        return {**verdict, "failed": failed.get("failed"), "checks": failed["checks"], "fix": fix}
    found = backends[chosen]
    return {**verdict, "ok": True, "sandbox": chosen, "checks": found["checks"],
            "sandboxUid": found["sandboxUid"]}  # fmt: skip


def _reason(result: dict) -> str:
    return str(result.get("error") or result.get("stderr") or result["fix"])[:400]


def main() -> int:
    verdict = self_check()
    for name, result in verdict["backends"].items():
        state = "works" if result["ok"] else f"fails: {_reason(result)}"
        print(f"self-check: {name} {state}", file=sys.stderr)
    print(json.dumps(verdict, sort_keys=True), flush=True)
    if verdict["ok"]:
        print(f"self-check: tasks will run in {verdict['sandbox']}", file=sys.stderr)
    else:
        print(f"self-check failed: {verdict['fix']}", file=sys.stderr)
    return EXIT_OK if verdict["ok"] else EXIT_FAILED
