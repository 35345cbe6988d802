"""Who may call POST /internal/v1/reconcile: Cloud Scheduler with an OIDC token for
the RECONCILE_INVOKER service account, or anyone holding RECONCILE_SECRET.
https://cloud.google.com/scheduler/docs/http-target-auth#using-oidc"""

from __future__ import annotations

import hmac
import logging

log = logging.getLogger(__name__)

RECONCILE_PATH = "/internal/v1/reconcile"


def authorize_reconcile(settings, headers) -> bool:
    secret = headers.get("X-Reconcile-Secret")
    if secret and settings.reconcile_secret:
        return hmac.compare_digest(secret.encode(), settings.reconcile_secret.encode())
    bearer = headers.get("Authorization", "")
    if bearer.startswith("Bearer ") and settings.reconcile_invoker:
        return _verified_invoker(bearer.removeprefix("Bearer ").strip(), settings)
    return False


def _verified_invoker(token: str, settings) -> bool:
    from google.auth.transport import requests as google_requests
    from google.oauth2 import id_token

    audience = f"{(settings.public_url or '').rstrip('/')}{RECONCILE_PATH}"
    try:
        claims = id_token.verify_oauth2_token(token, google_requests.Request(), audience)
    except ValueError as error:
        log.warning("reconcile token refused: %s", error)
        return False
    return claims.get("email") == settings.reconcile_invoker and bool(claims.get("email_verified"))
