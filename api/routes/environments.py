"""Custom environments (DESIGN section 17): created (built once per manifest),
listed, shown, deleted. Tasks, batch items and agents name one by name or id."""

from __future__ import annotations

from flask import Blueprint

from api.models import responses as r
from api.models.environments import EnvironmentCreate
from api.routes.common import current_user, json_body, services, validate
from api.routes.operations import AUTHED, BODY_ERRORS, ENVIRONMENTS, Reply, operation

bp = Blueprint("environments", __name__, url_prefix="/api/environments")


@operation(bp, "post", "", "createEnvironment", "Create a custom environment", ENVIRONMENTS,
           Reply(202, "The environment: `building`, or `ready` when its packages were "
                 "built before.", r.Environment, ("Location",), also=(201,)),
           (*BODY_ERRORS, 409, 429, *AUTHED), body=(EnvironmentCreate,))  # fmt: skip
def create() -> tuple[dict, int, dict[str, str]]:
    """202 while it builds (follow its build task), 201 when ready at once; 409 a name
    you already use, or too many environments."""
    body = validate(EnvironmentCreate, json_body())
    view = services().environments.create(current_user(), body)
    status = 201 if view["status"] == "ready" else 202
    return r.Environment.of(view).body(), status, {"Location": f"/api/environments/{view['id']}"}


@operation(bp, "get", "", "listEnvironments", "Your custom environments", ENVIRONMENTS,
           Reply(200, "Your environments, oldest first.", r.EnvironmentList), AUTHED)  # fmt: skip
def list_environments() -> dict:
    views = services().environments.list(current_user())
    return r.EnvironmentList(environments=[r.Environment.of(v) for v in views]).body()


@operation(bp, "get", "/<name_or_id>", "getEnvironment", "A custom environment", ENVIRONMENTS,
           Reply(200, "The environment.", r.Environment), (404, *AUTHED))  # fmt: skip
def get(name_or_id: str) -> dict:
    return r.Environment.of(services().environments.get(current_user(), name_or_id)).body()


@operation(bp, "delete", "/<name_or_id>", "deleteEnvironment", "Delete a custom environment",
           ENVIRONMENTS, Reply(204, "Deleted: new tasks can no longer name it."),
           (404, *AUTHED))  # fmt: skip
def delete(name_or_id: str) -> tuple[str, int]:
    services().environments.delete(current_user(), name_or_id)
    return "", 204
