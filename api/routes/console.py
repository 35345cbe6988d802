"""`GET /console`: the web console, a few static ES modules served by the API itself
(same origin: no CORS, and the console uses nothing but the public API).

The page is served with `no-cache` and a strict Content-Security-Policy: scripts,
styles and connections from this origin only, no inline code. Its assets live under a
path named by a digest of their contents (`/console/assets/<digest>/...`), so they can
be cached for a year and a new deploy is never mixed with an old cached module. In
firebase mode the policy also lets in what Google sign-in itself needs (Google's
sign-in script and frame, and the token endpoints); see
docs/decisions/0009-console-on-the-public-api.md.
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from pathlib import Path

from flask import Blueprint, Response, abort, redirect, request
from werkzeug.wrappers import Response as ResponseBase

from api.routes.common import public, services

bp = Blueprint("console", __name__)

ROOT = Path(__file__).resolve().parent.parent / "console"
ASSETS = "/console/assets"
YEAR = 365 * 24 * 3600
# What Firebase Auth's Google sign-in loads and calls, as Firebase documents:
# https://firebase.google.com/docs/auth/web/redirect-best-practices
FIREBASE_SCRIPTS = "https://apis.google.com"
FIREBASE_CONNECT = "https://identitytoolkit.googleapis.com https://securetoken.googleapis.com"


@functools.cache
def _asset_files() -> dict[str, bytes]:
    """Every file of the console, by its path under ROOT (read once: they are small)."""
    return {
        path.relative_to(ROOT).as_posix(): path.read_bytes()
        for path in sorted(ROOT.rglob("*"))
        if path.is_file() and path.name != "index.html"
    }


@functools.cache
def _digest() -> str:
    hashed = hashlib.sha256()
    for name, content in _asset_files().items():
        hashed.update(name.encode() + b"\0" + hashlib.sha256(content).digest())
    return hashed.hexdigest()[:16]


def content_security_policy(firebase: dict | None) -> str:
    script, connect, frame = "'self'", "'self'", "'none'"
    if firebase is not None:
        script += f" {FIREBASE_SCRIPTS}"
        connect += f" {FIREBASE_CONNECT}"
        frame = f"https://{firebase['authDomain']}"
    return (
        f"default-src 'none'; script-src {script}; style-src 'self'; "
        f"img-src 'self' blob: data:; connect-src {connect}; frame-src {frame}; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _secure(response: Response) -> Response:
    settings = services().settings
    firebase = settings.firebase_web_config if "firebase" in settings.auth_modes else None
    response.headers["Content-Security-Policy"] = content_security_policy(firebase)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


@bp.get("/console")
@bp.get("/console/")
@public
def page() -> ResponseBase:
    """The console's one page; the rest is its modules."""
    if request.path.endswith("/"):
        return redirect("/console", 301)
    html = (ROOT / "index.html").read_text().replace("{{assets}}", f"{ASSETS}/{_digest()}")
    response = Response(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return _secure(response)


@bp.get(f"{ASSETS}/<digest>/<path:name>")
@public
def asset(digest: str, name: str) -> Response:
    """A module, the style sheet or a vendored bundle; immutable under its digest."""
    content = _asset_files().get(name)
    if content is None or digest != _digest():
        abort(404)
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if kind in ("text/javascript", "application/javascript"):
        kind = "text/javascript"
    response = Response(content, mimetype=kind)
    response.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    return _secure(response)
