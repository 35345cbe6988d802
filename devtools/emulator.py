"""Start and stop the Firestore emulator on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT_SECONDS = 60


def free_port() -> int:
    """A loopback port free now, below the kernel's ephemeral range: a port the kernel
    picked (bind to 0) may be handed to some process's outgoing connection before our
    server binds it, which failed a test session's server start."""
    low, _ = _ephemeral_range()
    for _ in range(200):
        port = random.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise OSError("no free loopback port below the ephemeral range")


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            low, high = (int(value) for value in ports.read().split())
            return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def launch(
    name: str,
    command: list[str],
    log_path: Path | None,
    ready: Callable[[], bool],
    timeout: float,
) -> subprocess.Popen:
    """Start `command` in its own process group (so stop_group takes its children too)
    and wait until `ready()` or `timeout` seconds; the process, or SystemExit saying why."""
    log = open(log_path, "wb") if log_path else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"The {name} exited early (see {log_path}).")
        if ready():
            return process
        time.sleep(0.05)  # polling interval of the deadline-bounded wait
    stop_group(process)
    raise SystemExit(f"The {name} did not start in {timeout} s.")


def stop_group(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


class FirestoreEmulator:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    @classmethod
    def existing(cls, host: str) -> FirestoreEmulator:
        """One already running at `host` (host:port), started by someone else: stop()
        leaves it running."""
        emulator = cls()
        emulator.host = host
        emulator.port = int(host.rsplit(":", 1)[1])
        return emulator

    def start(self) -> FirestoreEmulator:
        gcloud = shutil.which("gcloud")
        if gcloud is None:
            raise SystemExit(
                "The Firestore emulator needs the gcloud CLI: install google-cloud-cli and "
                "google-cloud-cli-firestore-emulator (and Java 17+)."
            )
        self.process = launch(
            "Firestore emulator",
            [gcloud, "emulators", "firestore", "start", f"--host-port={self.host}", "--quiet"],
            self.log_path,
            self.ready,
            START_TIMEOUT_SECONDS,
        )
        return self

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
        stop_group(self.process)
