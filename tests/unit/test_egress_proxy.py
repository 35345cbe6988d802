"""The runner's egress proxy (job_runner/egress_proxy.py) with real sockets: a Unix
socket where the sandbox would connect, and loopback servers standing in for the
hosts a task may reach (through the development host map, as in `make dev`)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import socketserver
import ssl
import tempfile
import threading

import pytest
from job_runner.egress_policy import EgressPolicy
from job_runner.egress_proxy import EgressProxy

from devtools.api_stand_in import ApiStandIn
from tests.conftest import wait_for


@pytest.fixture
def socket_dir():
    path = tempfile.mkdtemp(prefix="egress-test-")
    yield path
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(path, "egress.sock"))
    os.rmdir(path)


@pytest.fixture
def start_proxy(socket_dir):
    proxies: list[EgressProxy] = []

    def start(allow, dev_hosts=None, **bounds) -> tuple[EgressProxy, list[dict]]:
        events: list[dict] = []
        proxy = EgressProxy(
            os.path.join(socket_dir, "egress.sock"),
            EgressPolicy(allow, dev_hosts),
            events.append,
            **bounds,
        ).start()
        proxies.append(proxy)
        return proxy, events

    yield start
    for proxy in proxies:
        proxy.close()


def connect(proxy: EgressProxy) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(proxy._server.server_address)
    return sock


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def head_of(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        assert chunk, f"the proxy closed the connection after {data!r}"
        data += chunk
    return data


def connect_through(proxy: EgressProxy, target: str) -> tuple[socket.socket, bytes]:
    sock = connect(proxy)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    return sock, head_of(sock)


def test_plain_http_to_an_allowed_host_reaches_it_and_is_recorded(start_proxy):
    with ApiStandIn() as api:
        proxy, events = start_proxy(["api.test"], {"api.test": f"127.0.0.1:{api.port}"})
        with connect(proxy) as sock:
            sock.sendall(
                b"GET http://api.test/v1/things?x=1 HTTP/1.1\r\nHost: api.test\r\n"
                b"Authorization: Bearer k-123\r\nProxy-Connection: keep-alive\r\n\r\n"
            )
            reply = read_all(sock)
        wait_for(lambda: events, 5, message="the egress event")
    assert reply.startswith(b"HTTP/1.1 200")
    assert json.loads(reply.split(b"\r\n\r\n", 1)[1]) == {"ok": True, "path": "/v1/things?x=1"}
    seen = api.requests[0]
    assert seen["path"] == "/v1/things?x=1"
    assert seen["headers"]["authorization"] == "Bearer k-123"
    assert seen["headers"]["connection"] == "close"
    assert "proxy-connection" not in seen["headers"]
    [event] = events
    assert event["host"] == "api.test" and event["port"] == 80 and event["allowed"] is True
    assert event["address"] == "127.0.0.1"
    assert event["bytesSent"] > 0 and event["bytesReceived"] == len(reply)


def test_https_through_connect_is_relayed_untouched(start_proxy):
    with ApiStandIn(tls_names=["api.test"]) as api:
        proxy, events = start_proxy(["*.test"], {"api.test": f"127.0.0.1:{api.port}"})
        sock, head = connect_through(proxy, "api.test:443")
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=api.ca_file)
        with context.wrap_socket(sock, server_hostname="api.test") as tls:
            tls.sendall(
                b"POST /v1/x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 2\r\n"
                b"Connection: close\r\n\r\nhi"
            )
            reply = read_all(tls)
            assert b'"path": "/v1/x"' in reply
        wait_for(lambda: events, 5, message="the egress event")
    assert api.requests[0]["body"] == b"hi"
    [event] = events
    assert event["method"] == "CONNECT" and event["allowed"] is True
    assert event["host"] == "api.test" and event["port"] == 443
    # TLS records both ways: more than the request and reply themselves.
    assert event["bytesSent"] > 60 and event["bytesReceived"] > len(reply)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("other.example.com:443", "not on this task's allow-list"),
        ("169.254.169.254:80", "169.254.169.254 is link-local (the metadata server)"),
        ("metadata.google.internal:80", "metadata server"),
        ("127.0.0.1:8080", "127.0.0.1 is loopback"),
        ("[::ffff:127.0.0.1]:8080", "embeds 127.0.0.1 is loopback"),
        ("10.0.0.7:443", "10.0.0.7 is private"),
        ("localhost:80", "localhost resolves to"),
    ],
)
def test_refused_targets_get_403_and_an_egress_event(start_proxy, target, reason):
    proxy, events = start_proxy(["api.example.com", "localhost", "metadata.google.internal"])
    sock, head = connect_through(proxy, target)
    with sock:
        body = read_all(sock)
    assert head.startswith(b"HTTP/1.1 403")
    assert reason in body.decode()
    wait_for(lambda: events, 5, message="the egress event")
    [event] = events
    assert event["allowed"] is False and reason in event["reason"]
    assert "bytesSent" not in event


def test_a_plain_http_request_to_a_refused_host_never_leaves(start_proxy):
    with ApiStandIn() as api:
        proxy, events = start_proxy(["api.test"])
        with connect(proxy) as sock:
            sock.sendall(f"GET http://127.0.0.1:{api.port}/ HTTP/1.1\r\n\r\n".encode())
            reply = read_all(sock)
    assert reply.startswith(b"HTTP/1.1 403")
    assert api.requests == []
    wait_for(lambda: events, 5, message="the egress event")
    assert events[0]["allowed"] is False and "loopback" in events[0]["reason"]


def test_requests_a_proxy_cannot_serve_are_400(start_proxy):
    proxy, events = start_proxy(["api.test"])
    for request in (b"GET /relative HTTP/1.1\r\n\r\n", b"CONNECT api.test HTTP/1.1\r\n\r\n"):
        with connect(proxy) as sock:
            sock.sendall(request)
            assert read_all(sock).startswith(b"HTTP/1.1 400")
    wait_for(lambda: len(events) == 2, 5, message="both events")
    assert all(event["allowed"] is False for event in events)


class Flood(socketserver.BaseRequestHandler):
    """Sends 1 MiB to whoever connects."""

    def handle(self) -> None:
        with contextlib.suppress(OSError):
            self.request.sendall(b"x" * 1024 * 1024)


def test_the_byte_limit_cuts_the_connection_that_passes_it(start_proxy):
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), Flood) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        port = server.server_address[1]
        proxy, events = start_proxy(
            ["flood.test"], {"flood.test": f"127.0.0.1:{port}"}, max_bytes=100_000
        )
        sock, head = connect_through(proxy, "flood.test:443")
        with sock:
            received = read_all(sock)
        wait_for(lambda: events, 5, message="the egress event")
        # A new connection past the limit is refused outright.
        second, head2 = connect_through(proxy, "flood.test:443")
        with second:
            refusal = head2 + read_all(second)
        server.shutdown()
    assert head.startswith(b"HTTP/1.1 200")
    assert len(received) <= 100_000
    assert "byte limit (100000)" in events[0]["reason"]
    assert events[0]["bytesReceived"] <= 100_000 + 65536
    assert refusal.startswith(b"HTTP/1.1 403") and b"byte limit" in refusal


def test_the_connection_limit_refuses_the_next_and_reports_only_the_first_refusal(start_proxy):
    with ApiStandIn() as api:
        proxy, events = start_proxy(
            ["api.test"], {"api.test": f"127.0.0.1:{api.port}"}, max_connections=2
        )
        heads = []
        for _ in range(5):
            with connect(proxy) as sock:
                sock.sendall(b"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n")
                heads.append(read_all(sock)[:12])
        wait_for(lambda: len(events) == 3, 5, message="three events")
    assert heads == [b"HTTP/1.1 200"] * 2 + [b"HTTP/1.1 403"] * 3
    assert len(api.requests) == 2
    # Each connection is reported as it ends, which the client need not wait for.
    assert sorted(event["allowed"] for event in events) == [False, True, True]
    [refused] = [event for event in events if not event["allowed"]]
    assert "connection limit (2)" in refused["reason"]
    assert proxy.connections == 5


def test_closing_the_proxy_ends_open_tunnels_and_reports_them(socket_dir):
    with ApiStandIn() as api:
        events: list[dict] = []
        proxy = EgressProxy(
            os.path.join(socket_dir, "egress.sock"),
            EgressPolicy(["api.test"], {"api.test": f"127.0.0.1:{api.port}"}),
            events.append,
        ).start()
        sock, head = connect_through(proxy, "api.test:80")
        assert head.startswith(b"HTTP/1.1 200")
        proxy.close()  # waits for the open tunnel's report
        assert [e["reason"] for e in events] == ["the task ended"]
        assert read_all(sock) == b""
        sock.close()


def test_connections_open_at_once_are_bounded(start_proxy, monkeypatch):
    monkeypatch.setattr("job_runner.egress_proxy.MAX_OPEN_CONNECTIONS", 3)
    proxy, events = start_proxy(["api.test"])
    idle = [connect(proxy) for _ in range(3)]  # each holds a handler, sending nothing
    wait_for(lambda: proxy.handling == 3, 5, message="three handlers")
    with connect(proxy) as fourth:
        assert read_all(fourth) == b""  # closed unread
    for sock in idle:
        sock.close()
    wait_for(lambda: proxy.handling == 0, 5, message="the handlers to end")
    sock, head = connect_through(proxy, "other.test:443")
    sock.close()
    assert head.startswith(b"HTTP/1.1 403")
