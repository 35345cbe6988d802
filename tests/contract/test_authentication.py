"""Authentication by default (api/routes/common.py): every operation of the OpenAPI
document that is not public answers 401 without credentials, before it reads a body
or a query string; the public ones are exactly the known few, and the routes marked
public in the code are the ones the document calls public. No server and no
Firestore: an unauthenticated request is refused before any I/O."""

from __future__ import annotations

import re

import pytest

from api import create_app
from api.config import Settings
from api.openapi import build_spec
from api.routes.common import TASK_TOKEN_BLUEPRINTS, is_public
from tests.conftest import PROJECT

DOCUMENT = build_spec()
OPERATIONS = [
    (method, path, operation)
    for path, item in DOCUMENT["paths"].items()
    for method, operation in item.items()
]
AUTHENTICATED = [(m, p) for m, p, op in OPERATIONS if op.get("security") != []]
PUBLIC = {(m, p) for m, p, op in OPERATIONS if op.get("security") == []}
# A value for each path parameter that the route's converter accepts.
PATH_VALUES = {"part": "0", "path": "out/a.txt"}


def _url(path: str) -> str:
    return re.sub(r"{(\w+)}", lambda m: PATH_VALUES.get(m.group(1), "abc123"), path)


@pytest.fixture(scope="module", params=["dev", "firebase,apikey"])
def client(request):
    settings = Settings(project=PROJECT, public_url="http://127.0.0.1:9", auth_mode=request.param)
    return create_app(settings, start_background=False).test_client()


@pytest.mark.parametrize(("method", "path"), AUTHENTICATED)
def test_every_authenticated_operation_answers_401_without_credentials(client, method, path):
    # A body that would be refused (400, 415) if it were read: 401 comes first.
    reply = client.open(_url(path), method=method.upper(), data=b"{", content_type="text/plain")
    assert reply.status_code == 401, reply.get_data(as_text=True)
    assert reply.get_json()["error"]["code"] == "unauthenticated"


def test_the_public_operations_are_exactly_health_the_document_and_the_config():
    assert {
        ("get", "/"),
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/api/config"),
    } == PUBLIC
    assert len(AUTHENTICATED) == len(OPERATIONS) - len(PUBLIC) > 20


def test_the_views_marked_public_are_the_documents_public_ones_and_the_console(client):
    app = client.application
    marked = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static" and is_public(app.view_functions[rule.endpoint])
    }
    console = {rule for rule in marked if rule.startswith("/console")}
    assert console == {"/console", "/console/", "/console/assets/<digest>/<path:name>"}
    assert marked - console == {path for _, path in PUBLIC}


def test_only_the_runners_blueprints_authorize_their_own_routes(client):
    app = client.application
    own = {
        rule.rule
        for rule in app.url_map.iter_rules()
        if rule.endpoint.split(".")[0] in TASK_TOKEN_BLUEPRINTS
    }
    assert own and all(rule.startswith("/internal/v1/") for rule in own)


def test_a_public_operation_answers_without_credentials(client):
    assert client.get("/health").status_code == 200
    assert client.get("/api/config").status_code == 200
