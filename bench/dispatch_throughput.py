"""Dispatch throughput of the Cloud Run Jobs executor, and its Admin API calls per task.

Starts its own emulators (devtools/local_stack.py), a Cloud Run Admin API stand-in whose RunJob
answers at once without starting a runner, and an API server (gunicorn,
EXECUTOR=cloudrun, the real run_v2 REST client). Submits N tasks from a few threads
as fast as it can, waits until the stand-in has had a RunJob for every task, then
prints:
  - dispatch throughput, tasks/s, from the first submit to the last RunJob;
  - Admin API calls per task, by kind (run, get execution, cancel, operations).
`--run-latency S` makes each RunJob take S seconds, to see what the real Admin API's
latency does to a dispatcher that launches one task at a time.
Exits 1 if not every task was launched before `--deadline`.
Run with `.venv/bin/python bench/dispatch_throughput.py --tasks 200` (`--quick` for a
smoke run).
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.api_server import ApiServer  # noqa: E402
from devtools.cloud_run_standin import CloudRunStandIn  # noqa: E402
from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402

JOB = "projects/demo-bench/locations/us-central1/jobs/runner"


def call_kind(method: str, path: str) -> str:
    if "/operations" in path:
        return "operations"
    if path.endswith(":run"):
        return "run"
    if path.endswith(":cancel"):
        return "cancel"
    if method == "GET" and "/executions/" in path:
        return "get execution"
    return "other"


def start_api(stack: LocalStack, standin: CloudRunStandIn, tasks: int) -> ApiServer:
    return stack.api_server(
        "api.log",
        EXECUTOR="cloudrun",
        CLOUD_RUN_JOB=JOB,
        CLOUD_RUN_ENDPOINT=standin.url,
        # No runner ever claims: every task stays in flight, so neither cap may bind.
        MAX_TASKS_IN_FLIGHT=str(tasks + 100),
        # A few users submit them all: lift the per-user limits for this measurement.
        MAX_ACTIVE_TASKS_PER_USER=str(tasks + 10),
        MAX_TASKS_PER_USER_PER_DAY=str(tasks + 10),
        MAX_PENDING_TASKS=str(max(1000, tasks + 100)),
    )


BUSY_RETRIES: list[int] = []  # one entry per 503 "busy" answered (and retried as Retry-After says)


def submit_all(url: str, tasks: int, threads: int) -> list[str]:
    # One user per thread, as many clients would be: a user's own submissions queue on
    # that user's quota document (the per-user limits are transactional).
    def submit_share(thread: int, share: int) -> list[str]:
        headers = {"X-User-Id": f"bench-{thread}"}
        with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
            ids = []
            for _ in range(share):
                body = {"kind": "code", "language": "python", "code": "print(1)"}
                reply = http.post("/api/tasks", json=body)
                while reply.status_code == 503:
                    BUSY_RETRIES.append(1)
                    time.sleep(float(reply.headers.get("Retry-After", "1")))
                    reply = http.post("/api/tasks", json=body)
                assert reply.status_code == 202, reply.text
                ids.append(reply.json()["id"])
            return ids

    shares = [tasks // threads + (i < tasks % threads) for i in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        return [
            task_id for ids in pool.map(submit_share, range(threads), shares) for task_id in ids
        ]


def launched_ids(standin: CloudRunStandIn) -> dict[str, float]:
    """Task id -> when its RunJob arrived (epoch seconds)."""
    launched = {}
    for record in list(standin.executions.values()):
        (container,) = record.request.overrides.container_overrides
        launched[container.args[0]] = record.created.timestamp()
    return launched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--deadline", type=float, default=120, help="seconds to wait for RunJobs")
    parser.add_argument("--run-latency", type=float, default=0.0, help="seconds per RunJob")
    add_quick_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.threads = 10, 2

    with LocalStack("demo-bench") as stack, CloudRunStandIn(launch_runners=False) as standin:
        standin.run_latency = args.run_latency
        url = start_api(stack, standin, args.tasks).url
        started = time.time()
        ids = submit_all(url, args.tasks, args.threads)
        submitted = time.time()
        deadline = time.monotonic() + args.deadline
        while not set(ids) <= launched_ids(standin).keys() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling interval of a deadline-bounded wait
        launched = launched_ids(standin)
        calls = list(standin.calls)
        logs = stack.logs

    done = [launched[task_id] for task_id in ids if task_id in launched]
    print(
        f"tasks: {len(ids)} submitted from {args.threads} threads; {len(done)} launched "
        f"(RunJob latency {args.run_latency * 1000:.0f} ms)"
    )
    print(
        f"submit phase: {submitted - started:.2f} s ({len(ids) / (submitted - started):.0f}/s, "
        f"{len(BUSY_RETRIES)} busy retries)"
    )
    if len(done) < len(ids):
        print(f"NOT all launched within {args.deadline:.0f} s (see {logs / 'api.log'})")
        return 1
    if done:
        elapsed = max(done) - started
        print(
            f"dispatch throughput: {len(done) / elapsed:.1f} tasks/s "
            f"(first submit -> last RunJob: {elapsed:.2f} s)"
        )
    kinds = ["run", "get execution", "cancel", "operations", "other"]
    counts = {kind: 0 for kind in kinds}
    for method, path in calls:
        counts[call_kind(method, path)] += 1
    print(
        "Admin API calls per task: "
        + ", ".join(f"{kind} {counts[kind] / len(ids):.2f}" for kind in kinds)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
