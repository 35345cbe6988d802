"""What a client may need to know about this deployment before it signs in (`GET
/api/config`): how to sign in, and the choices the API accepts. Nothing secret: the
Firebase web config is public by design (it names a project and grants nothing)."""

from __future__ import annotations

import typing
from typing import Any

from api.config import Settings
from api.models import AgentCreate
from api.models.documents import TOOLS
from api.models.tasks import Language


def literal_values(annotation: Any) -> list[str]:
    """The choices of a `Literal[...]` field, also inside `Optional`/`Annotated`."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(value) for value in typing.get_args(annotation)]
    return [v for arg in typing.get_args(annotation) for v in literal_values(arg)]


def agent_engines() -> tuple[list[str], str | None]:
    """The engines an agent may name, and the default one: read from the model that
    validates agents, so the answer follows that model (empty where it has no engine)."""
    field = AgentCreate.model_fields.get("engine")
    if field is None:
        return [], None
    default = field.get_default(call_default_factory=True)
    return literal_values(field.annotation), default if isinstance(default, str) else None


def deployment_config(settings: Settings) -> dict:
    engines, default_engine = agent_engines()
    modes = settings.auth_modes
    return {
        "authModes": sorted(modes),
        "firebase": settings.firebase_web_config if "firebase" in modes else None,
        "languages": literal_values(Language),
        "models": {"default": settings.default_model, "allowed": list(settings.allowed_models)},
        "tools": list(TOOLS),
        "engines": engines,
        "defaultEngine": default_engine,
    }
