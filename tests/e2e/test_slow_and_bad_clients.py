"""Slow and broken clients against the real server (api/serving.py, ADR 0015): each wait
on a client has a deadline, and bytes that are not HTTP are a 400, never a 500.

The server here has short deadlines so that the tests wait seconds, not minutes."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import ApiServer, wait_for

HEADER_SECONDS = 1
BODY_IDLE_SECONDS = 1
WRITE_IDLE_SECONDS = 2


@pytest.fixture(scope="module")
def server(emulator, storage_emulator, tmp_path_factory) -> Iterator[ApiServer]:
    server = ApiServer(
        emulator,
        tmp_path_factory.mktemp("slow") / "api.log",
        REQUEST_HEADER_SECONDS=str(HEADER_SECONDS),
        REQUEST_BODY_IDLE_SECONDS=str(BODY_IDLE_SECONDS),
        RESPONSE_WRITE_IDLE_SECONDS=str(WRITE_IDLE_SECONDS),
    ).start()
    yield server
    server.stop()


def connect(server: ApiServer, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", server.port))
    sock.settimeout(30)
    return sock


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    while piece := sock.recv(65536):
        received += piece
    return received


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closed the connection (reading what it sends)."""
    started = time.monotonic()
    sock.settimeout(seconds + 10)
    read_all(sock)
    return time.monotonic() - started


def no_unhandled_errors(server: ApiServer) -> None:
    assert "unhandled error" not in server.logs()
    assert "Exception in ASGI application" not in server.logs()


def test_half_sent_headers_are_closed_at_the_header_deadline(server):
    sock = connect(server)
    sock.sendall(b"GET /api/tasks HTTP/1.1\r\nHost: x\r\nX-User-Id: slow\r\n")
    assert closed_within(sock, HEADER_SECONDS) < HEADER_SECONDS + 5


def test_a_body_that_stops_arriving_is_408(server):
    sock = connect(server)
    sock.sendall(
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-User-Id: slow\r\n"
        b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    assert read_all(sock).startswith(b"HTTP/1.1 408 ")


def test_a_malformed_chunked_body_is_400(server):
    sock = connect(server)
    sock.sendall(
        b"POST /api/tasks HTTP/1.1\r\nHost: x\r\nX-User-Id: slow\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    )
    assert read_all(sock).startswith(b"HTTP/1.1 400 ")
    no_unhandled_errors(server)


def test_a_malformed_chunk_deep_inside_an_upload_is_400(server):
    sock = connect(server)
    sock.sendall(
        b"POST /api/uploads HTTP/1.1\r\nHost: x\r\nX-User-Id: slow\r\n"
        b"Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b"x" * 65536
    for _ in range(8):  # past the prefix the server buffers before the app starts
        sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
    sock.sendall(b"zz\r\n")
    reply = read_all(sock)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 400 "), reply[:200]
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "slow"}, timeout=60) as http:
        assert http.get("/api/tasks").status_code == 200
    no_unhandled_errors(server)


def test_a_client_hanging_up_mid_upload_never_reaches_the_500_handler(server):
    sock = connect(server)
    sock.sendall(
        b"POST /api/uploads HTTP/1.1\r\nHost: x\r\nX-User-Id: slow\r\n"
        b"Content-Type: application/octet-stream\r\nContent-Length: 4194304\r\n\r\n"
    )
    sock.sendall(b"y" * (1024 * 1024))
    sock.close()
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "slow"}, timeout=60) as http:
        # The server is still whole, and logged the hang-up as no 500.
        assert http.get("/api/tasks").status_code == 200
    no_unhandled_errors(server)


def test_a_download_nobody_reads_is_closed_at_the_write_deadline(server):
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "reader"}, timeout=90) as http:
        task = http.post(
            "/api/tasks",
            json={
                "kind": "code",
                "language": "bash",
                "code": "head -c 16777216 /dev/zero > big.bin",
            },
        ).json()
        done = http.get(f"/api/tasks/{task['id']}", params={"wait": 60}).json()
        assert done["status"] == "completed", done
    sock = connect(server, receive_buffer=4096)
    sock.sendall(
        f"GET /api/tasks/{task['id']}/files/big.bin HTTP/1.1\r\nHost: x\r\n"
        "X-User-Id: reader\r\n\r\n".encode()
    )
    assert sock.recv(12).startswith(b"HTTP/1.1 200")
    # Not reading for longer than the deadline: the server gives up on this client.
    wait_for(lambda: _write_deadline_logged(server), WRITE_IDLE_SECONDS + 20, interval=0.2)
    sock.close()


def _write_deadline_logged(server: ApiServer) -> bool:
    return "took no response" in server.logs()


def test_a_closed_event_stream_gives_its_slot_back_at_once(server):
    headers = {"X-User-Id": "streamer", "Accept": "text/event-stream"}
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "streamer"}, timeout=30) as http:
        task = http.post(
            "/api/tasks",
            json={"kind": "code", "language": "python", "code": "import time; time.sleep(60)"},
        ).json()
        url = f"/api/tasks/{task['id']}/events"
        for _ in range(4):  # MAX_HELD_REQUESTS_PER_USER streams, each closed
            with http.stream("GET", url, headers=headers) as stream:
                assert stream.status_code == 200
        # Each slot is back within a wait of the stream (0.5 s), not at its next
        # keep-alive (15 s): a fifth stream is allowed within seconds.
        started = time.monotonic()

        def fifth_allowed() -> bool:
            with http.stream("GET", url, headers=headers) as stream:
                return stream.status_code == 200

        wait_for(fifth_allowed, 10, interval=0.2, message="a slot given back")
        assert time.monotonic() - started < 5
        http.post(f"/api/tasks/{task['id']}/cancel")


def test_a_pipelined_request_held_past_the_header_deadline_is_answered(server):
    # The second request's headers are in while the first is answered, so the server
    # starts it on the first one's completion; its header deadline must not then fire.
    with httpx.Client(base_url=server.url, headers={"X-User-Id": "piper"}, timeout=30) as http:
        task = http.post(
            "/api/tasks",
            json={"kind": "code", "language": "bash", "code": "sleep 60"},
        ).json()
        held = HEADER_SECONDS + 2
        sock = connect(server)
        request = f"GET /api/tasks/{task['id']}{{}} HTTP/1.1\r\nHost: x\r\nX-User-Id: piper\r\n\r\n"
        sock.sendall((request.format("") + request.format(f"?wait={held}")).encode())
        received = b""
        while received.count(b"HTTP/1.1 200") < 2 and (piece := sock.recv(65536)):
            received += piece
        sock.close()
        http.post(f"/api/tasks/{task['id']}/cancel")
    assert received.count(b"HTTP/1.1 200") == 2, received
