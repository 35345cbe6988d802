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
Run with `.venv/bin/python bench/admission.py` (or `make bench`).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devtools.api_server import ApiServer  # noqa: E402
from devtools.cloud_run_standin import CloudRunStandIn  # noqa: E402
from devtools.emulator import FirestoreEmulator, free_port  # noqa: E402

PROJECT = "demo-bench"
JOB = f"projects/{PROJECT}/locations/us-central1/jobs/runner"
CODE = {"kind": "code", "language": "python", "code": "print(1)"}
PROBE_RATES = (10, 20, 40, 80, 160)
PROBE_SECONDS = 5
KEEPING_UP_P50_SECONDS = 1.0
NO_ANSWER: Counter[str] = Counter()  # requests that got no answer, by httpx error


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


def load_phases(logs: Path, emulator: FirestoreEmulator) -> None:
    standin = CloudRunStandIn(launch_runners=False).start()
    server = ApiServer(emulator, logs / "api-load.log", **api_env(standin)).start()
    try:
        # A warm instance, as a burst meets one in production: the first requests of a
        # process build its Firestore and Cloud Run clients (a second or more).
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(20):
                post(http, "warm-up")
        results = burst(server.url, "burst-user", 100)
        print(f"1. burst of 100 from one user: {summary(results)}")
        best = None
        for rate in PROBE_RATES:
            probe = steady(server.url, f"probe-{rate}", rate, PROBE_SECONDS)
            clean = all(status < 500 for status, _ in probe)
            keeping_up = percentile([s for _, s in probe], 0.5) < KEEPING_UP_P50_SECONDS
            print(f"   probe {rate}/s for {PROBE_SECONDS} s: {summary(probe)}")
            if not (clean and keeping_up):
                break
            best = rate
        if best is None:
            print("2. sustained: even the lowest probed rate saw a 5xx")
            return
        started = time.monotonic()
        results = steady(server.url, "steady-user", best, 30)
        elapsed = time.monotonic() - started
        print(
            f"2. sustained from one user at {best}/s for 30 s ({len(results) / elapsed:.1f}/s "
            f"achieved): {summary(results)}"
        )
    finally:
        server.stop()
        standin.stop()


def fairness_phase(logs: Path, emulator: FirestoreEmulator) -> None:
    emulator.clear(PROJECT)
    standin = CloudRunStandIn(launch_runners=False).start()
    env = api_env(standin, MAX_TASKS_IN_FLIGHT="4", MAX_ACTIVE_TASKS_PER_USER="100")
    server = ApiServer(emulator, logs / "api-fair.log", **env).start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            alice = {"X-User-Id": "alice"}
            backlog = [
                http.post("/api/tasks", json=CODE, headers=alice).json()["id"] for _ in range(40)
            ]
            wait_until(lambda: launched(standin) >= 4)
            bob_submitted = time.monotonic()
            bob = http.post("/api/tasks", json=CODE, headers={"X-User-Id": "bob"}).json()["id"]
            ahead, freed_at = 0, time.monotonic()
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
        print(
            f"3. fairness: bob's task behind alice's 40 (4 slots): {ahead} of alice's queued "
            f"tasks started before it; {(done - freed_at) * 1000:.0f} ms from the slot freeing "
            f"to bob's launch; {done - bob_submitted:.2f} s from bob's submission"
        )
    finally:
        server.stop()
        standin.stop()


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


def cost_phase(logs: Path, emulator: FirestoreEmulator, tasks: int) -> None:
    from werkzeug.serving import make_server

    emulator.clear(PROJECT)
    counter = RpcCounter()
    counter.install()
    standin = CloudRunStandIn(launch_runners=True, log_path=logs / "runners.log").start()
    port = free_port()
    os.environ.update(
        api_env(standin, PORT=str(port), FIRESTORE_EMULATOR_HOST=emulator.host, AUTH_MODE="dev")
    )

    from api import create_app
    from api.config import Settings

    # The submission request alone: an app that neither launches nor runs a loop.
    quiet = create_app(
        Settings.from_env().model_copy(update={"dispatch_inline": False}), start_background=False
    )
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
    parser.add_argument("--cost-tasks", type=int, default=20)
    args = parser.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-admission-"))
    emulator = FirestoreEmulator(logs / "firestore.log").start()
    try:
        load_phases(logs, emulator)
        fairness_phase(logs, emulator)
        cost_phase(logs, emulator, args.cost_tasks)
    finally:
        emulator.stop()
    if NO_ANSWER:
        print(f"requests without an answer (599 above), by client error: {dict(NO_ANSWER)}")
    print(f"(logs: {logs})")


if __name__ == "__main__":
    main()
