"""Local runs and Cloud Storage: a server that cannot store files does not start, a
credential that fails mid-request is a 503 the runner retries (never a 500 and a
lost file), and no local API server ever reaches for the GCE metadata server.

google-auth finds the metadata server at GCE_METADATA_HOST / GCE_METADATA_IP when they
are set: here they name a loopback listener that counts connections, in place of
169.254.169.254."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading

import pytest

from devtools.emulator import free_port
from tests.conftest import BUCKET, PROJECT, ROOT, ApiServer, Caller

NO_CREDENTIALS = {
    "GOOGLE_APPLICATION_CREDENTIALS": "",  # google-auth treats empty as unset
    "STORAGE_EMULATOR_HOST": "",  # so does api/config.py
}


class MetadataStandIn:
    """A loopback listener in the metadata server's place: it counts who connects."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.socket.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:  # closed: the test is over
                return
            self.connections += 1
            connection.close()

    @property
    def env(self) -> dict[str, str]:
        return {"GCE_METADATA_HOST": self.address, "GCE_METADATA_IP": self.address}

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def metadata():
    stand_in = MetadataStandIn()
    yield stand_in
    stand_in.close()


def test_a_local_api_server_moves_files_without_touching_the_metadata_server(
    emulator, firestore, tmp_path, metadata, monkeypatch
):
    monkeypatch.delenv("NO_GCE_CHECK")  # devtools' ApiServer sets it itself
    server = ApiServer(emulator, tmp_path / "api.log", **metadata.env).start()
    try:
        caller = Caller(server.url, "alice")
        upload = caller.http.post(
            "/api/uploads", content=b"in", headers={"Content-Type": "application/octet-stream"}
        )
        assert upload.status_code == 201, upload.text
        task = caller.run(
            code="open('out.txt', 'w').write(open('in.txt').read() + 'out')",
            files={"in.txt": {"upload": upload.json()["id"]}},
        )
        assert task["status"] == "completed", task
        assert "out.txt" in [f["path"] for f in task["result"]["files"]], task
        assert caller.http.get(f"/api/tasks/{task['id']}/files/out.txt").content == b"inout"
        caller.http.close()
    finally:
        server.stop()
    assert metadata.connections == 0


def test_without_storage_configured_the_api_stops_at_start_saying_what_to_set(
    emulator, tmp_path, metadata, monkeypatch
):
    monkeypatch.delenv("NO_GCE_CHECK")  # devtools' ApiServer sets it itself
    server = ApiServer(
        emulator,
        tmp_path / "api.log",
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),  # no application-default credentials
        **NO_CREDENTIALS,
        **metadata.env,
    )
    with pytest.raises(RuntimeError, match="did not start") as refused:
        server.start()
    assert "STORAGE_EMULATOR_HOST" in str(refused.value)
    assert "GOOGLE_APPLICATION_CREDENTIALS" in str(refused.value)
    # Looking for credentials did not probe the metadata server (NO_GCE_CHECK).
    assert metadata.connections == 0


def test_make_dev_names_no_metadata_server_either(emulator, tmp_path, metadata):
    """`make dev` against a real bucket name without credentials: the server it starts
    looks for them without probing the metadata server, and stops saying what to set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("NO_GCE_CHECK", "STORAGE_EMULATOR_HOST")
    }
    env.update(
        PORT=str(free_port()),
        FIRESTORE_EMULATOR_HOST=emulator.host,
        GOOGLE_CLOUD_PROJECT=PROJECT,
        FILES_BUCKET="a-real-bucket",  # so make dev starts no storage emulator
        CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
        GOOGLE_APPLICATION_CREDENTIALS="",
        **metadata.env,
    )
    dev = subprocess.run(
        [sys.executable, "-m", "devtools.dev"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dev.returncode != 0, dev.stdout
    assert "STORAGE_EMULATOR_HOST" in dev.stderr, dev.stderr[-3000:]
    assert metadata.connections == 0


def test_a_storage_credential_error_in_a_request_is_a_503_storage_unavailable(
    firestore, settings, tmp_path, monkeypatch
):
    from api import create_app
    from api.adapters.file_store import GcsFileStore

    for name, value in NO_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    app = create_app(settings, file_store=GcsFileStore(BUCKET, PROJECT), start_background=False)
    reply = app.test_client().post(
        "/api/uploads",
        data=b"x",
        headers={"Content-Type": "application/octet-stream", "X-User-Id": "alice"},
    )
    assert reply.status_code == 503, reply.get_data(as_text=True)
    assert reply.headers["Retry-After"].isdigit()
    assert reply.get_json()["error"]["code"] == "storage_unavailable"


def test_a_missing_bucket_is_a_503_storage_unavailable_not_a_500(firestore, settings):
    from api import create_app
    from tests.conftest import with_settings

    app = create_app(with_settings(settings, files_bucket="no-such-bucket"), start_background=False)
    reply = app.test_client().post(
        "/api/uploads",
        data=b"x",
        headers={"Content-Type": "application/octet-stream", "X-User-Id": "alice"},
    )
    assert reply.status_code == 503, reply.get_data(as_text=True)
    assert reply.get_json()["error"]["code"] == "storage_unavailable"
