"""Start and stop the Firestore emulator on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FirestoreEmulator:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> FirestoreEmulator:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise SystemExit(
                "The Firestore emulator needs the gcloud CLI: install google-cloud-cli and "
                "google-cloud-cli-firestore-emulator (and Java 17+)."
            )
        log = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [gcloud, "emulators", "firestore", "start", f"--host-port={self.host}", "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own group: stop() takes the Java child too
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"The Firestore emulator exited early (see {self.log_path}).")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"The Firestore emulator did not start in {START_TIMEOUT_SECONDS} s.")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}/", timeout=1) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def clear(self, project: str) -> None:
        """Delete every document of `project` (the emulator's own reset endpoint)."""
        url = f"http://{self.host}/emulator/v1/projects/{project}/databases/(default)/documents"
        request = urllib.request.Request(url, method="DELETE")
        # The emulator answers 409 while a transaction of an earlier client (a server a
        # test just stopped, its dispatcher mid-pass) still holds a lock; it is released
        # within seconds, so ask again until a deadline.
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(request, timeout=30):
                    return
            except urllib.error.HTTPError as error:
                if error.code != 409 or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)  # polling interval of a deadline-bounded retry

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
