"""The default task environment (environments/default/): what it costs a task.

Starts its own emulators and API server (devtools/local_stack.py: gunicorn, local
executor, real bubblewrap giving tasks the task root built from the manifest), then
prints:
  - the task root: its manifest hash, its size, and how long a cached root takes to
    find (the one-time build's time is printed by devtools/task_root.py when it builds);
  - p50 of a code task's submit->terminal latency for `print(1)`, beside a task that
    imports numpy, pandas and matplotlib from the environment's venv, and the
    difference: the environment is bound into the sandbox, never copied, so a task
    pays only for what it imports.
Custom environments (a build, its archive, its restore per task) are issue 23's
second part and are not measured here yet.
Run with `make bench` (or `.venv/bin/python bench/environments.py --runs 20`; `--quick`
for a smoke run).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402
from devtools.task_root import ensure_task_root, manifest_hash  # noqa: E402

PLAIN = "print(1)"
DATA_STACK = "import numpy, pandas, matplotlib.pyplot\nprint(1)"


def latencies(url: str, code: str, runs: int, warm_up: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, headers={"X-User-Id": "bench"}, timeout=90) as http:
        for i in range(runs + warm_up):
            started = time.perf_counter()
            body = {"kind": "code", "language": "python", "code": code, "timeoutSeconds": 60}
            task = http.post("/api/tasks", json=body).json()
            done = http.get(f"/api/tasks/{task['id']}", params={"wait": 60}).json()
            elapsed = time.perf_counter() - started
            assert done["status"] == "completed" and done["result"]["stdout"] == "1\n", done
            if i >= warm_up:
                times.append(elapsed)
    return times


def size_mib(path: Path) -> float:
    done = subprocess.run(["du", "-sxm", str(path)], capture_output=True, text=True, check=True)
    return float(done.stdout.split()[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    add_quick_flag(parser)
    args = parser.parse_args()
    runs, warm_up = (2, 1) if args.quick else (args.runs, 2)

    started = time.perf_counter()
    root = Path(os.environ.get("TASK_ROOT") or ensure_task_root())
    found_ms = (time.perf_counter() - started) * 1000
    with LocalStack("demo-bench") as stack:
        url = stack.api_server("api.log", EXECUTOR="local", TASK_ROOT=str(root)).url
        plain = latencies(url, PLAIN, runs, warm_up)
        data = latencies(url, DATA_STACK, runs, warm_up)

    print(f"runs: {runs} each (after {warm_up} warm-up runs)")
    size = size_mib(root)
    print(f"task root {manifest_hash()}: {size:.0f} MiB, found cached in {found_ms:.0f} ms")
    plain_p50, data_p50 = statistics.median(plain), statistics.median(data)
    print(f"print(1) task: p50 {plain_p50 * 1000:.0f} ms")
    print(f"numpy + pandas + matplotlib task: p50 {data_p50 * 1000:.0f} ms")
    print(f"the imports add: {(data_p50 - plain_p50) * 1000:.0f} ms at p50 (no restore: bound)")


if __name__ == "__main__":
    main()
