"""A loopback stand-in for the Cloud Run Admin API v2: jobs:run, executions, operations.

It speaks the REST wire format closely enough for the real `google.cloud.run_v2`
clients (REST transport, `api_endpoint` = its URL, anonymous credentials), and each
RunJob starts the real job-runner as a local process with the overridden env, as a
Cloud Run Job execution would. Every body it sends is built from run_v2 or
google.longrunning types; the paths are those of the installed library
(run_v2/services/{jobs,executions}/transports/rest_base.py).

    python -m devtools.cloud_run_standin --port 8090
    EXECUTOR=cloudrun CLOUD_RUN_JOB=projects/demo/locations/us-central1/jobs/runner \
        CLOUD_RUN_ENDPOINT=http://127.0.0.1:8090 make dev
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import secrets
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlencode, urlsplit

from google.api_core import exceptions as gexc
from google.cloud import run_v2
from google.longrunning import operations_pb2
from google.protobuf import json_format

_SEGMENT = r"[^/:]+"
_JOB = rf"projects/{_SEGMENT}/locations/{_SEGMENT}/jobs/{_SEGMENT}"
_EXECUTION = rf"{_JOB}/executions/{_SEGMENT}"
_OPERATION = rf"projects/{_SEGMENT}/locations/{_SEGMENT}/operations/{_SEGMENT}"
ROUTES = [
    ("POST", re.compile(rf"/v2/({_JOB}):run"), "_run_job"),
    ("GET", re.compile(rf"/v2/({_EXECUTION})"), "_get_execution"),
    ("POST", re.compile(rf"/v2/({_EXECUTION}):cancel"), "_cancel_execution"),
    ("GET", re.compile(rf"/v2/({_OPERATION})"), "_get_operation"),
]
# Cloud Run's task timeout when a job sets none.
DEFAULT_TASK_TIMEOUT = timedelta(minutes=10)
SHORT_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class ExecutionRecord:
    name: str
    request: run_v2.RunJobRequest
    created: datetime
    timeout: timedelta
    process: subprocess.Popen | None = None
    ended: datetime | None = None
    exit_code: int | None = None
    cancelled: bool = False


class QuotaExceeded(gexc.TooManyRequests):
    """A RunJob refused for the quota, with the Retry-After it answers with."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CloudRunStandIn:
    """The server and its test knobs: `calls`, `fail_next_runs`, `executions`,
    `kill_runner()`, `stop()`. With `launch_runners=False`, RunJob starts nothing and
    the execution runs until cancelled; `run_latency` (seconds) delays each RunJob
    answer, as the real API's latency would (both for dispatch benchmarks).

    Cloud Run's "Job run requests per minute per region" quota: `run_quota` RunJob
    calls per `quota_window` seconds (a sliding window; None: no quota) are accepted,
    the others answered 429 with a Retry-After of when the window frees a call; and
    `refuse_share` of the calls (0 to 1) are answered 429 at random, Retry-After 1.
    `refused` counts the 429s."""

    def __init__(
        self, port: int = 0, *, launch_runners: bool = True, log_path: Path | None = None
    ) -> None:
        self.launch_runners = launch_runners
        self.run_latency = 0.0
        self.log_path = log_path
        self.calls: list[tuple[str, str]] = []
        self.fail_next_runs: list[int] = []
        self.run_quota: int | None = None
        self.quota_window = 60.0
        self.refuse_share = 0.0
        self.refused = 0
        self._accepted_at: deque[float] = deque()
        self.executions: dict[str, ExecutionRecord] = {}
        self._operations: dict[str, str] = {}  # operation name -> execution name
        self._lock = threading.RLock()
        self._workdir = tempfile.mkdtemp(prefix="cloud-run-standin-")
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.daemon_threads = True
        self._server.standin = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CloudRunStandIn:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __enter__(self) -> CloudRunStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill_runner(self, execution_name: str) -> None:
        """SIGKILL the runner process alone, as if its container crashed."""
        process = self.executions[execution_name].process
        assert process is not None, f"{execution_name} has no runner yet"
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            records = list(self.executions.values())
        for record in records:
            self._kill_group(record)
        for record in records:
            if record.process is not None:
                record.process.wait(timeout=10)
        shutil.rmtree(self._workdir, ignore_errors=True)

    def handle(self, method: str, path: str, body: bytes) -> str:
        with self._lock:
            self.calls.append((method, path))
        for route_method, pattern, handler in ROUTES:
            match = pattern.fullmatch(path)
            if match and route_method == method:
                return getattr(self, handler)(match.group(1), body)
        raise gexc.NotFound(f"{method} {path} is not served by this stand-in.")

    def _run_job(self, job: str, body: bytes) -> str:
        with self._lock:
            refusal = self.fail_next_runs.pop(0) if self.fail_next_runs else None
        if refusal is not None:
            raise gexc.from_http_status(refusal, "Refused by the stand-in's fail_next_runs.")
        self._check_quota()
        time.sleep(self.run_latency)
        request = run_v2.RunJobRequest.from_json(body or b"{}", ignore_unknown_fields=True)
        suffix = "".join(secrets.choice(SHORT_ID_ALPHABET) for _ in range(5))
        short = f"{job.rsplit('/', 1)[1]}-{suffix}"
        timeout = request.overrides.timeout or DEFAULT_TASK_TIMEOUT
        record = ExecutionRecord(f"{job}/executions/{short}", request, datetime.now(UTC), timeout)
        with self._lock:
            self.executions[record.name] = record
        if self.launch_runners:
            self._launch(record, job, short)
        return self._new_operation(record)

    def _check_quota(self) -> None:
        with self._lock:
            now = time.monotonic()
            window = self._accepted_at
            while window and window[0] <= now - self.quota_window:
                window.popleft()
            retry_after = None
            if self.run_quota is not None and len(window) >= self.run_quota:
                frees_at = window[0] + self.quota_window if window else now + self.quota_window
                retry_after = max(1, math.ceil(frees_at - now))
            elif random.random() < self.refuse_share:
                retry_after = 1
            if retry_after is None:
                window.append(now)
                return
            self.refused += 1
        raise QuotaExceeded(
            "Quota exceeded for quota metric 'Job run requests' and limit 'Job run requests "
            "per minute per region' of service 'run.googleapis.com' (the stand-in's).",
            retry_after,
        )

    def _launch(self, record: ExecutionRecord, job: str, short: str) -> None:
        overrides = record.request.overrides.container_overrides
        args = list(overrides[0].args) if overrides else []
        env = {e.name: e.value for e in overrides[0].env} if overrides else {}
        env.update(
            CLOUD_RUN_JOB=job.rsplit("/", 1)[1],
            CLOUD_RUN_EXECUTION=short,
            CLOUD_RUN_TASK_INDEX="0",
            CLOUD_RUN_TASK_ATTEMPT="0",
            CLOUD_RUN_TASK_COUNT="1",
            # What the job image carries: its PATH (bubblewrap) and its sandbox policy.
            PATH=os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            SANDBOX="bwrap",
        )
        if os.environ.get("TASK_ROOT"):  # the image's /opt/task-root, here the local root
            env["TASK_ROOT"] = os.environ["TASK_ROOT"]
        with open(self.log_path or os.devnull, "ab") as log:
            process = record.process = subprocess.Popen(
                [sys.executable, "-m", "job_runner", *args],
                env=env,
                cwd=self._workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own group: cancel and timeout take the runner and its sandbox.
                start_new_session=True,
            )
        # No PR_SET_PDEATHSIG here: it fires when the *thread* that forked exits, and
        # this request thread ends as soon as it answers.
        timer = threading.Timer(record.timeout.total_seconds(), self._kill_group, [record])
        timer.daemon = True
        timer.start()
        threading.Thread(target=self._watch, args=(record, process, timer), daemon=True).start()

    def _watch(
        self, record: ExecutionRecord, process: subprocess.Popen, timer: threading.Timer
    ) -> None:
        code = process.wait()
        timer.cancel()
        with self._lock:
            record.exit_code = code
            record.ended = record.ended or datetime.now(UTC)

    def _kill_group(self, record: ExecutionRecord) -> None:
        if record.process is not None and record.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.process.pid, signal.SIGKILL)

    def _cancel_execution(self, name: str, body: bytes) -> str:
        record = self._record(name)
        with self._lock:
            if record.ended is not None:
                raise gexc.FailedPrecondition(f"Execution {name} has already completed.")
            record.cancelled = True
            record.ended = datetime.now(UTC)
        self._kill_group(record)
        return self._new_operation(record)

    def _get_execution(self, name: str, body: bytes) -> str:
        return run_v2.Execution.to_json(self._execution(self._record(name)))

    def _get_operation(self, name: str, body: bytes) -> str:
        with self._lock:
            execution_name = self._operations.get(name)
        if execution_name is None:
            raise gexc.NotFound(f"Operation {name} not found.")
        return self._operation_json(name, self._record(execution_name))

    def _record(self, name: str) -> ExecutionRecord:
        with self._lock:
            record = self.executions.get(name)
        if record is None:
            raise gexc.NotFound(f"Resource '{name}' was not found.")
        return record

    def _new_operation(self, record: ExecutionRecord) -> str:
        project_location = record.name.split("/jobs/")[0]
        name = f"{project_location}/operations/{uuid.uuid4()}"
        with self._lock:
            self._operations[name] = record.name
        return self._operation_json(name, record)

    def _operation_json(self, name: str, record: ExecutionRecord) -> str:
        execution = run_v2.Execution.pb(self._execution(record))
        operation = operations_pb2.Operation(name=name, done=record.ended is not None)
        operation.metadata.Pack(execution)
        if operation.done:
            operation.response.Pack(execution)
        return json_format.MessageToJson(operation, use_integers_for_enums=True)

    def _execution(self, record: ExecutionRecord) -> run_v2.Execution:
        reason, state = run_v2.Condition.ExecutionReason, run_v2.Condition.State
        with self._lock:
            ended, code, cancelled = record.ended, record.exit_code, record.cancelled
        running = ended is None
        succeeded = not running and not cancelled and code == 0
        failed = not running and not cancelled and code != 0
        if running:
            outcome, why = state.CONDITION_RECONCILING, reason.EXECUTION_REASON_UNDEFINED
        elif cancelled:
            outcome, why = state.CONDITION_FAILED, reason.CANCELLED
        elif failed:
            outcome, why = state.CONDITION_FAILED, reason.NON_ZERO_EXIT_CODE
        else:
            outcome, why = state.CONDITION_SUCCEEDED, reason.EXECUTION_REASON_UNDEFINED
        completed = run_v2.Condition(
            type_="Completed",
            state=outcome,
            execution_reason=why,
            last_transition_time=ended or record.created,
        )
        project, location, job, short = record.name.split("/")[1::2]
        return run_v2.Execution(
            name=record.name,
            uid=str(uuid.uuid5(uuid.NAMESPACE_URL, record.name)),
            job=job,
            create_time=record.created,
            start_time=record.created,
            completion_time=ended,
            task_count=record.request.overrides.task_count or 1,
            parallelism=1,
            template=run_v2.TaskTemplate(timeout=record.timeout, max_retries=0),
            reconciling=running,
            conditions=[completed],
            running_count=int(running),
            succeeded_count=int(succeeded),
            failed_count=int(failed),
            cancelled_count=int(cancelled),
            log_uri=_log_uri(project, location, job, short),
        )


def _log_uri(project: str, location: str, job: str, execution: str) -> str:
    query = (
        f'resource.type = "cloud_run_job"\nresource.labels.job_name = "{job}"\n'
        f'resource.labels.location = "{location}"\n'
        f'labels."run.googleapis.com/execution_name" = "{execution}"'
    )
    return "https://console.cloud.google.com/logs/viewer?" + urlencode(
        {"project": project, "advancedFilter": query}
    )


def _error_json(error: gexc.GoogleAPICallError) -> str:
    # Google's HTTP error shape: the HTTP code, and the gRPC status name it stands for.
    status = error.grpc_status_code.name if error.grpc_status_code else "UNKNOWN"
    return json.dumps({"error": {"code": error.code, "message": error.message, "status": status}})


class _Server(ThreadingHTTPServer):
    standin: CloudRunStandIn


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's requests.Session expects
    # Headers and body go out in two writes; with Nagle on, the second waits for the
    # client's delayed ACK and every call costs ~40 ms on loopback.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = unquote(urlsplit(self.path).path)
        headers = {}
        try:
            status, text = 200, self.server.standin.handle(self.command, path, body)
        except QuotaExceeded as error:
            status, text = 429, _error_json(error)
            headers["Retry-After"] = str(error.retry_after)
        except gexc.GoogleAPICallError as error:
            status, text = error.code or 500, _error_json(error)
        except Exception as error:  # a bug here must reach the client as a 500, not a hang
            status, text = 500, _error_json(gexc.InternalServerError(repr(error)))
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve

    def log_message(self, format: str, *args) -> None:
        pass  # `calls` records every request


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument(
        "--run-quota", type=int, help="RunJob calls accepted per minute; the rest get 429"
    )
    parser.add_argument(
        "--refuse-share", type=float, default=0.0, help="share of RunJob calls answered 429"
    )
    args = parser.parse_args()
    standin = CloudRunStandIn(args.port)
    standin.run_quota, standin.refuse_share = args.run_quota, args.refuse_share
    standin.start()
    # `kill` too must take the runners down with the server, through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"Cloud Run Admin API stand-in on {standin.url} (Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        standin.stop()


if __name__ == "__main__":
    main()
