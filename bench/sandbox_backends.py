"""Submit->result latency of `print(1)` for every sandbox backend that works here,
beside the bare-bwrap floor, and the runner's own peak memory (issue 18).

Starts its own emulators (devtools/local_stack.py), then one API server (gunicorn,
local executor) per backend with SANDBOX=<name> (and one with SANDBOX=auto), and
prints for each: p50 of POST /api/tasks -> GET ?wait=30 returning the finished task,
its ratio to the floor, and the largest peak memory a runner reported holding itself
(its log line "runner peak memory"), outside the task's processes.
Run with `make bench`, or `.venv/bin/python bench/sandbox_backends.py [--quick]`.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "job-runner"))

from job_runner.sandbox import BubblewrapSandbox, Limits  # noqa: E402
from job_runner.sandboxes.choice import ORDER, backend, probe  # noqa: E402
from job_runner.workspace import prepare_workspace  # noqa: E402

from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402

WARM_UP = 2
PEAK = re.compile(r"runner peak memory: (\d+) KiB")


def bare_floor(runs: int) -> float:
    """p50 of bare bwrap (user namespace) running `python3 -c pass`, in seconds."""
    sandbox = BubblewrapSandbox()
    times = []
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)  # the sandbox's own uid must reach its workspace
        for i in range(runs + WARM_UP):
            workspace, _ = prepare_workspace(Path(root) / str(i))
            started = time.perf_counter()
            outcome = sandbox.run(
                ["python3", "-c", "pass"], Limits(wall_seconds=10), workspace=workspace
            )
            assert outcome.exit_code == 0, outcome
            if i >= WARM_UP:
                times.append(time.perf_counter() - started)
    return statistics.median(times)


def submit_to_result(url: str, runs: int) -> tuple[float, str]:
    """p50 of print(1) through the API, and the backend the task reports."""
    times, used = [], ""
    with httpx.Client(base_url=url, headers={"X-User-Id": "bench"}, timeout=60) as http:
        for i in range(runs + WARM_UP):
            started = time.perf_counter()
            task = http.post(
                "/api/tasks", json={"kind": "code", "language": "python", "code": "print(1)"}
            ).json()
            done = http.get(f"/api/tasks/{task['id']}", params={"wait": 30}).json()
            elapsed = time.perf_counter() - started
            assert done["status"] == "completed" and done["result"]["stdout"] == "1\n", done
            used = done["execution"].get("sandbox", "")
            if i >= WARM_UP:
                times.append(elapsed)
    return statistics.median(times), used


def peak_runner_kib(log: Path) -> int:
    found = [int(match) for match in PEAK.findall(log.read_text(errors="replace"))]
    return max(found, default=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    add_quick_flag(parser)
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs

    floor = bare_floor(runs)
    verdicts = {name: probe(backend(name)) for name in ORDER}
    # A backend whose isolation holds is measured, even when the probe fails it on
    # statx alone (Debian bookworm's runsc): auto passes over it, an operator may not.
    measured = [name for name, v in verdicts.items() if v["ok"] or v.get("failed") == "statx"]
    rows = []
    with LocalStack("demo-bench") as stack:
        for name in ["auto", *measured]:
            log = f"api-{name}.log"
            server = stack.api_server(log, EXECUTOR="local", SANDBOX=name)
            try:
                p50, used = submit_to_result(server.url, runs)
            finally:
                server.stop()
            rows.append((name, used, p50, peak_runner_kib(stack.logs / log)))

    print(f"runs: {runs} each (after {WARM_UP} warm-up runs)")
    print(f"bare floor (bwrap in a user namespace + python -c pass): p50 {floor * 1000:.0f} ms")
    for name, used, p50, peak in rows:
        label = f"auto -> {used}" if name == "auto" else name
        note = "" if verdicts.get(name, {"ok": True})["ok"] else " (auto skips it: statx refused)"
        print(
            f"{label:>18}: submit->result print(1) p50 {p50 * 1000:.0f} ms, "
            f"{p50 / floor:.1f}x the floor; runner peak {peak / 1024:.0f} MiB{note}"
        )
    for name, verdict in verdicts.items():
        if name not in measured:
            reason = verdict.get("error") or verdict.get("fix")
            print(f"{name:>18}: does not work here: {json.dumps(reason)[:200]}")


if __name__ == "__main__":
    main()
