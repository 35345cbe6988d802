"""Shared fixtures: the real Firestore emulator (one per session, cleared between
tests), the app with its test client, and a real API server process."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from devtools.api_server import ApiServer as DevApiServer
from devtools.emulator import FirestoreEmulator
from devtools.storage_emulator import StorageEmulator
from devtools.task_root import ensure_task_root

os.environ["NO_GCE_CHECK"] = "true"  # no metadata-server probe (devtools.api_server.LOCAL_ENV)

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "demo-test"
BUCKET = "test-agent-files"


def wait_for(condition, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Poll `condition` until it returns something truthy, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {message}")
        time.sleep(interval)  # polling interval of a deadline-bounded wait


def must_match(pattern: str, text: str, flags: int = 0) -> re.Match[str]:
    """re.search that fails the test when `pattern` is not in `text`."""
    match = re.search(pattern, text, flags)
    assert match, f"{pattern!r} not found"
    return match


def output_limits(**changes):
    """The runner's OutputLimits from the `limits.outputs` the API sends it."""
    from job_runner.outputs import OutputLimits
    from job_runner.spec import OutputLimitsSpec

    from api import config

    spec: OutputLimitsSpec = {
        "maxFiles": config.MAX_OUTPUT_FILES,
        "maxFileBytes": config.MAX_OUTPUT_FILE_BYTES,
        "maxTotalBytes": config.MAX_OUTPUT_TOTAL_BYTES,
        "maxPathChars": config.MAX_OUTPUT_PATH_CHARS,
    }
    return OutputLimits.from_spec(spec)._replace(**changes)


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (a runner's holds its task id)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    pids.append(int(entry))
        except OSError:
            continue
    return pids


@pytest.fixture(scope="session")
def storage_emulator(tmp_path_factory):
    """fake-gcs-server with the files bucket; every API server of the session uses it."""
    log = tmp_path_factory.mktemp("storage") / "fake-gcs-server.log"
    storage = StorageEmulator(log).start()
    storage.create_bucket(BUCKET)
    with pytest.MonkeyPatch.context() as environment:  # restored when the session ends
        environment.setenv("STORAGE_EMULATOR_HOST", storage.url)
        environment.setenv("FILES_BUCKET", BUCKET)
        yield storage
    storage.stop()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory, storage_emulator):
    log = tmp_path_factory.mktemp("emulator") / "firestore.log"
    emulator = FirestoreEmulator(log).start()
    with pytest.MonkeyPatch.context() as environment:  # restored when the session ends
        environment.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
        environment.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
        yield emulator
    emulator.stop()


@pytest.fixture
def firestore(emulator):
    """A clean emulator database for this test."""
    emulator.clear(PROJECT)
    yield emulator
    emulator.clear(PROJECT)


@pytest.fixture(scope="session")
def task_root() -> Iterator[Path]:
    """The default environment's root (environments/default/), which every runner the
    tests start gives its tasks as /, as the runner image does: built on the first run
    (a few minutes), then cached under .cache/task-root/."""
    root = Path(os.environ.get("TASK_ROOT") or ensure_task_root())
    with pytest.MonkeyPatch.context() as environment:  # restored when the session ends
        environment.setenv("TASK_ROOT", str(root))
        yield root


@pytest.fixture
def settings():
    from api.config import Settings

    return Settings(
        project=PROJECT,
        public_url="http://127.0.0.1:9",
        reconcile_interval_seconds=1,
        files_bucket=BUCKET,
    )


@pytest.fixture
def app(firestore, settings):
    """The app without its background dispatcher: for request/response behaviour."""
    from api import create_app

    return create_app(settings, start_background=False)


@pytest.fixture
def client(app):
    return app.test_client()


class ApiServer(DevApiServer):
    """A real API server process with the local executor, on the test project."""

    def __init__(self, emulator: FirestoreEmulator, log_path: Path, **env: str) -> None:
        super().__init__(emulator, log_path, **{"GOOGLE_CLOUD_PROJECT": PROJECT, **env})


class Caller:
    """A client of the public API, as one user."""

    def __init__(self, base_url: str, user: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"X-User-Id": user}, timeout=90)

    def submit(self, **body) -> dict:
        body.setdefault("kind", "code")
        if body["kind"] == "code":
            body.setdefault("language", "python")
        reply = self.http.post("/api/tasks", json=body)
        assert reply.status_code == 202, reply.text
        return reply.json()

    def wait(self, task_id: str, seconds: int = 60) -> dict:
        reply = self.http.get(f"/api/tasks/{task_id}", params={"wait": seconds})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def run(self, **body) -> dict:
        task = self.wait(self.submit(**body)["id"])
        assert task["status"] not in ("queued", "dispatched", "running"), task
        return task


@pytest.fixture(scope="module")
def api_server(emulator, tmp_path_factory):
    server = ApiServer(emulator, tmp_path_factory.mktemp("api") / "api.log").start()
    yield server
    server.stop()


@pytest.fixture
def alice(api_server, firestore):
    caller = Caller(api_server.url, "alice")
    yield caller
    caller.http.close()  # an idle keep-alive connection would slow the server's stop


@pytest.fixture
def bob(api_server, firestore):
    caller = Caller(api_server.url, "bob")
    yield caller
    caller.http.close()


def with_settings(settings, **changes):
    return settings.model_copy(update=changes)
