"""Local runs and Cloud Storage: a server that cannot store files does not start, a
credential that fails mid-request is a 503 the runner retries (never a 500 and a
lost file), and no local API server ever reaches for the GCE metadata server.

google-auth finds the metadata server at GCE_METADATA_HOST / GCE_METADATA_IP when they
are set: here they name a loopback listener that counts connections, in place of
169.254.169.254."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.conftest import BUCKET, PROJECT, ApiServer, Caller

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
    emulator, firestore, tmp_path, metadata
):
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
    emulator, tmp_path, metadata
):
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
