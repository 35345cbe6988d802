"""Everything a benchmark needs, started in one place: the Firestore emulator, the
Cloud Storage emulator with the files bucket, and API server processes wired to both.

    with LocalStack("demo-bench") as stack:
        server = stack.api_server("api.log", EXECUTOR="cloudrun", ...)
        ...

An emulator named by FIRESTORE_EMULATOR_HOST or STORAGE_EMULATOR_HOST in the
environment is used as it is (tests/e2e/test_bench_quick.py hands over the test
session's); otherwise the stack starts its own and stops it on exit. While the stack
is open, this process's environment names the same emulators, the project and
NO_GCE_CHECK, so the clients a benchmark builds in-process (a storage client, a
FirestoreStore, create_app) use them too; it is restored on exit.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from types import TracebackType

from devtools.api_server import LOCAL_ENV, ApiServer
from devtools.emulator import FirestoreEmulator
from devtools.storage_emulator import StorageEmulator
from devtools.task_root import ensure_task_root

BUCKET = "bench-agent-files"


def add_quick_flag(parser: argparse.ArgumentParser) -> None:
    """`--quick`: a handful of iterations, to show the script still runs and prints its
    figures (tests/e2e/test_bench_quick.py); the figures themselves mean little."""
    parser.add_argument(
        "--quick", action="store_true", help="a handful of iterations (a smoke run)"
    )


class LocalStack:
    def __init__(self, project: str, logs: Path | None = None, bucket: str = BUCKET) -> None:
        self.project = project
        self.bucket = bucket
        self.logs = logs or Path(tempfile.mkdtemp(prefix="bench-"))
        self.firestore: FirestoreEmulator | None = None
        self.storage: StorageEmulator | None = None
        self._servers: list[ApiServer] = []
        self._saved_env: dict[str, str | None] = {}

    @property
    def env(self) -> dict[str, str]:
        """What a process needs to use this stack (an API server adds its own settings)."""
        assert self.firestore is not None and self.storage is not None, "not started"
        return {
            **LOCAL_ENV,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "FIRESTORE_EMULATOR_HOST": self.firestore.host,
            "STORAGE_EMULATOR_HOST": self.storage.url,
            "FILES_BUCKET": self.bucket,
            # The default environment's root, as the runner image's (built once, cached).
            "TASK_ROOT": os.environ.get("TASK_ROOT") or str(ensure_task_root()),
        }

    def start(self) -> LocalStack:
        try:
            firestore_host = os.environ.get("FIRESTORE_EMULATOR_HOST")
            self.firestore = (
                FirestoreEmulator.existing(firestore_host)
                if firestore_host
                else FirestoreEmulator(self.logs / "firestore.log").start()
            )
            storage_url = os.environ.get("STORAGE_EMULATOR_HOST")
            self.storage = (
                StorageEmulator.existing(storage_url)
                if storage_url
                else StorageEmulator(self.logs / "fake-gcs-server.log").start()
            )
            self.storage.create_bucket(self.bucket)
        except BaseException:
            self.stop()
            raise
        for name, value in self.env.items():
            self._saved_env[name] = os.environ.get(name)
            os.environ[name] = value
        return self

    def api_server(self, log_name: str, **env: str) -> ApiServer:
        """A started API server process on this stack (gunicorn, local executor unless
        `env` says otherwise); stopped with the stack if not before."""
        assert self.firestore is not None, "not started"
        server = ApiServer(self.firestore, self.logs / log_name, **{**self.env, **env})
        self._servers.append(server)
        return server.start()

    def stop(self) -> None:
        for server in self._servers:
            server.stop()
        if self.storage is not None:
            self.storage.stop()
        if self.firestore is not None:
            self.firestore.stop()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
