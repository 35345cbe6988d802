"""Submit->terminal latency of `print(1)` through the API, against the bare sandbox floor.

Starts its own emulators and API server (devtools/local_stack.py: gunicorn, local
executor, real bubblewrap), then prints:
  - p50 / p95 of POST /api/tasks -> GET ?wait=30 returning the finished task;
  - p50 of the bare sandbox floor: bubblewrap + a python that does nothing;
  - their ratio.
Run with `make bench` (or `.venv/bin/python bench/task_latency.py --runs 50`; `--quick`
for a smoke run).
"""

from __future__ import annotations

import argparse
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
from job_runner.workspace import prepare_workspace  # noqa: E402

from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def sandbox_floor(runs: int, warm_up: int) -> list[float]:
    sandbox = BubblewrapSandbox()
    times = []
    with tempfile.TemporaryDirectory() as root:
        Path(root).chmod(0o755)  # the sandbox's own uid must reach its workspace
        for i in range(runs + warm_up):
            workspace, _ = prepare_workspace(Path(root) / str(i))
            started = time.perf_counter()
            outcome = sandbox.run(
                ["python3", "-c", "pass"], Limits(wall_seconds=10), workspace=workspace
            )
            elapsed = time.perf_counter() - started
            assert outcome.exit_code == 0, outcome
            if i >= warm_up:
                times.append(elapsed)
    return times


def api_latency(url: str, runs: int, warm_up: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers={"X-User-Id": "bench"}, timeout=60) as http:
        for i in range(runs + warm_up):
            started = time.perf_counter()
            task = http.post(
                "/api/tasks", json={"kind": "code", "language": "python", "code": "print(1)"}
            ).json()
            done = http.get(f"/api/tasks/{task['id']}", params={"wait": 30}).json()
            elapsed = time.perf_counter() - started
            assert done["status"] == "completed" and done["result"]["stdout"] == "1\n", done
            if i >= warm_up:  # warm-up: first Firestore connections, first imports
                times.append(elapsed)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    add_quick_flag(parser)
    args = parser.parse_args()
    runs, warm_up = (3, 1) if args.quick else (args.runs, 3)

    floor = sandbox_floor(runs, warm_up)
    with LocalStack("demo-bench") as stack:
        api = api_latency(stack.api_server("api.log", EXECUTOR="local").url, runs, warm_up)

    floor_p50 = statistics.median(floor)
    api_p50 = statistics.median(api)
    print(f"runs: {runs} each (after {warm_up} warm-up runs)")
    print(
        f"submit->terminal print(1) via API: p50 {api_p50 * 1000:.0f} ms, "
        f"p95 {percentile(api, 0.95) * 1000:.0f} ms"
    )
    print(f"bare sandbox floor (bwrap + python -c pass): p50 {floor_p50 * 1000:.0f} ms")
    print(f"ratio p50 / floor: {api_p50 / floor_p50:.1f}x (target <= 8x)")


if __name__ == "__main__":
    main()
