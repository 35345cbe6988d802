"""Task environments: what the default one and a custom one cost a task.

Starts its own emulators and API server (devtools/local_stack.py: gunicorn, local
executor, real bubblewrap giving tasks the task root built from the manifest), then
prints:
  - the task root: its manifest hash, its size, and how long a cached root takes to
    find (the one-time build's time is printed by devtools/task_root.py when it builds);
  - p50 of a code task's submit->terminal latency for `print(1)`, beside a task that
    imports numpy, pandas and matplotlib from the environment's venv, and the
    difference: the environment is bound into the sandbox, never copied, so a task
    pays only for what it imports.
  - a custom environment of one package carrying ENVIRONMENT_MIB of incompressible
    data, from a loopback package index (devtools/package_index.py, as `pypi.test`
    through the build's egress proxy): its build time, its archive's size, and a task
    using it beside the same task without it (p50 submit->terminal), with the restore
    time the runner reports (fetch and unpack, once per task). Goal: restoring a
    100 MB environment adds under 1 s to a task's start.
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
from devtools.package_index import PackageIndex  # noqa: E402
from devtools.task_root import ensure_task_root, manifest_hash  # noqa: E402

PLAIN = "print(1)"
DATA_STACK = "import numpy, pandas, matplotlib.pyplot\nprint(1)"
WITH_PACKAGE = "import bigpkg\nprint(1)"
ENVIRONMENT_MIB = 100


def latencies(
    url: str,
    code: str,
    runs: int,
    warm_up: int,
    restores: list[tuple[float, float]] | None = None,
    **extra,
) -> list[float]:
    """Submit->terminal seconds of `code` tasks; with `restores`, the restore time each
    task's runner reported."""
    times = []
    with httpx.Client(base_url=url, headers={"X-User-Id": "bench"}, timeout=90) as http:
        for i in range(runs + warm_up):
            started = time.perf_counter()
            body = {"kind": "code", "language": "python", "code": code, "timeoutSeconds": 60}
            task = http.post("/api/tasks", json={**body, **extra}).json()
            done = http.get(f"/api/tasks/{task['id']}", params={"wait": 60}).json()
            elapsed = time.perf_counter() - started
            assert done["status"] == "completed" and done["result"]["stdout"] == "1\n", done
            if i >= warm_up:
                times.append(elapsed)
                if restores is not None:
                    events = http.get(f"/api/tasks/{task['id']}/events").json()["events"]
                    restores += [
                        (e["data"]["seconds"], e["data"]["unpackSeconds"])
                        for e in events
                        if e["type"] == "status"
                        and e["data"].get("state") == "environment_restored"
                    ]
    return times


def build(url: str, python: list[str]) -> tuple[float, dict]:
    """Create a custom environment and wait until it is built: (seconds, environment)."""
    with httpx.Client(base_url=url, headers={"X-User-Id": "bench"}, timeout=90) as http:
        started = time.perf_counter()
        environment = http.post("/api/environments", json={"name": "bench", "python": python})
        assert environment.status_code == 202, environment.text
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            http.get(f"/api/tasks/{environment.json()['buildTaskId']}", params={"wait": 60})
            seen = http.get(f"/api/environments/{environment.json()['id']}").json()
            if seen["status"] != "building":
                events = http.get(f"/api/tasks/{seen['buildTaskId']}/events").json()["events"]
                assert seen["status"] == "ready", (seen, events)
                return time.perf_counter() - started, seen
        raise TimeoutError("the environment did not build in 600 s")


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
    size_mb = 5 if args.quick else ENVIRONMENT_MIB
    restores: list[tuple[float, float]] = []
    with LocalStack("demo-bench") as stack, PackageIndex() as index:
        index.add_wheel("bigpkg", "1.0", payload_bytes=size_mb * 1024 * 1024)
        url = stack.api_server(
            "api.log",
            EXECUTOR="local",
            TASK_ROOT=str(root),
            PACKAGE_INDEX_URL="http://pypi.test/simple/",
            PACKAGE_INDEX_DOMAINS="pypi.test",
            EGRESS_DEV_HOSTS=f"pypi.test=127.0.0.1:{index.port}",
        ).url
        plain = latencies(url, PLAIN, runs, warm_up)
        data = latencies(url, DATA_STACK, runs, warm_up)
        build_seconds, custom = build(url, ["bigpkg==1.0"])
        with_environment = latencies(
            url, WITH_PACKAGE, runs, warm_up, restores, environment="bench"
        )

    print(f"runs: {runs} each (after {warm_up} warm-up runs)")
    size = size_mib(root)
    print(f"task root {manifest_hash()}: {size:.0f} MiB, found cached in {found_ms:.0f} ms")
    plain_p50, data_p50 = statistics.median(plain), statistics.median(data)
    print(f"print(1) task: p50 {plain_p50 * 1000:.0f} ms")
    print(f"numpy + pandas + matplotlib task: p50 {data_p50 * 1000:.0f} ms")
    print(f"the imports add: {(data_p50 - plain_p50) * 1000:.0f} ms at p50 (no restore: bound)")
    archive = custom["sizeBytes"] / 1024 / 1024
    print(f"custom environment ({size_mb} MiB package): built in {build_seconds:.1f} s, "
          f"archive {archive:.1f} MiB")  # fmt: skip
    custom_p50 = statistics.median(with_environment)
    print(f"task with it: p50 {custom_p50 * 1000:.0f} ms, "
          f"{(custom_p50 - plain_p50) * 1000:+.0f} ms beside print(1) without it")  # fmt: skip
    restore = [total for total, _ in restores]
    unpack = statistics.median(unpack for _, unpack in restores) * 1000
    print(f"its restore (fetch + unpack), as the runner reports it: "
          f"p50 {statistics.median(restore) * 1000:.0f} ms (unpacking {unpack:.0f} ms of it), "
          f"max {max(restore) * 1000:.0f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
