"""The runner's file channel and the API's answers: a 503 (storage_unavailable, with
Retry-After) is retried, so a moment without storage loses no output file; a 4xx is
final. A loopback HTTP server plays the API's internal file endpoint."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from job_runner.file_channel import FileChannel, TransferFailed


class QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


class LoopbackStandIn:
    """A handler class served on a loopback port, in a thread, until close()."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class InternalFilesStandIn(LoopbackStandIn):
    """Answers each PUT with the next of `answers` (status codes), then 201."""

    def __init__(self, answers: list[int]) -> None:
        self.answers = list(answers)
        self.bodies: list[bytes] = []
        stand_in = self

        class Handler(QuietHandler):
            def do_PUT(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.bodies.append(body)
                status = stand_in.answers.pop(0) if stand_in.answers else 201
                code = {503: "storage_unavailable", 400: "invalid_request"}.get(status)
                payload = json.dumps({"error": {"code": code, "message": "no"}} if code else {})
                self.send_response(status)
                if status == 503:
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload.encode())

        self.serve(Handler)


def send(stand_in: InternalFilesStandIn, tmp_path, data: bytes) -> str:
    path = tmp_path / "out.txt"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        channel = FileChannel(stand_in.url, "task-1", "token")
        return channel.send_file("/outputs/0", fd, len(data))
    finally:
        os.close(fd)


def test_a_503_storage_unavailable_is_retried_and_the_file_arrives(tmp_path):
    stand_in = InternalFilesStandIn([503])
    try:
        send(stand_in, tmp_path, b"kept")
    finally:
        stand_in.close()
    assert stand_in.bodies == [b"kept", b"kept"]


def test_a_4xx_is_final(tmp_path):
    stand_in = InternalFilesStandIn([400])
    try:
        with pytest.raises(TransferFailed) as refused:
            send(stand_in, tmp_path, b"refused")
    finally:
        stand_in.close()
    assert refused.value.status == 400
    assert stand_in.bodies == [b"refused"]


class RangedDownloadStandIn(LoopbackStandIn):
    """Serves `data` in the ranges asked for; the first request for the range starting
    at `flaky_at` is answered 503 once."""

    def __init__(self, data: bytes, flaky_at: int) -> None:
        self.ranges: list[str] = []
        stand_in, failed = self, list[int]()

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                asked = self.headers["Range"]
                stand_in.ranges.append(asked)
                start, stop = (int(n) for n in asked.removeprefix("bytes=").split("-"))
                if start == flaky_at and not failed:
                    failed.append(start)
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                piece = data[start : stop + 1]
                self.send_response(206)
                self.send_header("Content-Length", str(len(piece)))
                self.end_headers()
                self.wfile.write(piece)

        self.serve(Handler)


def test_a_parallel_fetch_writes_every_piece_in_place_and_retries_one(tmp_path):
    data = os.urandom(5 * 1024 * 1024 + 17)
    piece = -(-len(data) // 4)
    stand_in = RangedDownloadStandIn(data, flaky_at=2 * piece)
    target = tmp_path / "archive"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        FileChannel(stand_in.url, "task-1", "token").fetch("/environment", fd, len(data), 4)
    finally:
        os.close(fd)
        stand_in.close()
    assert target.read_bytes() == data
    assert len(stand_in.ranges) == 5  # four pieces, one of them twice
