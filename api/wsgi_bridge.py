"""The Flask app served from an event loop, so that a slow client holds a coroutine and
a few buffers, never one of the request threads (ADR 0015).

A thread-per-connection server (gunicorn's `gthread`) gives a connection a thread as
soon as its first bytes arrive; the thread then blocks reading headers, reading the
body and writing the response, at the client's pace. Here the event loop does all
three: the app runs on a thread only once the request's body is in (or a first
`BODY_PREFIX_BYTES` of it, for uploads that stream), and each piece of the response is
produced on a thread and written by the loop. Every wait on the client has a deadline:
`REQUEST_BODY_IDLE_SECONDS` between pieces of a body, `RESPONSE_WRITE_IDLE_SECONDS`
for a client to take a piece of the response (the headers' deadline lives in
api/serving.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from functools import partial
from typing import Any
from urllib.parse import unquote_to_bytes

from werkzeug.exceptions import ClientDisconnected

from api.fair_pool import FairThreadPool

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# The app starts once the body is complete or this much of it has arrived: most bodies
# are small and never hold a thread while they trickle in; an upload streams the rest
# to its thread through a buffer of at most `BODY_BUFFER_BYTES`.
BODY_PREFIX_BYTES = 256 * 1024
BODY_BUFFER_BYTES = 256 * 1024
WRITE_SLICE_BYTES = 256 * 1024
_END = object()
# The environ key of a threading.Event set when the client has gone.
CLIENT_GONE = "agent_platform.client_gone"


class BodyTimeout(Exception):
    """The client sent no part of its body for the idle deadline."""


class RequestBody:
    """`wsgi.input`: bytes the loop received, read by the request's thread. The loop
    waits (not a thread) while the buffer is full; the thread waits while it is empty,
    at most the idle deadline, and then the request is a 400 (ClientDisconnected)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_seconds: float) -> None:
        self._loop = loop
        self._idle_seconds = idle_seconds
        self._buffer = bytearray()
        self._complete = False
        self._failed: str | None = None
        self._ready = threading.Condition()
        self._drained = asyncio.Event()

    # The loop's side.
    def put(self, data: bytes, *, complete: bool) -> None:
        with self._ready:
            self._buffer += data
            self._complete = complete
            self._ready.notify_all()

    def fail(self, reason: str) -> None:
        with self._ready:
            self._failed = reason
            self._ready.notify_all()

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def wait_for_room(self) -> None:
        while self.buffered >= BODY_BUFFER_BYTES:
            self._drained.clear()
            await self._drained.wait()

    # The thread's side (the file-like interface werkzeug reads).
    def read(self, size: int | None = -1) -> bytes:
        """Up to `size` bytes (all, when negative), fewer only at the body's end, as a
        file's read() returns (werkzeug and body_bytes() rely on it). The buffer is
        bounded, so what arrives is taken piece by piece until there is enough."""
        wanted = sys.maxsize if size is None or size < 0 else size
        data = bytearray()
        while len(data) < wanted:
            with self._ready:
                while not self._buffer and not self._complete:
                    if self._failed is not None:
                        raise ClientDisconnected(
                            f"The request body was not received: {self._failed}."
                        )
                    # The loop fails the body at its own deadline; this is a backstop.
                    if not self._ready.wait(self._idle_seconds + 5):
                        raise ClientDisconnected("The request body stopped arriving.")
                piece = bytes(self._buffer[: wanted - len(data)])
                del self._buffer[: len(piece)]
                ended = self._complete and not self._buffer
            self._loop.call_soon_threadsafe(self._drained.set)
            data += piece
            if ended:
                break
        return bytes(data)

    def readline(self, size: int | None = -1) -> bytes:
        line = bytearray()
        while size is None or size < 0 or len(line) < size:
            piece = self.read(1)
            if not piece:
                break
            line += piece
            if piece == b"\n":
                break
        return bytes(line)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class WsgiBridge:
    """An ASGI application running a WSGI one on `threads` threads."""

    def __init__(
        self,
        app: WsgiApp,
        *,
        threads: int,
        body_idle_seconds: float,
        write_idle_seconds: float,
    ) -> None:
        self.app = app
        self.threads = FairThreadPool(threads)
        self.body_idle_seconds = body_idle_seconds
        self.write_idle_seconds = write_idle_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        loop = asyncio.get_running_loop()
        body = RequestBody(loop, self.body_idle_seconds)
        try:
            complete = await self._receive_prefix(receive, body)
        except BodyTimeout:
            await _plain(send, 408, b"The request body stopped arriving.\n")
            return
        if complete is None:
            return  # the client left before its body was in: nobody to answer
        client_gone = threading.Event()
        listening = asyncio.create_task(self._listen(receive, body, complete, client_gone))
        try:
            environ = _environ(scope, body, client_gone)
            await self._respond(environ, _caller(scope), send, client_gone)
        finally:
            listening.cancel()
            client_gone.set()

    async def _receive_prefix(self, receive: Receive, body: RequestBody) -> bool | None:
        """Receive the body until it is complete (True) or a prefix is in (False);
        None when the client disconnected."""
        while body.buffered < BODY_PREFIX_BYTES:
            message = await self._next_body_message(receive)
            if message["type"] == "http.disconnect":
                return None
            more = bool(message.get("more_body", False))
            body.put(message.get("body", b""), complete=not more)
            if not more:
                return True
        return False

    async def _next_body_message(self, receive: Receive) -> Message:
        try:
            return await asyncio.wait_for(receive(), self.body_idle_seconds)
        except TimeoutError:
            raise BodyTimeout from None

    async def _listen(
        self, receive: Receive, body: RequestBody, complete: bool, client_gone: threading.Event
    ) -> None:
        """The rest of a long body, then the client's disconnect, which a held request
        (an SSE stream) sees at once through `client_gone`."""
        if not complete and not await self._feed(receive, body):
            client_gone.set()
            return
        while (await receive())["type"] != "http.disconnect":
            pass
        client_gone.set()

    async def _feed(self, receive: Receive, body: RequestBody) -> bool:
        """The rest of a long body, into the buffer the request's thread reads; False
        when it did not all arrive."""
        try:
            while True:
                await body.wait_for_room()
                message = await self._next_body_message(receive)
                if message["type"] == "http.disconnect":
                    body.fail("the client disconnected")
                    return False
                more = bool(message.get("more_body", False))
                body.put(message.get("body", b""), complete=not more)
                if not more:
                    return True
        except BodyTimeout:
            body.fail(f"nothing arrived for {self.body_idle_seconds:g} s")
            return False

    async def _respond(
        self, environ: dict[str, Any], caller: str, send: Send, client_gone: threading.Event
    ) -> None:
        started: list[Any] = []
        # The app, and each piece of its response, may run on a different thread: they
        # all run in this one context, so the request context Flask keeps in context
        # variables (`stream_with_context`) is there for every piece. One at a time.
        context = contextvars.copy_context()

        async def on_thread(call: Callable[..., Any], *args: Any) -> Any:
            work = partial(context.run, call, *args)
            return await asyncio.wrap_future(self.threads.submit(caller, work))

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            started[:] = [status, headers]
            return _no_write

        result = await on_thread(self.app, environ, start_response)
        pieces = iter(result)
        try:
            first = await on_thread(next, pieces, _END)
            status, headers = started
            await self._send(
                send,
                {
                    "type": "http.response.start",
                    "status": int(status.split(" ", 1)[0]),
                    "headers": [
                        (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
                    ],
                },
            )
            piece = first
            # Nobody to write to once the client is gone: stop producing.
            while piece is not _END and not client_gone.is_set():
                # In slices: the server frames (copies) what it is given, so a 1 MiB
                # piece would be held twice.
                view = memoryview(piece)
                for start in range(0, len(view), WRITE_SLICE_BYTES):
                    chunk = bytes(view[start : start + WRITE_SLICE_BYTES])
                    await self._send(
                        send, {"type": "http.response.body", "body": chunk, "more_body": True}
                    )
                if piece:
                    # An empty piece waits (at most the deadline) until the client has
                    # taken the last one, so a client that does not read costs one
                    # piece of memory and no further work.
                    await self._send(
                        send, {"type": "http.response.body", "body": b"", "more_body": True}
                    )
                piece = await on_thread(next, pieces, _END)
            await self._send(send, {"type": "http.response.body", "body": b""})
        except TimeoutError:
            log.info("a client took no response for %s s; closed", self.write_idle_seconds)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                await on_thread(close)

    async def _send(self, send: Send, message: Message) -> None:
        """One message to the client, waiting at most the write deadline while the
        client does not read (the server's flow control pauses `send`)."""
        await asyncio.wait_for(send(message), self.write_idle_seconds)


def _caller(scope: Scope) -> str:
    """Whose turn a request's work runs in (api/fair_pool.py): its credentials as sent,
    hashed (they are checked later, by the app), else its address."""
    headers = dict(scope["headers"])
    credential = headers.get(b"authorization") or headers.get(b"x-user-id")
    if credential:
        return hashlib.sha256(credential).hexdigest()
    return str((scope.get("client") or ("", 0))[0])


def _no_write(data: bytes) -> None:
    raise NotImplementedError("the WSGI write() callable is not supported")


async def _plain(send: Send, status: int, text: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def _environ(scope: Scope, body: RequestBody, client_gone: threading.Event) -> dict[str, Any]:
    """PEP 3333's environ for one request (as werkzeug's and asgiref's bridges build it)."""
    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": scope.get("root_path", "").encode("utf-8").decode("latin-1"),
        "PATH_INFO": unquote_to_bytes(scope["raw_path"]).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1] or 80),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "REMOTE_ADDR": (scope.get("client") or ("", 0))[0],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        # The server decoded any chunked framing: the body ends where the stream does.
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        # Set once the client is gone (or the response over), so a held request (an
        # SSE stream) stops waiting at once.
        CLIENT_GONE: client_gone,
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
            continue
        key = f"HTTP_{name}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
