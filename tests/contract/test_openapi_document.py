"""`GET /openapi.json` (DESIGN section 6.6): a valid OpenAPI 3.1 document of every
public route and of no internal one, built from the models that validate requests.
No server and no Firestore: the app is built without touching its store."""

from __future__ import annotations

import re
from typing import get_args

import pytest
from openapi_spec_validator import OpenAPIV31SpecValidator

from api import config, create_app
from api.config import Settings
from api.models import AgentCreate, CodeTaskInput, MessageCreate
from api.models.responses import TaskStatusName
from api.openapi import REF, ROUTES, SchemaGenerator, build_spec
from api.services.state_machine import TaskStatus
from tests.conftest import PROJECT

SKIPPED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def document() -> dict:
    return build_spec()


@pytest.fixture(scope="module")
def flask_app():
    settings = Settings(project=PROJECT, public_url="http://127.0.0.1:9")
    return create_app(settings, start_background=False)


def _shape(path: str) -> str:
    """/api/tasks/<task_id> and /api/tasks/{taskId} alike become /api/tasks/{}."""
    return re.sub(r"<[^>]+>|{[^}]+}", "{}", path)


def test_the_document_is_valid_openapi_3_1(document):
    OpenAPIV31SpecValidator(document).validate()
    assert document["openapi"] == "3.1.0"


def test_every_public_route_is_documented_and_no_internal_one(flask_app, document):
    # The console (api/routes/console.py) is an HTML page and its assets, a client of
    # the API rather than part of it.
    served = {
        (method.lower(), _shape(rule.rule))
        for rule in flask_app.url_map.iter_rules()
        if rule.endpoint != "static"
        and not rule.rule.startswith("/internal")
        and not rule.endpoint.startswith("console.")
        for method in rule.methods - SKIPPED_METHODS
    }
    documented = {
        (method, _shape(path)) for path, item in document["paths"].items() for method in item
    }
    assert documented == served
    assert not [path for path in document["paths"] if path.startswith("/internal")]


def test_openapi_json_is_served_without_credentials(flask_app, document):
    reply = flask_app.test_client().get("/openapi.json")
    assert reply.status_code == 200
    assert reply.mimetype == "application/json"
    assert reply.get_json() == document


@pytest.mark.parametrize("model", [CodeTaskInput, AgentCreate, MessageCreate])
def test_request_bodies_are_the_request_models_own_schemas(document, model):
    own = model.model_json_schema(by_alias=True, ref_template=REF, schema_generator=SchemaGenerator)
    own.pop("$defs", None)
    assert document["components"]["schemas"][model.__name__] == own


def test_bounds_in_the_document_are_the_configured_ones(document):
    code = document["components"]["schemas"]["CodeTaskInput"]["properties"]
    assert code["timeoutSeconds"]["maximum"] == config.MAX_TIMEOUT_SECONDS
    assert code["memoryMb"]["minimum"] == config.MIN_MEMORY_MB
    wait = next(
        p
        for p in document["paths"]["/api/tasks/{taskId}"]["get"]["parameters"]
        if p["name"] == "wait"
    )
    assert wait["schema"]["maximum"] == config.MAX_WAIT_SECONDS


def test_task_statuses_in_the_document_are_the_state_machines(document):
    assert set(get_args(TaskStatusName)) == {status.value for status in TaskStatus}


def test_only_health_the_document_and_the_deployment_config_need_no_credentials(document):
    public = {
        (method, path)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if operation.get("security") == []
    }
    assert public == {
        ("get", "/"),
        ("get", "/health"),
        ("get", "/openapi.json"),
        ("get", "/api/config"),
    }
    assert document["security"] == [{"devUser": []}, {"bearer": []}]


def test_every_error_is_the_one_error_shape_and_limits_say_when_to_retry(document):
    responses = document["components"]["responses"]
    for name, response in responses.items():
        if name == "UriTooLong":  # gunicorn's own answer, before the app
            continue
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/ErrorResponse"}
    assert "Retry-After" in responses["OverLimit"]["headers"]
    assert "Retry-After" in responses["Unavailable"]["headers"]
    for route in ROUTES:
        operation = document["paths"][route.path][route.method]
        errors = {int(s) for s in operation["responses"] if int(s) >= 400}
        assert errors == {*route.errors, 414}
        assert route.public or {401, 503} <= errors, route.operation_id


def test_submitting_a_task_documents_its_idempotency_key_and_location(document):
    operation = document["paths"]["/api/tasks"]["post"]
    assert [p["name"] for p in operation["parameters"]] == ["Idempotency-Key"]
    assert "Location" in operation["responses"]["202"]["headers"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body["discriminator"]["mapping"] == {
        "code": "#/components/schemas/CodeTaskInput",
        "agent": "#/components/schemas/AgentTaskInput",
    }


def test_task_events_also_stream_as_server_sent_events(document):
    content = document["paths"]["/api/tasks/{taskId}/events"]["get"]["responses"]["200"]["content"]
    assert set(content) == {"application/json", "text/event-stream"}
    data = content["text/event-stream"]["schema"]["properties"]["data"]
    assert data["contentSchema"] == {"$ref": "#/components/schemas/TaskEvent"}
