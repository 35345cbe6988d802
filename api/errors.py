"""The one error shape of the public API: {"error": {"code", "message"}}."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error a client can act on; `status` is the HTTP status it maps to."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


def not_found(what: str = "resource") -> ApiError:
    return ApiError(404, "not_found", f"No such {what}.")


class BackendUnavailable(ApiError):
    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(503, "backend_unavailable", message, retry_after=retry_after)


def _response(status: int, code: str, message: str, retry_after: int | None = None):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _backend_unavailable(error: Exception) -> bool:
    """A Google backend that did not answer in time (its retries spent: RetryError),
    refused the connection, or failed on its side: the client may retry."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as auth_exceptions

    return isinstance(
        error,
        gexc.RetryError
        | gexc.ServerError
        | gexc.DeadlineExceeded
        | auth_exceptions.TransportError
        | requests.ConnectionError
        | requests.Timeout
        | ConnectionError
        | TimeoutError,
    )


def init_app(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return _response(error.status, error.code, error.message, error.retry_after)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        code = _HTTP_CODES.get(status, "error")
        message = error.description or error.name
        if status == 413:
            limit = request.max_content_length if request else app.config["MAX_CONTENT_LENGTH"]
            message = f"Request body is larger than {limit} bytes."
        return _response(status, code, message)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        # Backends (Firestore, the executor) can be down; that is a 503 the client can
        # retry, never a 500 with a stack trace.

        from api.adapters.file_store import StorageUnavailable
        from api.adapters.firestore_counters import CounterBusy
        from api.adapters.firestore_store import Contended

        if isinstance(error, Contended | CounterBusy):
            log.warning("transaction contention: %s", error)
            return _response(503, "busy", "Too many concurrent changes; retry shortly.", 1)
        if isinstance(error, StorageUnavailable):
            log.warning("cloud storage unavailable: %s", error)
            return _response(
                503, "storage_unavailable", "File storage is unavailable; retry shortly.", 5
            )
        if _backend_unavailable(error):
            log.warning("backend unavailable: %r", error)
            return _response(503, "backend_unavailable", "A backend is unavailable.", 5)
        log.exception("unhandled error")
        return _response(500, "internal", "Internal error.")
