"""Admission under load from one user, fairness across users, and Firestore cost.

EXECUTOR=cloudrun against the loopback Cloud Run Admin API stand-in (its RunJob
answers at once), so the sandbox does not bound what is measured. Prints:
  1. a burst of 100 concurrent submissions from one user: status counts, p50/p99;
  2. sustained submissions from one user for 30 s at the highest rate (of those
     probed, 5 s each) that stayed free of 5xx while the API kept up with it (p50
     under 1 s): status counts, p50/p99;
  3. the fairness wait of a second user behind a backlog (4 slots, one user's
     40 tasks queued): how many of the backlog started before it, and how long it
     waited after a slot freed;
  4. Firestore reads, writes and transactions per code task, counted in this process
     by wrapping the Firestore client's RPCs, for an API served in-process whose
     stand-in starts the real job-runner (submit, launch, claim, result, one ?wait).
Run with `.venv/bin/python bench/admission.py` (or `make bench`; `--quick` for a smoke
run: smaller numbers everywhere).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.cloud_run_standin import CloudRunStandIn  # noqa: E402
from devtools.emulator import free_port  # noqa: E402
from devtools.local_stack import LocalStack, add_quick_flag  # noqa: E402

PROJECT = "demo-bench"
JOB = f"projects/{PROJECT}/locations/us-central1/jobs/runner"
CODE = {"kind": "code", "language": "python", "code": "print(1)"}
KEEPING_UP_P50_SECONDS = 1.0
NO_ANSWER: Counter[str] = Counter()  # requests that got no answer, by httpx error


@dataclass(frozen=True)
class Scale:
    """How much of each phase: the full measurement, or a smoke run (`--quick`)."""

    warm_up: int = 20
    burst: int = 100
    probe_rates: tuple[int, ...] = (10, 20, 40, 80, 160)
    probe_seconds: float = 5
    sustained_seconds: float = 30
    slots: int = 4
    backlog: int = 40
    cost_tasks: int = 20


QUICK = Scale(
    warm_up=3,
    burst=10,
    probe_rates=(10,),
    probe_seconds=1,
    sustained_seconds=2,
    slots=2,
    backlog=6,
    cost_tasks=2,
)


def api_env(standin: CloudRunStandIn, **extra: str) -> dict[str, str]:
    return {
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "EXECUTOR": "cloudrun",
        "CLOUD_RUN_JOB": JOB,
        "CLOUD_RUN_ENDPOINT": standin.url,
        # What is measured is admission itself: the per-user limits and request rate
        # are lifted (their refusals are 429s, tested in tests/integration).
        "MAX_UNSETTLED_TASKS_PER_USER": "100000",
        "MAX_TASKS_PER_USER_PER_DAY": "100000",
        "MAX_PENDING_TASKS": "100000",
        "USER_REQUESTS_PER_SECOND": "0",
        **extra,
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def summary(results: list[tuple[int, float]]) -> str:
    counts = Counter(status for status, _ in results)
    seconds = [s for _, s in results]
    shown = ", ".join(f"{status} x{n}" for status, n in sorted(counts.items()))
    p50, p99 = percentile(seconds, 0.5) * 1000, percentile(seconds, 0.99) * 1000
    return f"{shown}; p50 {p50:.0f} ms, p99 {p99:.0f} ms, max {max(seconds) * 1000:.0f} ms"


def post(http: httpx.Client, user: str) -> tuple[int, float]:
    started = time.monotonic()
    try:
        status = http.post("/api/tasks", json=CODE, headers={"X-User-Id": user}).status_code
    except httpx.HTTPError as error:
        NO_ANSWER[type(error).__name__] += 1
        status = 599  # no answer at all: counted as a 5xx
    return status, time.monotonic() - started


def burst(url: str, user: str, count: int) -> list[tuple[int, float]]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    with httpx.Client(base_url=url, timeout=60, limits=limits) as http:
        barrier = threading.Barrier(count)

        def one(_):
            barrier.wait()
            return post(http, user)

        with ThreadPoolExecutor(count) as pool:
            return list(pool.map(one, range(count)))


def steady(url: str, user: str, rate: float, seconds: float) -> list[tuple[int, float]]:
    """Open loop: one submission every 1/rate s, whatever the answers take."""
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    with (
        httpx.Client(base_url=url, timeout=60, limits=limits) as http,
        ThreadPoolExecutor(256) as pool,
    ):
        futures, start = [], time.monotonic()
        for n in range(int(rate * seconds)):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the schedule of an open-loop load generator
            futures.append(pool.submit(post, http, user))
        return [f.result() for f in futures]


def load_phases(stack: LocalStack, scale: Scale) -> None:
    with CloudRunStandIn(launch_runners=False) as standin:
        server = stack.api_server("api-load.log", **api_env(standin))
        # A warm instance, as a burst meets one in production: the first requests of a
        # process build its Firestore and Cloud Run clients (a second or more).
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(scale.warm_up):
                post(http, "warm-up")
        results = burst(server.url, "burst-user", scale.burst)
        print(f"1. burst of {scale.burst} from one user: {summary(results)}")
        best = None
        for rate in scale.probe_rates:
            probe = steady(server.url, f"probe-{rate}", rate, scale.probe_seconds)
            clean = all(status < 500 for status, _ in probe)
            keeping_up = percentile([s for _, s in probe], 0.5) < KEEPING_UP_P50_SECONDS
            print(f"   probe {rate}/s for {scale.probe_seconds:.0f} s: {summary(probe)}")
            if not (clean and keeping_up):
                break
            best = rate
        if best is None:
            print("2. sustained: even the lowest probed rate saw a 5xx")
            return
        seconds = scale.sustained_seconds
        started = time.monotonic()
        results = steady(server.url, "steady-user", best, seconds)
        elapsed = time.monotonic() - started
        print(
            f"2. sustained from one user at {best}/s for {seconds:.0f} s "
            f"({len(results) / elapsed:.1f}/s achieved): {summary(results)}"
        )
        server.stop()


def fairness_phase(stack: LocalStack, scale: Scale) -> None:
    assert stack.firestore is not None
    stack.firestore.clear(PROJECT)
    with CloudRunStandIn(launch_runners=False) as standin:
        env = api_env(
            standin, MAX_TASKS_IN_FLIGHT=str(scale.slots), MAX_ACTIVE_TASKS_PER_USER="100"
        )
        server = stack.api_server("api-fair.log", **env)
        with httpx.Client(base_url=server.url, timeout=60) as http:
            alice = {"X-User-Id": "alice"}
            backlog = [
                http.post("/api/tasks", json=CODE, headers=alice).json()["id"]
                for _ in range(scale.backlog)
            ]
            wait_until(lambda: launched(standin) >= scale.slots)
            bob_submitted = time.monotonic()
            bob = http.post("/api/tasks", json=CODE, headers={"X-User-Id": "bob"}).json()["id"]
            ahead, freed_at = 0, None
            for task_id in backlog:
                if status(http, bob, "bob") != "queued":
                    break
                if status(http, task_id, "alice") == "dispatched":
                    freed_at = time.monotonic()
                    before = launched(standin)
                    http.post(f"/api/tasks/{task_id}/cancel", headers=alice)
                    wait_until(lambda before=before: launched(standin) > before)
                    if status(http, bob, "bob") == "queued":
                        ahead += 1
            done = time.monotonic()
        assert freed_at is not None, "no slot of alice's freed before bob's task launched"
        print(
            f"3. fairness: bob's task behind alice's {scale.backlog} ({scale.slots} slots): "
            f"{ahead} of alice's queued tasks started before it; "
            f"{(done - freed_at) * 1000:.0f} ms from the slot freeing to bob's launch; "
            f"{done - bob_submitted:.2f} s from bob's submission"
        )
        server.stop()


def status(http: httpx.Client, task_id: str, user: str) -> str:
    return http.get(f"/api/tasks/{task_id}", headers={"X-User-Id": user}).json()["status"]


def launched(standin: CloudRunStandIn) -> int:
    return sum(1 for method, path in list(standin.calls) if path.endswith(":run"))


def wait_until(condition, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting in the fairness phase")
        time.sleep(0.02)  # polling interval of a deadline-bounded wait


class RpcCounter:
    """Counts the Firestore RPCs this process makes, by wrapping the generated client."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def install(self) -> None:
        from google.cloud.firestore_v1.services.firestore.client import FirestoreClient

        def wrap(name, count_result=None):
            original = getattr(FirestoreClient, name)

            def call(client, *args, **kwargs):
                self.counts[f"rpc {name}"] += 1
                request = kwargs.get("request") or (args[0] if args else None)
                if name == "commit" and request is not None:
                    writes = request["writes"] if isinstance(request, dict) else request.writes
                    self.counts["writes"] += len(writes)
                result = original(client, *args, **kwargs)
                return count_result(result) if count_result else result

            setattr(FirestoreClient, name, call)

        def documents(stream, field):
            for response in stream:
                if getattr(response, field, None) and response._pb.HasField(field):
                    self.counts["reads"] += 1
                yield response

        def aggregation(stream):
            for response in stream:
                self.counts["reads"] += 1  # billed as one read per up to 1000 entries
                yield response

        wrap("commit")
        wrap("begin_transaction")
        wrap("rollback")
        wrap("batch_get_documents", lambda s: documents(s, "found"))
        wrap("run_query", lambda s: documents(s, "document"))
        wrap("run_aggregation_query", aggregation)


def cost_phase(stack: LocalStack, tasks: int) -> None:
    from werkzeug.serving import make_server

    assert stack.firestore is not None
    stack.firestore.clear(PROJECT)
    counter = RpcCounter()
    counter.install()
    logs = stack.logs
    standin = CloudRunStandIn(launch_runners=True, log_path=logs / "runners.log").start()
    port = free_port()
    # This process serves the app itself: the stack already put its emulators, project
    # and NO_GCE_CHECK into the environment.
    os.environ.update(api_env(standin, PORT=str(port), AUTH_MODE="dev"))
    from api import create_app
    from api.config import Settings

    # The submission request alone: an app that neither launches nor runs a loop.
    submit_only = Settings.from_env().model_copy(update={"dispatch_inline": False})
    quiet = create_app(submit_only, start_background=False)
    logging.getLogger().handlers = [logging.FileHandler(logs / "api-cost.log")]
    before = Counter(counter.counts)
    for _ in range(tasks):
        quiet.test_client().post("/api/tasks", json=CODE, headers={"X-User-Id": "submit-only"})
    submit_cost = counter.counts - before
    counter.counts.clear()

    app = create_app()
    logging.getLogger().handlers = [logging.FileHandler(logs / "api-cost.log")]
    server = make_server("127.0.0.1", port, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=90) as http:
            user = {"X-User-Id": "cost-user"}
            ids = [
                http.post("/api/tasks", json=CODE, headers=user).json()["id"] for _ in range(tasks)
            ]
            finals = [
                http.get(f"/api/tasks/{i}?wait=60", headers=user).json()["status"] for i in ids
            ]
        total = Counter(counter.counts)
    finally:
        server.shutdown()
        app.extensions["agent_platform"].dispatcher.stop()
        standin.stop()

    def per_task(counts: Counter) -> str:
        transactions = counts["rpc begin_transaction"]
        return (
            f"reads {counts['reads'] / tasks:.1f}, writes {counts['writes'] / tasks:.1f}, "
            f"transactions {transactions / tasks:.1f}, commits {counts['rpc commit'] / tasks:.1f}"
        )

    print(f"4. Firestore per code task ({tasks} tasks, {Counter(finals)}):")
    print(f"   the submission request alone (no launch): {per_task(submit_cost)}")
    print(
        "   whole life (submit, launch, claim, events, result, one ?wait poll, background "
        f"loops): {per_task(total)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cost-tasks", type=int, default=Scale.cost_tasks)
    add_quick_flag(parser)
    args = parser.parse_args()
    scale = QUICK if args.quick else replace(Scale(), cost_tasks=args.cost_tasks)
    with LocalStack(PROJECT) as stack:
        load_phases(stack, scale)
        fairness_phase(stack, scale)
        cost_phase(stack, scale.cost_tasks)
        logs = stack.logs
    if NO_ANSWER:
        print(f"requests without an answer (599 above), by client error: {dict(NO_ANSWER)}")
    print(f"(logs: {logs})")


if __name__ == "__main__":
    main()
