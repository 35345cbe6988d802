"""Typed errors: one class per kind of answer the API gives, chosen by HTTP status
and refined by the error's `code` (`{"error": {"code", "message"}}`, DESIGN
section 6). Catch `APIError` for all of them, or a subclass for one."""

from __future__ import annotations

import httpx


class AgentPlatformError(Exception):
    """Anything this SDK raises."""


class TransportError(AgentPlatformError):
    """The API could not be reached (connection refused, reset, timed out)."""


class TaskFailed(AgentPlatformError):
    """`run(..., check=True)`: the task ended without completing, or its program
    exited non-zero. The finished task is on `.task`."""

    def __init__(self, message: str, task: object) -> None:
        super().__init__(message)
        self.task = task


class APIError(AgentPlatformError):
    """An error answer from the API."""

    status: int = 0

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: float | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.response = response


class BadRequest(APIError):
    """400: the request is malformed."""


class ValidationError(BadRequest):
    """400 `invalid_request`: a field is missing or out of bounds. `fields` names the
    fields the message points at (camelCase, as sent)."""

    @property
    def fields(self) -> list[str]:
        # The API writes "timeoutSeconds: Input should be ...; memoryMb: ...".
        names = []
        for part in self.message.split("; "):
            where, sep, _ = part.partition(": ")
            if sep and where and " " not in where:
                names.append(where)
        return names


class Unauthenticated(APIError):
    """401: no credentials, or bad ones."""


class PermissionDenied(APIError):
    """403: the credentials are good but not allowed to do this."""


class NotFound(APIError):
    """404: no such resource (also another user's: the API never says it exists)."""


class Conflict(APIError):
    """409: the resource's current state does not allow it (a turn still running, an
    upload not yet complete, a task already finished)."""


class TooLarge(APIError):
    """413: the body, or one of its fields, is too large."""


class UnsupportedMediaType(APIError):
    """415."""


class RangeNotSatisfiable(APIError):
    """416."""


class Unprocessable(APIError):
    """422: well-formed but not allowed here (a model not offered, an idempotency key
    reused with another body)."""


class RateLimited(APIError):
    """429: over a limit. `retry_after` is the number of seconds the API asked for."""


class ServiceUnavailable(APIError):
    """503: a backend is down or busy; `retry_after` seconds before trying again."""


class InternalServerError(APIError):
    """500 and other 5xx."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: Unauthenticated,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: TooLarge,
    415: UnsupportedMediaType,
    416: RangeNotSatisfiable,
    422: Unprocessable,
    429: RateLimited,
    503: ServiceUnavailable,
}


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The `Retry-After` header in seconds (the API sends whole seconds)."""
    raw = response.headers.get("Retry-After")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def error_from_response(response: httpx.Response) -> APIError:
    """The typed error for an error answer, whatever its body looks like."""
    code, message = "", response.reason_phrase or f"HTTP {response.status_code}"
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code") or "")
        message = str(body["error"].get("message") or message)
    status = response.status_code
    cls = _BY_STATUS.get(status, InternalServerError if status >= 500 else APIError)
    if status == 400 and code == "invalid_request":
        cls = ValidationError
    return cls(status, code, message, retry_after=retry_after_seconds(response), response=response)
