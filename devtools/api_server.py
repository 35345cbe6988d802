"""A real API server process (`gunicorn api.wsgi:app`, as on Cloud Run) on a free
loopback port, for the tests and the benchmarks; `make dev` runs the same command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import httpx

from devtools.emulator import FirestoreEmulator, free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 30
# Every local process: google-auth must never probe the GCE metadata server
# (169.254.169.254) from a developer's machine while it looks for credentials. The
# emulators need none; a missing one is an error at start (api/adapters/storage_check.py).
LOCAL_ENV = {"NO_GCE_CHECK": "true"}


def gunicorn_command() -> list[str]:
    return [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "api.wsgi:app"]


class PortTaken(RuntimeError):
    """The server's port was taken before it could bind it."""


class ApiServer:
    def __init__(self, emulator: FirestoreEmulator, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "PORT": str(self.port),
            "HOST": "127.0.0.1",
            "FIRESTORE_EMULATOR_HOST": emulator.host,
            "GOOGLE_CLOUD_PROJECT": "demo-agent-platform",
            "EXECUTOR": "local",
            "AUTH_MODE": "dev",
            **LOCAL_ENV,
            **env,
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> Self:
        """Start it and return once it answers /health; RuntimeError otherwise. A port
        taken in between (by another process of the machine) is replaced, twice."""
        for _ in range(2):
            try:
                return self._start()
            except PortTaken:
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.env["PORT"] = str(self.port)
        return self._start()

    def _start(self) -> Self:
        self.process = subprocess.Popen(
            gunicorn_command(),
            env=self.env,
            cwd=ROOT,
            stdout=open(self.log_path, "ab"),  # noqa: SIM115 (lives as long as the server)
            stderr=subprocess.STDOUT,
            start_new_session=True,  # kill() takes the master and its worker at once
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                said = self.logs()[-3000:]
                if "Address already in use" in said:
                    raise PortTaken(said)
                raise RuntimeError(f"the API server did not start: {said}")
            time.sleep(0.05)  # polling interval of the deadline-bounded wait above
        return self

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def logs(self) -> str:
        return self.log_path.read_text()

    def kill(self) -> None:
        """SIGKILL the server's master and worker together: no clean shutdown at all."""
        assert self.process is not None, "kill() of a server never started"
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
