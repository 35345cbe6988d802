"""`GET /openapi.json`: the public API's contract (DESIGN section 6.6). No
credentials and no I/O: the document is built from the models on first request and
served from memory after that."""

from __future__ import annotations

import functools
import json

from flask import Blueprint, Response

from api.routes.operations import SERVICE, Reply, operation

bp = Blueprint("openapi", __name__)


@functools.cache
def _document() -> bytes:
    from api.openapi import build_spec

    return json.dumps(build_spec(), separators=(",", ":")).encode()


@operation(bp, "get", "/openapi.json", "openapi", "This document", SERVICE,
           Reply(200, "The OpenAPI 3.1 document of the public API.", {"type": "object"}),
           public=True)  # fmt: skip
def openapi() -> Response:
    """200 with the OpenAPI 3.1 document."""
    return Response(_document(), mimetype="application/json")
