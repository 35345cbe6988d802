"""Bytes between the runner and the API: input files and workspace snapshots down,
output files and snapshots up, through the API's internal endpoints with the task
token (docs/decisions/0006-files-through-internal-endpoints.md). The runner holds no
Google credential; the API writes the bucket.

Each request carries at most CHUNK_BYTES (Cloud Run caps an HTTP/1 request at
32 MiB), read from the file with pread as it is sent, so the runner's memory does not
grow with a file's size and a failed piece can be sent again. http.client is imported
here, not at start-up: only tasks that move files pay for it (see http_json.py).
"""

from __future__ import annotations

import os

from job_runner.retry import with_retries

CHUNK_BYTES = 32 * 1024 * 1024
READ_BYTES = 1024 * 1024
RETRIES = 4
TIMEOUT_SECONDS = 120


def _transient(error: Exception) -> bool:
    """A failure worth another try: no answer, 429 or 5xx."""
    if not isinstance(error, TransferFailed):
        return False  # ChangedWhileRead among them
    return error.status is None or error.status == 429 or error.status >= 500


class TransferFailed(Exception):
    """The API refused a transfer (4xx) or stayed unavailable; `status` says which."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code = status, code


class ChangedWhileRead(Exception):
    """The file's size changed while it was being sent."""


class _PieceReader:
    """Bytes [offset, offset + length) of fd, hashed into `digest` as http.client reads."""

    def __init__(self, fd: int, offset: int, length: int, digest) -> None:
        self.fd, self.offset, self.remaining, self.digest = fd, offset, length, digest

    def read(self, n: int = READ_BYTES) -> bytes:
        if self.remaining <= 0:
            return b""
        data = os.pread(self.fd, min(n if n > 0 else READ_BYTES, self.remaining), self.offset)
        if not data:
            raise ChangedWhileRead("the file shrank while it was sent")
        self.offset += len(data)
        self.remaining -= len(data)
        if self.digest is not None:
            self.digest.update(data)
        return data


class FileChannel:
    def __init__(self, base_url: str, task_id: str, token: str) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(base_url)
        self.scheme, self.netloc = parts.scheme, parts.netloc
        self.prefix = f"{parts.path.rstrip('/')}/internal/v1/tasks/{task_id}"
        self.token = token

    def _connection(self):
        import http.client

        kind = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        return kind(self.netloc, timeout=TIMEOUT_SECONDS)

    def _exchange(self, method: str, path: str, body=None, headers=None, sink=None):
        """One request, retried on connection errors, 429 and 5xx. With `sink`, a 2xx
        body is written to it piece by piece; otherwise it is returned (parsed JSON)."""
        import json

        def once():
            connection = self._connection()
            try:
                all_headers = {"Authorization": f"Bearer {self.token}", **(headers or {})}
                connection.request(method, self.prefix + path, body=body(), headers=all_headers)
                reply = connection.getresponse()
                if reply.status < 300 and sink is not None:
                    while chunk := reply.read(READ_BYTES):
                        sink(chunk)
                    return reply.status, {}
                data = reply.read(1024 * 1024)
                try:
                    payload = json.loads(data) if data else {}
                except ValueError:
                    payload = {}
                if reply.status < 300:
                    return reply.status, payload
                error = (payload.get("error") or {}) if isinstance(payload, dict) else {}
                raise TransferFailed(
                    f"{method} {path}: {reply.status} {error.get('message', '')}",
                    reply.status,
                    error.get("code"),
                )
            except OSError as problem:
                raise TransferFailed(f"{method} {path}: {problem}") from None
            finally:
                connection.close()

        return with_retries(once, retry_if=_transient, tries=RETRIES, first_delay=0.5)

    def send_file(self, path: str, fd: int, size: int) -> str:
        """Send `size` bytes of fd to `path` (an internal upload endpoint) in pieces of
        CHUNK_BYTES; returns the sha256 of what was sent."""
        import hashlib

        parts = max(1, -(-size // CHUNK_BYTES))
        digest = hashlib.sha256()
        for part in range(parts):
            digest = self._send_piece(path, fd, size, part, parts, digest)
        return digest.hexdigest()

    def _send_piece(self, path: str, fd: int, size: int, part: int, parts: int, digest):
        offset = part * CHUNK_BYTES
        length = min(CHUNK_BYTES, size - offset)
        # A retried piece is read (and hashed) again, from the digest before it.
        attempt = [digest]

        def body() -> _PieceReader:
            attempt[0] = digest.copy()
            return _PieceReader(fd, offset, length, attempt[0])

        self._exchange(
            "PUT",
            f"{path}?part={part}&parts={parts}",
            body=body,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)},
        )
        return attempt[0]

    def fetch(self, path: str, fd: int, size: int, parallel: int = 1) -> None:
        """Write the `size` bytes at `path` (an internal download endpoint) to fd, in
        ranged requests of at most CHUNK_BYTES, `parallel` at a time (each its own
        connection: a big file a task waits for comes down several times faster)."""
        piece = min(CHUNK_BYTES, max(READ_BYTES, -(-size // max(parallel, 1))))
        pieces = [(start, min(start + piece, size)) for start in range(0, size, piece)]
        if parallel <= 1 or len(pieces) <= 1:
            for start, stop in pieces:
                self._fetch_piece(path, fd, start, stop)
            return
        import threading

        failures: list[BaseException] = []
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    if not pieces or failures:
                        return
                    start, stop = pieces.pop()
                try:
                    self._fetch_piece(path, fd, start, stop)
                except BaseException as problem:  # re-raised below, in the caller's thread
                    with lock:
                        failures.append(problem)
                    return

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(parallel)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]

    def _fetch_piece(self, path: str, fd: int, start: int, stop: int) -> None:
        written = [0]

        def restart() -> None:  # each attempt writes the piece from its start
            written[0] = 0

        def sink(chunk: bytes) -> None:
            os.pwrite(fd, chunk, start + written[0])
            written[0] += len(chunk)

        headers = {"Range": f"bytes={start}-{stop - 1}"}
        self._exchange("GET", path, body=restart, headers=headers, sink=sink)
        if written[0] != stop - start:
            raise TransferFailed(f"GET {path}: {written[0]} of {stop - start} bytes at {start}")
