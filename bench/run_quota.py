"""A burst of tasks against Cloud Run's RunJob quota: none fails, launches stay under it.

Starts its own emulators (devtools/local_stack.py), a Cloud Run Admin API stand-in
whose RunJob answers at once without starting a runner and answers 429 (with
Retry-After) above `--quota` calls a minute and for `--refuse-share` of the calls at
random, and two API servers (gunicorn, EXECUTOR=cloudrun) sharing one Firestore, each
with RUN_JOB_LAUNCHES_PER_MINUTE=`--rate`. Submits `--tasks` at once, half to each
server, waits until every task was launched (or failed), then prints:
  - tasks submitted, launched and failed (failed must be 0);
  - launched per minute, from the first RunJob accepted to the last, against the
    setting and the quota;
  - the 429s the stand-in answered.
Exits 1 if a task failed or not every task was launched before `--deadline`.
Run with `.venv/bin/python bench/run_quota.py` (`--quick` for a smoke run).
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

from devtools.cloud_run_standin import CloudRunStandIn  # noqa: E402
from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402

JOB = "projects/demo-bench/locations/us-central1/jobs/runner"


def submit(url: str, user: str, count: int) -> list[str]:
    body = {"kind": "code", "language": "python", "code": "print(6 * 7)"}
    with httpx.Client(base_url=url, headers={"X-User-Id": user}, timeout=60) as http:
        ids = []
        for _ in range(count):
            reply = http.post("/api/tasks", json=body)
            while reply.status_code in (429, 503):
                time.sleep(float(reply.headers.get("Retry-After", "1")))
                reply = http.post("/api/tasks", json=body)
            assert reply.status_code == 202, reply.text
            ids.append(reply.json()["id"])
        return ids


def statuses(url: str, ids: list[str], user: str) -> dict[str, str]:
    with httpx.Client(base_url=url, headers={"X-User-Id": user}, timeout=60) as http:
        return {task_id: http.get(f"/api/tasks/{task_id}").json()["status"] for task_id in ids}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--rate", type=int, default=120, help="RUN_JOB_LAUNCHES_PER_MINUTE")
    parser.add_argument("--quota", type=int, default=150, help="the stand-in's RunJob quota")
    parser.add_argument("--refuse-share", type=float, default=0.1, help="429s at random")
    parser.add_argument("--deadline", type=float, default=600, help="seconds to wait")
    add_quick_flag(parser)
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.rate, args.quota, args.deadline = 24, 240, 300, 150

    env = {
        "EXECUTOR": "cloudrun",
        "CLOUD_RUN_JOB": JOB,
        "RUN_JOB_LAUNCHES_PER_MINUTE": str(args.rate),
        "RECONCILE_INTERVAL_SECONDS": "1",
        # No runner ever claims: every task stays in flight, so neither cap may bind.
        "MAX_TASKS_IN_FLIGHT": str(args.tasks + 100),
        "MAX_ACTIVE_TASKS_PER_USER": str(args.tasks + 10),
        "MAX_TASKS_PER_USER_PER_DAY": str(args.tasks + 10),
        "MAX_PENDING_TASKS": str(max(1000, args.tasks + 100)),
    }
    with LocalStack("demo-bench") as stack, CloudRunStandIn(launch_runners=False) as standin:
        standin.run_quota, standin.refuse_share = args.quota, args.refuse_share
        env["CLOUD_RUN_ENDPOINT"] = standin.url
        urls = [stack.api_server(f"api-{n}.log", **env).url for n in (1, 2)]
        shares = [args.tasks // 2, args.tasks - args.tasks // 2]
        started = time.time()
        with ThreadPoolExecutor(2) as pool:
            batches = list(pool.map(submit, urls, ["bench-a", "bench-b"], shares))
        deadline = time.monotonic() + args.deadline
        while time.monotonic() < deadline:
            if len(standin.executions) >= args.tasks:
                break
            time.sleep(0.5)  # polling interval of a deadline-bounded wait
        launched = sorted(r.created.timestamp() for r in list(standin.executions.values()))
        final = {
            **statuses(urls[0], batches[0], "bench-a"),
            **statuses(urls[1], batches[1], "bench-b"),
        }
        refused = standin.refused

    failed = sum(1 for status in final.values() if status == "failed")
    print(
        f"tasks: {args.tasks} submitted to 2 API instances; {len(launched)} launched; "
        f"{failed} failed"
    )
    if len(launched) > 1:
        minutes = (launched[-1] - launched[0]) / 60
        per_minute = (len(launched) - 1) / minutes if minutes else float("inf")
        print(
            f"launch rate: {per_minute / 60:.2f} tasks/s = {per_minute:.0f} per minute "
            f"(RUN_JOB_LAUNCHES_PER_MINUTE {args.rate}, stand-in quota {args.quota}); "
            f"first submit -> last launch: {launched[-1] - started:.1f} s"
        )
    print(f"429s answered by the stand-in: {refused} (random share {args.refuse_share:.0%})")
    if failed or len(launched) < args.tasks:
        print(f"NOT every task launched without failing (logs in {stack.logs})")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
