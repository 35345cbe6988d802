"""Health endpoints: no auth, no I/O (Cloud Run and old clients probe them)."""

import os

from flask import Blueprint

bp = Blueprint("health", __name__)

HEALTHY = {"status": "ok", "service": "api-server"}


@bp.get("/")
@bp.get("/health")
def health():
    # On Cloud Run, also the revision that answers (K_REVISION): a deploy's smoke test
    # proves with it that the new code, not an older revision, serves the URL.
    revision = os.environ.get("K_REVISION")
    return {**HEALTHY, "revision": revision} if revision else HEALTHY
