"""The gunicorn worker the API runs in (gunicorn.conf.py: `worker_class`): uvicorn's
event loop and HTTP/1.1 parser (h11) in front of the Flask app (api/wsgi_bridge.py), with
a deadline on every wait for a client. ADR 0015 says why, with the measurement.

gunicorn stays the process manager (Cloud Run's SIGTERM, one worker, JSON logs); only
the worker changes.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import TYPE_CHECKING, Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from api.wsgi_bridge import WsgiBridge

# uvicorn.workers is deprecated in favour of the separate `uvicorn-worker` package,
# which is the same 100 lines; the one in uvicorn is used so no package is added.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from uvicorn.workers import UvicornWorker

if TYPE_CHECKING:
    from flask import Flask

    from api.config import Settings


class HeaderDeadlineH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request line and headers
    are not all in within `header_seconds` of its first byte (or of the previous
    response, on a kept-alive connection). uvicorn itself waits for them forever."""

    header_seconds = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        # Armed for the cycle that just ended, before uvicorn starts the next one: a
        # pipelined request whose headers are already in begins inside this call, and
        # its own (possibly long, held) response must not be cut at this deadline.
        self._arm_header_deadline()
        super().on_response_complete()

    def _arm_header_deadline(self) -> None:
        waiting_after = self.cycle
        self.loop.call_later(self.header_seconds, self._header_deadline, waiting_after)

    def _header_deadline(self, waiting_after: Any) -> None:
        if self.cycle is waiting_after and not self.transport.is_closing():
            # No new request started since the deadline was armed.
            self.transport.close()


class BoundedWorker(UvicornWorker):
    """gunicorn's worker: the Flask app (`api.wsgi:app`) behind the bridge, on
    `threads` request threads, with the deadlines from the app's settings."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "asyncio", "http": "h11", "lifespan": "off"}

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # gunicorn is untyped: its worker sets `wsgi` in load_wsgi().
        flask_app: Flask = self.wsgi  # type: ignore[has-type]
        settings: Settings = flask_app.extensions["agent_platform"].settings
        protocol = type(
            "ApiH11Protocol",
            (HeaderDeadlineH11Protocol,),
            {"header_seconds": settings.request_header_seconds},
        )
        self.config.http = protocol
        self.wsgi = WsgiBridge(
            flask_app,
            threads=self.cfg.threads,
            body_idle_seconds=settings.request_body_idle_seconds,
            write_idle_seconds=settings.response_write_idle_seconds,
        )
