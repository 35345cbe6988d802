"""What every route needs: the caller's identity, the JSON body and query string,
validation errors."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar, cast

from flask import Flask, current_app, request
from pydantic import BaseModel, ConfigDict, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.routing import PathConverter

from api import config
from api.errors import ApiError

if TYPE_CHECKING:
    from api import Services

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])

_USER = "agent_platform.user"
_PUBLIC = "agent_platform_public"
# The runner's blueprints: a task token (api/services/runner.py), the scheduler's
# identity or the LLM proxy's own check authorizes each of their routes instead.
TASK_TOKEN_BLUEPRINTS = frozenset({"internal", "internal_files"})


def public(view: F) -> F:
    """Mark a view that answers without credentials (health, the OpenAPI document, the
    console). Every other view of a public blueprint authenticates first."""
    setattr(view, _PUBLIC, True)
    return view


def is_public(view: Callable[..., Any]) -> bool:
    return bool(getattr(view, _PUBLIC, False))


def init_app(app: Flask) -> None:
    """Authenticate by default: before any view of a public blueprint, unless it is
    marked `public`."""
    app.before_request(_authenticate)


def _authenticate() -> None:
    if request.endpoint is None or request.blueprint in TASK_TOKEN_BLUEPRINTS:
        return  # no such route (404, 405), or one the runner calls
    if request.method == "OPTIONS":
        return  # Flask's own answer: the allowed methods, nothing of anyone's
    if not is_public(current_app.view_functions[request.endpoint]):
        current_user()


def current_user() -> str:
    """The caller, as AUTH_MODE says (api/services/auth.py): a verified Firebase ID
    token or API key, or in dev mode the X-User-Id header. Checked once per request,
    before the view (`init_app`)."""
    # Kept on the request itself: `g` can outlive a request (an app context that a
    # test or a CLI command holds open is shared by the requests made inside it).
    if _USER not in request.environ:
        # werkzeug names the headers in title case (X-User-Id) whatever the client sent.
        caller = services().auth.authenticate(dict(request.headers))
        services().request_rate.take(caller)  # 429 past the per-user request rate
        request.environ[_USER] = caller
    user: str = request.environ[_USER]
    return user


class Query(BaseModel):
    """A route's query string: one model per route, parsed with `parse_query` and
    published as the route's query parameters in the OpenAPI document
    (api/routes/operations.py). Unknown parameters are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


def parse_query(model: type[M]) -> M:
    """The query string as `model`; 400 `invalid_request` naming a bad parameter."""
    return validate(model, request.args.to_dict())


def body_limit(max_bytes: int) -> Callable[[F], F]:
    """A route's own request-body limit, in place of the app's MAX_BODY_BYTES (1 MiB).
    Over it, with or without Content-Length (a chunked body is cut off as it is read),
    the answer is 413 `too_large`. For a whole blueprint, call `limit_body(n)` in a
    `before_request` hook instead."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def limited(*args, **kwargs):
            limit_body(max_bytes)
            return view(*args, **kwargs)

        return limited  # type: ignore[return-value]

    return decorate


def body_stream() -> BinaryIO:
    """The request body as a stream, read without buffering. werkzeug types it as
    IO[bytes]; the services only `read(n)` it, which BinaryIO declares alike."""
    return cast(BinaryIO, request.stream)


def limit_body(max_bytes: int) -> None:
    """Set this request's body limit; before anything reads the body."""
    request.max_content_length = max_bytes


def piece_length() -> int | None:
    """Limit this request's body to one piece of a file sent in several requests (the
    runner's outputs and snapshots, an upload in parts): Cloud Run's 32 MiB HTTP/1 cap.
    Returns the Content-Length, if any; 413 over the cap."""
    # One byte more than a piece may hold: werkzeug refuses a stream that reaches its
    # limit, and a piece of exactly the limit is fine (the store enforces the limit).
    limit_body(config.MAX_RUNNER_CHUNK_BYTES + 1)
    length = request.content_length
    if length is not None and length > config.MAX_RUNNER_CHUNK_BYTES:
        raise ApiError(
            413,
            "too_large",
            f"A piece is at most {config.MAX_RUNNER_CHUNK_BYTES // config.MIB} MiB "
            f"({config.MAX_RUNNER_CHUNK_BYTES} bytes).",
        )
    return length


def body_bytes() -> bytes:
    """The request body, at most the request's max_content_length.

    :raises RequestEntityTooLarge: it is longer (413 `too_large`), also when it comes
        chunked, without Content-Length. Werkzeug refuses a long Content-Length up
        front, but cuts a chunked body off at the limit silently; the JSON parser
        would then call a too-large body "not JSON".
    """
    limit = request.max_content_length
    if limit is None or request.content_length is not None:
        return request.get_data(cache=True)
    if "wsgi.input_terminated" not in request.environ:
        return request.get_data(cache=True)  # werkzeug reads no unframed body at all
    data = request.environ["wsgi.input"].read(limit + 1)
    if len(data) > limit:
        raise RequestEntityTooLarge()
    return data


def json_body(*, replace_surrogates: bool = False) -> object:
    """The parsed JSON body. A lone UTF-16 surrogate (JSON allows `\\ud800`, UTF-8 does
    not) is refused with 400, or with `replace_surrogates` becomes U+FFFD: the runner's
    reports carry what programs and models wrote, and must not be lost for it."""
    if not request.is_json:
        raise ApiError(
            415, "unsupported_media_type", "Send a JSON body with Content-Type: application/json."
        )
    try:
        body = json.loads(body_bytes())
    except RecursionError:
        raise ApiError(400, "invalid_json", "The JSON body is nested too deeply.") from None
    except ValueError:
        body = None
    if body is None:
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.")
    if not _encodable(body):
        if replace_surrogates:
            return _without_surrogates(body)
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


_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_surrogates(value: object) -> object:
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_without_surrogates(k): _without_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_surrogates(item) for item in value]
    return value


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
        elif any(item["type"] == "unwritable_path" for item in error.errors()):
            status, code = 422, "unwritable_path"
        raise ApiError(status, code, describe_errors(error)) from None


def services() -> Services:
    found: Services = current_app.extensions["agent_platform"]
    return found


class FilePathConverter(PathConverter):
    """`<path:...>` that matches every character a file name may hold: werkzeug's own
    stops at a newline (its `.` is not DOTALL), so such a file was listed but 404."""

    regex = "[^/][\\s\\S]*?"
