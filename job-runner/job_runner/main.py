"""The job-runner: one process (one Cloud Run Job execution) runs one task.

Env contract (DESIGN section 8): TASK_ID, TASK_TOKEN, API_URL, and Cloud Run's own
CLOUD_RUN_EXECUTION / CLOUD_RUN_TASK_ATTEMPT. The token is all the runner holds.

Exit status: 0 once the task is reported (whatever the user's program did) or when
there is nothing to do (already settled, claimed by another execution); non-zero
only when the result could not be reported, so Cloud Run retries only
infrastructure failures.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tarfile
import threading
import time

from job_runner import logs
from job_runner.api_client import ApiRefused, ApiUnreachable, TaskApi
from job_runner.code_task import run_code_task
from job_runner.environ import forget_environment_variable
from job_runner.events import EventSender
from job_runner.file_channel import FileChannel
from job_runner.sandbox import SandboxError, make_sandbox
from job_runner.sandboxes.choice import forget_choice
from job_runner.task_access import DevHostsRefused, TaskAccess
from job_runner.task_space import bounds_used, enter_private_mounts
from job_runner.workspace import make_private_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from job_runner.spec import TaskSpec

EXIT_REPORTED = 0
EXIT_UNREPORTED = 1
EXIT_BAD_ENV = 2


def main(argv: list[str] | None = None) -> int:
    if "--self-check" in (sys.argv[1:] if argv is None else argv):
        from job_runner.self_check import main as self_check

        return self_check()
    task_id = os.environ.get("TASK_ID", "")
    token = os.environ.get("TASK_TOKEN", "")
    api_url = os.environ.get("API_URL", "")
    log = logs.configure(task_id)
    if not (task_id and token and api_url):
        log.error("TASK_ID, TASK_TOKEN and API_URL must all be set")
        return EXIT_BAD_ENV
    # Nothing below may hand the token to user code: the sandbox starts from an empty
    # environment, but drop it from ours too, and from /proc/<pid>/environ.
    if not forget_environment_variable("TASK_TOKEN"):
        log.warning("the task token is still in /proc/self/environ (it could not be blanked)")
    # Before any thread: a mount namespace can only be entered by a single thread.
    enter_private_mounts()

    api = TaskApi(
        base_url=api_url,
        task_id=task_id,
        token=token,
        execution=os.environ.get("CLOUD_RUN_EXECUTION", "unnamed-execution"),
        attempt=int(os.environ.get("CLOUD_RUN_TASK_ATTEMPT", "0") or 0),
    )
    stop = threading.Event()
    cancel = threading.Event()

    def _terminate(signum, _frame) -> None:
        # Cloud Run sends SIGTERM before it stops an execution (cancel, shutdown):
        # stop the sandbox and let main() report what it has.
        log.warning("received signal %d: stopping the task", signum)
        stop.set()
        cancel.set()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    senders = _handle_migration(log)

    try:
        return _run(api, log, stop, cancel, senders)
    except ApiUnreachable as error:
        log.error("cannot reach the API: %s", error)
        return EXIT_UNREPORTED


def _run(api: TaskApi, log, stop: threading.Event, cancel: threading.Event, senders: list) -> int:
    try:
        spec: TaskSpec = api.claim()["spec"]
    except ApiRefused as refused:
        log.info("not running this task: %s", refused)
        return EXIT_REPORTED
    log.info("claimed task (execution %s, attempt %d)", api.execution, api.attempt)

    refusal = None
    try:
        access = _access(api, spec)
    except (ApiRefused, DevHostsRefused) as problem:
        access, refusal = TaskAccess(), _access_error(problem)
    sender = EventSender(
        api, spec["limits"]["heartbeatSeconds"], on_lost=cancel.set, mask=access.mask
    )
    access.on_egress = lambda record: sender.event("egress", record)
    sender.start()
    senders.append(sender)
    status: str = "failed"
    result: dict | None = None
    error: dict | None = refusal
    used: dict = {}
    try:
        if refusal is None:
            status, result, error = _execute(spec, api, access, sender, cancel, used)
    except SandboxError as problem:
        log.error("sandbox error: %s", problem)
        if os.environ.get("SANDBOX", "auto") == "auto":
            forget_choice()  # a remembered backend that failed: probe again next time
        status, result, error = "failed", None, {"code": "sandbox_error", "message": str(problem)}
    finally:
        last_events = sender.finish()
        used.update(bounds_used())
    # What leaves the runner never holds a secret's value (events are masked as queued).
    result, error = access.mask.data(result), access.mask.data(error)
    if sender.lost.is_set():
        log.info("the task was taken from this execution (cancelled?): not reporting")
        return EXIT_REPORTED
    if stop.is_set() and status == "completed":
        status, error = (
            "failed",
            {"code": "runner_terminated", "message": "The runner was asked to stop."},
        )
    try:
        reply = api.post_result(status, result, error, last_events, used)
    except ApiRefused as refused:
        log.error("the API refused our result: %s", refused)
        return EXIT_UNREPORTED
    log.info("reported %s (accepted: %s)", status, reply.get("accepted"))
    log.info("runner peak memory: %d KiB (outside the task)", _peak_memory_kib())
    return EXIT_REPORTED


def _access(api: TaskApi, spec: TaskSpec) -> TaskAccess:
    """The task's secrets (fetched only if it names any) and egress."""
    secrets = api.secrets() if spec.get("secrets") else {}
    return TaskAccess.from_spec(spec, secrets)


def _access_error(problem: Exception) -> dict:
    if isinstance(problem, ApiRefused):
        said = problem.body.get("message") if isinstance(problem.body, dict) else None
        message = f"The task's secrets could not be fetched: {said or problem}"
        return {"code": "secrets_unavailable", "message": message[:2000]}
    return {"code": "invalid_task", "message": str(problem)}


def _execute(
    spec: TaskSpec, api: TaskApi, access: TaskAccess, sender: EventSender, cancel, used: dict
):
    """(status, result, error) of running the task's kind in the sandbox; `used` gets
    the sandbox's name."""
    sandbox = make_sandbox(os.environ.get("SANDBOX", "auto"))
    used["sandbox"] = sandbox.name
    logs.log.info("sandbox: %s", sandbox.name)
    channel = FileChannel(api.base_url, api.task_id, api.token)
    if spec["kind"] == "environment":
        from job_runner.environment_task import run_environment_build

        return run_environment_build(spec, sandbox, sender.output, cancel, channel, access)
    if spec.get("environment"):
        place = make_private_dir(os.environ.get("TMPDIR", "/tmp"), "environment-")
        try:
            problem = _restore_environment(spec, channel, access, sender, place)
            if problem is not None:
                return "failed", None, problem
            return _run_kind(spec, sandbox, api, access, sender, cancel, channel)
        finally:
            shutil.rmtree(place, ignore_errors=True)
    return _run_kind(spec, sandbox, api, access, sender, cancel, channel)


def _restore_environment(
    spec: TaskSpec, channel: FileChannel, access: TaskAccess, sender: EventSender, place: str
) -> dict | None:
    """Fetch and unpack the task's custom environment into `place` for its sandbox;
    the time it took is one of the task's events. An error dict if it could not be."""
    from job_runner.environment_task import fetch_environment
    from job_runner.file_channel import TransferFailed

    environment = spec["environment"]
    started = time.monotonic()
    try:
        access.environment = fetch_environment(environment, channel, place)
    except (TransferFailed, OSError, tarfile.TarError) as problem:
        message = f"The environment {environment['name']!r} could not be restored: {problem}"
        return {"code": "environment_unavailable", "message": message[:2000]}
    sender.event(
        "status",
        {
            "state": "environment_restored",
            "environment": environment["name"],
            "sizeBytes": environment["size"],
            "seconds": round(time.monotonic() - started, 3),
            "unpackSeconds": round(access.environment.seconds, 3),
        },
    )
    return None


def _run_kind(
    spec, sandbox, api: TaskApi, access: TaskAccess, sender: EventSender, cancel, channel
):
    if spec["kind"] == "code":
        return run_code_task(spec, sandbox, sender.output, cancel, channel, access)
    if spec["kind"] == "agent":
        # Imported here: code tasks, whose start-up is measured, never load them.
        if spec["agent"].get("engine", "messages") == "claude-code":
            from job_runner.claude_code import run_claude_code_task as run_agent
        else:
            from job_runner.agent_task import run_agent_task as run_agent

        return run_agent(
            spec, sandbox, api.base_url, api.token, sender.event, cancel, channel, access
        )
    raise SandboxError(f"this runner cannot run tasks of kind {spec['kind']!r}")


def _peak_memory_kib() -> int:
    """The runner process's own peak resident memory (VmHWM): the task's processes
    are its children, counted apart."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _handle_migration(log) -> list:
    """Cloud Run sends SIGTSTP 10 s before it migrates a running task to another
    machine and SIGCONT right after; the task keeps its state. We log both and send a
    heartbeat on resume, so the API does not take the pause for a lost runner.
    Installed first thing, so no signal can arrive before its handler (SIGTSTP's
    default action would stop the process). Returns the slot for the event sender.
    https://cloud.google.com/run/docs/configuring/task-timeout#maintenance-events"""
    senders: list[EventSender] = []

    def paused(signum, _frame) -> None:
        log.info("maintenance migration announced (SIGTSTP): the task will pause briefly")

    def resumed(signum, _frame) -> None:
        log.info("resumed after migration (SIGCONT)")
        for sender in senders:
            sender.heartbeat_now()

    signal.signal(signal.SIGTSTP, paused)
    signal.signal(signal.SIGCONT, resumed)
    return senders


if __name__ == "__main__":
    sys.exit(main())
