"""Who is calling (DESIGN 6.1, issue 6): Firebase ID tokens, API keys, both together,
and dev mode, against the real emulator.

Firebase's signing certificates are served from loopback (FIREBASE_CERTS_URL) for an
RSA key made here, so the tokens are real RS256 JWTs, verified exactly as production
verifies Google's. Identity is shown by acting: an agent created as one caller is
read back as that caller and is invisible (404) to another."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from flask.cli import cli as flask_cli
from google.auth import crypt, jwt

from api import create_app
from api.config import Settings
from devtools.emulator import free_port
from tests.conftest import PROJECT, ROOT, with_settings

ISSUER = f"https://securetoken.google.com/{PROJECT}"
KID = "test-key-1"


class SigningKey:
    """An RSA key, its self-signed X.509 certificate, and tokens signed with it."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securetoken test")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .sign(private, hashes.SHA256())
        )
        self.cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        self.signer = crypt.RSASigner.from_string(private_pem, key_id=kid)

    def token(self, uid: str = "alice", kid: str | None = None, **claims) -> str:
        """A Firebase ID token for `uid`; a claim given as None is left out."""
        now = int(time.time())
        payload = {
            "iss": ISSUER,
            "aud": PROJECT,
            "sub": uid,
            "user_id": uid,
            "auth_time": now,
            "iat": now,
            "exp": now + 3600,
            **claims,
        }
        payload = {name: value for name, value in payload.items() if value is not None}
        return jwt.encode(self.signer, payload, key_id=kid).decode()


class CertsServer:
    """Loopback stand-in for Google's securetoken x509 endpoint."""

    def __init__(self, certs: dict[str, str]) -> None:
        self.certs = certs
        self.status = 200
        self.hits = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits += 1
                body = json.dumps(owner.certs).encode() if owner.status == 200 else b"down"
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "public, max-age=3600")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey(KID)


@pytest.fixture(scope="module")
def forger() -> SigningKey:
    """Another key that claims the real key's id."""
    return SigningKey(KID)


@pytest.fixture(scope="module")
def certs_server(key):
    server = CertsServer({KID: key.cert_pem})
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def certs(certs_server) -> CertsServer:
    certs_server.status, certs_server.hits = 200, 0
    return certs_server


def make_app(settings, auth_mode: str, certs_url: str):
    changes = {"auth_mode": auth_mode, "firebase_certs_url": certs_url}
    return create_app(with_settings(settings, **changes), start_background=False)


@pytest.fixture
def firebase_app(firestore, settings, certs):
    return make_app(settings, "firebase", certs.url)


@pytest.fixture
def apikey_app(firestore, settings, certs):
    return make_app(settings, "apikey", certs.url)


def bearer(credential: str, **headers: str) -> dict:
    return {"Authorization": f"Bearer {credential}", **headers}


def create_agent(api, headers: dict, name: str = "helper"):
    return api.post("/api/agents", json={"name": name}, headers=headers)


def assert_unauthenticated(reply, credential: str | None = None) -> str:
    assert reply.status_code == 401, reply.get_data(as_text=True)
    assert reply.get_json()["error"]["code"] == "unauthenticated"
    message = reply.get_json()["error"]["message"]
    assert "Bearer" in message  # it says what is expected
    if credential:
        assert credential not in reply.get_data(as_text=True)
    return message


# -- Firebase ID tokens ------------------------------------------------------------


def test_a_valid_firebase_token_acts_as_its_uid(firebase_app, key):
    api = firebase_app.test_client()
    alice, bob = bearer(key.token("alice-uid")), bearer(key.token("bob-uid"))
    created = create_agent(api, alice)
    assert created.status_code == 201, created.get_json()
    url = f"/api/agents/{created.get_json()['id']}"
    assert api.get(url, headers=alice).get_json()["name"] == "helper"
    assert api.get(url, headers=bob).status_code == 404


def test_x_user_id_is_ignored_when_a_firebase_token_names_the_caller(firebase_app, key):
    api = firebase_app.test_client()
    alice = bearer(key.token("alice-uid"))
    created = create_agent(api, {**alice, "X-User-Id": "bob-uid"})
    assert created.status_code == 201
    url = f"/api/agents/{created.get_json()['id']}"
    assert api.get(url, headers=alice).status_code == 200
    assert api.get(url, headers=bearer(key.token("bob-uid"))).status_code == 404
    assert [a["id"] for a in api.get("/api/agents", headers=alice).get_json()["agents"]] == [
        created.get_json()["id"]
    ]


def test_x_user_id_alone_is_refused_outside_dev_mode(firebase_app):
    api = firebase_app.test_client()
    assert_unauthenticated(create_agent(api, {"X-User-Id": "alice"}))
    assert_unauthenticated(api.get("/api/tasks", headers={"X-User-Id": "alice"}))


def _unsigned(claims: dict) -> str:
    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{part(claims)}."


def _now() -> int:
    return int(time.time())


BAD_TOKENS = {
    "forged signature": lambda key, forger: forger.token("alice"),
    "expired": lambda key, forger: key.token(iat=_now() - 7200, exp=_now() - 3600),
    "expired beyond the clock skew": lambda key, forger: key.token(exp=_now() - 120),
    "issued in the future": lambda key, forger: key.token(iat=_now() + 600),
    "wrong audience": lambda key, forger: key.token(aud="another-project"),
    "wrong issuer": lambda key, forger: key.token(iss="https://securetoken.google.com/other"),
    "google oauth issuer": lambda key, forger: key.token(iss="https://accounts.google.com"),
    "missing sub": lambda key, forger: key.token(sub=None),
    "empty sub": lambda key, forger: key.token(uid=""),
    "uid with a slash": lambda key, forger: key.token(uid="alice/../bob"),
    "unknown key id": lambda key, forger: key.token(kid="another-key"),
    "unsigned (alg none)": lambda key, forger: _unsigned(
        {"iss": ISSUER, "aud": PROJECT, "sub": "alice", "iat": _now(), "exp": _now() + 60}
    ),
    "garbage": lambda key, forger: "not-a-jwt",
    "three garbage segments": lambda key, forger: "a.b.c",
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
def test_a_firebase_token_that_does_not_verify_is_refused(firebase_app, key, forger, case):
    token = BAD_TOKENS[case](key, forger)
    api = firebase_app.test_client()
    assert_unauthenticated(create_agent(api, bearer(token)), token)
    assert_unauthenticated(api.get("/api/agents", headers=bearer(token)), token)


def test_the_clock_skew_allowed_is_a_minute(firebase_app, key):
    api = firebase_app.test_client()
    just_expired = key.token(exp=_now() - 30)
    assert create_agent(api, bearer(just_expired)).status_code == 201
    assert create_agent(api, bearer(key.token(exp=_now() - 90))).status_code == 401


@pytest.mark.parametrize("header", [None, "Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer   "])
def test_a_request_without_a_bearer_credential_is_refused(firebase_app, header):
    headers = {"Authorization": header} if header is not None else {}
    assert_unauthenticated(firebase_app.test_client().get("/api/agents", headers=headers))


def test_the_certificates_are_fetched_when_first_needed_and_cached(firebase_app, key, certs):
    api = firebase_app.test_client()
    assert certs.hits == 0  # not at start-up
    assert_unauthenticated(api.get("/api/agents", headers=bearer("not-a-jwt")))
    assert certs.hits == 0  # nor for a token that fails before its signature is checked
    for uid in ("alice", "bob", "carol"):
        assert api.get("/api/agents", headers=bearer(key.token(uid))).status_code == 200
    assert certs.hits == 1


@pytest.mark.parametrize("outage", ["answers 500", "refuses connections"])
def test_certificates_that_cannot_be_fetched_give_503_with_retry_after(
    firestore, settings, key, certs, outage
):
    url = certs.url
    if outage == "answers 500":
        certs.status = 500
    else:
        url = f"http://127.0.0.1:{free_port()}/certs"
    api = make_app(settings, "firebase", url).test_client()
    token = key.token("alice")
    for _ in range(2):  # the second is refused at once, without another fetch
        reply = create_agent(api, bearer(token))
        assert reply.status_code == 503, reply.get_json()
        assert reply.get_json()["error"]["code"] == "backend_unavailable"
        assert 1 <= int(reply.headers["Retry-After"]) <= 5
        assert token not in reply.get_data(as_text=True)
    assert certs.hits == (1 if outage == "answers 500" else 0)
    store = api.application.extensions["agent_platform"].store
    assert store.list_owned("agents", "alice", limit=10, after_id=None) == []


# -- API keys ----------------------------------------------------------------------


def api_key_doc(app, key: str) -> dict:
    store = app.extensions["agent_platform"].store
    doc = store.get_doc(f"apiKeys/{hashlib.sha256(key.encode()).hexdigest()}")
    assert doc is not None, "no document for this key"
    return doc


def test_an_api_key_acts_as_its_owner_and_records_its_last_use(apikey_app):
    keys = apikey_app.extensions["agent_platform"].api_keys
    key, record = keys.create("alice", "laptop")
    assert key.startswith("ak_") and len(key) >= 3 + 43  # 32 random bytes, url-safe base64
    assert api_key_doc(apikey_app, key)["lastUsedAt"] is None
    api = apikey_app.test_client()
    created = create_agent(api, bearer(key, **{"X-User-Id": "bob"}))
    assert created.status_code == 201
    url = f"/api/agents/{created.get_json()['id']}"
    assert api.get(url, headers=bearer(key)).status_code == 200
    assert api.get(url, headers={"X-User-Id": "alice"}).status_code == 401
    other, _ = keys.create("bob")
    assert api.get(url, headers=bearer(other)).status_code == 404
    used = api_key_doc(apikey_app, key)["lastUsedAt"]
    assert used is not None and datetime.now(UTC) - used < timedelta(seconds=30)


def test_only_the_hash_of_an_api_key_is_stored(apikey_app):
    keys = apikey_app.extensions["agent_platform"].api_keys
    key, record = keys.create("alice", "ci")
    assert create_agent(apikey_app.test_client(), bearer(key)).status_code == 201
    client = apikey_app.extensions["agent_platform"].store.client
    docs = list(client.collection("apiKeys").stream())
    assert [doc.id for doc in docs] == [hashlib.sha256(key.encode()).hexdigest()]
    stored = repr({doc.id: doc.to_dict() for doc in docs})
    secret = key.removeprefix(record["prefix"])  # all that is never displayed
    assert key not in stored and secret not in stored
    assert set(docs[0].to_dict()) == {
        "id",
        "owner",
        "prefix",
        "name",
        "createdAt",
        "lastUsedAt",
        "revokedAt",
    }


def test_last_use_is_written_at_most_once_a_minute_per_key(apikey_app):
    services = apikey_app.extensions["agent_platform"]
    key, record = services.api_keys.create("alice")
    api = apikey_app.test_client()
    assert api.get("/api/agents", headers=bearer(key)).status_code == 200
    first = api_key_doc(apikey_app, key)["lastUsedAt"]
    assert api.get("/api/agents", headers=bearer(key)).status_code == 200
    assert api_key_doc(apikey_app, key)["lastUsedAt"] == first
    earlier = datetime.now(UTC) - timedelta(minutes=2)
    services.store.update_doc(f"apiKeys/{record['id']}", {"lastUsedAt": earlier})
    assert api.get("/api/agents", headers=bearer(key)).status_code == 200
    assert api_key_doc(apikey_app, key)["lastUsedAt"] > first


@pytest.mark.parametrize(
    "credential", ["ak_" + "A" * 43, "ak_short", "ak_" + "é" * 43, "ak_" + "A" * 5000]
)
def test_an_unknown_or_malformed_api_key_is_refused(apikey_app, credential):
    reply = apikey_app.test_client().get("/api/agents", headers=bearer(credential))
    assert_unauthenticated(reply, credential)


def test_the_cli_lists_keys_without_their_secret_and_revokes_them(apikey_app):
    cli = apikey_app.test_cli_runner()
    created = cli.invoke(args=["keys", "create", "--user", "alice", "--name", "laptop"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    prefix = api_key_doc(apikey_app, key)["prefix"]
    api = apikey_app.test_client()
    assert api.get("/api/agents", headers=bearer(key)).status_code == 200

    listed = cli.invoke(args=["keys", "list", "--user", "alice"])
    assert listed.exit_code == 0, listed.output
    assert prefix in listed.output and "laptop" in listed.output
    assert key not in listed.output and key.removeprefix(prefix) not in listed.output
    assert cli.invoke(args=["keys", "list", "--user", "bob"]).output.count("\n") == 1

    refused = cli.invoke(args=["keys", "revoke", prefix, "--user", "bob"])
    assert refused.exit_code != 0  # only the owner's keys
    assert api.get("/api/agents", headers=bearer(key)).status_code == 200
    revoked = cli.invoke(args=["keys", "revoke", prefix, "--user", "alice"])
    assert revoked.exit_code == 0, revoked.output
    message = assert_unauthenticated(api.get("/api/agents", headers=bearer(key)), key)
    assert "revoked" in message
    assert api_key_doc(apikey_app, key)["revokedAt"] is not None
    assert "laptop" in cli.invoke(args=["keys", "list", "--user", "alice"]).output

    second = cli.invoke(args=["keys", "create", "--user", "alice"]).stdout.strip()
    short_id = hashlib.sha256(second.encode()).hexdigest()[:16]
    assert short_id in cli.invoke(args=["keys", "list", "--user", "alice"]).output
    assert cli.invoke(args=["keys", "revoke", short_id, "--user", "alice"]).exit_code == 0
    assert_unauthenticated(api.get("/api/agents", headers=bearer(second)), second)


def test_flask_keys_create_makes_a_working_key_against_the_emulator(apikey_app, emulator):
    flask = Path(sys.executable).parent / "flask"
    env = {**os.environ, "FIRESTORE_EMULATOR_HOST": emulator.host, "GOOGLE_CLOUD_PROJECT": PROJECT}
    created = subprocess.run(
        [str(flask), "--app", "api", "keys", "create", "--user", "carol", "--name", "ci"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("ak_") and "\n" not in key
    assert "cannot be shown again" in created.stderr
    api = apikey_app.test_client()
    made = create_agent(api, bearer(key))
    assert made.status_code == 201
    url = f"/api/agents/{made.get_json()['id']}"
    assert api.get(url, headers=bearer(key)).status_code == 200
    assert api.get(url, headers=bearer(new_key(apikey_app, "bob"))).status_code == 404


def new_key(app, user: str) -> str:
    return app.extensions["agent_platform"].api_keys.create(user)[0]


def test_the_flask_command_does_not_start_the_dispatcher(firestore, monkeypatch):
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "false")  # restored after; flask sets it
    monkeypatch.delenv("AUTH_MODE", raising=False)

    def dispatchers() -> set:
        return {t for t in threading.enumerate() if t.name == "dispatcher" and t.is_alive()}

    before = dispatchers()
    result = CliRunner().invoke(flask_cli, ["--app", "api", "keys", "list", "--user", "alice"])
    assert result.exit_code == 0, result.output
    assert "PREFIX" in result.output
    assert dispatchers() == before


# -- both modes, and the modes themselves ---------------------------------------------


def test_both_modes_together_accept_a_firebase_token_and_an_api_key(
    firestore, settings, key, certs
):
    app = make_app(settings, "apikey,firebase", certs.url)
    api = app.test_client()
    api_key = new_key(app, "alice")
    created = create_agent(api, bearer(api_key))
    assert created.status_code == 201
    url = f"/api/agents/{created.get_json()['id']}"
    assert api.get(url, headers=bearer(key.token("alice"))).status_code == 200
    assert certs.hits == 1
    unknown = "ak_" + "B" * 43  # an API key, so never sent to the Firebase verifier
    assert_unauthenticated(api.get(url, headers=bearer(unknown)), unknown)
    assert_unauthenticated(api.get(url, headers=bearer(key.token(aud="other"))))


def test_each_mode_alone_refuses_the_other_kind_of_credential(firebase_app, apikey_app, key):
    api_key = new_key(apikey_app, "alice")
    reply = firebase_app.test_client().get("/api/agents", headers=bearer(api_key))
    assert "API keys are not accepted" in assert_unauthenticated(reply, api_key)
    token = key.token("alice")
    reply = apikey_app.test_client().get("/api/agents", headers=bearer(token))
    assert "not an API key" in assert_unauthenticated(reply, token)


@pytest.mark.parametrize(
    "mode", ["dev", "firebase", "apikey", "firebase,apikey", "apikey,firebase"]
)
def test_auth_mode_accepts_the_documented_modes(mode):
    assert Settings(auth_mode=mode).auth_mode == mode  # Settings validates as it is built


@pytest.mark.parametrize("mode", ["", "basic", "Firebase", "dev,firebase", "firebase,", "none"])
def test_auth_mode_refuses_anything_else_and_says_what_it_takes(mode):
    with pytest.raises(ValueError, match="'dev', 'firebase', 'apikey' or 'firebase,apikey'"):
        Settings(auth_mode=mode)


def test_dev_mode_is_refused_on_cloud_run(monkeypatch):
    monkeypatch.setenv("K_SERVICE", "api")
    monkeypatch.setenv("AUTH_MODE", "dev")
    with pytest.raises(ValueError, match="K_SERVICE"):
        Settings.from_env()
    monkeypatch.setenv("AUTH_MODE", "firebase,apikey")
    assert Settings.from_env().auth_modes == {"firebase", "apikey"}


def test_the_server_will_not_start_in_dev_mode_on_cloud_run(emulator):
    env = {**os.environ, "K_SERVICE": "api", "AUTH_MODE": "dev"}
    started = subprocess.run(
        [sys.executable, "-c", "import api.wsgi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode != 0
    assert "AUTH_MODE=dev" in started.stderr and "K_SERVICE" in started.stderr
