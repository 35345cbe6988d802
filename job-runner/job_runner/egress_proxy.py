"""Outside the sandbox: the task's one way to the network, an HTTP and HTTPS proxy.

It serves on a Unix socket that is bound into the sandbox; the loopback forwarder
inside (loopback_forwarder.py) listens on the sandbox's own loopback and sets
HTTP_PROXY and HTTPS_PROXY to it. The sandbox has no network interface, so whatever
does not go through here goes nowhere.

- `CONNECT host:port` (HTTPS, or any TLS): the host is checked (egress_policy.py),
  the checked address connected to, `200` answered, and then bytes are relayed both
  ways, untouched: the proxy never sees inside TLS and holds no certificate.
- `GET http://host/path` and the other methods in absolute form (plain HTTP): checked
  the same way, sent on in origin form with `Connection: close` (one request per
  connection, so a second request can never reach a host that was not checked).

Each connection, allowed or refused, becomes one `egress` event when it ends (host,
port, allowed, reason, the address connected to, bytes each way), handed to
`on_event`, which queues it with the task's other events. Connections per task and
bytes per task (both ways together) are bounded: past them, new connections are
refused and the open ones closed.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from job_runner.egress_policy import EgressPolicy, EgressRefused
from job_runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_MAX_CONNECTIONS = 256
DEFAULT_MAX_BYTES = 1024**3
# Connections open at once (each holds a thread here): a program that opens many and
# sends nothing must not exhaust the runner. Past it, a connection is closed unread.
MAX_OPEN_CONNECTIONS = 64
CONNECT_TIMEOUT_SECONDS = 10
HEAD_TIMEOUT_SECONDS = 30
CLOSE_WAIT_SECONDS = 5
CHUNK = 65536
# Hop-by-hop and proxy-only headers, never sent on (RFC 9110 section 7.6.1).
DROPPED_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "upgrade"}
)


class EgressProxy:
    """Serves until `close()`, which ends every open connection and reports it."""

    def __init__(
        self,
        socket_path: str,
        policy: EgressPolicy,
        on_event: Callable[[dict], None],
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.policy = policy
        self.on_event = on_event
        self.max_connections, self.max_bytes = max_connections, max_bytes
        self.connections = 0  # every connection asked for, refused ones included
        self.bytes = 0  # both ways, every connection
        self.handling = 0  # connections accepted and not yet closed
        self._lock = threading.Lock()
        self._open: set[_Tunnel] = set()
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._server = _Server(socket_path, _Handler)
        self._server.proxy = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="egress-proxy", daemon=True
        )

    def start(self) -> EgressProxy:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            self._closed = True
            for tunnel in self._open:
                tunnel.stop("the task ended")
            # Each handler reports its connection as it ends (one still connecting
            # finds the proxy closed): wait for every handler, so every report is in.
            self._idle.wait_for(lambda: self.handling == 0, CLOSE_WAIT_SECONDS)

    def admit(self) -> tuple[bool, str | None]:
        """Count one more connection: whether it is to be reported, and why it is
        refused, if it is. Past the connection limit only the first refusal is
        reported: a program that keeps trying must not fill the task's events."""
        with self._lock:
            self.connections += 1
            reported = self.connections <= self.max_connections + 1
            if self._closed:
                return reported, "the task ended"
            if self.connections > self.max_connections:
                return reported, f"the task's connection limit ({self.max_connections}) is reached"
            if self.bytes >= self.max_bytes:
                return reported, f"the task's byte limit ({self.max_bytes}) is reached"
            return reported, None

    def spend(self, count: int) -> bool:
        """Count bytes relayed; False once the task's byte limit is passed."""
        with self._lock:
            self.bytes += count
            if self.bytes <= self.max_bytes:
                return True
            over = list(self._open)
        for tunnel in over:
            tunnel.stop(f"the task's byte limit ({self.max_bytes}) is reached")
        return False

    def report(self, record: dict) -> None:
        try:
            self.on_event(record)
        except Exception:
            log.error("could not queue an egress event")

    def opened(self, tunnel: _Tunnel) -> bool:
        with self._lock:
            if self._closed:
                return False
            self._open.add(tunnel)
            return True

    def ended(self, tunnel: _Tunnel) -> None:
        with self._lock:
            self._open.discard(tunnel)


class _Tunnel:
    """One relayed connection: the sandbox's side and the host's, and what went by."""

    def __init__(self, proxy: EgressProxy, client, reader, upstream: socket.socket) -> None:
        self.proxy, self.client, self.reader, self.upstream = proxy, client, reader, upstream
        self.sent = self.received = 0  # to the host, from the host
        self.reason: str | None = None

    def stop(self, reason: str) -> None:
        self.reason = self.reason or reason
        for end in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def relay(self, head: bytes = b"") -> None:
        """Relay both ways until either side ends (HTTP and TLS never half-close here)."""
        if not self.proxy.opened(self):
            self.stop("the task ended")
            return
        try:
            back = threading.Thread(target=self._from_host, name="egress-back", daemon=True)
            back.start()
            if head and self._count(len(head), "sent"):
                self.upstream.sendall(head)
            # read1: first what the request's parser already buffered, then the socket.
            while data := self.reader.read1(CHUNK):
                if not self._count(len(data), "sent"):
                    break
                self.upstream.sendall(data)
        except OSError:
            pass
        finally:
            self.stop("")
            back.join()
            self.proxy.ended(self)

    def _from_host(self) -> None:
        try:
            while data := self.upstream.recv(CHUNK):
                if not self._count(len(data), "received"):
                    break
                self.client.sendall(data)
        except OSError:
            pass
        finally:
            self.stop("")

    def _count(self, size: int, way: str) -> bool:
        setattr(self, way, getattr(self, way) + size)
        return self.proxy.spend(size)


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    proxy: EgressProxy

    def verify_request(self, request, client_address) -> bool:
        with self.proxy._lock:
            if self.proxy.handling >= MAX_OPEN_CONNECTIONS:
                return False
            self.proxy.handling += 1
            return True

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.proxy._lock:
                self.proxy.handling -= 1
                self.proxy._idle.notify_all()

    def handle_error(self, request, client_address) -> None:
        log.error("the egress proxy dropped a connection")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = HEAD_TIMEOUT_SECONDS  # for the request's head; the relay has none
    server: _Server

    def address_string(self) -> str:
        return "sandbox"

    def log_message(self, format: str, *args) -> None:
        pass

    def handle(self) -> None:
        self.close_connection = True
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except OSError:  # no request line in HEAD_TIMEOUT_SECONDS, or gone
            return
        if not self.raw_requestline or not self.parse_request():
            return  # parse_request has answered 400 itself
        started = time.monotonic()
        record: dict = {"method": self.command, "host": None, "port": None, "allowed": False}
        reported, refusal = self.server.proxy.admit()
        try:
            self._proxy(record, refusal)
        finally:
            record["durationMs"] = int((time.monotonic() - started) * 1000)
            if reported:
                self.server.proxy.report(record)

    def _proxy(self, record: dict, refusal: str | None) -> None:
        proxy = self.server.proxy
        try:
            host, port, head = self._target()
        except ValueError as problem:
            record["reason"] = str(problem)
            self._refuse(400, str(problem))
            return
        record.update(host=host.lower().strip("[]"), port=port)
        try:
            if refusal:
                raise EgressRefused(refusal)
            record["host"], targets = proxy.policy.resolve(host, port)
        except EgressRefused as refused:
            record["reason"] = str(refused)
            self._refuse(403, f"egress refused: {refused}")
            return
        record["allowed"] = True
        try:
            upstream = _connect(targets)
        except OSError as error:
            record["reason"] = f"could not connect: {error.strerror or error}"
            self._refuse(502, record["reason"])
            return
        record["address"] = upstream.getpeername()[0]
        self.connection.settimeout(None)
        tunnel = _Tunnel(proxy, self.connection, self.rfile, upstream)
        with upstream:
            if self.command == "CONNECT":
                self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self.wfile.flush()
            tunnel.relay(head)
        record.update(bytesSent=tunnel.sent, bytesReceived=tunnel.received)
        if tunnel.reason:
            record["reason"] = tunnel.reason

    def _target(self) -> tuple[str, int, bytes]:
        """(host, port, the request's head to send on: empty for CONNECT).

        :raises ValueError: not a request a proxy can serve.
        """
        if self.command == "CONNECT":
            host, _, number = self.path.rpartition(":")
            if not host or not number.isdigit():
                raise ValueError("CONNECT takes host:port")
            return host, int(number), b""
        parts = urlsplit(self.path)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError("a proxy request names an http:// URL (https goes by CONNECT)")
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError("not a valid port") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"{self.command} {path} {self.request_version}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in DROPPED_HEADERS]
        if "host" not in self.headers:
            lines.append(f"Host: {parts.netloc}")
        lines.append("Connection: close")
        return parts.hostname, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _refuse(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


def _connect(targets: list[tuple]) -> socket.socket:
    """A connection to the first checked address that answers."""
    problem: OSError = OSError("no address")
    for family, sockaddr in targets:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT_SECONDS)
            sock.connect(sockaddr)
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError as error:
            sock.close()
            problem = error
    raise problem
