"""A minimal HTTP/1.1 JSON client on a plain socket, for the runner's few calls.

Why not http.client or urllib.request: the runner starts once per task, and its
start is on every task's critical path. On this project's machines importing
http.client (which pulls in the whole `email` package for header parsing) costs
about 30 ms, twice what the sandboxed program itself takes to run `print(1)`
(`make bench` measures both). The API we talk to is our own: one request per
connection (`Connection: close`), a JSON body, and a response framed by
Content-Length or chunked encoding. Anything else is refused as an error.
"""

from __future__ import annotations

import json
import socket

MAX_RESPONSE_BYTES = 8 * 1024 * 1024


class HttpError(OSError):
    """The exchange failed below HTTP: connection, TLS, or a malformed response."""


def request(
    method: str, url: str, body: dict | None, headers: dict[str, str], timeout: float
) -> tuple[int, dict]:
    """Send one request; return (status, parsed JSON body or {"body": text})."""
    scheme, _, rest = url.partition("://")
    host_port, _, path = rest.partition("/")
    if scheme not in ("http", "https") or not host_port:
        raise HttpError(f"unsupported URL {url!r}")
    host, port = _split_host_port(host_port)
    port_number = port or (443 if scheme == "https" else 80)
    payload = json.dumps(body).encode() if body is not None else b""
    head = [f"{method} /{path} HTTP/1.1", f"Host: {host_port}", "Connection: close"]
    head += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload

    with socket.create_connection((host, port_number), timeout=timeout) as raw:
        conn = raw
        if scheme == "https":
            import ssl  # only for a real deployment's https API_URL

            conn = ssl.create_default_context().wrap_socket(raw, server_hostname=host)
        conn.sendall(message)
        reader = conn.makefile("rb")
        status, response_headers = _read_head(reader)
        data = _read_body(reader, response_headers)
    try:
        parsed = json.loads(data) if data else {}
    except ValueError:
        parsed = {"body": data[:500].decode("utf-8", "replace")}
    return status, parsed if isinstance(parsed, dict) else {"body": parsed}


def _split_host_port(host_port: str) -> tuple[str, int | None]:
    """'h:8080' -> ('h', 8080); '[::1]:80' -> ('::1', 80); 'h' -> ('h', None)."""
    if host_port.startswith("["):
        host, _, rest = host_port[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = host_port.partition(":")
    if port and not port.isdigit():
        raise HttpError(f"bad port in {host_port!r}")
    return host, int(port) if port else None


def _read_head(reader) -> tuple[int, dict[str, str]]:
    status_line = reader.readline(65537).decode("latin-1")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise HttpError(f"malformed status line {status_line[:100]!r}")
    headers: dict[str, str] = {}
    while True:
        line = reader.readline(65537).decode("latin-1").rstrip("\r\n")
        if not line:
            return int(parts[1]), headers
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()


def _read_body(reader, headers: dict[str, str]) -> bytes:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        total = 0
        while True:
            size = int(reader.readline(1024).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return b"".join(chunks)
            total += size
            if total > MAX_RESPONSE_BYTES:
                raise HttpError("response too large")
            chunks.append(reader.read(size))
            reader.readline(3)  # the CRLF after each chunk
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_RESPONSE_BYTES:
            raise HttpError(f"bad Content-Length {length!r}")
        data = reader.read(int(length))
        if len(data) != int(length):
            raise HttpError("connection closed before the whole response arrived")
        return data
    return reader.read(MAX_RESPONSE_BYTES)  # framed by the connection's close
