"""Outside the sandbox: the LLM relay, the far end of the engine's one channel.

It serves HTTP on a Unix socket that is bound into the sandbox (the loopback
forwarder inside pipes the engine's connections to it). Each request, if it is one
the engine may make (`POST /v1/messages`, `POST /v1/messages/count_tokens`), is sent
on to the API's LLM proxy with the task token added here; whatever "key" came from
inside is dropped. Answers go back as they arrive: a stream chunk by chunk.

Along the way it reads each answer's usage (the same `message_start` and
`message_delta` figures the proxy meters) for the task's `usage` events and result,
and notes a `budget_exceeded` refusal, which ends the task that way.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from job_runner.logs import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

ALLOWED_PATHS = ("/v1/messages", "/v1/messages/count_tokens")
FORWARDED_HEADERS = ("content-type", "anthropic-version", "anthropic-beta", "accept")
PASSED_BACK_HEADERS = (
    "content-type",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    "request-id",
)
# Anthropic's request limit; the proxy enforces it too.
MAX_BODY_BYTES = 32 * 1000 * 1000
CALL_TIMEOUT_SECONDS = 600
# Each connection is a thread of the root runner, outside the task's cgroup: 4,000
# idle ones made 4,006 threads (issue 18). Claude Code and its sub-agents need a few.
MAX_CONNECTIONS = 32
# A connection that sends nothing for this long (idle keep-alive, or a slow request)
# is closed; the engine's HTTP client reconnects.
READ_TIMEOUT_SECONDS = 120


class LlmRelay:
    """Serves until `close()`; `usage` totals what the answers said they used."""

    def __init__(
        self,
        socket_path: str,
        api_url: str,
        token: str,
        on_call: Callable[[dict], None],
        *,
        run_key: str,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT_SECONDS,
    ) -> None:
        target = urlsplit(api_url.rstrip("/"))
        self.scheme, self.netloc = target.scheme, target.netloc
        self.prefix = f"{target.path}/internal/v1/llm"
        self.token = token
        self.run_key = run_key  # what the engine inside sends as its "key"
        self.on_call = on_call
        self.refusal: dict | None = None  # the proxy's budget_exceeded, if it said so
        self.input_tokens = self.output_tokens = self.calls = 0
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"timeout": read_timeout})
        self._server = _Server(socket_path, handler)
        self._server.relay = self
        self._server.slots = threading.BoundedSemaphore(max_connections)
        self._server.cap = max_connections
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), daemon=True)

    def start(self) -> LlmRelay:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def connect(self) -> http.client.HTTPConnection:
        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.netloc, timeout=CALL_TIMEOUT_SECONDS)

    def record(self, usage: dict) -> None:
        spent_in = sum(
            int(usage.get(name) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        spent_out = int(usage.get("output_tokens") or 0)
        with self._lock:
            self.input_tokens += spent_in
            self.output_tokens += spent_out
            self.calls += 1
            totals = {
                "totalInputTokens": self.input_tokens,
                "totalOutputTokens": self.output_tokens,
            }
        self.on_call({"inputTokens": spent_in, "outputTokens": spent_out, **totals})

    def refused(self, body: bytes) -> None:
        try:
            error = json.loads(body).get("error") or {}
        except (ValueError, AttributeError):
            return
        if error.get("type") == "budget_exceeded":
            self.refusal = {"code": "budget_exceeded", "message": str(error.get("message"))}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    relay: LlmRelay
    slots: threading.BoundedSemaphore
    cap: int

    def process_request(self, request, client_address) -> None:
        """A thread per connection, up to the cap; past it the connection is closed
        at once (the engine retries), with no thread made for it."""
        if not self.slots.acquire(blocking=False):
            log.warning("the LLM relay refused a connection: %d already open", self.cap)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        log.warning("the LLM relay dropped a connection", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the engine's HTTP client expects
    server: _Server

    def address_string(self) -> str:
        return "sandbox"

    def log_message(self, format: str, *args) -> None:
        pass

    def do_POST(self) -> None:
        relay = self.server.relay
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True  # the body is not read: the connection ends
            self._answer(413, json.dumps(_error("request_too_large", "over 32 MB")).encode())
            return
        body = self.rfile.read(length)
        if self.headers.get("x-api-key") != relay.run_key:
            refusal = _error("authentication_error", "not this sandbox's channel")
            self._answer(401, json.dumps(refusal).encode())
            return
        if path not in ALLOWED_PATHS:
            self._answer(404, json.dumps(_error("not_found_error", path)).encode())
            return
        headers = {name: self.headers[name] for name in FORWARDED_HEADERS if self.headers[name]}
        headers["x-api-key"] = relay.token
        conn = relay.connect()
        try:
            conn.request("POST", f"{relay.prefix}{path}?beta=true", body, headers)
            response = conn.getresponse()
            self._relay(response, metered=path == "/v1/messages")
        except OSError as error:
            log.warning("the LLM relay could not reach the API: %s", error)
            self._answer(
                502, json.dumps(_error("api_error", f"LLM proxy unreachable: {error}")).encode()
            )
        finally:
            conn.close()

    def _relay(self, response: http.client.HTTPResponse, metered: bool) -> None:
        relay = self.server.relay
        self.send_response(response.status)
        for name in PASSED_BACK_HEADERS:
            if value := response.getheader(name):
                self.send_header(name, value)
        streamed = (response.getheader("content-type") or "").startswith("text/event-stream")
        if not streamed:
            data = response.read()
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            if response.status >= 400:
                relay.refused(data)
            elif metered:
                with contextlib.suppress(ValueError, AttributeError):
                    relay.record(json.loads(data).get("usage") or {})
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        usage = _SseUsage()
        while chunk := response.read1(65536):
            usage.feed(chunk)
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        if metered:
            relay.record(usage.usage)

    def _answer(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _SseUsage:
    """Usage from server-sent events: message_start's, then message_delta's totals."""

    def __init__(self) -> None:
        self.usage: dict = {}
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if not line.startswith(b"data:") or b'"usage"' not in line:
                continue
            try:
                event = json.loads(line[5:])
            except ValueError:
                continue
            found = (
                (event.get("message") or {}).get("usage")
                if event.get("type") == "message_start"
                else event.get("usage")
            )
            if isinstance(found, dict) and event.get("type") in ("message_start", "message_delta"):
                self.usage.update({k: v for k, v in found.items() if isinstance(v, int)})


def _error(kind: str, message: str) -> dict:
    return {"type": "error", "error": {"type": kind, "message": message}}
