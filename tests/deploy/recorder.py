"""A loopback recorder of the Google Cloud REST APIs that deploy-gcp.sh and
cloudbuild.yaml call, for the real gcloud CLI (and the real curl) to talk to.

gcloud reaches it through CLOUDSDK_API_ENDPOINT_OVERRIDES_<API> and, for Cloud
Run's regional hosts (`us-central1-<endpoint>`) and the service's own https URL,
through CLOUDSDK_PROXY_*/https_proxy: the recorder is also that proxy. It answers
like each service, in its wire format: a create stores the resource and a describe
then finds it; long-running operations are done at once; IAM policies carry etags
and versions. Every request is logged with its body. A route it does not know
answers 400 UNIMPLEMENTED, so the script cannot call something untested.
"""

from __future__ import annotations

import base64
import copy
import http.server
import json
import re
import socket
import ssl
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PROJECT_NUMBER = "123456789012"
CERT_HOSTS = ["*.run.app", "*.us-central1.run.app", "*.a.run.app"]


class Reply(Exception):
    """Raised by a handler to answer with a status and a Google-style error body."""

    def __init__(self, status: int, message: str, reason: str = "NOT_FOUND") -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def not_found(what: str) -> Reply:
    return Reply(404, f"{what} not found")


class Cloud:
    """The recorded state of one project: resources by REST name, IAM policies by
    resource name, and every request seen."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.resources: dict[str, dict] = {}
        self.policies: dict[str, dict] = {}
        self.requests: list[dict] = []
        self.enabled: set[str] = set()
        self.secret_data: dict[str, list[str]] = {}
        self.logs: dict[str, list[dict]] = {}  # Cloud Logging entries by execution
        self.counter = 0
        # Scenario switches (tests set them): what a self-check execution ends with,
        # whether the API's /health answers, and what a smoke task prints.
        self.self_check_fails = False
        self.health_broken = False
        self.smoke_task_output = "42\n"
        # Like an organization created since May 2024: Domain Restricted Sharing refuses
        # any policy that names allUsers or allAuthenticatedUsers.
        self.domain_restricted_sharing = True
        # A new service account is unknown to IAM policies for its first binding: IAM is
        # eventually consistent (https://cloud.google.com/iam/docs/service-accounts-create).
        self.new_accounts: set[str] = set()
        self.refused_bindings: list[str] = []
        self.lock = threading.RLock()

    def copy(self) -> Cloud:
        with self.lock:
            other = Cloud(self.project)
            for name in ("resources", "policies", "enabled", "secret_data", "counter"):
                setattr(other, name, copy.deepcopy(getattr(self, name)))
            return other

    def next_id(self) -> int:
        self.counter += 1
        return self.counter

    # -- IAM ----------------------------------------------------------------------
    def policy(self, resource: str) -> dict:
        return self.policies.setdefault(
            resource, {"version": 1, "etag": "BwAAAA==", "bindings": []}
        )

    def set_policy(self, resource: str, policy: dict) -> dict:
        current = self.policy(resource)
        if policy.get("etag") and policy["etag"] != current["etag"]:
            raise Reply(409, "There were concurrent policy changes.", "ABORTED")
        members = {m for b in policy.get("bindings", []) for m in b.get("members", [])}
        if self.domain_restricted_sharing and members & {"allUsers", "allAuthenticatedUsers"}:
            raise Reply(
                400,
                "One or more users named in the policy do not belong to a permitted customer.",
                "FAILED_PRECONDITION",
            )
        for member in sorted(members):
            email = member.removeprefix("serviceAccount:")
            if email in self.new_accounts:
                self.new_accounts.discard(email)
                self.refused_bindings.append(email)
                raise Reply(400, f"Service account {email} does not exist.", "INVALID_ARGUMENT")
        stored = {
            "version": policy.get("version", 1),
            "etag": base64.b64encode(f"etag-{self.next_id()}".encode()).decode(),
            "bindings": [b for b in policy.get("bindings", []) if b.get("members")],
        }
        self.policies[resource] = stored
        return stored

    def grants(self) -> set[tuple[str, str, str]]:
        """(resource, role, member) of every unconditional binding."""
        return {
            (resource, b["role"], member)
            for resource, policy in self.policies.items()
            for b in policy["bindings"]
            if not b.get("condition")
            for member in b["members"]
        }

    # -- Generic resources ---------------------------------------------------------
    def get(self, name: str) -> dict:
        if name not in self.resources:
            raise not_found(name)
        return self.resources[name]

    def create(self, name: str, body: dict) -> dict:
        if name in self.resources:
            raise Reply(409, f"{name} already exists", "ALREADY_EXISTS")
        self.resources[name] = body
        return body

    def children(self, parent: str, kind: str) -> list[dict]:
        prefix = f"{parent}/{kind}/"
        return [
            v
            for k, v in self.resources.items()
            if k.startswith(prefix) and "/" not in k[len(prefix) :]
        ]

    def of_kind(self, pattern: str) -> dict[str, dict]:
        return {k: v for k, v in self.resources.items() if re.fullmatch(pattern, k)}


def done_operation(name: str, response: dict, response_type: str) -> dict:
    """A long-running operation that is already done, with its typed response."""
    typed = {"@type": f"type.googleapis.com/{response_type}", **response}
    return {
        "name": name,
        "done": True,
        "response": typed,
        "metadata": {"@type": "type.googleapis.com/google.protobuf.Empty"},
    }


class Request:
    def __init__(
        self, method: str, host: str, path: str, query: dict, body: bytes, headers
    ) -> None:
        self.method, self.host, self.path, self.query, self.raw = method, host, path, query, body
        self.headers = headers
        try:
            self.body = json.loads(body) if body and body[:1] in b"{[" else {}
        except ValueError:
            self.body = {}

    def arg(self, name: str, default: str = "") -> str:
        return self.query.get(name, [default])[0]


ROUTES: list[tuple[str, re.Pattern, Callable[..., object]]] = []


def route(method: str, pattern: str):
    def register(handler):
        ROUTES.append((method, re.compile(pattern), handler))
        return handler

    return register


def dispatch(cloud: Cloud, request: Request) -> tuple[int, object]:
    for method, pattern, handler in ROUTES:
        match = pattern.fullmatch(request.path)
        if method == request.method and match:
            return 200, handler(cloud, request, *match.groups())
    # A 4xx: gcloud retries a 5xx, and this is a gap in the recorder, not an outage.
    raise Reply(400, f"the recorder does not know {request.method} {request.path}", "UNIMPLEMENTED")


# The service modules register their routes on import.
from tests.deploy import recorder_apis, recorder_run  # noqa: E402,F401

# -- The HTTP side ---------------------------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RecorderServer

    def log_message(self, *args) -> None:  # quiet: requests are recorded instead
        pass

    def do_CONNECT(self) -> None:
        # curl's https through the proxy: terminate TLS with the recorder's own
        # certificate (curl trusts it through CURL_CA_BUNDLE), then serve inside.
        self.tunnel_host = self.path.split(":")[0]
        if not self.tunnel_host.endswith(".run.app"):
            # gcloud beta builds submit tails the log over gRPC (Cloud Logging): there is
            # no such thing here, and gcloud then polls the build instead.
            self.send_error(403, "the recorder tunnels only to run.app")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        try:
            self.connection = self.server.tls.wrap_socket(self.connection, server_side=True)
        except ssl.SSLError:
            self.close_connection = True
            return
        self.rfile = self.connection.makefile("rb")
        self.wfile = self.connection.makefile("wb")
        self.close_connection = False
        while not self.close_connection:
            self.handle_one_request()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        url = urlsplit(self.path)
        host = url.hostname or getattr(self, "tunnel_host", "") or self.headers.get("Host") or ""
        request = Request(
            self.command, host.split(":")[0], url.path, parse_qs(url.query), body, self.headers
        )
        cloud = self.server.cloud
        with cloud.lock:
            entry = {
                "time": time.monotonic(),
                "method": self.command,
                "host": request.host,
                "path": url.path,
                "query": url.query,
                "body": request.body or body.decode("latin-1")[:2000],
                "headers": dict(self.headers),
            }
            cloud.requests.append(entry)
            try:
                status, answer = dispatch(cloud, request)
            except Reply as reply:
                status = reply.status
                answer = {
                    "error": {"code": reply.status, "message": str(reply), "status": reply.reason}
                }
            except Exception:  # a bug in the recorder: say so, as a 4xx (no retries)
                status = 400
                answer = {
                    "error": {
                        "code": 400,
                        "message": traceback.format_exc(),
                        "status": "RECORDER_BUG",
                    }
                }
            entry["status"] = status
        data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _read_chunked(self) -> bytes:
        data = b""
        while True:
            size = int(self.rfile.readline().strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                return data
            data += self.rfile.read(size)
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class RecorderServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, cloud: Cloud, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.cloud, self.tls = cloud, tls


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the run.app hosts the smoke tests call."""
    cert, key = directory / "recorder.pem", directory / "recorder.key"
    if not cert.exists():
        san = ",".join(f"DNS:{h}" for h in CERT_HOSTS)
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=run.app",
                "-addext",
                f"subjectAltName={san}",
                "-keyout",
                str(key),
                "-out",
                str(cert),
            ],
            check=True,
            capture_output=True,
        )
    return cert, key


class Recorder:
    """The recorder running in a thread, with the environment that points gcloud and
    curl at it."""

    APIS = (
        "run",
        "iam",
        "cloudresourcemanager",
        "serviceusage",
        "artifactregistry",
        "secretmanager",
        "cloudkms",
        "firestore",
        "cloudbuild",
        "cloudscheduler",
        "storage",
        "logging",
    )

    def __init__(self, cloud: Cloud, directory: Path) -> None:
        self.cloud, self.directory = cloud, directory
        self.cert, key = make_certificate(directory)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(self.cert, key)
        self.server = RecorderServer(cloud, tls)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, config_dir: Path) -> dict[str, str]:
        token = self.directory / "access-token"
        token.write_text("ya29.recorder-token\n")
        base = f"http://127.0.0.1:{self.port}/"
        env = {
            "CLOUDSDK_CONFIG": str(config_dir),
            "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token),
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "1",
            "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
            "CLOUDSDK_CORE_ACCOUNT": "deployer@example.com",
            # Cloud Run's regional hosts (us-central1-127.0.0.1) resolve nowhere: the
            # recorder is also gcloud's proxy.
            "CLOUDSDK_PROXY_TYPE": "http",
            "CLOUDSDK_PROXY_ADDRESS": "127.0.0.1",
            "CLOUDSDK_PROXY_PORT": str(self.port),
            # curl reaches the service's https URL through the recorder too.
            "https_proxy": base.rstrip("/"),
            "CURL_CA_BUNDLE": str(self.cert),
        }
        for api in self.APIS:
            env[f"CLOUDSDK_API_ENDPOINT_OVERRIDES_{api.upper()}"] = base
        return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
