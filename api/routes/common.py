"""What every route needs: the caller's identity, the JSON body, validation errors."""

from __future__ import annotations

from typing import TypeVar

from flask import current_app, request
from pydantic import BaseModel, ValidationError

from api.errors import ApiError

M = TypeVar("M", bound=BaseModel)

_USER = "agent_platform.user"


def current_user() -> str:
    """The caller, as AUTH_MODE says (api/services/auth.py): a verified Firebase ID
    token or API key, or in dev mode the X-User-Id header. Checked once per request."""
    # Kept on the request itself: `g` can outlive a request (an app context that a
    # test or a CLI command holds open is shared by the requests made inside it).
    if _USER not in request.environ:
        user = services().auth.authenticate(request.headers)
        services().request_rate.take(user)  # 429 past the per-user request rate
        request.environ[_USER] = user
    return request.environ[_USER]


def json_body() -> object:
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "Send a JSON body with Content-Type: application/json."
        )
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, "invalid_json", "The JSON body is nested too deeply.") from None
    if body is None:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.")
    if not _encodable(body):
        # JSON allows "\udfff"; Firestore (and UTF-8) do not.
        raise ApiError(
            400,
            "invalid_json",
            "The body has a lone UTF-16 surrogate (\\ud800-"
            "\\udfff escape); send valid Unicode text.",
        )
    return body


def _encodable(value: object) -> bool:
    """True if every string in the parsed JSON (keys included) is valid UTF-8 text."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def describe_errors(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate(model: type[M], data: object) -> M:
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "The JSON body must be an object.")
    try:
        return model.model_validate(data)
    except ValidationError as error:
        status, code = 400, "invalid_request"
        if any(item["type"] == "too_large" for item in error.errors()):
            status, code = 413, "too_large"
        raise ApiError(status, code, describe_errors(error)) from None


def services():
    return current_app.extensions["agent_platform"]
