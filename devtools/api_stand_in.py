"""A loopback stand-in for an external HTTP API that a task reaches through its
egress proxy (tests, the README's example, `bench/egress_proxy.py`, `make dev`).

It answers every request with JSON and keeps what it received (method, path,
headers, body) in `requests`, so a test can see which key a task sent. An
OpenAI-compatible `POST .../chat/completions` gets a chat completion whose text says
what the last user message was; anything else gets `{"ok": true, "path": ...}`.
With `tls_names`, it serves HTTPS with a certificate of its own for those names;
`ca_file` is that certificate, for the client to trust.

The egress proxy reaches it as a host on a task's allow-list through the
development setting EGRESS_DEV_HOSTS (`api.test=127.0.0.1:PORT`).

    python -m devtools.api_stand_in --port 8092
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ApiStandIn:
    def __init__(self, port: int = 0, tls_names: list[str] | None = None) -> None:
        self.requests: list[dict] = []
        self.ca_file: str | None = None
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.stand_in = self
        if tls_names:
            self._dir = tempfile.mkdtemp(prefix="stand-in-tls-")
            self.ca_file, key_file = self_signed(tls_names, self._dir)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(self.ca_file, key_file)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def __enter__(self) -> ApiStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, method: str, path: str, body: bytes) -> dict:
        if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
            request = json.loads(body or b"{}")
            said = next(
                (m.get("content") for m in reversed(request.get("messages") or [])),
                "",
            )
            text = f"stand-in reply to: {said}"
            return {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "model": request.get("model", "stand-in"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        return {"ok": True, "path": path}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stand_in: ApiStandIn


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: without this, Nagle's algorithm and
    # the client's delayed ACK hold the body back ~40 ms.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args) -> None:
        pass

    def _serve(self) -> None:
        stand_in = self.server.stand_in
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        stand_in.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body,
            }
        )
        data = json.dumps(stand_in.answer(self.command, self.path, body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = _serve


def self_signed(names: list[str], directory: str) -> tuple[str, str]:
    """A certificate for `names` (host names or IP addresses) and its key, as PEM
    files in `directory`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    alternatives: list[x509.GeneralName] = []
    for name in names:
        try:
            alternatives.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternatives.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file = os.path.join(directory, "cert.pem")
    key_file = os.path.join(directory, "key.pem")
    with open(cert_file, "wb") as out:
        out.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_file, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.chmod(cert_file, 0o644)  # a sandboxed client may be given it to trust
    return cert_file, key_file


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8092)
    parser.add_argument("--tls", action="append", default=[], help="serve HTTPS for this name")
    args = parser.parse_args()
    with ApiStandIn(args.port, args.tls or None) as stand_in:
        print(f"serving on 127.0.0.1:{stand_in.port}", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
